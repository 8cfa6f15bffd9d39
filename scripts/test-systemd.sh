#!/usr/bin/env bash
# The Debian package under a real systemd: a Debian 12 or 13 container (systemd-nspawn) boots
# systemd as PID 1, with that release's own PostgreSQL (15, 17) and barman (3.4.0, 3.13.3) inside
# and one streaming barman server with a backup; lintian of that release checks the package, and
# the package's unit is driven as an operator would: start, reload (valid and invalid), stop,
# kill -9, TLS and basic auth, a barman home elsewhere with a drop-in, an upgrade over a modified
# conffile, purge. The unit's sandboxing is enforced inside (see docs/operations.md).
#
#   scripts/test-systemd.sh [bookworm|trixie] [DEB]
#
# DEB defaults to that release's package: .build-tools/deb/ (scripts/build-deb.sh) for bookworm,
# .build-tools/deb-trixie/ (scripts/build-deb-chroot.sh) for trixie.
# The root file system comes from debootstrap with the host's own apt mirror and is cached as a
# tarball in .build-tools/rootfs/ (unpacked anew each run). The container shares the host's
# network (apt inside reaches the same mirror), so PostgreSQL and the exporter listen on free
# loopback ports. Whatever fails, the container is powered off and its tree and cgroups removed.
# Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
become_root scripts/test-systemd.sh "$@"

release=${1:-bookworm}
case "$release" in
  bookworm) pg=15; debs=.build-tools/deb; builder=scripts/build-deb.sh ;;
  trixie) pg=17; debs=.build-tools/deb-trixie; builder=scripts/build-deb-chroot.sh ;;
  *) echo "test-systemd: unknown release '$release'; expected bookworm or trixie" >&2; exit 2 ;;
esac
deb=$(realpath "${2:-$(ls $debs/prometheus-barman-exporter_*_amd64.deb 2>/dev/null | head -1)}")
[ -f "$deb" ] || { echo "test-systemd: no $release package in $debs; run $builder first" >&2; exit 1; }
name=pbe-$release-$$
work=$(mktemp -d /tmp/pbe-systemd.XXXXXX)
rootfs=$work/rootfs
cgroups=(/sys/fs/cgroup/systemd/$name /sys/fs/cgroup/unified/$name)
nspawn_pid=
leader=
unit=prometheus-barman-exporter
conffile=/etc/prometheus-barman-exporter/config.yaml

log() { echo "systemd-test ($release): $*"; }

