#!/usr/bin/env python3
"""The benchmark behind `make bench` (run through scripts/bench.sh). Prints one table.

For each dataset the fake barman (bench/fake-barman.py) generates, it measures ours, the Python
exporter (PyPI barman-exporter 1.0.10) and nginx serving our exact bytes (plain and pre-gzipped):
requests/s and latency p50/p99 with wrk at 1, 16 and 64 keep-alive connections, plain and with
Accept-Encoding: gzip; bytes served; resident memory idle and peak; time from start to the first
scrape with data; barman processes and wall time per full refresh; the TLS + basic auth table;
then one verdict line per target (`print_targets`). Then the render benchmark.
"""
import base64
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OURS = os.path.join(ROOT, ".build-static/release/prometheus-barman-exporter")
RENDER_BENCH = os.path.join(ROOT, ".build-static/release/exporter-bench")
PYTHON_EXPORTER = os.path.join(ROOT, ".build-tools/python-exporter/bin/barman-exporter")
FAKE = os.path.join(ROOT, "bench/fake-barman.py")
# name, servers, backups, and whether the Python exporter is measured too: at 1,000 servers its
# first refresh alone takes longer than the whole benchmark should, so there it is left out.
DATASETS = [("small", 3, 5, True), ("large", 200, 60, True), ("1000 servers", 1000, 60, False)]
CONNECTIONS = [1, 16, 64]
SECONDS = int(os.environ.get("BENCH_SECONDS", "4"))  # per wrk run
REAL_USE_SCRAPED = "a gzip scrape every 15 s"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url, headers=None, timeout=600):
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def status(pid):
    with open(f"/proc/{pid}/status") as f:
        values = dict(line.split(":", 1) for line in f if ":" in line)
    return int(values["VmRSS"].split()[0]), int(values["VmHWM"].split()[0])


def wrk(url, connections, gzip, headers=()):
    command = ["wrk", "-t", str(min(2, connections)), "-c", str(connections), "-d", f"{SECONDS}s", "--latency", url]
    if gzip:
        command[1:1] = ["-H", "Accept-Encoding: gzip"]
    for header in headers:
        command[1:1] = ["-H", header]
    output = subprocess.run(command, capture_output=True, text=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))

    def latency(percent):
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    return rate, latency(50), latency(99)


REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))


