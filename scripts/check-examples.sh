#!/usr/bin/env bash
# Checks the shipped Prometheus examples with Prometheus' own promtool, and the example web
# config with the exporter (BINARY) against certificates made here.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
promtool=$(realpath .build-tools/prometheus/usr/bin/promtool)
binary=$(realpath "${BINARY:-.build/debug/prometheus-barman-exporter}")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The files both TLS examples name, at their paths under $tmp.
mkdir -p "$tmp/tls" "$tmp/prometheus"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/tls/exporter.key" -out "$tmp/tls/exporter.crt" \
  -days 2 -subj /CN=backup-host.example.com 2>/dev/null
cp "$tmp/tls/exporter.crt" "$tmp/tls/scrapers-ca.crt"
cp examples/web-config.yml "$tmp/web-config.yml"
printf 'integration_type: mock\n' > "$tmp/config.yaml"
check "examples/web-config.yml is a valid web config (prometheus-barman-exporter --check-config)" \
  "$binary" --check-config -config "$tmp/config.yaml" --web.config.file "$tmp/web-config.yml"
for file in ca.crt prometheus.crt prometheus.key password; do cp "$tmp/tls/exporter.${file##*.}" "$tmp/prometheus/$file" 2>/dev/null || echo x > "$tmp/prometheus/$file"; done
sed "s|/etc/prometheus/barman-exporter/|$tmp/prometheus/|" examples/prometheus-tls.yml > "$tmp/prometheus-tls.yml"
check "promtool check config examples/prometheus-tls.yml (TLS, client certificate, basic auth)" "$promtool" check config "$tmp/prometheus-tls.yml"
cd examples
check "promtool check rules examples/alerts.yml" "$promtool" check rules alerts.yml
check "promtool test rules examples/alerts.test.yml (every alert fires when it should, only then)" "$promtool" test rules alerts.test.yml
check "promtool check config examples/prometheus.yml" "$promtool" check config prometheus.yml
check "examples/grafana-dashboard.json is valid JSON with panels" python3 -c 'import json; d = json.load(open("grafana-dashboard.json")); assert len(d["panels"]) > 10'
summary "examples"
