#!/usr/bin/env python3
"""Process-level tests of the exporter binary: command line, signals, reload, sd_notify, shutdown.

Run by `make test` and `make lifecycle-test`, which set BINARY. Prints one line per check and
"lifecycle: N passed, N failed".
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from checks import check, free_port, stop, summary

BINARY = os.path.abspath(os.environ.get("BINARY", ".build/debug/prometheus-barman-exporter"))


def get(port, path="/metrics", timeout=5):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""
    except OSError:
        return None, ""


def wait_until(predicate, seconds=10):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


class Exporter:
    def __init__(self, directory, config, env=None, blocked=(), journal=False, flags=(), launcher=()):
        self.directory = directory
        self.config_path = os.path.join(directory, "config.yaml")
        self.write_config(config)
        self.stderr_path = os.path.join(directory, f"stderr-{time.time_ns()}")
        self.stderr = open(self.stderr_path, "w")
        if journal:  # what systemd sets when stderr is the journal: its device and inode
            info = os.fstat(self.stderr.fileno())
            env = {**(env or {}), "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}

        def block():
            if blocked:
                signal.pthread_sigmask(signal.SIG_BLOCK, set(blocked))
        self.process = subprocess.Popen([*launcher, BINARY, "-config", self.config_path, *flags], stderr=self.stderr,
                                        env={**os.environ, **(env or {})}, preexec_fn=block)

    def write_config(self, text):
        with open(self.config_path, "w") as f:
            f.write(text)

    def log(self):
        with open(self.stderr_path) as f:
            return f.read()

    def signal(self, number):
        self.process.send_signal(number)

    def stop(self):
        status = stop(self.process)
        self.stderr.close()
        return status


def hanging_barman(work, body):
    """A fake barman that never answers: `body` (its {pid_file} filled in) as a shell script."""
    fake = os.path.join(work, "hanging-barman")
    pid_file = os.path.join(work, "barman.pid")
    with open(fake, "w") as f:
        f.write("#!/bin/sh\n" + body.replace("{pid_file}", pid_file) + "\n")
    os.chmod(fake, 0o755)
    return fake, pid_file


def mock_config(port, level="info"):
    return f"address: 127.0.0.1\nport: {port}\nintegration_type: mock\nlog_level: {level}\n"


def test_command_line(work):
    # Without -config the packaged config is used; this machine may have the package installed.
    packaged = "/etc/prometheus-barman-exporter/config.yaml"
    run = subprocess.run([BINARY, "--check-config"], capture_output=True, text=True)
    if os.path.exists(packaged):
        check("no -config: the packaged config is checked", (run.returncode == 0 and run.stdout == "OK\n")
              or (run.returncode == 2 and packaged in run.stderr), run.stdout + run.stderr)
    else:
        check("no -config and no packaged config: exit 2 and one line naming it",
              run.returncode == 2 and run.stderr.count("\n") == 1 and packaged in run.stderr, run.stderr)
    run = subprocess.run([BINARY, "-config", "/nonexistent.yaml"], capture_output=True, text=True)
    check("missing config file: exit 2 and one line naming it",
          run.returncode == 2 and run.stderr.count("\n") == 1 and "/nonexistent.yaml" in run.stderr, run.stderr)
    run = subprocess.run([BINARY, "--version"], capture_output=True, text=True)
    check("--version prints the version", run.returncode == 0 and run.stdout.startswith("prometheus-barman-exporter "), run.stdout)
    run = subprocess.run([BINARY, "-help"], capture_output=True, text=True)
    check("-help prints usage", run.returncode == 0 and "Usage:" in run.stdout)
    bad = os.path.join(work, "bad.yaml")
    with open(bad, "w") as f:
        f.write("port: x\nnested:\n  a: 1\nport: 2\n")
    run = subprocess.run([BINARY, "--check-config", "-config", bad], capture_output=True, text=True)
    lines = run.stderr.strip().split("\n")
    check("--check-config prints every problem, exit 2", run.returncode == 2 and len(lines) == 3
          and all(line.startswith(bad + ":") for line in lines), run.stderr)
    good = os.path.join(work, "good.yaml")
    with open(good, "w") as f:
        f.write(mock_config(9780))
    run = subprocess.run([BINARY, "--check-config", "-config", good], capture_output=True, text=True)
    check("--check-config on a valid file prints OK, exit 0", run.returncode == 0 and run.stdout == "OK\n", run.stdout + run.stderr)


def test_signal_during_startup(work):
    port = free_port()
    # SIGHUP is blocked when the exporter starts and already pending: it must not be lost.
    exporter = Exporter(work, mock_config(port), blocked=(signal.SIGHUP,))
    exporter.signal(signal.SIGHUP)
    served = wait_until(lambda: get(port)[0] == 200)
    check("a signal sent during start-up is handled once running",
          served and wait_until(lambda: 'msg="config reloaded" signal=SIGHUP' in exporter.log()), exporter.log())
    check("SIGTERM: exit status 0", exporter.stop() == 0)


def test_reload(work):
    port = free_port()
    exporter = Exporter(work, mock_config(port, "warn"))
    check("serves on the first port", wait_until(lambda: get(port)[0] == 200))

    new_port = free_port()
    exporter.write_config(mock_config(new_port, "debug"))
    exporter.signal(signal.SIGUSR1)
    check("SIGUSR1 with a new port: serves on the new port", wait_until(lambda: get(new_port)[0] == 200))
    check("... and no longer on the old one", wait_until(lambda: get(port)[0] is None))
    check("... and the new log level applies", wait_until(lambda: "level=debug" in exporter.log()), exporter.log())

    exporter.write_config("port: [1, 2]\nbogus: 1\n")
    exporter.signal(signal.SIGHUP)
    check("invalid config on reload: logged as an error with every problem",
          wait_until(lambda: "config reload failed" in exporter.log() and "bogus" in exporter.log() and "nested list" in exporter.log()),
          exporter.log())
    check("... and the old config keeps serving", get(new_port)[0] == 200 and exporter.process.poll() is None)

    for round in range(10):
        exporter.write_config(mock_config(new_port, "info" if round % 2 else "debug") if round % 3 else "port: nope\n")
        exporter.signal(signal.SIGHUP if round % 2 else signal.SIGUSR1)
        time.sleep(0.1)
    check("ten more reloads, valid and invalid: still serving", wait_until(lambda: get(new_port)[0] == 200) and exporter.process.poll() is None)
    check("SIGTERM after reloads: exit status 0", exporter.stop() == 0)


def test_sd_notify(work):
    path = os.path.join(work, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    port = free_port()
    exporter = Exporter(work, mock_config(port), env={"NOTIFY_SOCKET": path})
    try:
        check("sd_notify: READY=1 once serving", sock.recv(100) == b"READY=1" and get(port)[0] == 200)
        exporter.signal(signal.SIGHUP)
        check("sd_notify: RELOADING=1 then READY=1 around a reload", sock.recv(100) == b"RELOADING=1" and sock.recv(100) == b"READY=1")
        exporter.signal(signal.SIGTERM)
        check("sd_notify: STOPPING=1 on shutdown", sock.recv(100) == b"STOPPING=1")
    except socket.timeout:
        check("sd_notify datagrams arrive", False, "timed out")
    exporter.stop()
    sock.close()


def test_shutdown_with_barman_running(work):
    fake, pid_file = hanging_barman(work, "trap '' TERM\necho $$ > {pid_file}\nwhile :; do sleep 0.1; done")
    port = free_port()
    exporter = Exporter(work, f"port: {port}\nintegration_type: shell\nbarman_command: {fake}\nlog_level: info\n")
    check("shell integration with a hanging barman: scrapes answer at once",
          wait_until(lambda: os.path.exists(pid_file)) and get(port, timeout=2)[0] == 200)
    # top -H, ps -L and perf show each thread by its job.
    names = thread_names(exporter.process.pid)
    check("threads are named for their job: http loop, http accept, renderer, signals, barman",
          {"http loop", "http accept", "renderer", "signals", "barman"} <= set(names), names)
    with open(pid_file) as f:
        barman_pid = int(f.read())
    started = time.time()
    exporter.signal(signal.SIGINT)
    try:
        status = exporter.process.wait(10)
    except subprocess.TimeoutExpired:
        status = None
    elapsed = time.time() - started
    check(f"SIGINT with barman running (ignoring SIGTERM): exit 0 within 5 s (took {elapsed:.1f} s)", status == 0 and elapsed < 5)

    def gone():
        try:
            with open(f"/proc/{barman_pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except FileNotFoundError:
            return True
    check("... and the barman process group was terminated", wait_until(gone, 5))
    exporter.stop()


def thread_names(pid):
    names = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/comm") as f:
            names.append(f.read().strip())
    return sorted(names)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS:")).split()[1])


def test_memory_bound_under_hostile_clients(work):
    port = free_port()
    exporter = Exporter(work, mock_config(port, "error"))
    wait_until(lambda: get(port)[0] == 200)
    before = rss_kib(exporter.process.pid)
    clients = []
    # 400 clients (over the connection limit of 256), each sending 15 KB of headers (as much as
    # the per-connection buffer of 16 KiB takes) and never finishing the request: the buffer and
    # the limit bound the memory.
    for _ in range(400):
        try:
            client = socket.create_connection(("127.0.0.1", port), timeout=2)
            client.setblocking(False)
            try:
                client.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 15000)
            except BlockingIOError:
                pass
            clients.append(client)
        except OSError:
            break
    time.sleep(1)
    during = rss_kib(exporter.process.pid)
    for client in clients:
        client.close()
    # Slots free as the flood's connections close; at the latest, the 10 s connection timeout frees them.
    served_after = wait_until(lambda: get(port, timeout=2)[0] == 200, 15)
    check(f"400 slow clients with 15 KB headers: resident memory {before} -> {during} KiB (bound: 256 x 16 KiB and 2 MiB)",
          during - before < 6 * 1024, f"{during - before} KiB")
    check("... and it serves again within the 10 s connection timeout once they are gone", served_after)
    check("... exit status 0", exporter.stop() == 0)


def test_once_and_output(work):
    good = os.path.join(work, "mock.yaml")
    with open(good, "w") as f:
        f.write(mock_config(9780))
    run = subprocess.run([BINARY, "--once", "-config", good], capture_output=True, text=True, timeout=60)
    check("--once prints the metrics and exits 0", run.returncode == 0 and 'barman_up{check="failed_backups",server="pg-main"} 0' in run.stdout, run.stderr)

    failing = os.path.join(work, "failing-barman")
    with open(failing, "w") as f:
        f.write("#!/bin/sh\necho 'not json'\nexit 2\n")
    os.chmod(failing, 0o755)
    shell = os.path.join(work, "shell.yaml")
    with open(shell, "w") as f:
        f.write(f"integration_type: shell\nbarman_command: {failing}\n")
    run = subprocess.run([BINARY, "--once", "-config", shell], capture_output=True, text=True, timeout=60)
    check("--once with a failing barman: exit 1, failure in the metrics, error logged",
          run.returncode == 1 and 'barman_exporter_command_success{command="list-backups"} 0' in run.stdout and "level=error" in run.stderr,
          f"{run.returncode} {run.stderr}")

    target_dir = os.path.join(work, "textfile")
    os.mkdir(target_dir)
    target = os.path.join(target_dir, "barman.prom")
    with open(target, "w") as f:
        f.write("old content\n")
    run = subprocess.run([BINARY, "-config", good, "--output", target], capture_output=True, text=True, timeout=60)
    with open(target) as f:
        content = f.read()
    check("--output FILE replaces the file with the metrics, exit 0",
          run.returncode == 0 and content.startswith("# HELP barman_") and "\nbarman_backup_size{" in content
          and content.endswith("\n"), run.stderr)
    check("--output leaves no temporary file behind", os.listdir(target_dir) == ["barman.prom"], str(os.listdir(target_dir)))
    run = subprocess.run([BINARY, "-config", good, "--output", "/nonexistent-dir/barman.prom"], capture_output=True, text=True, timeout=60)
    check("--output into a missing directory: exit 1 with a clear error",
          run.returncode == 1 and "cannot create '/nonexistent-dir/.barman.prom." in run.stderr, run.stderr)


def test_journal_priorities(work):
    port = free_port()
    exporter = Exporter(work, mock_config(port, "debug"), journal=True)
    check("with stderr on the journal: serves", wait_until(lambda: get(port)[0] == 200))
    exporter.stop()
    lines = [line for line in exporter.log().splitlines() if line]
    check("... every line starts with its syslog priority (<7> debug, <6> info)",
          lines and all(line[:3] in ("<3>", "<4>", "<6>", "<7>") and line[3:].startswith("ts=") for line in lines)
          and any(line.startswith("<7>") and "level=debug" in line for line in lines)
          and any(line.startswith("<6>") and "level=info" in line for line in lines), "\n".join(lines[:5]))
    check("... and a normal start and stop logs nothing at error level", not any(line.startswith("<3>") for line in lines))


def test_once_stops_on_sigterm(work):
    fake, pid_file = hanging_barman(work, "echo $$ >> {pid_file}\nexec sleep 600")
    config = os.path.join(work, "shell.yaml")
    with open(config, "w") as f:
        f.write(f"integration_type: shell\nbarman_command: {fake}\n")
    for flag, sig in (("--once", signal.SIGTERM), ("--output", signal.SIGINT)):
        if os.path.exists(pid_file):
            os.unlink(pid_file)
        extra = ["--output", os.path.join(work, "barman.prom")] if flag == "--output" else ["--once"]
        process = subprocess.Popen([BINARY, "-config", config, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # list-backups and replication-status (check starts after replication-status, which hangs).
        started = wait_until(lambda: os.path.exists(pid_file) and len(open(pid_file).read().split()) >= 2)
        process.send_signal(sig)
        try:
            status = process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            status = None
        stderr = process.stderr.read()
        with open(pid_file) as f:
            pids = [int(p) for p in f.read().split()]

        def gone():
            return all(not os.path.exists(f"/proc/{p}") or open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
                       for p in pids)
        check(f"{flag} with a hanging barman stops on {signal.Signals(sig).name}: exit {128 + sig}, nothing written",
              started and status == 128 + sig and "level=error" not in stderr and not os.path.exists(os.path.join(work, "barman.prom")),
              f"{status} {stderr}")
        check(f"... and its barman processes are gone", wait_until(gone, 5))


def test_address_change_on_the_same_port(work):
    # In a network namespace of its own: 0.0.0.0 there is only that namespace's loopback.
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "netns-address-reload.sh")
    run = subprocess.run(["unshare", "--net", "bash", script, BINARY, work, "9780"], capture_output=True, text=True, timeout=120)
    for line in run.stdout.splitlines():
        if line.startswith(("ok   ", "FAIL ")):
            check("[netns] " + line[5:], line.startswith("ok"), "")
    check("[netns] address change on the same port", run.returncode == 0, run.stdout + run.stderr)


def test_exporter_toolkit_flags(work):
    """--web.listen-address (repeatable), --web.telemetry-path, --web.systemd-socket,
    --log.level and --log.format, as node_exporter takes them."""
    config_port, first, second = free_port(), free_port(), free_port()
    exporter = Exporter(work, mock_config(config_port, level="warn"),
                        flags=("--web.listen-address", f"127.0.0.1:{first}", f"--web.listen-address=[::1]:{second}",
                               "--web.telemetry-path", "/barman/metrics", "--log.level", "debug", "--log.format", "json"))
    check("--web.listen-address twice: serves on both addresses (IPv4 and bracketed IPv6)",
          wait_until(lambda: get(first, "/barman/metrics")[0] == 200) and wait_until(lambda: get_v6(second, "/barman/metrics")[0] == 200))
    check("... and not on the config's port", get(config_port, "/barman/metrics")[0] is None)
    check("--web.telemetry-path: /metrics is 404 there", get(first, "/metrics")[0] == 404)
    status, page = get(first, "/")
    check("... and the landing page links to the new path", status == 200 and 'href="/barman/metrics"' in page, page)
    lines = [line for line in exporter.log().splitlines() if line]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            parsed.append(None)
    check("--log.format json: every line is one JSON object with ts, level and msg",
          lines and all(isinstance(p, dict) and {"ts", "level", "msg"} <= set(p) for p in parsed), "\n".join(lines[:5]))
    check("--log.level debug wins over the config's log_level: warn (debug lines are written)",
          any(isinstance(p, dict) and p.get("level") == "debug" for p in parsed), "\n".join(lines[:5]))
    # A reload keeps the flags: the config's level and port do not replace them.
    exporter.write_config(mock_config(free_port(), level="error"))
    exporter.signal(signal.SIGHUP)
    check("after a reload, still on the flags' addresses and path",
          wait_until(lambda: '"msg":"config reloaded"' in exporter.log()) and get(first, "/barman/metrics")[0] == 200)
    check("SIGTERM: exit status 0", exporter.stop() == 0)

    for flags, expected in ((("--web.listen-address", "9780"), "--web.listen-address: expected HOST:PORT"),
                            (("--web.listen-address", "::1:9780"), "--web.listen-address: expected HOST:PORT"),
                            (("--web.telemetry-path", "metrics"), "--web.telemetry-path: expected a path"),
                            (("--log.level", "verbose"), "--log.level: expected debug, info, warn or error"),
                            (("--log.format", "xml"), "--log.format: expected logfmt or json"),
                            (("--web.systemd-socket", "--web.listen-address", ":9780"), "exclude each other")):
        run = subprocess.run([BINARY, "-config", exporter.config_path, *flags], capture_output=True, text=True)
        check(f"{' '.join(flags)}: exit 2 with one line saying what is expected", run.returncode == 2 and expected in run.stderr
              and run.stderr.count("\n") == 1, run.stderr)
    run = subprocess.run([BINARY, "-config", exporter.config_path, "--web.systemd-socket"], capture_output=True, text=True, timeout=20)
    check("--web.systemd-socket without systemd's socket: exit 1, one line saying so", run.returncode == 1 and "LISTEN_FDS is not set" in run.stderr, run.stderr)

    # Socket activation as systemd does it, with systemd's own systemd-socket-activate.
    port = free_port()
    activated = Exporter(work, mock_config(free_port()), flags=("--web.systemd-socket",),
                         launcher=("systemd-socket-activate", "-l", f"127.0.0.1:{port}"))
    check("--web.systemd-socket under systemd-socket-activate: the first connection starts it and is answered",
          wait_until(lambda: get(port)[0] == 200, 20), activated.log())
    check("... it logs the socket it serves on", "systemd socket 3" in activated.log(), activated.log())
    check("... and stops with status 0", activated.stop() == 0)


def connection_sockets(port):
    """Inodes of the established TCP connections whose local port is `port` (the server's end)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in list(f)[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                    inodes.add(fields[9])
    return inodes


def connections_per_event_thread(pid, port):
    """For each epoll instance of the process holding any of its connections on `port`, how
    many it holds (libmicrohttpd's event threads have one each)."""
    inodes = connection_sockets(port)
    counts = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:[eventpoll]":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                targets = [line.split()[1] for line in f if line.startswith("tfd:")]
        except OSError:
            continue
        held = 0
        for target in targets:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{target}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                held += 1
        counts.append(held)
    return counts


def test_connections_shared_by_event_threads(work):
    # A scraper's connections opened together are shared evenly by the HTTP event threads (one
    # per processor, at most 4): when every thread accepted for itself, all 16 often went to one
    # thread while the other idled.
    processors = len(os.sched_getaffinity(0))
    port = free_port()
    exporter = Exporter(work, mock_config(port, "error"))
    wait_until(lambda: get(port)[0] == 200)
    for attempt in range(3):
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(16)]
        for client in clients:
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        for client in clients:
            client.recv(65536)  # answered: the event thread has the connection
        counts = sorted(connections_per_event_thread(exporter.process.pid, port), reverse=True)
        threads = min(4, processors)
        check(f"16 connections opened together, round {attempt + 1}: shared by all {threads} event threads, evenly",
              len([c for c in counts if c > 0]) == threads and sum(counts) == 16 and counts[0] - counts[threads - 1] <= 2,
              f"connections per event thread: {counts} ({processors} processors)")
        for client in clients:
            client.close()
        wait_until(lambda: not connection_sockets(port), 5)
    check("... exit status 0", exporter.stop() == 0)


def get_v6(port, path="/metrics", timeout=5):
    try:
        with urllib.request.urlopen(f"http://[::1]:{port}{path}", timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""
    except OSError:
        return None, ""


def main():
    with tempfile.TemporaryDirectory() as work:
        for test in (test_command_line, test_signal_during_startup, test_reload, test_sd_notify, test_shutdown_with_barman_running,
                     test_once_and_output, test_once_stops_on_sigterm, test_address_change_on_the_same_port, test_journal_priorities,
                     test_memory_bound_under_hostile_clients, test_connections_shared_by_event_threads, test_exporter_toolkit_flags):
            directory = os.path.join(work, test.__name__)
            os.mkdir(directory)
            test(directory)
    return summary("lifecycle")


if __name__ == "__main__":
    sys.exit(main())
