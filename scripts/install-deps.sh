#!/usr/bin/env bash
# Installs what the exporter needs from Debian's packages, only when missing.
#   scripts/install-deps.sh build   C libraries for building (libmicrohttpd, libyaml, zlib, pkg-config)
#   scripts/install-deps.sh deb     + debhelper, dpkg-dev, lintian, systemd (for systemd-analyze)
#   scripts/install-deps.sh test    + PostgreSQL, barman, curl, openssl, htpasswd (apache2-utils)
#                                   and Prometheus' promtool/server,
#                                   what building and checking the Debian package takes, and
#                                   systemd-nspawn and debootstrap for the systemd container test
# Prometheus is unpacked under .build-tools/ (not installed) so that no service is started.
set -euo pipefail
cd "$(dirname "$0")/.."

group=${1:-build}
packages=(libmicrohttpd-dev libgnutls28-dev libcrypt-dev libyaml-dev zlib1g-dev pkg-config)
if [ "$group" = test ] || [ "$group" = deb ]; then
  packages+=(debhelper dpkg-dev lintian systemd)
fi
if [ "$group" = test ]; then
  packages+=(curl openssl apache2-utils postgresql barman python3 python3-venv python3-prometheus-client iproute2 systemd-container debootstrap)
fi

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "install-deps: need root to run: $*" >&2; exit 1
  fi
}

updated=no
apt_update_once() {
  if [ "$updated" = no ]; then as_root apt-get update -qq; updated=yes; fi
}

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  apt_update_once
  # --no-install-recommends: barman recommends openssh-server, which streaming backups do not need.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$group" = test ] && [ ! -x .build-tools/prometheus/usr/bin/promtool ]; then
  echo "install-deps: unpacking Debian's prometheus package into .build-tools/prometheus"
  apt_update_once
  mkdir -p .build-tools/debs
  (cd .build-tools/debs && rm -f prometheus_*.deb && apt-get download prometheus >/dev/null)
  rm -rf .build-tools/prometheus
  dpkg-deb -x .build-tools/debs/prometheus_*.deb .build-tools/prometheus
fi

if ! command -v swift >/dev/null; then
  echo "install-deps: swift is not on PATH; install the Swift 6 toolchain (swift.org) and add it to PATH" >&2
  exit 1
fi
