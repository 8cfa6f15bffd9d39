#!/usr/bin/env bash
# Run by test_lifecycle.py inside a new network namespace (unshare -n), where binding 0.0.0.0
# reaches nothing but this namespace's loopback: a reload that changes only the address, on the
# same port, must serve on the new address at once.
#   netns-address-reload.sh BINARY WORKDIR PORT
set -u
binary=$1 work=$2 port=$3
ip link set lo up || { echo "FAIL cannot bring up lo in the namespace"; exit 1; }
failed=0
check() {  # NAME COMMAND...
  local name=$1; shift
  if "$@"; then echo "ok   $name"; else echo "FAIL $name"; failed=1; fi
}
serves() {  # ADDRESS: the exporter answers there within 5 s
  for _ in $(seq 50); do curl -fsS -o /dev/null --max-time 1 "http://$1:$port/metrics" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
silent() { ! curl -fsS -o /dev/null --max-time 1 "http://$1:$port/metrics" 2>/dev/null; }

printf 'address: 127.0.0.1\nport: %s\nintegration_type: mock\nlog_level: info\n' "$port" > "$work/config.yaml"
"$binary" -config "$work/config.yaml" 2> "$work/exporter.log" &
pid=$!
check "127.0.0.1:$port serves" serves 127.0.0.1
check "... and 127.0.0.2 does not (only 127.0.0.1 is bound)" silent 127.0.0.2
sed -i 's/^address: .*/address: 0.0.0.0/' "$work/config.yaml"
kill -HUP "$pid"
check "reload to 0.0.0.0 on the same port: 127.0.0.2 serves" serves 127.0.0.2
check "... no error logged" bash -c "! grep -q 'level=error' '$work/exporter.log'"
sed -i 's/^address: .*/address: 127.0.0.1/' "$work/config.yaml"
kill -HUP "$pid"
for _ in $(seq 50); do silent 127.0.0.2 && break; sleep 0.1; done
check "reload back to 127.0.0.1: 127.0.0.2 no longer serves" silent 127.0.0.2
check "... and 127.0.0.1 does" serves 127.0.0.1
kill -TERM "$pid"; wait "$pid"
[ "$failed" = 0 ] || cat "$work/exporter.log"
exit "$failed"
