#!/usr/bin/env python3
"""Password guessing must not slow a scraper whose password was verified (docs/operations.md).

The exporter serves the mock with basic auth (one user, bcrypt cost 10). A scraper sends the
right password on a keep-alive connection every 0.25 s: first alone, then while 150 clients send
wrong passwords as fast as they are answered, first all from one address (the login throttle
answers them), then each from its own loopback address (127.0.0.2...: the throttle does not
help, the one password-check thread and its bounded queue do). The scraper's p95 latency under
attack must stay within 2x of its p95 alone (with 1 ms allowed for timer noise), and the
exporter's CPU is printed. The attackers run at nice 19, as attackers elsewhere cost this host
nothing; the scraper at normal priority. Loopback only, about a minute.

Run by `make test` (BINARY set); prints one line per check and the figures.
"""
import base64
import http.client
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, free_port, stop, summary

BINARY = os.path.abspath(os.environ.get("BINARY", ".build/debug/prometheus-barman-exporter"))
PASSWORD = "s3cret pass"
BASELINE_SECONDS = 8
ATTACK_SECONDS = int(os.environ.get("FLOOD_SECONDS", "20"))
ATTACKERS = 150
STRICT = os.environ.get("FLOOD_STRICT") == "1"  # the p95 comparison as a check (make bench)


def auth(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def scraper(port, seconds, results):
    """Scrapes every 0.25 s with the verified password; latencies in ms into `results`."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": auth("prometheus", PASSWORD)}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        connection.request("GET", "/metrics", headers=headers)
        response = connection.getresponse()
        response.read()
        elapsed = (time.perf_counter() - started) * 1000
        results.append(elapsed if response.status == 200 else float("inf"))
        time.sleep(0.25)


def scrape_in_process(port, seconds):
    with multiprocessing.Manager() as manager:
        results = manager.list()
        process = multiprocessing.Process(target=scraper, args=(port, seconds, results))
        process.start()
        process.join()
        return list(results)


def attackers(port, seconds, distinct_addresses, counts):
    """ATTACKERS keep-alive clients sending distinct wrong passwords until `seconds` pass."""
    os.nice(19)
    end = time.monotonic() + seconds
    statuses = {}
    lock = threading.Lock()

    def attack(index):
        source = (f"127.0.0.{2 + index}", 0) if distinct_addresses else None
        connection = None
        attempt = 0
        while time.monotonic() < end:
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=source)
                attempt += 1
                connection.request("GET", "/metrics", headers={"Authorization": auth("prometheus", f"guess-{index}-{attempt}")})
                response = connection.getresponse()
                response.read()
                with lock:
                    statuses[response.status] = statuses.get(response.status, 0) + 1
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except OSError:
                connection = None
                time.sleep(0.01)

    threads = [threading.Thread(target=attack, args=(index,)) for index in range(ATTACKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts.update(statuses)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def p95(values):
    return statistics.quantiles(values, n=20)[18] if len(values) >= 20 else max(values)


def main():
    work = tempfile.mkdtemp(prefix="barman-exporter-flood-")
    password_hash = subprocess.run(["htpasswd", "-nbBC", "10", "prometheus", PASSWORD], capture_output=True, text=True,
                                   check=True).stdout.strip().split(":", 1)[1]
    port = free_port()
    config = os.path.join(work, "config.yaml")
    web = os.path.join(work, "web.yml")
    with open(config, "w") as f:
        f.write(f"address: 127.0.0.1\nport: {port}\nintegration_type: mock\nlog_level: error\n")
    with open(web, "w") as f:
        f.write(f"basic_auth_users:\n  prometheus: {password_hash}\n")
    exporter = subprocess.Popen([BINARY, "-config", config, "--web.config.file", web], stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                connection.request("GET", "/metrics", headers={"Authorization": auth("prometheus", PASSWORD)})
                if connection.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        alone = scrape_in_process(port, BASELINE_SECONDS)
        check("the scraper alone: every scrape 200", all(value != float("inf") for value in alone), alone[:5])
        baseline = p95(alone)
        print(f"flood: scraper alone: p50 {statistics.median(alone):.2f} ms, p95 {baseline:.2f} ms ({len(alone)} scrapes)")
        for distinct in (False, True):
            label = "150 addresses" if distinct else "one address"
            counts = multiprocessing.Manager().dict()
            cpu_before = cpu_seconds(exporter.pid)
            attack = multiprocessing.Process(target=attackers, args=(port, ATTACK_SECONDS, distinct, counts))
            attack.start()
            time.sleep(1)
            under_attack = scrape_in_process(port, ATTACK_SECONDS - 2)
            attack.join()
            cpu = cpu_seconds(exporter.pid) - cpu_before
            answered = dict(counts)
            ok = [value for value in under_attack if value != float("inf")]
            print(f"flood: {label}: scraper p50 {statistics.median(ok):.2f} ms, p95 {p95(ok):.2f} ms, max {max(ok):.2f} ms "
                  f"({len(under_attack)} scrapes); attackers answered {answered}; exporter CPU {cpu:.1f} s in {ATTACK_SECONDS} s")
            check(f"{label}: every scrape with the verified password answered 200", len(ok) == len(under_attack),
                  len(under_attack) - len(ok))
            within = p95(ok) <= max(2 * baseline, baseline + 1.0)
            if STRICT:
                check(f"{label}: scraper p95 within 2x of alone ({p95(ok):.2f} ms vs {baseline:.2f} ms)", within, (p95(ok), baseline))
            else:
                # A figure, not a verdict, in make test: sub-millisecond latency on a shared 2-core
                # host moves with whatever else runs (the project keeps timing out of pass/fail
                # tests); make bench runs this with FLOOD_STRICT=1.
                print(f"flood: {label}: scraper p95 {p95(ok):.2f} ms under attack vs {baseline:.2f} ms alone: "
                      f"{'within' if within else 'NOT within'} 2x")
            check(f"{label}: no wrong password was accepted", answered.get(200, 0) == 0, answered)
            # One password check at a time (one core at most), plus the HTTP thread answering the
            # refusals: bounded whatever the attackers do.
            check(f"{label}: the exporter used at most 1.5 cores ({cpu:.1f} CPU s in {ATTACK_SECONDS} s)",
                  cpu <= ATTACK_SECONDS * 1.5, cpu)
            if not distinct:
                check("one address: after 5 failures it is throttled (429)", answered.get(429, 0) > 0 and answered.get(401, 0) <= 10,
                      answered)
    finally:
        stop(exporter)
    return summary("flood")


if __name__ == "__main__":
    sys.exit(main())