def wrk_matrix(urls, headers=None):
    """name -> (gzip, connections) -> (req/s, p50 ms, p99 ms, every run's p99, every run) for
    every combination measured: the median of each over BENCH_REPEATS runs (default 5), the p99
    of each run sorted to show how far they spread, and each run's (req/s, p50, p99) in the order
    run, so that the servers' runs of the same round can be compared pair by pair (`paired`).
    wrk corrects its latencies for coordinated omission (a response that took D adds samples at
    D - T, D - 2T... where T is a connection's mean time per request), so a single preemption of
    a few milliseconds on a 2-core machine shared with wrk puts hundreds of samples in the tail:
    one run's p99 moves by up to 10x, nginx's too. The servers compared are measured cell by
    cell in turn, in the same minutes, and the median of five runs lets two unlucky ones pass.
    Every other round takes the servers in the opposite order: a run right after another
    server's 64 plain-body connections can be slower (nginx's at 1 gzip connection on 1,000
    servers by a quarter; docs/performance.md, "Fourteenth run"), and a fixed order gave that
    place to the same server in every round."""
    runs = {}
    for repeat in range(REPEATS):
        order = list(urls.items())
        if repeat % 2:
            order.reverse()
        for gzip in (False, True):
            for connections in CONNECTIONS:
                for name, url in order:
                    runs.setdefault(name, {}).setdefault((gzip, connections), []).append(
                        wrk(url, connections, gzip, (headers or {}).get(name, ())))

    def median(values):
        return sorted(values)[len(values) // 2]
    return {name: {key: tuple(median([run[index] for run in results]) for index in range(3)) + (sorted(run[2] for run in results), results)
                   for key, results in cells.items()}
            for name, cells in runs.items()}


def spread(values):
    """A cell's p99 over its runs, lowest-highest."""
    return f"{values[0]:.2f}-{values[-1]:.2f}" if values else ""


def ratio(mine, other):
    """mine / other, a zero in `other` read as a microsecond (p99s round to 0.00 ms)."""
    return mine / max(other, 1e-6)


def p99_within_target(p99_ratio):
    """The p99 target, against nginx and TLS against plain: at most twice."""
    return p99_ratio <= 2


def rate_within_target(rate_ratio):
    """The throughput target against nginx: at least its rate."""
    return rate_ratio >= 1


def paired(ours, theirs, index, meets):
    """Figure `index` (0 req/s, 2 p99) of ours over theirs, round by round (the two were measured
    one after the other in each round): lowest-highest, and in how many rounds the ratio `meets`
    the target. A cell whose medians sit near a target (one keep-alive connection, where both
    servers mostly wait for the client's wakeups) flips from run to run; the rounds show whether
    a miss is one unlucky round or the whole cell."""
    ratios = [ratio(mine[index], other[index]) for mine, other in zip(ours[4], theirs[4])]
    if not ratios:
        return ""
    return f"{min(ratios):.2f}-{max(ratios):.2f} ({sum(map(meets, ratios))}/{len(ratios)})"


def wait_for(url, pattern, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if re.search(pattern, fetch(url, timeout=5).decode(), re.M):
                return time.time()
        except OSError:
            pass
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {pattern} at {url}")


def count_lines(path):
    try:
        with open(path) as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def barman_busy_seconds(path):
    """Wall time during which at least one barman process ran (union of their intervals)."""
    intervals = []
    with open(path) as f:
        for line in f:
            start, end = line.split()[:2]
            intervals.append((float(start), float(end)))
    intervals.sort()
    busy, current_start, current_end = 0.0, None, None
    for start, end in intervals:
        if current_end is None or start > current_end:
            if current_end is not None:
                busy += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None:
        busy += current_end - current_start
    return busy


def run_ours(work, name, servers, backups):
    port = free_port()
    log = os.path.join(work, f"ours-{name}.barman.log")
    config = os.path.join(work, f"ours-{name}.yaml")
    with open(config, "w") as f:
        f.write(f"port: {port}\nintegration_type: shell\nbarman_command: {FAKE}\ncache_ttl: 3600\nchecks_cache_ttl: 3600\nrefresh_interval: 3600\nlog_level: error\n")
    env = {**os.environ, "BENCH_SERVERS": str(servers), "BENCH_BACKUPS": str(backups), "BENCH_LOG": log}
    started = time.time()
    process = subprocess.Popen([OURS, "-config", config], env=env)
    url = f"http://127.0.0.1:{port}/metrics"
    last = f"pg{servers - 1:03d}"
    first_data = wait_for(url, rf'^barman_last_backup_copy_time\{{server="{last}"\}}', 600) - started
    wait_for(url, r"^barman_metrics_update ", 120)
    text = fetch(url).decode()
    refresh_ms = float(re.search(r"^barman_metrics_update (\S+)$", text, re.M).group(1))
    processes = count_lines(log)
    barman_busy = barman_busy_seconds(log)
    body = fetch(url)
    gzipped = fetch(url, {"Accept-Encoding": "gzip"})
    time.sleep(1)
    just_scraped_rss, _ = status(process.pid)
    time.sleep(3)  # the body of a past second is freed within 2 s
    idle_rss, _ = status(process.pid)
    nginx, nginx_url, _ = start_nginx(work, name, body, gzipped)
    results = wrk_matrix({"ours": url, "nginx": nginx_url})
    nginx.send_signal(signal.SIGQUIT)
    nginx.wait(10)
    _, peak = status(process.pid)
    process.send_signal(signal.SIGTERM)
    process.wait(10)
    return {"first_data": first_data, "refresh_s": refresh_ms / 1000, "processes": processes, "barman_busy": barman_busy,
            "just_scraped_rss": just_scraped_rss, "bytes": len(body),
            "gzip_bytes": len(gzipped), "idle_rss": idle_rss, "peak_rss": peak, "wrk": results["ours"], "nginx_wrk": results["nginx"],
            "series": sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))}


