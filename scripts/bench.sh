#!/usr/bin/env bash
# `make bench`: installs wrk, nginx and the Python exporter (PyPI barman-exporter 1.0.10, in a
# virtualenv), builds the release binary as shipped (static Swift runtime), and prints one table
# for a small (3 servers x 5 backups) and a large (200 x 60) dataset served by a fake barman;
# then barman's own cost per hour (bench/barman_cost.py) with Debian's real barman.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh build
missing=()
for package in wrk nginx python3-venv barman valgrind openssl apache2-utils; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# nginx's package may start a default server on port 80; the benchmark runs its own instance.
if [ ! -x .build-tools/python-exporter/bin/barman-exporter ]; then
  /usr/bin/python3 -m venv .build-tools/python-exporter
  .build-tools/python-exporter/bin/pip install -q --disable-pip-version-check barman-exporter==1.0.10
fi
swift build -c release --static-swift-stdlib --scratch-path .build-static --product prometheus-barman-exporter
swift build -c release --static-swift-stdlib --scratch-path .build-static --product exporter-bench
python3 bench/run.py "$@"
# What a Prometheus scraping every 15 s costs the exporter (CPU a minute, memory), and no scraper.
python3 bench/run.py real-use
# Password guessing against a verified scraper, with its p95 comparison as a check.
FLOOD_STRICT=1 BINARY=.build-static/release/prometheus-barman-exporter python3 scripts/test_auth_flood.py
# barman's own cost of being monitored, with the real barman (needs root: barman runs as barman).
python3 bench/barman_cost.py
