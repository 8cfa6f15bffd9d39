# Shared helpers for the test scripts. Source it; it defines:
#   free_port                  print a free TCP port on 127.0.0.1
#   wait_for_metrics URL RE    poll URL until its body matches RE (20 s), else fail
#   check NAME CONDITION...    run a check, count it, print ok/FAIL
#   summary LABEL              print "LABEL: N passed, N failed" and return non-zero on failures
#   become_root SCRIPT ARGS... re-run SCRIPT (a path from the repository root) with sudo unless root
passed=0
failed=0

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_for_metrics() {
  local url=$1 pattern=$2
  for _ in $(seq 1 200); do
    if curl -fsS "$url" 2>/dev/null | grep -qE "$pattern"; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for /$pattern/ at $url" >&2
  return 1
}

check() {
  local name=$1; shift
  if "$@"; then
    passed=$((passed + 1)); echo "ok   $name"
  else
    failed=$((failed + 1)); echo "FAIL $name"
  fi
}

summary() {
  echo "$1: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

# The package and end-to-end tests install packages and run PostgreSQL and barman as their own
# users, so they need root; a CI runner that is a sudoer gets there without changing the command.
become_root() {
  [ "$(id -u)" = 0 ] && return 0
  local script=$1; shift
  if ! command -v sudo >/dev/null; then
    echo "$script: needs root (it installs packages and runs PostgreSQL and barman as their users); run it as root" >&2
    exit 1
  fi
  exec sudo env "PATH=$PATH" "BINARY=${BINARY:-}" "E2E_INSTALLED_BINARY=${E2E_INSTALLED_BINARY:-}" \
    "E2E_PIP=${E2E_PIP:-1}" "E2E_CAPTURE=${E2E_CAPTURE:-}" "$PWD/$script" "$@"
}
