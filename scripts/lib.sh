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

# debian_mirror                print the Debian mirror of this machine's own apt sources
# debian_rootfs RELEASE DIR PACKAGES
#                              a fresh minbase tree of Debian RELEASE (bookworm, trixie) in DIR with
#                              PACKAGES (comma-separated) included, unpacked from a tarball cached
#                              in .build-tools/rootfs/ (debootstrap runs only the first time)
debian_mirror() {
  local mirror
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$mirror" ] || { echo "no Debian mirror in this machine's apt sources" >&2; return 1; }
  echo "$mirror"
}

debian_rootfs() {
  local release=$1 dir=$2 packages=$3 cache mirror key
  cache=$(realpath -m .build-tools/rootfs)
  key=$(echo "$packages" | md5sum | cut -c1-8)
  mkdir -p "$cache" "$dir"
  if [ ! -f "$cache/$release-$key.tar" ]; then
    mirror=$(debian_mirror)
    echo "debootstrap $release from $mirror (cached in $cache)"
    rm -rf "$cache/$release-$key.fresh"
    debootstrap --variant=minbase --include="$packages" "$release" "$cache/$release-$key.fresh" "$mirror" \
      > "$cache/$release-$key.log" 2>&1 || { tail -20 "$cache/$release-$key.log" >&2; return 1; }
    tar -C "$cache/$release-$key.fresh" -cf "$cache/$release-$key.tar.part" .
    mv "$cache/$release-$key.tar.part" "$cache/$release-$key.tar"
    rm -rf "$cache/$release-$key.fresh"
  fi
  tar -C "$dir" -xf "$cache/$release-$key.tar"
}
