#!/usr/bin/env bash
# Checks the shipped Prometheus examples with Prometheus' own promtool.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
promtool=$(realpath .build-tools/prometheus/usr/bin/promtool)
cd examples
check "promtool check rules examples/alerts.yml" "$promtool" check rules alerts.yml
check "promtool test rules examples/alerts.test.yml (every alert fires when it should, only then)" "$promtool" test rules alerts.test.yml
check "promtool check config examples/prometheus.yml" "$promtool" check config prometheus.yml
check "examples/grafana-dashboard.json is valid JSON with panels" python3 -c 'import json; d = json.load(open("grafana-dashboard.json")); assert len(d["panels"]) > 10'
summary "examples"
