#!/usr/bin/env bash
# End-to-end test with real parts: a throwaway PostgreSQL 15 cluster on a free loopback port, the
# real barman from Debian (streaming: backup_method postgres, streaming_archiver, replication
# slots) with its own barman_home and config, and the exporter's shell integration run as the
# barman user. Every metric is compared with what `barman -f json` itself reports.
#
#   server pg-a: two DONE backups
#   server pg-b: no backups
#   server pg-c: one FAILED backup (its pg_basebackup is killed mid-copy, throttled by bandwidth_limit)
#   second case: a barman config with zero servers
#
# Everything started is stopped and removed on exit, also on failure.
# Needs root (PostgreSQL runs as postgres, barman as barman); `scripts/install-deps.sh test` first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
binary_source=$(realpath "${BINARY:-.build/debug/prometheus-barman-exporter}")
pgbin=/usr/lib/postgresql/15/bin

if [ "$(id -u)" != 0 ]; then
  echo "e2e: run as root: PostgreSQL runs as user postgres and barman as user barman" >&2
  exit 1
fi

work=$(mktemp -d /tmp/barman-e2e.XXXXXX)
chmod 755 "$work"
exporter_pid=
backup_pid=
cleanup() {
  set +e
  [ -n "$exporter_pid" ] && kill "$exporter_pid" 2>/dev/null && wait "$exporter_pid" 2>/dev/null
  [ -n "$backup_pid" ] && kill "$backup_pid" 2>/dev/null && wait "$backup_pid" 2>/dev/null
  if [ -f "$work/barman.conf" ]; then
    for server in pg-a pg-b pg-c; do barman -c "$work/barman.conf" -q receive-wal --stop "$server" >/dev/null 2>&1; done
  fi
  # Anything of ours still running (receive-wal children, pg_basebackup) goes too.
  pkill -f -- "$work" 2>/dev/null
  if [ -f "$work/pg/postmaster.pid" ]; then
    runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg" -m immediate -w stop >/dev/null 2>&1
  fi
  if [ "${E2E_KEEP:-}" = 1 ]; then echo "e2e: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

log() { echo "e2e: $*"; }
as_postgres() { runuser -u postgres -- "$@"; }
barman_() { barman -c "$work/barman.conf" "$@"; }

# ---------------------------------------------------------------- PostgreSQL
pgport=$(free_port)
log "PostgreSQL 15 cluster on 127.0.0.1:$pgport in $work/pg"
mkdir -p "$work/run" "$work/pg"
chown postgres:postgres "$work/run" "$work/pg"
chmod 700 "$work/pg"
touch "$work/pg.log"
chown postgres:postgres "$work/pg.log"
as_postgres "$pgbin/initdb" -D "$work/pg" -A trust -U postgres >/dev/null
cat >> "$work/pg/postgresql.conf" <<CONF
port = $pgport
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work/run'
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
fsync = off
CONF
cat > "$work/pg/pg_hba.conf" <<CONF
local all postgres trust
host all barman 127.0.0.1/32 trust
host replication streaming_barman 127.0.0.1/32 trust
CONF
as_postgres "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w start >/dev/null
as_postgres psql -q -h "$work/run" -p "$pgport" -U postgres -d postgres \
  -c "CREATE USER barman SUPERUSER" -c "CREATE USER streaming_barman REPLICATION" \
  -c "CREATE TABLE filler AS SELECT g, md5(g::text) AS t FROM generate_series(1, 200000) g"

# ---------------------------------------------------------------- barman
log "barman $(barman --version 2>&1 | head -1 | cut -d' ' -f1) with barman_home $work/home"
mkdir -p "$work/home" "$work/log"
chown barman:barman "$work/home" "$work/log"
server_block() {  # NAME SLOT [EXTRA]
  cat <<CONF
[$1]
description = e2e server $1
conninfo = host=127.0.0.1 port=$pgport user=barman dbname=postgres
streaming_conninfo = host=127.0.0.1 port=$pgport user=streaming_barman
backup_method = postgres
streaming_archiver = on
slot_name = $2
create_slot = auto
immediate_checkpoint = true
path_prefix = $pgbin
$3

CONF
}
{
  cat <<CONF
[barman]
barman_home = $work/home
barman_user = barman
log_file = $work/log/barman.log
log_level = INFO
compression =

CONF
  server_block pg-a barman_a ""
  server_block pg-b barman_b ""
  # 256 kB/s makes the copy of the ~50 MB cluster take minutes, time enough to kill it.
  server_block pg-c barman_c "bandwidth_limit = 256"
} > "$work/barman.conf"
printf '[barman]\nbarman_home = %s/home-empty\nbarman_user = barman\nlog_file = %s/log/barman-empty.log\n' "$work" "$work" > "$work/barman-empty.conf"
mkdir -p "$work/home-empty"
chown barman:barman "$work/home-empty"
chmod 644 "$work/barman.conf" "$work/barman-empty.conf"

for server in pg-a pg-b pg-c; do
  barman_ -q receive-wal --create-slot "$server" >/dev/null
done
barman_ -q cron >/dev/null  # starts `barman receive-wal` for every server in the background
for server in pg-a pg-c; do
  log "waiting for WAL streaming of $server"
  timeout 60 barman -c "$work/barman.conf" -q switch-wal --force --archive --archive-timeout 50 "$server" >/dev/null
done

log "two backups of pg-a"
barman_ -q backup --wait pg-a >/dev/null
barman_ -q backup --wait pg-a >/dev/null

log "a FAILED backup of pg-c: kill its pg_basebackup mid-copy"
barman_ backup pg-c > "$work/backup-pg-c.out" 2>&1 &
backup_pid=$!
for _ in $(seq 1 300); do
  pgbb=$(pgrep -f "pg_basebackup.*$work/home/pg-c/base" || true)
  [ -n "$pgbb" ] && break
  sleep 0.1
done
[ -n "$pgbb" ] || { echo "e2e: pg_basebackup of pg-c never started" >&2; cat "$work/backup-pg-c.out" >&2; exit 1; }
sleep 1
kill -TERM $pgbb
wait "$backup_pid" || true
backup_pid=

barman_ -f json list-backups all > "$work/list-backups.json"
python3 - "$work/list-backups.json" <<'PY'
import json, sys
listing = json.load(open(sys.argv[1]))
statuses = {server: [b["status"] for b in backups] for server, backups in listing.items()}
print("e2e: backups", statuses)
assert statuses == {"pg-a": ["DONE", "DONE"], "pg-b": [], "pg-c": ["FAILED"]}, statuses
PY

# ---------------------------------------------------------------- the exporter, as user barman
mkdir -p "$work/bin"
cp "$binary_source" "$work/bin/prometheus-barman-exporter"
run_exporter() {  # BARMAN_CONF PORT
  cat > "$work/exporter.yaml" <<CONF
address: 127.0.0.1
port: $2
integration_type: shell
barman_config_file: $1
cache_ttl: 0
checks_cache_ttl: 0
refresh_interval: 1
log_level: debug
CONF
  chmod 644 "$work/exporter.yaml"
  # setpriv execs the exporter itself (runuser would stay as a parent and get the signals).
  setpriv --reuid=barman --regid=barman --init-groups "$work/bin/prometheus-barman-exporter" -config "$work/exporter.yaml" 2>> "$work/exporter.log" &
  exporter_pid=$!
}
stop_exporter() {
  kill "$exporter_pid"
  wait "$exporter_pid"
  local status=$?
  exporter_pid=
  return $status
}

port=$(free_port)
run_exporter "$work/barman.conf" "$port"
url="http://127.0.0.1:$port/metrics"
wait_for_metrics "$url" '^barman_last_backup_copy_time\{server="pg-a"\}'
wait_for_metrics "$url" '^barman_up\{'

check "every metric matches barman -f json" \
  python3 scripts/e2e_compare.py --url "$url" --barman-config "$work/barman.conf" --servers pg-a,pg-b,pg-c
check "barman commands were logged with logId at debug" grep -q 'msg="running barman" logId=' "$work/exporter.log"
check "no barman command failed" bash -c "! grep -q 'level=error' '$work/exporter.log'"
check "SIGTERM stops the exporter with status 0" stop_exporter

port=$(free_port)
run_exporter "$work/barman-empty.conf" "$port"
url="http://127.0.0.1:$port/metrics"
wait_for_metrics "$url" '^barman_metrics_update '
curl -fsS "$url" > "$work/empty.prom"
check "zero servers: barman answered list-backups and check" \
  grep -qE '^barman_exporter_command_success\{command="(list-backups|check)"\} 1$' "$work/empty.prom"
check "zero servers: no server metric at all" bash -c "! grep -q 'server=' '$work/empty.prom'"
check "zero servers: only the exporter's own metrics and barman_metrics_update" \
  bash -c "! grep -vE '^(#|barman_exporter_|barman_metrics_update )' '$work/empty.prom'"
stop_exporter || true

if [ "$failed" -ne 0 ]; then
  echo "--- exporter log (last 40 lines)"; tail -40 "$work/exporter.log"
fi
summary "e2e"
