#!/usr/bin/env bash
# End-to-end test with real parts: a throwaway PostgreSQL 15 cluster on a free loopback port, the
# real barman from Debian (streaming: backup_method postgres, streaming_archiver, replication
# slots) with its own barman_home and config, and the exporter's shell integration run as the
# barman user. Every metric is compared with what `barman -f json` itself reports.
#
#   server pg-a: two DONE backups; later a retention policy (REDUNDANCY 1) and `barman keep`
#   server pg-b: no backups while minimum_redundancy is 1; its receive-wal is stopped and restarted
#   server pg-c: one FAILED backup (its pg_basebackup, throttled by bandwidth_limit, is scraped
#                while it runs and then killed mid-copy)
#   second case: a barman config with zero servers
#
# E2E_CAPTURE=DIR also writes what barman printed (stdout, stderr, exit status) for the unit
# tests' fixtures to DIR/<barman version>/ (`make fixtures`).
#
# The scenario runs with Debian's barman (3.4.0) and then again, in its own barman_home, with the
# newest barman pip installs for Debian's python3 (3.19.x for Python 3.11), in a virtualenv that
# reuses Debian's psycopg2 (--system-site-packages). E2E_PIP=0 skips that second run.
#
# E2E_INSTALLED_BINARY=/usr/bin/prometheus-barman-exporter also runs the Debian package's binary
# with the package's config file (port changed) against Debian's barman.
#
# Everything started is stopped and removed on exit, also on failure.
# Needs root (PostgreSQL runs as postgres, barman as barman); `scripts/install-deps.sh test` first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
become_root scripts/e2e.sh "$@"
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
prometheus_pid=
cleanup() {
  set +e
  [ -n "$prometheus_pid" ] && kill "$prometheus_pid" 2>/dev/null && wait "$prometheus_pid" 2>/dev/null
  [ -n "$exporter_pid" ] && kill "$exporter_pid" 2>/dev/null && wait "$exporter_pid" 2>/dev/null
  [ -n "$backup_pid" ] && kill "$backup_pid" 2>/dev/null && wait "$backup_pid" 2>/dev/null
  for conf in "$work"/*/barman.conf; do
    [ -f "$conf" ] || continue
    bin=$(cat "$(dirname "$conf")/barman-bin")
    for server in pg-a pg-b pg-c; do "$bin" -c "$conf" -q receive-wal --stop "$server" >/dev/null 2>&1; done
  done
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
# pg-b has barman's archiver on: barman reports pg_stat_archiver for it. The command succeeds
# (WAL reaches barman by streaming) until the test makes it fail.
archive_mode = on
archive_command = 'true'
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

# ---------------------------------------------------------------- the exporter binary, readable by barman
mkdir -p "$work/bin"
cp "$binary_source" "$work/bin/prometheus-barman-exporter"

# Everything but `check` is asked every second. `barman check` opens replication connections of
# its own, which any replication-status running meanwhile counts as streaming clients: run every
# second it would make the client counts that the comparison reads flicker all the time.
run_exporter() {  # DIR BARMAN_BIN BARMAN_CONF PORT: start the exporter as user barman, logging to DIR/exporter.log
  cat > "$1/exporter.yaml" <<CONF
address: 127.0.0.1
port: $4
integration_type: shell
barman_command: $2
barman_config_file: $3
cache_ttl: 0
checks_cache_ttl: 15
servers_cache_ttl: 15
refresh_interval: 1
log_level: debug
CONF
  chmod 644 "$1/exporter.yaml"
  # setpriv execs the exporter itself (runuser would stay as a parent and get the signals).
  setpriv --reuid=barman --regid=barman --init-groups "$work/bin/prometheus-barman-exporter" -config "$1/exporter.yaml" 2>> "$1/exporter.log" &
  exporter_pid=$!
}
stop_exporter() {
  kill "$exporter_pid"
  wait "$exporter_pid"
  local status=$?
  exporter_pid=
  return $status
}

make_tls() {  # DIR: a test CA, a server certificate for 127.0.0.1 and a client certificate, readable by barman
  mkdir -p "$1"
  (
    cd "$1"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=e2e-ca 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
    printf 'subjectAltName = IP:127.0.0.1\n' > server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.crt 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout scraper.key -out scraper.csr -subj /CN=prometheus 2>/dev/null
    openssl x509 -req -in scraper.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out scraper.crt 2>/dev/null
  )
  # As packaged: the key readable by the barman user only.
  chown root:barman "$1/server.key" && chmod 640 "$1/server.key"
  chmod 755 "$1" && chmod 644 "$1"/*.crt
}

metric() {  # URL SERIES: the value of one series as served, or nothing
  curl -fsS "$1" 2>/dev/null | awk -v series="$2" '$1 == series { print $2 }'
}
wait_for_value() {  # URL SERIES PYTHON-CONDITION-ON-v [SECONDS]: poll until the served value satisfies it
  local value
  for _ in $(seq 1 $((${4:-30} * 5))); do
    value=$(metric "$1" "$2")
    if python3 -c "import sys; v = float(sys.argv[1]) if sys.argv[1] else None; sys.exit(0 if ($3) else 1)" "$value" 2>/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  echo "e2e: $2 is '$value', expected $3" >&2
  return 1
}

pending_is_the_directory() {  # URL DIR BEFORE: pg-a's served streaming count equals DIR's finished segments, below BEFORE
  local served left
  for _ in $(seq 50); do
    left=$(python3 -c 'import os, re, sys; print(sum(1 for e in os.scandir(sys.argv[1]) if re.fullmatch(r"[0-9A-F]{24}", e.name) and e.is_file()))' "$2")
    served=$(metric "$1" 'barman_wal_pending_files{directory="streaming",server="pg-a"}')
    [ "$served" = "$left" ] && [ "$served" -lt "$3" ] && return 0
    sleep 0.2
  done
  echo "e2e: served $served waiting in streaming/, the directory holds $left (before archive-wal: $3)" >&2
  return 1
}

capture() {  # BIN CONF NAME ARGS...: barman's answer as a unit-test fixture (E2E_CAPTURE)
  [ -n "${E2E_CAPTURE:-}" ] || return 0
  local bin=$1 conf=$2 name=$3; shift 3
  local out="$E2E_CAPTURE/$capture_version"
  mkdir -p "$out"
  echo "barman -f json $*" > "$out/$name.cmd"
  set +e
  setpriv --reuid=barman --regid=barman --init-groups "$bin" -c "$conf" -f json "$@" > "$out/$name.stdout" 2> "$out/$name.stderr"
  echo $? > "$out/$name.rc"
  set -e
}

wal_streams() {  # BIN CONF DIR SERVER: start receive-wal (via cron) and wait until a switched WAL is archived
  local bin=$1 conf=$2 dir=$3 server=$4
  for attempt in 1 2 3; do
    "$bin" -c "$conf" -q cron >/dev/null  # starts `barman receive-wal` in the background, archives WAL
    for _ in $(seq 1 100); do
      pgrep -f "pg_receivewal.*$dir/home/$server/streaming" >/dev/null && break
      sleep 0.1
    done
    if timeout 45 "$bin" -c "$conf" -q switch-wal --force --archive --archive-timeout 30 "$server" >/dev/null; then
      return 0
    fi
    log "WAL of $server not archived yet (attempt $attempt); trying again"
  done
  echo "e2e: WAL streaming of $server never worked; see $dir/log/barman.log" >&2
  return 1
}

# ---------------------------------------------------------------- can I restore, and to when?
psql_primary() { as_postgres psql -qtA -h "$work/run" -p "$pgport" -U postgres -d postgres "$@"; }

recoverability() {  # LABEL BIN CONF DIR URL
  local label=$1 bin=$2 conf=$3 dir=$4 url=$5
  local series_a='barman_last_archived_wal_timestamp_seconds{server="pg-a"}'
  local series_b='barman_last_archived_wal_timestamp_seconds{server="pg-b"}'
  check "[$label] pg-b (minimum_redundancy 1, no backup) does not satisfy its minimum redundancy" \
    wait_for_value "$url" 'barman_minimum_redundancy_satisfied{server="pg-b"}' 'v == 0'
  check "[$label] barman_version_info names the barman that runs" \
    wait_for_value "$url" "barman_version_info{version=\"$capture_version\"}" 'v == 1'

  log "[$label] WAL: stop pg-b's receive-wal, write WAL on the primary, archive pg-a's"
  "$bin" -c "$conf" -q receive-wal --stop pg-b >/dev/null
  for _ in $(seq 1 100); do pgrep -f "pg_receivewal.*$dir/home/pg-b/streaming" >/dev/null || break; sleep 0.1; done
  "$bin" -c "$conf" -q archive-wal pg-b >/dev/null || true  # what pg-b received before the stop
  sleep 2  # a refresh reads the catalogs
  local before_a before_b lsn_before
  before_a=$(metric "$url" "$series_a")
  before_b=$(metric "$url" "$series_b")
  lsn_before=$(psql_primary -c "SELECT pg_current_wal_lsn()")
  local wal_before
  wal_before="$(metric "$url" 'barman_last_backup_wal_files{server="pg-a"}') $(metric "$url" 'barman_last_backup_wal_rate_per_second{server="pg-a"}')"
  for _ in 1 2 3; do
    psql_primary -c "INSERT INTO filler SELECT g, md5(g::text) FROM generate_series(1, 1000) g" -c "SELECT pg_switch_wal()" >/dev/null
  done
  sleep 2  # receive-wal of pg-a writes the segments out
  # Without barman cron, the finished segments wait in streaming/.
  check "[$label] without cron, pg-a's finished segments wait in streaming/ (at least the 3 switched)" \
    wait_for_value "$url" 'barman_wal_pending_files{directory="streaming",server="pg-a"}' 'v is not None and v >= 3'
  check "[$label] ... with the oldest one's time" \
    wait_for_value "$url" 'barman_wal_pending_oldest_timestamp_seconds{server="pg-a"}' "v is not None and abs(v - $(date +%s)) < 120"
  local waiting_before
  waiting_before=$(metric "$url" 'barman_wal_pending_files{directory="streaming",server="pg-a"}')
  "$bin" -c "$conf" -q archive-wal pg-a >/dev/null
  "$bin" -c "$conf" -q archive-wal pg-b >/dev/null || true
  # What archive-wal left there (PostgreSQL may have closed another segment meanwhile, which
  # barman takes at its next run): the metric must say exactly that, and less than before.
  check "[$label] once archive-wal ran, what waits in streaming/ went down (from $waiting_before) and is what the directory holds" \
    pending_is_the_directory "$url" "$dir/home/pg-a/streaming" "$waiting_before"
  local slot_b="{server=\"pg-b\",slot=\"pg_b_$label\"}"
  check "[$label] pg-b's receive-wal stopped: its replication slot is inactive" \
    wait_for_value "$url" "barman_replication_slot_active$slot_b" 'v == 0' 40
  check "[$label] ... and PostgreSQL retains more than a segment for it" \
    wait_for_value "$url" "barman_replication_slot_retained_bytes$slot_b" 'v is not None and v > 16 * 2**20' 40
  check "[$label] ... and barman's archive of pg-b is more than a segment behind PostgreSQL" \
    wait_for_value "$url" 'barman_wal_archive_lag_bytes{server="pg-b"}' 'v is not None and v > 16 * 2**20' 40
  check "[$label] PostgreSQL's WAL moved on ($lsn_before -> $(psql_primary -c "SELECT pg_current_wal_lsn()"))" \
    test "$(psql_primary -c "SELECT pg_current_wal_lsn() > '$lsn_before'::pg_lsn")" = t
  check "[$label] pg-a's newest archived WAL moved (was $before_a)" wait_for_value "$url" "$series_a" "v > $before_a"
  # show-backup is asked again only when list-backups shows the backup changed: new WAL did.
  local wal_now
  wal_now=$("$bin" -c "$conf" -f json show-backup pg-a latest | python3 -c 'import json,sys; w=json.load(sys.stdin)["pg-a"]["wal_information"]; print(w["no_of_files"], w["wal_rate_per_second"])')
  check "[$label] the WAL figures follow show-backup (files, rate: $wal_now; were $wal_before)" \
    wait_for_value "$url" 'barman_last_backup_wal_files{server="pg-a"}' "v == ${wal_now% *} and v > ${wal_before% *}"
  check "[$label] ... the rate too" \
    wait_for_value "$url" 'barman_last_backup_wal_rate_per_second{server="pg-a"}' "v is not None and abs(v - ${wal_now#* }) <= 1e-9 * max(1, abs(v))"
  sleep 2
  check "[$label] pg-b's did not: its receive-wal is stopped (still $before_b)" wait_for_value "$url" "$series_b" "v == $before_b" 1
  check "[$label] WAL figures equal barman's catalog and JSON while pg-b is stopped" \
    python3 scripts/e2e_compare.py --url "$url" --barman "$bin" --barman-config "$conf" --servers pg-a,pg-b,pg-c
  log "[$label] restart pg-b's receive-wal (barman cron); it catches up from its slot"
  wal_streams "$bin" "$conf" "$dir" pg-b
  check "[$label] pg-b's newest archived WAL caught up" wait_for_value "$url" "$series_b" "v > $before_b"
  check "[$label] ... its slot is active again" wait_for_value "$url" "barman_replication_slot_active$slot_b" 'v == 1' 40
  check "[$label] ... and its archive is less than a segment behind" \
    wait_for_value "$url" 'barman_wal_archive_lag_bytes{server="pg-b"}' 'v is not None and v < 16 * 2**20' 40

  log "[$label] a segment missing from pg-a's WAL catalog (a changed copy put in place, then the original back)"
  local catalog
  catalog=$("$bin" -c "$conf" -f json show-servers pg-a | python3 -c 'import json,sys; i=json.load(sys.stdin)["pg-a"]; d=i.get("xlogdb_directory"); print(f"{d}/pg-a-xlog.db" if d else i["wals_directory"] + "/xlog.db")')
  check "[$label] no segment is missing from pg-a's archive" \
    wait_for_value "$url" 'barman_wal_missing_segments{server="pg-a"}' 'v == 0'
  cp -p "$catalog" "$dir/catalog.original"
  cp -p "$catalog" "$dir/catalog.changed"
  # The second-newest segment line goes: after every backup's begin, before the newest.
  python3 - "$dir/catalog.changed" <<'PY'
import re, sys
lines = open(sys.argv[1]).readlines()
segments = [i for i, line in enumerate(lines) if re.match(r"[0-9A-F]{24}\t", line)]
del lines[segments[-2]]
open(sys.argv[1], "w").writelines(lines)
PY
  mv "$dir/catalog.changed" "$catalog"
  check "[$label] with one segment line removed, one segment is missing" \
    wait_for_value "$url" 'barman_wal_missing_segments{server="pg-a"}' 'v == 1'
  mv "$dir/catalog.original" "$catalog"
  check "[$label] with the original catalog back, none is missing" \
    wait_for_value "$url" 'barman_wal_missing_segments{server="pg-a"}' 'v == 0'

  local df_avail df_size
  read -r df_size df_avail < <(df -B1 --output=size,avail "$dir/home/pg-a/wals" | tail -1)
  check "[$label] the WAL archive's file system: the size is df's ($df_size)" \
    wait_for_value "$url" 'barman_filesystem_size_bytes{directory="wals",server="pg-a"}' "v == $df_size"
  check "[$label] ... and the free space is df's ($df_avail, within 256 MiB written meanwhile)" \
    wait_for_value "$url" 'barman_filesystem_avail_bytes{directory="wals",server="pg-a"}' "v is not None and abs(v - $df_avail) < 256 * 2**20"
  check "[$label] barman's thresholds of pg-a in seconds (last_backup_maximum_age 1 DAYS, last_wal_maximum_age 6 HOURS)" \
    bash -c "[ \"\$(curl -fsS '$url' | grep -E '^barman_server_last_(backup|wal)_maximum_age_seconds\{server=\"pg-a\"\}' | awk '{print \$2}' | tr '\n' ' ')\" = '86400 21600 ' ]"
  if [ "$label" = pypi ]; then
    check "[$label] barman >= 3.14: the running receive-wal of each server is listed (barman list-processes)" \
      wait_for_value "$url" 'barman_running_processes{server="pg-a",task="receive-wal"}' 'v == 1'
  else
    check "[$label] barman < 3.14: no barman_running_processes and no list-processes run" \
      bash -c "! curl -fsS '$url' | grep -q '^barman_running_processes' && ! grep -q 'list-processes' '$dir/exporter.log'"
  fi

  log "[$label] PostgreSQL's archive_command fails (pg-b has archiver = on)"
  local failed_before
  failed_before=$(metric "$url" 'barman_archiver_failures_total{server="pg-b"}')
  psql_primary -c "ALTER SYSTEM SET archive_command = 'false'" -c "SELECT pg_reload_conf()" >/dev/null
  psql_primary -c "INSERT INTO filler SELECT g, md5(g::text) FROM generate_series(1, 1000) g" -c "SELECT pg_switch_wal()" >/dev/null
  check "[$label] the failures are counted (were ${failed_before:-none})" \
    wait_for_value "$url" 'barman_archiver_failures_total{server="pg-b"}' "v is not None and v > ${failed_before:-0}" 60
  check "[$label] ... with the time of the last one" \
    wait_for_value "$url" 'barman_archiver_last_failure_timestamp_seconds{server="pg-b"}' "v is not None and abs(v - $(date +%s)) < 90"
  capture "$bin" "$conf" show-servers-all-archiver-failing show-servers all
  psql_primary -c "ALTER SYSTEM RESET archive_command" -c "SELECT pg_reload_conf()" >/dev/null

  log "[$label] retention: REDUNDANCY 1 for pg-a, then barman keep, then barman cron"
  local oldest
  oldest=$("$bin" -c "$conf" -f json list-backups pg-a | python3 -c 'import json,sys; print(json.load(sys.stdin)["pg-a"][-1]["backup_id"])')
  sed -i '/^\[pg-a\]$/a retention_policy = REDUNDANCY 1' "$conf"
  check "[$label] with REDUNDANCY 1 and two backups, one is OBSOLETE" \
    wait_for_value "$url" 'barman_backups_by_retention_status{retention_status="OBSOLETE",server="pg-a"}' 'v == 1'
  # barman's list-backups prints VALID as "-" (Server.list_backups).
  check "[$label] ... and the other is kept (\"-\")" \
    wait_for_value "$url" 'barman_backups_by_retention_status{retention_status="-",server="pg-a"}' 'v == 1'
  capture "$bin" "$conf" list-backups-all-retention list-backups all
  "$bin" -c "$conf" -q keep pg-a "$oldest" --target full >/dev/null
  check "[$label] barman keep --target full: the kept backup is counted as KEEP:FULL" \
    wait_for_value "$url" 'barman_backups_by_retention_status{retention_status="KEEP:FULL",server="pg-a"}' 'v == 1'
  check "[$label] ... and is no longer OBSOLETE" \
    wait_for_value "$url" 'barman_backups_by_retention_status{retention_status="OBSOLETE",server="pg-a"}' 'v == 0'
  check "[$label] lifecycle, retention and state equal barman's own JSON" \
    python3 scripts/e2e_compare.py --url "$url" --barman "$bin" --barman-config "$conf" --servers pg-a,pg-b,pg-c
  capture "$bin" "$conf" list-backups-all-keep list-backups all
  capture "$bin" "$conf" show-servers-all show-servers all
  capture "$bin" "$conf" version --version
  capture "$bin" "$conf" show-backup-pg-a-latest show-backup pg-a latest
  if [ -n "${E2E_CAPTURE:-}" ]; then
    tail -n 5 "$(python3 -c 'import json,sys; i=json.load(sys.stdin)["pg-a"]; d=i.get("xlogdb_directory"); print(f"{d}/pg-a-xlog.db" if d else i["wals_directory"] + "/xlog.db")' \
      < "$E2E_CAPTURE/$capture_version/show-servers-all.stdout")" > "$E2E_CAPTURE/$capture_version/xlog-pg-a.db"
  fi
  "$bin" -c "$conf" -q keep --release pg-a "$oldest" >/dev/null
  check "[$label] released, it is OBSOLETE again" \
    wait_for_value "$url" 'barman_backups_by_retention_status{retention_status="OBSOLETE",server="pg-a"}' 'v == 1'
  "$bin" -c "$conf" -q cron >/dev/null
  check "[$label] barman cron removed it: no OBSOLETE backup, one DONE" \
    wait_for_value "$url" 'barman_backups_by_status{server="pg-a",status="DONE"}' 'v == 1'
  check "[$label] ... and OBSOLETE is 0" \
    wait_for_value "$url" 'barman_backups_by_retention_status{retention_status="OBSOLETE",server="pg-a"}' 'v == 0'
}

# ---------------------------------------------------------------- one scenario per barman
scenario() {  # LABEL BARMAN_BIN
  local label=$1 bin=$2
  local dir="$work/$label"
  capture_version=$("$bin" --version 2>&1 | head -1 | cut -d' ' -f1)
  log "[$label] barman $capture_version, barman_home $dir/home"
  mkdir -p "$dir/home" "$dir/log" "$dir/home-empty"
  chown barman:barman "$dir/home" "$dir/log" "$dir/home-empty"
  echo "$bin" > "$dir/barman-bin"
  server_block() {  # NAME [EXTRA]
    cat <<CONF
[$1]
description = e2e server $1
conninfo = host=127.0.0.1 port=$pgport user=barman dbname=postgres
streaming_conninfo = host=127.0.0.1 port=$pgport user=streaming_barman
backup_method = postgres
streaming_archiver = on
slot_name = ${1//-/_}_$label
create_slot = auto
immediate_checkpoint = true
path_prefix = $pgbin
$2

CONF
  }
  {
    printf '[barman]\nbarman_home = %s/home\nbarman_user = barman\nlog_file = %s/log/barman.log\nlog_level = INFO\n\n' "$dir" "$dir"
    # barman's own thresholds, which the exporter serves in seconds.
    server_block pg-a "last_backup_maximum_age = 1 DAYS
last_wal_maximum_age = 6 HOURS"
    server_block pg-b "minimum_redundancy = 1
archiver = on"
    # 256 kB/s makes the copy of the ~50 MB cluster take minutes, time enough to kill it.
    server_block pg-c "bandwidth_limit = 256"
  } > "$dir/barman.conf"
  printf '[barman]\nbarman_home = %s/home-empty\nbarman_user = barman\nlog_file = %s/log/barman-empty.log\n' "$dir" "$dir" > "$dir/barman-empty.conf"
  chmod 644 "$dir/barman.conf" "$dir/barman-empty.conf"
  local conf="$dir/barman.conf"

  for server in pg-a pg-b pg-c; do
    "$bin" -c "$conf" -q receive-wal --create-slot "$server" >/dev/null
  done
  for server in pg-a pg-b pg-c; do
    log "[$label] waiting for WAL streaming of $server"
    wal_streams "$bin" "$conf" "$dir" "$server"
  done

  log "[$label] two backups of pg-a"
  "$bin" -c "$conf" -q backup --wait pg-a >/dev/null
  "$bin" -c "$conf" -q backup --wait pg-a >/dev/null

  local port url
  port=$(free_port)
  run_exporter "$dir" "$bin" "$conf" "$port"
  url="http://127.0.0.1:$port/metrics"
  wait_for_metrics "$url" '^barman_last_backup_copy_time\{server="pg-a"\}'

  log "[$label] a FAILED backup of pg-c: scraped while it runs, then its pg_basebackup is killed mid-copy"
  local started_at
  started_at=$(date +%s)
  "$bin" -c "$conf" backup pg-c > "$dir/backup-pg-c.out" 2>&1 &
  backup_pid=$!
  local pgbb=
  for _ in $(seq 1 300); do
    pgbb=$(pgrep -f "pg_basebackup.*$dir/home/pg-c/base" || true)
    [ -n "$pgbb" ] && break
    sleep 0.1
  done
  if [ -z "$pgbb" ]; then
    echo "e2e: pg_basebackup of pg-c never started" >&2; cat "$dir/backup-pg-c.out" >&2; exit 1
  fi
  check "[$label] the running backup is counted as STARTED" \
    wait_for_value "$url" 'barman_backups_by_status{server="pg-c",status="STARTED"}' 'v == 1'
  check "[$label] its start time is within a minute of the real start ($started_at)" \
    wait_for_value "$url" 'barman_backup_in_progress_start_timestamp_seconds{server="pg-c"}' "v is not None and abs(v - $started_at) <= 60"
  capture "$bin" "$conf" list-backups-all-in-progress list-backups all
  kill -TERM $pgbb
  wait "$backup_pid" || true
  backup_pid=
  check "[$label] once killed it is FAILED, and no backup is in progress" \
    wait_for_value "$url" 'barman_backups_by_status{server="pg-c",status="FAILED"}' 'v == 1'
  check "[$label] ... and no backup is in progress" \
    wait_for_value "$url" 'barman_backup_in_progress_start_timestamp_seconds{server="pg-c"}' 'v is None'
  "$bin" -c "$conf" -q cron >/dev/null  # archive what streamed meanwhile, so check has WAL to look at

  "$bin" -c "$conf" -f json list-backups all > "$dir/list-backups.json"
  check "[$label] barman made 2 DONE backups of pg-a, none of pg-b, 1 FAILED of pg-c" python3 -c '
import json, sys
statuses = {s: [b["status"] for b in bs] for s, bs in json.load(open(sys.argv[1])).items()}
print("e2e: backups", statuses)
sys.exit(statuses != {"pg-a": ["DONE", "DONE"], "pg-b": [], "pg-c": ["FAILED"]})' "$dir/list-backups.json"

  wait_for_metrics "$url" '^barman_up\{'

  # A round counts only when barman's two answers agree; WAL written meanwhile (a checkpoint,
  # autovacuum) moves the streaming lag and skips the round: room for several rounds.
  check "[$label] every metric matches barman -f json" \
    python3 scripts/e2e_compare.py --url "$url" --barman "$bin" --barman-config "$conf" --servers pg-a,pg-b,pg-c --within 150
  if [ "$label" = debian ]; then
    # A real Prometheus server (Debian's package, unpacked by install-deps) scrapes the exporter
    # every second, with the shipped alert rules loaded, over TLS with a client certificate and
    # basic auth: the exporter is reloaded onto a web config (exporter-toolkit's format) and back.
    make_tls "$dir/tls"
    local password hash
    password="e2e-$(date +%s%N)"
    hash=$(htpasswd -nbB -C 10 prometheus "$password" | cut -d: -f2-)
    cat > "$dir/tls/web.yml" <<WEB
tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.crt
basic_auth_users:
  prometheus: $hash
WEB
    echo "web_config_file: $dir/tls/web.yml" >> "$dir/exporter.yaml"
    kill -HUP "$exporter_pid"
    local https_url="https://127.0.0.1:$port/metrics"
    local tls_curl=(curl -fsS --cacert "$dir/tls/ca.crt" --cert "$dir/tls/scraper.crt" --key "$dir/tls/scraper.key")
    for _ in $(seq 1 100); do "${tls_curl[@]}" -u "prometheus:$password" -o /dev/null "$https_url" 2>/dev/null && break; sleep 0.1; done
    check "[$label] after a reload onto the web config, served over TLS with a client certificate and basic auth" \
      "${tls_curl[@]}" -u "prometheus:$password" -o /dev/null "$https_url"
    check "[$label] ...and not without the password" \
      bash -c "[ \"\$(curl -sS -o /dev/null -w '%{http_code}' --cacert $dir/tls/ca.crt --cert $dir/tls/scraper.crt --key $dir/tls/scraper.key $https_url)\" = 401 ]"
    local pport
    pport=$(free_port)
    mkdir -p "$dir/prometheus"
    cp examples/alerts.yml "$dir/prometheus/"
    cat > "$dir/prometheus/prometheus.yml" <<PROM
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [alerts.yml]
scrape_configs:
  - job_name: barman
    scheme: https
    tls_config:
      ca_file: $dir/tls/ca.crt
      cert_file: $dir/tls/scraper.crt
      key_file: $dir/tls/scraper.key
    basic_auth:
      username: prometheus
      password: $password
    static_configs:
      - targets: ["127.0.0.1:$port"]
PROM
    .build-tools/prometheus/usr/bin/prometheus --config.file="$dir/prometheus/prometheus.yml" --storage.tsdb.path="$dir/prometheus/data" \
      --web.listen-address="127.0.0.1:$pport" > "$dir/prometheus/prometheus.log" 2>&1 &
    prometheus_pid=$!
    check "[$label] a real Prometheus scrapes it over TLS + client certificate + basic auth (target up, no scrape error) and stores what barman reports" \
      python3 scripts/prometheus_check.py --prometheus "http://127.0.0.1:$pport" --barman "$bin" --barman-config "$conf" --servers pg-a,pg-b,pg-c
    kill "$prometheus_pid"; wait "$prometheus_pid" 2>/dev/null || true
    prometheus_pid=
    sed -i '/^web_config_file:/d' "$dir/exporter.yaml"
    kill -HUP "$exporter_pid"
    for _ in $(seq 1 100); do curl -fsS -o /dev/null "$url" 2>/dev/null && break; sleep 0.1; done
    check "[$label] reloaded without the web config: plain HTTP again" curl -fsS -o /dev/null "$url"
  fi
  recoverability "$label" "$bin" "$conf" "$dir" "$url"

  check "[$label] barman commands were logged with logId at debug" grep -q 'msg="running barman" logId=' "$dir/exporter.log"
  check "[$label] no barman command failed" bash -c "! grep -q 'level=error' '$dir/exporter.log'"
  check "[$label] SIGTERM stops the exporter with status 0" stop_exporter

  port=$(free_port)
  run_exporter "$dir" "$bin" "$dir/barman-empty.conf" "$port"
  url="http://127.0.0.1:$port/metrics"
  wait_for_metrics "$url" '^barman_metrics_update '
  curl -fsS "$url" > "$dir/empty.prom"
  check "[$label] zero servers: barman answered list-backups and check" \
    grep -qE '^barman_exporter_command_success\{command="(list-backups|check)"\} 1$' "$dir/empty.prom"
  check "[$label] zero servers: no server metric at all" bash -c "! grep -q 'server=' '$dir/empty.prom'"
  check "[$label] zero servers: only the exporter's own metrics, barman's version and barman_metrics_update" \
    bash -c "! grep -vE '^(#|barman_exporter_|barman_metrics_update |barman_version_info\\{|process_)' '$dir/empty.prom'"
  stop_exporter || true

  if [ -n "${E2E_INSTALLED_BINARY:-}" ] && [ "$label" = debian ]; then
    # The Debian package's binary, as user barman, with the package's config file (only the
    # port changed, and barman pointed at this test's barman config).
    port=$(free_port)
    sed "s/^port: .*/port: $port/" /etc/prometheus-barman-exporter/config.yaml > "$dir/installed.yaml"
    echo "barman_config_file: $conf" >> "$dir/installed.yaml"
    chmod 644 "$dir/installed.yaml"
    setpriv --reuid=barman --regid=barman --init-groups "$E2E_INSTALLED_BINARY" -config "$dir/installed.yaml" 2>> "$dir/installed.log" &
    exporter_pid=$!
    url="http://127.0.0.1:$port/metrics"
    wait_for_metrics "$url" '^barman_up\{' || true
    # The installed config caches for 50 s and refreshes every 60 s: each comparison waits for a
    # refresh that started after barman was asked, so allow two; lag bytes move with every WAL
    # write, so with such a cache only their presence is checked (the runs above compare them
    # exactly).
    check "[$label] the installed package's binary and config serve barman's metrics" \
      python3 scripts/e2e_compare.py --url "$url" --barman "$bin" --barman-config "$conf" --servers pg-a,pg-b,pg-c --within 150 --cached
    check "[$label] ... and stop with status 0" stop_exporter
  fi

  if [ "$failed" -ne 0 ]; then
    echo "--- [$label] exporter log (last 40 lines)"; tail -40 "$dir/exporter.log"
  fi
}

scenario debian "$(command -v barman)"

if [ "${E2E_PIP:-1}" = 1 ]; then
  log "[pypi] virtualenv with the newest barman for $(/usr/bin/python3 --version)"
  /usr/bin/python3 -m venv --system-site-packages "$work/venv"
  "$work/venv/bin/pip" install -q --disable-pip-version-check --upgrade barman
  scenario pypi "$work/venv/bin/barman"
fi

summary "e2e"