poweroff() {
  set +e
  if [ -n "$leader" ] && kill -0 "$leader" 2>/dev/null; then
    kill -s RTMIN+4 "$leader"
    for _ in $(seq 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
  fi
  [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null && { kill -KILL "$nspawn_pid"; wait "$nspawn_pid" 2>/dev/null; }
  for cgroup in "${cgroups[@]}"; do
    [ -d "$cgroup" ] && find "$cgroup" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  rm -rf "$work"
}
trap poweroff EXIT

# ---------------------------------------------------------------- the root file system
debian_rootfs "$release" "$rootfs" systemd,systemd-sysv,dbus,procps,python3,ca-certificates,curl,iproute2
# PostgreSQL's cluster is made by hand on a free port: the host may use 5432.
mkdir -p "$rootfs/etc/postgresql-common"
echo "create_main_cluster = false" > "$rootfs/etc/postgresql-common/createcluster.conf"
cp "$deb" "$rootfs/root/current.deb"
mkdir -p "$rootfs/usr/local/share/pbe-test"
cp scripts/e2e_compare.py "$rootfs/usr/local/share/pbe-test/"

# ---------------------------------------------------------------- boot
log "booting systemd in container $name"
(
  # Its own cgroup, so the container's /payload and /supervisor groups are removable afterwards.
  for cgroup in "${cgroups[@]}"; do mkdir -p "$cgroup" && echo $BASHPID > "$cgroup/cgroup.procs"; done
  exec env SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn -D "$rootfs" -M "$name" --boot --register=no --keep-unit \
    --link-journal=no --console=read-only --system-call-filter=bpf systemd.show_status=yes < /dev/null > "$work/console.log" 2>&1
) &
nspawn_pid=$!
for _ in $(seq 100); do leader=$(pgrep -P "$nspawn_pid" | head -1 || true); [ -n "$leader" ] && break; sleep 0.1; done
[ -n "$leader" ] || { cat "$work/console.log"; exit 1; }
inside() { nsenter -t "$leader" -a "$@"; }
state=
for _ in $(seq 100); do
  state=$(inside systemctl is-system-running 2>/dev/null || true)
  case "$state" in running|degraded) break ;; esac
  sleep 0.1
done
check "systemd $(inside systemctl --version | awk 'NR == 1 {print $2}') boots as PID 1 of the Debian $(inside cat /etc/debian_version) container ($state)" test "$state" = running

# ---------------------------------------------------------------- PostgreSQL and barman inside
pgport=$(free_port)
port=$(free_port)
log "installing PostgreSQL $pg, barman and lintian inside (PostgreSQL on 127.0.0.1:$pgport)"
inside bash -euc "
  trap 'echo \"systemd-test: setup step failed (exit \$?): \$BASH_COMMAND\" >&2' ERR
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql barman lintian >/dev/null
  pg_createcluster -p $pgport $pg main >/dev/null
  printf 'local all postgres peer\nhost all barman 127.0.0.1/32 trust\nhost replication streaming_barman 127.0.0.1/32 trust\n' \
    > /etc/postgresql/$pg/main/pg_hba.conf
  echo \"listen_addresses = '127.0.0.1'\" >> /etc/postgresql/$pg/main/postgresql.conf
  systemctl start postgresql@$pg-main
  runuser -u postgres -- psql -q -p $pgport -c 'CREATE USER barman SUPERUSER' -c 'CREATE USER streaming_barman REPLICATION'
  printf '[pg]\ndescription = \"systemd test\"\nconninfo = host=127.0.0.1 port=$pgport user=barman dbname=postgres\nstreaming_conninfo = host=127.0.0.1 port=$pgport user=streaming_barman\nbackup_method = postgres\nstreaming_archiver = on\nslot_name = barman\ncreate_slot = auto\n' \
    > /etc/barman.d/pg.conf
  runuser -u barman -- barman receive-wal --create-slot pg >/dev/null
  # barman cron starts receive-wal in the background; on a busy machine it can stream only after
  # switch-wal's archive wait ended, so a WAL not archived in time is tried again, as e2e.sh does.
  archived=
  for attempt in 1 2 3; do
    runuser -u barman -- barman cron >/dev/null
    for _ in \$(seq 100); do runuser -u barman -- barman -f json replication-status pg | grep -q streaming && break; sleep 0.2; done
    if timeout 45 runuser -u barman -- barman switch-wal --force --archive --archive-timeout 30 pg >/dev/null 2>&1; then
      archived=1; break
    fi
    echo \"WAL of pg not archived yet (attempt \$attempt); trying again\" >&2
  done
  if [ -z \"\$archived\" ]; then
    echo 'systemd-test: WAL streaming of pg never worked; the end of /var/log/barman/barman.log:' >&2
    tail -20 /var/log/barman/barman.log >&2
    exit 1
  fi
  # On an idle server the backup waits for its end segment to be closed and archived: switch
  # WAL and run cron while it waits, until it is DONE.
  runuser -u barman -- barman backup pg --wait >/dev/null 2>&1 &
  for _ in \$(seq 60); do
    sleep 1
    runuser -u barman -- barman -f json list-backups pg | grep -q '\"status\": \"DONE\"' && break
    runuser -u barman -- barman switch-wal --force pg >/dev/null 2>&1 || true
    runuser -u barman -- barman cron >/dev/null 2>&1 || true
  done
  kill %1 2>/dev/null || true
  wait || true
" > "$work/setup.log" 2>&1 || { tail -30 "$work/setup.log"; exit 1; }
check "barman $(inside runuser -u barman -- barman --version 2>/dev/null | awk 'NR == 1 {print $1}') made a DONE backup of pg (PostgreSQL $pg) inside the container" \
  bash -c "nsenter -t $leader -a runuser -u barman -- barman -f json list-backups pg | grep -q '\"status\": \"DONE\"'"
inside lintian --pedantic --display-info /root/current.deb > "$work/lintian.txt" 2>&1 || true
cat "$work/lintian.txt"
check "lintian $(inside dpkg-query -W -f='${Version}' lintian) of Debian $(inside cat /etc/debian_version): no finding on the package (pedantic included)" \
  bash -c "! grep -E '^[EWIPX]: ' '$work/lintian.txt'"

# ---------------------------------------------------------------- install and start
# A policy-rc.d keeps the package from starting the service before its port is set.
inside bash -euc "
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq /root/current.deb >/dev/null
  rm /usr/sbin/policy-rc.d
  sed -i 's/^port: .*/port: $port/' $conffile
" >> "$work/setup.log" 2>&1 || { tail -30 "$work/setup.log"; exit 1; }
url="http://127.0.0.1:$port/metrics"
metrics() { curl -fsS --max-time 5 "$url"; }
since=$(inside date '+%Y-%m-%d %H:%M:%S')
journal() { inside journalctl -u "$unit" --since "$since" --no-pager -o cat "$@"; }
inside systemctl start "$unit"
# Type=notify: `systemctl start` returns once the exporter said READY=1, which it says once it listens.
check "systemctl start returns with the unit active, and it answers at once" \
  bash -c "[ \"\$(nsenter -t $leader -a systemctl is-active $unit)\" = active ] && curl -fsS --max-time 2 -o /dev/null '$url'"
check "the unit runs as barman, Type=notify" \
  bash -c "[ \"\$(nsenter -t $leader -a systemctl show -p User --value $unit)\" = barman ] && [ \"\$(nsenter -t $leader -a systemctl show -p Type --value $unit)\" = notify ]"

# The packaged config refreshes every 60 s; a reload makes it refresh every 2 s.
inside sed -i -e 's/^cache_ttl: .*/cache_ttl: 0/' -e 's/^checks_cache_ttl: .*/checks_cache_ttl: 0/' \
  -e 's/^refresh_interval: .*/refresh_interval: 2/' -e 's/^log_level: .*/log_level: info/' "$conffile"
inside systemctl reload "$unit"
check "systemctl reload with a valid change applies it (config reloaded, refreshes every 2 s)" \
  bash -c "for _ in \$(seq 50); do nsenter -t $leader -a journalctl -u $unit --since '$since' --no-pager -o cat | grep -q 'msg=\"config reloaded\"' && break; sleep 0.2; done
           runs() { curl -fsS '$url' | awk '/^barman_exporter_command_runs_total\{command=\"list-backups\"\}/ {print \$2}'; }
           for _ in \$(seq 100); do a=\$(runs); [ -n \"\$a\" ] && break; sleep 0.2; done  # the first refresh may still run
           # Three more list-backups within 20 s: impossible at the packaged 60 s interval.
           for _ in \$(seq 100); do b=\$(runs); [ -n \"\$a\" ] && [ -n \"\$b\" ] && [ \$((b - a)) -ge 3 ] && exit 0; sleep 0.2; done
           echo \"list-backups runs: \$a then \$b\"; exit 1"
check "the metrics served equal barman's own JSON (run as barman, under the unit's hardening)" \
  nsenter -t "$leader" -a runuser -u barman -- python3 /usr/local/share/pbe-test/e2e_compare.py --url "$url" --barman-config /etc/barman.conf --servers pg
check "no barman command failed under the sandbox" \
  bash -c "metrics=\$(curl -fsS '$url'); ! echo \"\$metrics\" | grep -q '^barman_exporter_command_success{.*} 0' && echo \"\$metrics\" | grep -q '^barman_exporter_command_success{command=\"check\"} 1'"
check "nothing logged at error priority (journalctl -p err)" bash -c "[ -z \"\$(nsenter -t $leader -a journalctl -u $unit --since '$since' -p err --no-pager -o cat)\" ]"
check "log lines carry their priority: info lines are at priority 6" \
  bash -c "nsenter -t $leader -a journalctl -u $unit --since '$since' -p info..info --no-pager -o cat | grep -q 'level=info msg=\"config reloaded\"'"

inside cp "$conffile" /root/good.yaml
inside bash -euc "printf 'port: [1, 2]\n' >> $conffile"
inside systemctl reload "$unit" || true
sleep 1
check "systemctl reload with an invalid file: the unit stays active on the old config" \
  bash -c "[ \"\$(nsenter -t $leader -a systemctl is-active $unit)\" = active ] && curl -fsS -o /dev/null '$url'"
check "... and the error, with the file and line, is in the journal at error priority" \
  bash -c "nsenter -t $leader -a journalctl -u $unit --since '$since' -p err --no-pager -o cat | grep -q 'config reload failed.*config.yaml:'"
inside cp /root/good.yaml "$conffile"
inside systemctl reload "$unit"

# ---------------------------------------------------------------- stop and crash
start=$(date +%s.%N)
inside systemctl stop "$unit"
elapsed=$(python3 -c "print(round($(date +%s.%N) - $start, 2))")
check "systemctl stop is clean within 5 s (took ${elapsed} s)" \
  bash -c "python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) < 5 else 1)' '$elapsed' && [ \"\$(nsenter -t $leader -a systemctl show -p Result --value $unit)\" = success ]"
check "... and leaves no barman process of the exporter behind" \
  bash -c "! nsenter -t $leader -a pgrep -f -- '-f json' >/dev/null"
check "a normal start, reload and stop logged nothing at error level but the invalid file" \
  bash -c "[ \"\$(nsenter -t $leader -a journalctl -u $unit --since '$since' -p err --no-pager -o cat | grep -vc 'config reload failed')\" = 0 ]"

inside systemctl start "$unit"
old=$(inside systemctl show -p MainPID --value "$unit")
inside kill -9 "$old"
check "kill -9 of the main process: systemd restarts it (Restart=on-failure)" \
  bash -c "for _ in \$(seq 150); do pid=\$(nsenter -t $leader -a systemctl show -p MainPID --value $unit); [ \"\$pid\" != 0 ] && [ \"\$pid\" != $old ] && curl -fsS -o /dev/null --max-time 1 '$url' && exit 0; sleep 0.1; done; exit 1"

# ---------------------------------------------------------------- TLS and basic auth under the hardening
# GnuTLS (through libmicrohttpd) and libcrypt's bcrypt run inside the unit's sandbox
# (SystemCallFilter, MemoryDenyWriteExecute...): set up as docs/operations.md says, reloaded on.
tls_dir="$work/tls"
mkdir -p "$tls_dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tls_dir/exporter.key" -out "$tls_dir/exporter.crt" \
  -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null
tls_password="systemd-$(date +%s%N)"
tls_hash=$(htpasswd -nbB -C 10 prometheus "$tls_password" | cut -d: -f2-)
mkdir -p "$rootfs/etc/prometheus-barman-exporter/tls"
cp "$tls_dir/exporter.crt" "$tls_dir/exporter.key" "$rootfs/etc/prometheus-barman-exporter/tls/"
printf 'tls_server_config:\n  cert_file: tls/exporter.crt\n  key_file: tls/exporter.key\nbasic_auth_users:\n  prometheus: %s\n' "$tls_hash" \
  > "$rootfs/etc/prometheus-barman-exporter/web-config.yml"
inside bash -euc "
  chown -R root:barman /etc/prometheus-barman-exporter/tls
  chmod 0750 /etc/prometheus-barman-exporter/tls
  chmod 0640 /etc/prometheus-barman-exporter/tls/exporter.key
  chmod 0644 /etc/prometheus-barman-exporter/web-config.yml
  echo 'web_config_file: web-config.yml' >> $conffile
  systemctl reload $unit
" >> "$work/setup.log" 2>&1
https_url="https://127.0.0.1:$port/metrics"
check "TLS + basic auth under the unit's hardening: served after systemctl reload, key readable by barman only" \
  bash -c "for _ in \$(seq 100); do curl -fsS --max-time 2 --cacert '$tls_dir/exporter.crt' -u 'prometheus:$tls_password' '$https_url' | grep -q '^barman_up{' && exit 0; sleep 0.1; done; exit 1"
check "... a wrong password gets 401" \
  bash -c "[ \"\$(curl -sS -o /dev/null -w '%{http_code}' --cacert '$tls_dir/exporter.crt' -u prometheus:wrong '$https_url')\" = 401 ]"
check "... and nothing was logged at error priority" bash -c "[ \"\$(nsenter -t $leader -a journalctl -u $unit --since '$since' -p err --no-pager -o cat | grep -vc 'config reload failed')\" = 0 ]"
# Back to plain HTTP; the files the operator added go too (purge removes only the package's own).
inside bash -euc "sed -i '/^web_config_file:/d' $conffile; systemctl reload $unit
  rm -rf /etc/prometheus-barman-exporter/tls /etc/prometheus-barman-exporter/web-config.yml"
for _ in $(seq 100); do curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && break; sleep 0.1; done

# ---------------------------------------------------------------- barman home elsewhere
inside bash -euc "
  systemctl stop $unit
  runuser -u barman -- barman receive-wal --stop pg >/dev/null 2>&1 || true
  mkdir -p /srv/barman && chown barman:barman /srv/barman
  cp -a /var/lib/barman/pg /srv/barman/
  sed -i 's|^barman_home = .*|barman_home = /srv/barman|' /etc/barman.conf
  grep -q '^barman_home = /srv/barman' /etc/barman.conf
  mkdir -p /etc/systemd/system/$unit.service.d
  printf '[Service]\nReadWritePaths=/srv/barman\n' > /etc/systemd/system/$unit.service.d/barman-home.conf
  systemctl daemon-reload
  systemctl start $unit
" >> "$work/setup.log" 2>&1 || { tail -20 "$work/setup.log"; exit 1; }
check "barman_home in /srv/barman with the README's drop-in (ReadWritePaths): every command succeeds" \
  bash -c "for _ in \$(seq 100); do m=\$(curl -fsS '$url'); echo \"\$m\" | grep -q '^barman_exporter_command_success{command=\"check\"} 1' && ! echo \"\$m\" | grep -q '^barman_exporter_command_success{.*} 0' && echo \"\$m\" | grep -q '^barman_backups_total{server=\"pg\"} 1' && exit 0; sleep 0.2; done; exit 1"

# ---------------------------------------------------------------- upgrade and purge
# "The previous version": the same package with a lower version, installed first.
inside bash -euc "
  systemctl stop $unit
  rm /etc/systemd/system/$unit.service.d/barman-home.conf
  systemctl daemon-reload
  mkdir -p /root/previous && dpkg-deb -R /root/current.deb /root/previous
  sed -i 's/^Version: .*/Version: 0.0.1-1/' /root/previous/DEBIAN/control
  dpkg-deb -b /root/previous /root/previous.deb >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --allow-downgrades /root/previous.deb >/dev/null
  sed -i 's/^port: .*/port: $port/' $conffile
  echo '# changed by the operator' >> $conffile
  systemctl restart $unit
" >> "$work/setup.log" 2>&1 || { tail -20 "$work/setup.log"; exit 1; }
before=$(inside systemctl show -p MainPID --value "$unit")
inside bash -euc "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq /root/current.deb >/dev/null" >> "$work/setup.log" 2>&1
check "an upgrade from the previous version keeps the modified conffile" \
  bash -c "nsenter -t $leader -a grep -qx '# changed by the operator' $conffile && [ \"\$(nsenter -t $leader -a dpkg-query -W -f='\${Version}' prometheus-barman-exporter)\" != 0.0.1-1 ]"
check "... and restarts the service, which serves again" \
  bash -c "for _ in \$(seq 100); do pid=\$(nsenter -t $leader -a systemctl show -p MainPID --value $unit); [ \"\$pid\" != 0 ] && [ \"\$pid\" != $before ] && curl -fsS -o /dev/null --max-time 1 '$url' && exit 0; sleep 0.1; done; exit 1"

inside bash -euc "DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq prometheus-barman-exporter >/dev/null" >> "$work/setup.log" 2>&1
check "purge removes the unit and the config, and nothing listens any more" \
  bash -c "! nsenter -t $leader -a systemctl cat $unit >/dev/null 2>&1 && nsenter -t $leader -a test ! -e /etc/prometheus-barman-exporter && ! curl -fsS -o /dev/null --max-time 1 '$url'"
check "... and leaves barman and its data" \
  bash -c "nsenter -t $leader -a dpkg-query -W -f='\${Status}' barman | grep -q 'install ok installed' && nsenter -t $leader -a runuser -u barman -- barman -f json list-backups pg | grep -q DONE"

if [ "$failed" -ne 0 ]; then
  echo "--- journal of the unit"; journal | tail -40
  echo "--- setup log"; tail -20 "$work/setup.log"
fi
poweroff
trap - EXIT
leader=
check "the container is powered off and nothing of it is left on the host" \
  bash -c "! kill -0 $nspawn_pid 2>/dev/null && [ ! -e '$work' ] && [ ! -e '${cgroups[0]}' ] && [ ! -e '${cgroups[1]}' ]"
summary "systemd"
