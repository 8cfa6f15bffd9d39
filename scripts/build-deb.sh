#!/usr/bin/env bash
# Builds the Debian 12 package from a clean copy of the tracked files (nothing untracked or ignored
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
# The swift.org toolchain from PATH (Debian 12 has no Swift 6 package); the unit tests ran
# already with this same toolchain in make test (`swift test`), so the package build skips them.
(cd "$src" && DEB_BUILD_OPTIONS=nocheck dpkg-buildpackage -us -uc -b -Pnocheck,pkg.prometheus-barman-exporter.swift-from-path)
ls -l "$out"/*.deb
