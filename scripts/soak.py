#!/usr/bin/env python3
"""Soak test: the exporter (shell integration, fake barman answering with real barman 3.4.0
captures) with refresh_interval 1 s for at least REFRESHES refreshes, under concurrent scrapes and
a reload every RELOAD_EVERY seconds. Samples the process every 5 s and asserts:
  - no zombie child (a child seen as a zombie in two samples in a row),
  - a flat number of open file descriptors,
  - resident memory that stops growing (second half of the run grows less than 1 MiB),
  - every scrape answered 200 and every refresh succeeded.
Prints the figures and "soak: N passed, N failed".
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

BINARY = os.path.abspath(os.environ.get("BINARY", ".build/debug/prometheus-barman-exporter"))
REFRESHES = int(os.environ.get("SOAK_REFRESHES", "300"))
RELOAD_EVERY = 60
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "Tests/ExporterTests/Fixtures/3.4.0")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample(pid):
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    rss_kib = int(status["VmRSS"].split()[0])
    threads = int(status["Threads"])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    zombies = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[0] == "Z" and int(fields[1]) == pid:
            zombies.add(int(entry))
    return {"rss_kib": rss_kib, "fds": fds, "threads": threads, "zombies": zombies}


def metric(text, line_prefix):
    for line in text.splitlines():
        if line.startswith(line_prefix):
            return float(line.rsplit(" ", 1)[1])
    return None


def main():
    work = tempfile.mkdtemp(prefix="barman-soak-")
    state = os.path.join(work, "state")
    os.mkdir(state)
    shutil.copy(os.path.join(FIXTURES, "list-backups-all.stdout"), os.path.join(state, "list-backups.json"))
    shutil.copy(os.path.join(FIXTURES, "check-all.stdout"), os.path.join(state, "check.json"))
    shutil.copy(os.path.join(FIXTURES, "show-backup-pg-latest.stdout"), os.path.join(state, "show-backup-pg-20261124T182524.json"))
    # The oldest DONE backup, asked once for its first WAL.
    shutil.copy(os.path.join(FIXTURES, "show-backup-pg-oldest.stdout"), os.path.join(state, "show-backup-pg-20261124T182428.json"))
    captured = os.path.join(ROOT, "Tests/ExporterTests/Fixtures/e2e/3.4.0")
    shutil.copy(os.path.join(captured, "show-servers-all.stdout"), os.path.join(state, "show-servers.json"))
    shutil.copy(os.path.join(captured, "version.stdout"), os.path.join(state, "version.json"))
    port = free_port()
    config = os.path.join(work, "config.yaml")

    def write_config(level):
        with open(config, "w") as f:
            f.write(f"port: {port}\nintegration_type: shell\nbarman_command: {ROOT}/Tests/ExporterTests/Fixtures/fake-barman.sh\n"
                    f"barman_config_file: {state}\ncache_ttl: 0\nchecks_cache_ttl: 0\nrefresh_interval: 1\nlog_level: {level}\n")
    write_config("warn")
    log = open(os.path.join(work, "exporter.log"), "w")
    process = subprocess.Popen([BINARY, "-config", config], stderr=log)
    url = f"http://127.0.0.1:{port}/metrics"
    stop = threading.Event()
    counts = {"scrapes": 0, "errors": 0}
    lock = threading.Lock()

    def scraper():
        while not stop.is_set():
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    response.read()
                    ok = response.status == 200
            except OSError:
                ok = False
            with lock:
                counts["scrapes"] += 1
                counts["errors"] += 0 if ok else 1

    passed = failed = 0

    def check(name, condition, detail=""):
        nonlocal passed, failed
        passed, failed = (passed + 1, failed) if condition else (passed, failed + 1)
        print(("ok   " if condition else "FAIL ") + name + (f" {detail}" if detail and not condition else ""))

    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                urllib.request.urlopen(url, timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        threads = [threading.Thread(target=scraper, daemon=True) for _ in range(4)]
        for thread in threads:
            thread.start()
        samples = []
        started = time.time()
        last_reload = started
        reloads = 0
        runs = 0
        while runs < REFRESHES + 5:
            time.sleep(5)
            samples.append((time.time() - started, sample(process.pid)))
            if time.time() - last_reload >= RELOAD_EVERY:
                reloads += 1
                write_config("info" if reloads % 2 else "warn")
                process.send_signal(signal.SIGHUP)
                last_reload = time.time()
            text = urllib.request.urlopen(url, timeout=5).read().decode()
            runs = metric(text, 'barman_exporter_command_runs_total{command="list-backups"}') or 0
            if process.poll() is not None:
                break
        stop.set()
        for thread in threads:
            thread.join(10)
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        elapsed = time.time() - started
        failures = sum(metric(text, f'barman_exporter_command_failures_total{{command="{c}"}}') or 0 for c in ("list-backups", "check", "show-backup"))

        print(f"soak: {int(runs)} refreshes in {elapsed:.0f} s, {counts['scrapes']} scrapes, {reloads} reloads")
        print("soak: t(s)  rss(KiB)  fds  threads  zombies")
        for t, s in samples[:: max(1, len(samples) // 12)] + [samples[-1]]:
            print(f"soak: {t:5.0f}  {s['rss_kib']:8d}  {s['fds']:3d}  {s['threads']:7d}  {len(s['zombies'])}")

        check("the exporter is still running", process.poll() is None)
        check(f"at least {REFRESHES} refreshes", runs >= REFRESHES, f"only {runs}")
        check("no refresh failed", failures == 0, f"{failures} failures")
        check("every scrape answered 200", counts["errors"] == 0 and counts["scrapes"] > 0, str(counts))
        persistent = [a["zombies"] & b["zombies"] for (_, a), (_, b) in zip(samples, samples[1:])]
        check("no zombie children", not any(persistent), str(persistent))
        steady = [s for t, s in samples if t >= 30]
        fds = [s["fds"] for s in steady]
        half = len(steady) // 2
        # A sample can land while barman commands run: each holds its two pipes (both ends for
        # the moment it is spawned), and each scraper a connection, so peaks reach up to
        # 4 commands (the exporter's limit) x 4 + 4 scrapers above the idle count. A leak shows as
        # growth instead: the last sample and the second half's median stay at the first half's.
        peak = 4 * 4 + 4
        first_median, second_median = sorted(fds[:half])[half // 2], sorted(fds[half:])[(len(fds) - half) // 2]
        check(f"open descriptors flat (min {min(fds)}, max {max(fds)}, last {fds[-1]}, medians {first_median} then {second_median})",
              max(fds) - min(fds) <= peak and fds[-1] <= fds[0] + 4 and second_median <= first_median + 2)
        growth = max(s["rss_kib"] for s in steady[half:]) - max(s["rss_kib"] for s in steady[:half])
        check(f"resident memory stops growing (second half grew {growth} KiB)", growth < 1024)
    finally:
        stop.set()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(10)
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"soak: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
