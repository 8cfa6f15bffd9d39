#!/usr/bin/env python3
"""A real Prometheus server scrapes the exporter: the target must be healthy with no scrape error,
the alert rules must evaluate without error, and what Prometheus stored must match what
`barman -f json` reports (the same expectations as e2e_compare.py). Retries for up to 40 s."""
import argparse
import json
import sys
import time
import urllib.parse
import urllib.request

import e2e_compare


def api(base, path, **params):
    url = f"{base}/api/v1/{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise RuntimeError(f"{path}: {body}")
    return body["data"]


def stored(base):
    samples = {}
    for item in api(base, "query", query='{__name__=~"barman_.*"}')["result"]:
        metric = dict(item["metric"])
        name = metric.pop("__name__")
        metric.pop("job", None)
        metric.pop("instance", None)
        samples[(name, tuple(sorted(metric.items())))] = float(item["value"][1])
    return samples, time.time()


def attempt(base, config, servers):
    problems = []
    targets = api(base, "targets")["activeTargets"]
    if len(targets) != 1:
        return [f"expected one target, found {len(targets)}"], 0
    target = targets[0]
    if target["health"] != "up" or target["lastError"]:
        problems.append(f"target {target['scrapeUrl']}: health {target['health']}, lastError {target['lastError']!r}")
    for group in api(base, "rules")["groups"]:
        for rule in group["rules"]:
            if rule.get("health") != "ok":
                problems.append(f"rule {rule['name']}: health {rule.get('health')} {rule.get('lastError', '')}")
    want, ages, _, _ = e2e_compare.expected(config)
    got, at = stored(base)
    # Prometheus' value is from its last scrape, up to a second old: a wider age tolerance.
    problems += e2e_compare.differences("Prometheus", want, ages, got, at, 4)
    return problems, len(want) + len(ages)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--prometheus", required=True)
    parser.add_argument("--barman", default="barman")
    parser.add_argument("--barman-config", required=True)
    parser.add_argument("--servers", required=True)
    args = parser.parse_args()
    e2e_compare.BARMAN = args.barman
    deadline = time.time() + 40
    problems = ["not tried"]
    while time.time() < deadline:
        try:
            problems, count = attempt(args.prometheus, args.barman_config, set(args.servers.split(",")))
        except (OSError, RuntimeError, KeyError) as error:
            problems = [f"Prometheus API: {error}"]
        if not problems:
            print(f"e2e: Prometheus scraped the exporter; {count} stored series match barman's JSON; every alert rule evaluates")
            return 0
        time.sleep(2)
    print("\n".join(problems))
    return 1


if __name__ == "__main__":
    sys.exit(main())
