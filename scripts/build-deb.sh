#!/usr/bin/env bash
# Builds the Debian package from a clean copy of the tracked files (nothing untracked or ignored
# gets in) with dpkg-buildpackage -us -uc -b. Output: .build-tools/deb/*.deb and the .changes file.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh deb
version=$(dpkg-parsechangelog -S Version)
upstream=${version%-*}
out=.build-tools/deb
src="$out/prometheus-barman-exporter-$upstream"
rm -rf "$out"
mkdir -p "$src"
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$src"
(cd "$src" && dpkg-buildpackage -us -uc -b)
ls -l "$out"/*.deb
