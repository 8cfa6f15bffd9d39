#!/usr/bin/env bash
# Builds the Debian 13 (trixie) package the way a Debian builder does: from the source package,
# in a clean trixie chroot holding only build-essential and the Build-Depends (Debian's own
# `swiftlang` 6.0.3 among them; nothing from outside Debian), with dpkg-buildpackage as an
# unprivileged user, the unit tests run by dh_auto_test; then lintian of trixie on the result.
#
#   scripts/build-deb-chroot.sh   output: .build-tools/deb-trixie/*.deb, *.changes, lintian.txt
#
# The package's version is the Debian 12 one with "+deb13" appended (a newer version, so a
# Debian 12 package upgraded along with its system is replaced). The chroot's base tree and the
# downloaded packages (swiftlang is 444 MB) are cached under .build-tools/ for later runs.
# Needs root (debootstrap, chroot).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
become_root scripts/build-deb-chroot.sh "$@"

release=trixie
out=.build-tools/deb-$release
archives=$(realpath -m .build-tools/apt-archives/$release)
work=$(mktemp -d /tmp/pbe-chroot.XXXXXX)
root=$work/root
trap 'rm -rf "$work"' EXIT
mkdir -p "$out" "$archives/partial"
rm -f "$out"/*

debian_rootfs "$release" "$root" ca-certificates

version=$(dpkg-parsechangelog -S Version)
upstream=${version%-*}
src=$root/build/prometheus-barman-exporter-$upstream
mkdir -p "$src"
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$src"
# The Debian 13 build's own changelog entry, above the shared ones.
{
  echo "prometheus-barman-exporter ($version+deb13) $release; urgency=medium"
  echo
  echo "  * Built for Debian 13 with Debian's swiftlang."
  echo
  echo " -- $(dpkg-parsechangelog -S Maintainer)  $(date -u -R -d "@$(($(dpkg-parsechangelog -S Timestamp) + 1))")"
  echo
  cat debian/changelog
} > "$src/debian/changelog"

# In a mount namespace of its own, so nothing stays mounted when it ends, whatever fails.
unshare --mount --fork bash -euc '
  root=$1 archives=$2 upstream=$3
  mount --make-rprivate /
  mount -t proc proc "$root/proc"
  mount --rbind /dev "$root/dev"
  mount --rbind /sys "$root/sys"
  mount --bind "$archives" "$root/var/cache/apt/archives"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 bash -euc "
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends build-essential lintian >/dev/null
    cd /build/prometheus-barman-exporter-$upstream
    DEBIAN_FRONTEND=noninteractive apt-get build-dep -y -qq --no-install-recommends . >/dev/null
    swift --version
    useradd --create-home builder
    chown -R builder: /build
    runuser -u builder -- dpkg-buildpackage -us -uc -b
    lintian -I -E --pedantic --display-experimental ../*.changes > ../lintian.txt 2>&1 || true
  "
' chroot-build "$root" "$archives" "$upstream"

cp "$root"/build/*.deb "$root"/build/*.changes "$root"/build/*.buildinfo "$root"/build/lintian.txt "$out/"
cat "$out/lintian.txt"
ls -l "$out"/*.deb
