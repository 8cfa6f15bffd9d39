#!/usr/bin/env bash
# Tests the Debian package the way an operator meets it. Needs root.
#   scripts/test-deb.sh install   lintian, apt install, --version, unit checks, upgrade over itself
#   scripts/test-deb.sh purge     apt-get purge removes our files and config, leaves barman alone
# Between the two, `E2E_INSTALLED_BINARY=/usr/bin/prometheus-barman-exporter scripts/e2e.sh` runs
# the installed binary as user barman with the installed config against a real barman.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
become_root scripts/test-deb.sh "$@"
deb=$(ls .build-tools/deb/prometheus-barman-exporter_*_amd64.deb 2>/dev/null | head -1)
changes=$(ls .build-tools/deb/*.changes 2>/dev/null | head -1)
[ -n "$deb" ] || { echo "test-deb: no package; run scripts/build-deb.sh first" >&2; exit 1; }
deb=$(realpath "$deb")
unit=/lib/systemd/system/prometheus-barman-exporter.service
conffile=/etc/prometheus-barman-exporter/config.yaml
version=$(grep -o '"[0-9][^"]*"' Sources/Platform/BuildInfo.swift | tr -d '"')

case "${1:-}" in
install)
  lintian -I -E --pedantic --display-experimental "$changes" > .build-tools/deb/lintian.txt 2>&1 || true
  cat .build-tools/deb/lintian.txt
  check "lintian: no error, warning or other finding (pedantic included)" \
    bash -c "! grep -E '^[EWIPX]: ' .build-tools/deb/lintian.txt"

  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" >/dev/null
  check "apt installs the package" bash -c "dpkg-query -W -f='\${Status}' prometheus-barman-exporter | grep -q 'install ok installed'"
  check "/usr/bin/prometheus-barman-exporter --version is $version" \
    bash -c "[ \"\$(/usr/bin/prometheus-barman-exporter --version)\" = 'prometheus-barman-exporter $version' ]"
  check "the package depends on barman and Debian libraries only" \
    bash -c "dpkg-query -W -f='\${Depends}' prometheus-barman-exporter | grep -q 'barman' && ! ldd /usr/bin/prometheus-barman-exporter | grep -qE 'swift|not found'"
  check "the conffile is installed and valid" bash -c "/usr/bin/prometheus-barman-exporter --check-config -config $conffile | grep -qx OK"
  check "without -config the packaged config is the one used" bash -c "/usr/bin/prometheus-barman-exporter --check-config | grep -qx OK"
  check "TLS and bcrypt come from Debian's libraries, in Depends (libgnutls30, libcrypt1)" \
    bash -c "dpkg-query -W -f='\${Depends}' prometheus-barman-exporter | grep -q 'libgnutls30' && dpkg-query -W -f='\${Depends}' prometheus-barman-exporter | grep -q 'libcrypt1' && ldd /usr/bin/prometheus-barman-exporter | grep -q libgnutls && ldd /usr/bin/prometheus-barman-exporter | grep -q libcrypt"
  check "the example web config is installed" test -f /usr/share/doc/prometheus-barman-exporter/examples/web-config.yml
  check "the conffile listens on 127.0.0.1:9780 with the shell integration" \
    bash -c "grep -qx 'address: 127.0.0.1' $conffile && grep -qx 'port: 9780' $conffile && grep -qx 'integration_type: shell' $conffile"
  check "dpkg marks the config as a conffile" bash -c "dpkg-query -W -f='\${Conffiles}' prometheus-barman-exporter | grep -q $conffile"
  check "the unit is enabled on install" test -L /etc/systemd/system/multi-user.target.wants/prometheus-barman-exporter.service
  systemd-analyze verify "$unit" > .build-tools/deb/verify.txt 2>&1 || true
  cat .build-tools/deb/verify.txt
  check "systemd-analyze verify accepts the unit" test ! -s .build-tools/deb/verify.txt
  systemd-analyze security --offline=true "$unit" > .build-tools/deb/security.txt 2>&1 || true
  score=$(grep -o 'Overall exposure level for .*' .build-tools/deb/security.txt || true)
  echo "test-deb: systemd-analyze security: $score"
  check "systemd-analyze security rates the unit OK or better" bash -c "echo '$score' | grep -qE ': [0-9.]+ (OK|SAFE)'"
  check "the unit runs as barman, Type=notify, reloads with SIGUSR1" \
    bash -c "grep -qx 'User=barman' $unit && grep -qx 'Group=barman' $unit && grep -qx 'Type=notify' $unit && grep -qx 'ExecReload=/bin/kill -USR1 \$MAINPID' $unit && grep -qx 'Restart=on-failure' $unit"

  echo "# changed locally by test-deb.sh" >> "$conffile"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --reinstall "$deb" >/dev/null
  check "reinstalling over itself keeps the locally modified conffile" grep -qx '# changed locally by test-deb.sh' "$conffile"
  sed -i '/# changed locally by test-deb.sh/d' "$conffile"
  summary "deb-install"
  ;;
purge)
  barman_home=$(getent passwd barman | cut -d: -f6)
  marker="$barman_home/.prometheus-barman-exporter-purge-test"
  touch "$marker"
  DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq prometheus-barman-exporter >/dev/null
  check "purge removes the package" bash -c "! dpkg-query -W -f='\${Status}' prometheus-barman-exporter 2>/dev/null | grep -q installed"
  check "purge removes the binary, unit and man page" \
    bash -c "[ ! -e /usr/bin/prometheus-barman-exporter ] && [ ! -e $unit ] && [ ! -e /usr/share/man/man1/prometheus-barman-exporter.1.gz ]"
  check "purge removes the config directory" test ! -e /etc/prometheus-barman-exporter
  check "purge removes the enablement symlink" test ! -e /etc/systemd/system/multi-user.target.wants/prometheus-barman-exporter.service
  check "barman stays installed" bash -c "dpkg-query -W -f='\${Status}' barman | grep -q 'install ok installed'"
  check "barman's user and data stay" bash -c "getent passwd barman >/dev/null && [ -e '$marker' ]"
  rm -f "$marker"
  summary "deb-purge"
  ;;
*)
  echo "usage: $0 install|purge" >&2; exit 2 ;;
esac
