#!/usr/bin/env bash
# Serves the mock integration and has Prometheus' own promtool read the output.
# Expects no parse error and exactly the one lint finding caused by a metric name kept from the Go exporter (docs/metrics.md).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
binary=${BINARY:-.build/debug/prometheus-barman-exporter}
promtool=.build-tools/prometheus/usr/bin/promtool

work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

port=$(free_port)
printf 'address: 127.0.0.1\nport: %s\nintegration_type: mock\nlog_level: warn\n' "$port" > "$work/config.yaml"
"$binary" -config "$work/config.yaml" 2> "$work/stderr" &
pid=$!
# The first refresh's last answer (its duration) is in: every family has its data.
wait_for_metrics "http://127.0.0.1:$port/metrics" '^barman_metrics_update '
curl -fsS "http://127.0.0.1:$port/metrics" > "$work/metrics.prom"

set +e
"$promtool" check metrics < "$work/metrics.prom" > "$work/promtool.out" 2>&1
status=$?
set -e
cat "$work/promtool.out"
expected='barman_backups_total non-counter metrics should not have "_total" suffix'
check "promtool parses the exposition (exit 3 = lint only, got $status)" test "$status" -eq 3
check "the only lint finding is the documented name kept from the Go exporter" test "$(cat "$work/promtool.out")" = "$expected"
check "every metric family of the Go exporter is served" bash -c "for m in barman_backup_size barman_backup_wal_size barman_backups_failed barman_backups_total barman_first_backup barman_last_backup barman_last_backup_copy_time barman_metrics_update barman_up barman_last_backup_throughput barman_last_backup_wal_files barman_last_backup_wal_rate_per_second; do grep -q \"^# TYPE \$m gauge\$\" '$work/metrics.prom' || { echo missing \$m; exit 1; }; done"
accept='application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1'
curl -fsS -D "$work/om.headers" -H "Accept: $accept" -H 'Accept-Encoding: gzip' "http://127.0.0.1:$port/metrics" -o "$work/om.gz"
check "Prometheus' Accept header gets OpenMetrics 1.0.0, gzipped" \
  bash -c "grep -qi '^content-type: application/openmetrics-text; version=1.0.0; charset=utf-8' '$work/om.headers' && grep -qi '^content-encoding: gzip' '$work/om.headers'"
gunzip -c "$work/om.gz" > "$work/om.txt"
# Debian's python3-prometheus-client: its OpenMetrics parser rejects a missing "# EOF",
# interleaved families and counters without _total.
check "the OpenMetrics parser of prometheus_client accepts it" /usr/bin/python3 -c '
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
families = list(text_string_to_metric_families(open(sys.argv[1]).read()))
names = {f.name for f in families}
assert "barman_up" in names and "barman_exporter_command_runs" in names, names
print("prometheus_client parsed %d OpenMetrics families" % len(families))' "$work/om.txt"
curl -fsS -H 'Accept-Encoding: gzip' "http://127.0.0.1:$port/metrics" | gunzip -c > "$work/text-from-gzip.prom"
set +e
"$promtool" check metrics < "$work/text-from-gzip.prom" > "$work/promtool-gzip.out" 2>&1
set -e
check "gzipped text 0.0.4 decompresses to what promtool accepts" test "$(cat "$work/promtool-gzip.out")" = "$expected"
check "the exporter logged nothing at warn level" test ! -s "$work/stderr"
summary "exposition"