def real_use(servers=200, backups=60, minutes=3):
    """What a Prometheus scraping every 15 s (gzip) costs the exporter, against no scraper at all:
    CPU seconds per minute and resident memory, the large dataset, refresh every 60 s at the
    bench's fake barman (its own processes not counted)."""
    work = tempfile.mkdtemp(prefix="barman-exporter-real-use-")
    port = free_port()
    config = os.path.join(work, "ours.yaml")
    with open(config, "w") as f:
        f.write(f"port: {port}\nintegration_type: shell\nbarman_command: {FAKE}\nrefresh_interval: 60\nlog_level: error\n")
    env = {**os.environ, "BENCH_SERVERS": str(servers), "BENCH_BACKUPS": str(backups), "BENCH_LOG": os.path.join(work, "barman.log")}
    process = subprocess.Popen([OURS, "-config", config], env=env)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_for(url, rf'^barman_last_backup_copy_time\{{server="pg{servers - 1:03d}"\}}', 300)
        time.sleep(70)  # past the demand window of the wait's scrapes

        def cpu():
            with open(f"/proc/{process.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        results = {}
        for label, scrape in (("no scraper", False), (REAL_USE_SCRAPED, True)):
            before = cpu()
            end = time.time() + 60 * minutes
            while time.time() < end:
                if scrape:
                    fetch(url, {"Accept-Encoding": "gzip"})
                time.sleep(max(0, min(15, end - time.time())))
            results[label] = ((cpu() - before) / minutes, status(process.pid)[0] / 1024)
        return results
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def run_ours_tls(work, servers, backups):
    """The same exporter and data twice, plain HTTP and TLS (ECDSA P-256, GnuTLS's defaults) with
    basic auth (bcrypt cost 10, as htpasswd -B makes), measured cell by cell in turn: what
    secure scraping costs a keep-alive scraper. wrk keeps its connections, so the handshake is
    paid once per connection and the password's bcrypt once (then remembered)."""
    tls = os.path.join(work, "tls")
    os.makedirs(tls, exist_ok=True)
    key, cert = os.path.join(tls, "server.key"), os.path.join(tls, "server.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    password = "bench password"
    hashed = subprocess.run(["htpasswd", "-nbB", "-C", "10", "prometheus", password], check=True, capture_output=True, text=True).stdout.strip()
    web = os.path.join(tls, "web.yml")
    with open(web, "w") as f:
        f.write(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\nbasic_auth_users:\n  prometheus: {hashed.split(':', 1)[1]}\n")
    processes, urls = [], {}
    env = {**os.environ, "BENCH_SERVERS": str(servers), "BENCH_BACKUPS": str(backups), "BENCH_LOG": os.path.join(work, "tls.barman.log")}
    for name, extra in (("plain", []), ("tls", ["--web.config.file", web])):
        port = free_port()
        config = os.path.join(work, f"ours-{name}-tls-bench.yaml")
        with open(config, "w") as f:
            f.write(f"port: {port}\nintegration_type: shell\nbarman_command: {FAKE}\ncache_ttl: 3600\nchecks_cache_ttl: 3600\nrefresh_interval: 3600\nlog_level: error\n")
        processes.append(subprocess.Popen([OURS, "-config", config] + extra, env=env))
        urls[name] = f"{'https' if name == 'tls' else 'http'}://127.0.0.1:{port}/metrics"
    authorization = "Authorization: Basic " + base64.b64encode(f"prometheus:{password}".encode()).decode()
    context = ssl.create_default_context(cafile=cert)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            request = urllib.request.Request(urls["tls"], headers={"Authorization": authorization.split(": ", 1)[1]})
            if b"barman_metrics_update " in urllib.request.urlopen(request, timeout=5, context=context).read():
                break
        except OSError:
            pass
        time.sleep(0.2)
    wait_for(urls["plain"], r"^barman_metrics_update ", 120)
    body = fetch(urls["plain"])
    gzipped = fetch(urls["plain"], {"Accept-Encoding": "gzip"})
    nginx, urls["nginx"], urls["nginx TLS"] = start_nginx(work, "tls", body, gzipped, (cert, key))
    results = wrk_matrix(urls, headers={"tls": [authorization]})
    nginx.send_signal(signal.SIGQUIT)
    nginx.wait(10)
    for process in processes:
        process.send_signal(signal.SIGTERM)
        process.wait(10)
    return results


def run_python(work, name, servers, backups):
    port = free_port()
    log = os.path.join(work, f"python-{name}.barman.log")
    bindir = os.path.join(work, "fake-bin")
    os.makedirs(bindir, exist_ok=True)
    if not os.path.exists(os.path.join(bindir, "barman")):
        os.symlink(FAKE, os.path.join(bindir, "barman"))
    env = {**os.environ, "BENCH_SERVERS": str(servers), "BENCH_BACKUPS": str(backups), "BENCH_LOG": log,
           "PATH": bindir + ":" + os.environ["PATH"]}
    started = time.time()
    process = subprocess.Popen([PYTHON_EXPORTER, "-l", f"127.0.0.1:{port}", "-c", "3600"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/metrics"
    first_data = wait_for(url, r"^barman_metrics_update", 900) - started
    processes = count_lines(log)
    barman_busy = barman_busy_seconds(log)
    body = fetch(url)
    time.sleep(1)
    idle_rss, _ = status(process.pid)
    results = wrk_matrix({"python": url})["python"]
    _, peak = status(process.pid)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
    return {"first_data": first_data, "processes": processes, "barman_busy": barman_busy, "bytes": len(body), "idle_rss": idle_rss, "peak_rss": peak, "wrk": results}


def start_nginx(work, name, body, gzipped, tls=None):
    """nginx serving the same bytes as static files (gzip from the precompressed copy): the
    floor for serving a body from memory on this machine. Returns the process, its URL and, with
    `tls` (certificate, key), a URL serving the same over TLS (OpenSSL's defaults; else None)."""
    root = os.path.join(work, f"nginx-{name}")
    os.makedirs(root, exist_ok=True)
    os.chmod(root, 0o755)
    with open(os.path.join(root, "metrics"), "wb") as f:
        f.write(body)
    with open(os.path.join(root, "metrics.gz"), "wb") as f:
        f.write(gzipped)
    port, tls_port = free_port(), free_port()
    tls_server = f"server {{ listen 127.0.0.1:{tls_port} ssl; ssl_certificate {tls[0]}; ssl_certificate_key {tls[1]}; root {root}; }}" if tls else ""
    config = os.path.join(root, "nginx.conf")
    with open(config, "w") as f:
        f.write(f"""daemon off; worker_processes auto; pid {root}/nginx.pid; error_log {root}/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000; default_type text/plain;
  gzip_static on; gzip_vary on;
  client_body_temp_path {root}; proxy_temp_path {root}; fastcgi_temp_path {root}; uwsgi_temp_path {root}; scgi_temp_path {root};
  server {{ listen 127.0.0.1:{port}; root {root}; }} {tls_server} }}
""")
    process = subprocess.Popen(["nginx", "-c", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/metrics"
    wait_for(url, r"barman_", 10)
    return process, url, f"https://127.0.0.1:{tls_port}/metrics" if tls else None


class NotMeasured(dict):
    """The Python exporter's column where it is not run: every figure prints as NaN."""
    def __getitem__(self, key):
        return NotMeasured() if key == "wrk" else (NotMeasured() if isinstance(key, tuple) else float("nan"))


NOT_MEASURED = NotMeasured()


def print_secure(name, secure):
    """The TLS + basic auth table: ours plain and over TLS, nginx plain and over TLS."""
    print()
    print(f"## TLS + basic auth, keep-alive ({name} dataset): ours plain HTTP vs ours over TLS with a password,")
    print("## and nginx serving the same bytes both ways (OpenSSL, same certificate): what TLS costs on this machine")
    print(f"{'':28}{'plain':>14}{'TLS + auth':>14}{'TLS / plain':>14}{'nginx':>14}{'nginx TLS':>14}{'TLS / plain':>14}")
    for gzip in (False, True):
        for connections in CONNECTIONS:
            plain, tls = secure["plain"][(gzip, connections)], secure["tls"][(gzip, connections)]
            nginx, nginx_tls = secure["nginx"][(gzip, connections)], secure["nginx TLS"][(gzip, connections)]
            print(f"{f'req/s c={connections}' + (' gzip' if gzip else ''):28}{plain[0]:14.0f}{tls[0]:14.0f}{'':14}{nginx[0]:14.0f}{nginx_tls[0]:14.0f}")
            # The median's ratio shows what throughput alone dictates: with every connection
            # busy, a request's mean time is connections / req/s (Little's law).
            for label, index in (("  p50 ms", 1), ("  p99 ms", 2)):
                print(f"{label:28}{plain[index]:14.2f}{tls[index]:14.2f}{ratio(tls[index], plain[index]):14.2f}"
                      f"{nginx[index]:14.2f}{nginx_tls[index]:14.2f}{ratio(nginx_tls[index], nginx[index]):14.2f}")
            print(f"{'  p99 ms, each run':28}{spread(plain[3]):>14}{spread(tls[3]):>14}{'':14}{spread(nginx[3]):>14}{spread(nginx_tls[3]):>14}")
            print(f"{'  each round: p99 ratio':28}{'':14}{'':14}{paired(tls, plain, 2, p99_within_target):>20}")
    print("(target: ours TLS + auth p99 within 2x of ours plain)")


def cell_name(dataset, gzip, connections):
    return f"{dataset} c={connections}{' gzip' if gzip else ''}"


def verdict(label, checked, judged=True):
    """One target's line: how many of the cells `checked` ((cell, figure, met) each) met it,
    and the figures of those that did not; `judged` false for a line shown for information."""
    missed = [f"{cell} {figure}" for cell, figure, met in checked if not met]
    word = ("met" if not missed else "MISSED") if judged else "info"
    print(f"{word:8}{label}: {len(checked) - len(missed)} of {len(checked)}"
          + (f" (missed: {'; '.join(missed)})" if missed else ""))


def print_targets(measured, secure):
    """This run's medians against the targets the tables above show, one line each, so that a
    run's verdict is read, not worked out. Throughput against nginx is a target on the small and
    large datasets; on 1,000 servers the targets are memory and p99, and its throughput is shown
    for information (docs/performance.md, "Targets")."""
    print()
    print("## targets: this run's medians (real use, the password flood and barman's cost follow)")
    p99, throughput, information = [], [], []
    for dataset, ours in measured.items():
        for gzip in (False, True):
            for connections in CONNECTIONS:
                mine, nginx = ours["wrk"][(gzip, connections)], ours["nginx_wrk"][(gzip, connections)]
                cell = cell_name(dataset, gzip, connections)
                p99_ratio = ratio(mine[2], nginx[2])
                p99.append((cell, f"{p99_ratio:.2f}x", p99_within_target(p99_ratio)))
                rates = (cell, f"{mine[0]:,.0f} against {nginx[0]:,.0f}", rate_within_target(ratio(mine[0], nginx[0])))
                (information if dataset == "1000 servers" else throughput).append(rates)
    verdict("p99 within 2x of nginx's, every dataset", p99)
    verdict("throughput at least nginx's, small and large", throughput)
    if information:
        verdict("throughput at least nginx's, 1000 servers (not a target)", information, judged=False)
    if "1000 servers" in measured:
        ours = measured["1000 servers"]
        idle, peak = ours["idle_rss"] / 1024, ours["peak_rss"] / 1024
        verdict("memory under 60 MB, 1000 servers", [("idle", f"{idle:.1f} MB", idle < 60), ("peak", f"{peak:.1f} MB", peak < 60)])
    tls = []
    for gzip in (False, True):
        for connections in CONNECTIONS:
            plain, secured = secure["plain"][(gzip, connections)], secure["tls"][(gzip, connections)]
            p99_ratio = ratio(secured[2], plain[2])
            tls.append((cell_name("small", gzip, connections), f"{p99_ratio:.2f}x", p99_within_target(p99_ratio)))
    verdict("TLS + auth p99 within 2x of plain", tls)


def main():
    print(f"machine: {os.cpu_count()} cores, {open('/proc/meminfo').readline().split()[1]} kB RAM; wrk -d {SECONDS}s, median of {REPEATS} runs, load generator on the same machine")
    size = os.path.getsize(OURS)
    stripped = os.path.join(tempfile.gettempdir(), "barman-exporter-stripped")
    shutil.copy(OURS, stripped)
    subprocess.run(["strip", stripped], check=True)
    print(f"binary: {size} bytes as built, {os.path.getsize(stripped)} stripped (static Swift runtime; the .deb ships it stripped)")
    if sys.argv[1:] == ["secure"]:
        work = tempfile.mkdtemp(prefix="barman-bench-")
        os.chmod(work, 0o755)
        try:
            name, servers, backups, _ = DATASETS[0]
            print_secure(name, run_ours_tls(work, servers, backups))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return 0
    if sys.argv[1:] == ["real-use"]:
        for label, (cpu, rss) in real_use().items():
            print(f"real use, 200 x 60, {label}: {cpu:.2f} CPU s a minute, resident {rss:.1f} MB")
            if label == REAL_USE_SCRAPED:
                verdict("real use: at most 0.3 CPU s a minute and 18 MB", [("CPU", f"{cpu:.2f} s", cpu <= 0.3), ("memory", f"{rss:.1f} MB", rss <= 18)])
        return 0
    work = tempfile.mkdtemp(prefix="barman-bench-")
    os.chmod(work, 0o755)  # nginx's workers (www-data) read the served files from here
    measured = {}
    try:
        for name, servers, backups, with_python in DATASETS:
            ours = run_ours(work, name.replace(" ", "-"), servers, backups)
            measured[name] = ours
            python = run_python(work, name, servers, backups) if with_python else NOT_MEASURED
            nginx = {"wrk": ours["nginx_wrk"]}
            print()
            print(f"## {name}: {servers} servers x {backups} backups, {ours['series']} series, {ours['bytes']} bytes ({ours['gzip_bytes']} gzipped)")
            print(f"{'':28}{'ours':>14}{'python':>14}{'nginx':>14}")
            for gzip in (False, True):
                for connections in CONNECTIONS:
                    label = f"req/s c={connections}{' gzip' if gzip else ''}"
                    row = [ours["wrk"][(gzip, connections)][0], python["wrk"][(gzip, connections)][0], nginx["wrk"][(gzip, connections)][0]]
                    print(f"{label:28}" + "".join(f"{value:14.0f}" for value in row))
                    for index, percentile in ((1, "p50"), (2, "p99")):
                        row = [ours["wrk"][(gzip, connections)][index], python["wrk"][(gzip, connections)][index], nginx["wrk"][(gzip, connections)][index]]
                        print(f"{'  ' + percentile + ' ms':28}" + "".join(f"{value:14.2f}" for value in row))
                    print(f"{'  p99 ms, each run':28}{spread(ours['wrk'][(gzip, connections)][3]):>14}{'':14}"
                          f"{spread(nginx['wrk'][(gzip, connections)][3]):>14}")
                    p99_ratio = ratio(ours["wrk"][(gzip, connections)][2], nginx["wrk"][(gzip, connections)][2])
                    print(f"{'  p99 ours / nginx':28}{p99_ratio:14.2f}{'':14}{'(target <= 2)':>14}")
                    cell, nginx_cell = ours["wrk"][(gzip, connections)], nginx["wrk"][(gzip, connections)]
                    print(f"{'  each round: req/s ratio':28}{paired(cell, nginx_cell, 0, rate_within_target):>20}"
                          f"{'  p99 ratio':>14}{paired(cell, nginx_cell, 2, p99_within_target):>20}")
            print(f"{'resident MB 1 s after scrape':28}{ours['just_scraped_rss'] / 1024:14.1f}")
            print(f"{'resident MB idle':28}{ours['idle_rss'] / 1024:14.1f}{python['idle_rss'] / 1024:14.1f}")
            print(f"{'resident MB peak':28}{ours['peak_rss'] / 1024:14.1f}{python['peak_rss'] / 1024:14.1f}")
            print(f"{'start to first data s':28}{ours['first_data']:14.2f}{python['first_data']:14.2f}")
            print(f"{'barman processes/refresh':28}{ours['processes']:14d}{python['processes']:14.0f}")
            print(f"{'refresh wall time s':28}{ours['refresh_s']:14.2f}{python['first_data']:14.2f}")
            print(f"{'  of which barman running s':28}{ours['barman_busy']:14.2f}{python['barman_busy']:14.2f}")
            print(f"{'first data minus barman s':28}{ours['first_data'] - ours['barman_busy']:14.2f}{python['first_data'] - python['barman_busy']:14.2f}")
        name, servers, backups, _ = DATASETS[0]
        secure = run_ours_tls(work, servers, backups)
        print_secure(name, secure)
        print_targets(measured, secure)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print("## rendering one scrape (MetricsBuilder + TextRenderer, no cache)")
    sys.stdout.flush()
    subprocess.run([RENDER_BENCH], check=True)
    render_instructions()
    print()
    print("## the WAL catalog, read incrementally (1,000,000 segments, about 70 MB)")
    sys.stdout.flush()
    subprocess.run([RENDER_BENCH, "catalog"], check=True)


def render_instructions():
    """Instructions per series of one render, counted by valgrind (repeatable whatever else the
    machine does, unlike the wall times above): the count of 2 renders minus that of 1."""
    if shutil.which("valgrind") is None:
        print("(valgrind not installed: no instruction counts)")
        return
    print()
    print("## instructions per render (valgrind --tool=callgrind; 2 renders minus 1)")
    print(f"{'servers':>8}{'backups':>8}{'series':>9}{'instructions':>15}{'per series':>12}")
    # valgrind 3.19 (Debian 12) cannot read the DWARF 5 the Swift 6.3 toolchain writes: it runs a
    # stripped copy (instruction counts need no debug information).
    stripped = os.path.join(tempfile.gettempdir(), "exporter-bench-stripped")
    shutil.copy(RENDER_BENCH, stripped)
    subprocess.run(["strip", stripped], check=True)
    for servers in (100, 200, 400):
        counts = []
        for renders in (1, 2):
            run = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", stripped, str(servers), "60", str(renders)],
                                 capture_output=True, text=True)
            counts.append(int(re.search(r"Collected : (\d+)", run.stderr).group(1)))
            series = int(re.search(r"bodies of (\d+) series", run.stdout).group(1))
        one = counts[1] - counts[0]
        print(f"{servers:8}{60:8}{series:9}{one:15,}{one / series:12,.0f}")


if __name__ == "__main__":
    main()
