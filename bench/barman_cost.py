#!/usr/bin/env python3
"""barman's own cost of being monitored: barman processes and their CPU seconds per hour at the
default settings (refresh every 60 s, cache_ttl 50 s, checks_cache_ttl 300 s, servers_cache_ttl 600 s), for 3, 20 and 200
servers, for this exporter now and before show-backup was driven by list-backups, the Go
exporter's model and the Python exporter at its defaults (one refresh an hour).

The CPU figures are the real barman's (Debian's 3.4.0, run as user barman): a barman catalog is
generated for N servers that barman itself reads (two DONE backups each, a WAL catalog), and each
command is timed as child CPU time (user + system, its subprocesses included). `list-backups` and
`show-backup` read only that catalog, as in production; the servers' PostgreSQL does not exist
(port 1), so `check`, `status`, `show-servers` and `replication-status` fail fast at connecting
and cost less than against a live server: a lower bound for them.

Processes per hour (R = 60 refreshes an hour, N servers with a DONE backup, C servers whose
newest backup changed in a refresh: a new backup or new WAL):
  ours now:       R x 2 (list-backups, replication-status) + 12 check + 6 show-servers + R x C show-backup
  ours before:    R x 3 (check every minute, as with checks_cache_ttl 50) + 6 show-servers
  Go exporter:    R x (3 + 2N)  (its model: 3 all-server commands + 2 per server; costed as
                  list-servers, list-backups all, check all + list-backups SERVER, show-backup SERVER)
  Python exporter: 1 + 4N (list-server, then status, check, list-backup and show-backup per server)
The table is the steady state, C = 0; each changed server adds one show-backup to ours only.
"""
import os
import resource
import shutil
import subprocess
import sys
import tempfile

SIZES = [3, 20, 200]
REFRESHES_PER_HOUR = 60


def generate(home, servers):
    """A barman configuration and catalog barman 3.4.0 reads: two DONE backups per server and
    a WAL catalog (xlog.db) with the WAL of both."""
    os.makedirs(home)
    config = [f"[barman]\nbarman_home = {home}\nbarman_user = barman\nlog_file = {home}/barman.log\nlog_level = WARNING\n"]
    for index in range(servers):
        name = f"srv{index:03d}"
        config.append(f"[{name}]\ndescription = generated {name}\n"
                      f"conninfo = host=127.0.0.1 port=1 user=barman dbname=postgres connect_timeout=1\n"
                      f"streaming_conninfo = host=127.0.0.1 port=1 user=streaming_barman connect_timeout=1\n"
                      f"backup_method = postgres\nstreaming_archiver = on\nslot_name = {name.replace('-', '_')}\n")
        catalog = []
        for number, day in enumerate((24, 25)):
            backup_id = f"202611{day}T010000"
            segment = 2 + number * 4
            wal = f"0000000100000000000000{segment:02X}"
            os.makedirs(f"{home}/{name}/base/{backup_id}")
            with open(f"{home}/{name}/base/{backup_id}/backup.info", "w") as info:
                info.write("\n".join([
                    f"backup_id={backup_id}", "backup_label=None", "begin_offset=40",
                    f"begin_time=2026-11-{day} 01:00:00.000000+00:00", f"begin_wal={wal}", f"begin_xlog=0/{segment:X}000028",
                    "compression=None", "config_file=/etc/postgresql/15/main/postgresql.conf",
                    "copy_stats={'copy_time': 4.5, 'total_time': 5.0}", "deduplicated_size=None", "end_offset=256",
                    f"end_time=2026-11-{day} 01:02:00.000000+00:00", f"end_wal={wal}", f"end_xlog=0/{segment:X}000100",
                    "error=None", "hba_file=/etc/postgresql/15/main/pg_hba.conf", "ident_file=/etc/postgresql/15/main/pg_ident.conf",
                    "included_files=None", "mode=postgres", "pgdata=/var/lib/postgresql/15/main", f"server_name={name}",
                    "size=36897374", "status=DONE", "systemid=7311111111111111111", "tablespaces=None", "timeline=1",
                    "version=150018", "xlog_segment_size=16777216", ""]))
            for file in range(segment, segment + 4):
                catalog.append(f"0000000100000000000000{file:02X}\t16777216\t{1795600000 + number * 86400 + file * 60}.0\tNone\n")
        os.makedirs(f"{home}/{name}/wals")
        with open(f"{home}/{name}/wals/xlog.db", "w") as wals:
            wals.writelines(catalog)
    with open(f"{home}.conf", "w") as f:
        f.write("\n".join(config))
    subprocess.run(["chown", "-R", "barman:barman", home, f"{home}.conf"], check=True)


def cpu_seconds(config, *arguments, runs=3):
    """Median child CPU seconds (user + system) of `barman -c CONFIG -f json ARGUMENTS` as barman."""
    samples = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(["setpriv", "--reuid=barman", "--regid=barman", "--init-groups", "barman", "-c", config, "-f", "json", *arguments],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        samples.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return sorted(samples)[len(samples) // 2]


def costs(work, servers):
    home = os.path.join(work, f"home{servers}")
    generate(home, servers)
    config = f"{home}.conf"
    runs = 3 if servers <= 20 else 1
    cost = {name: cpu_seconds(config, *arguments, runs=runs) for name, arguments in {
        "list-backups all": ["list-backups", "all"], "check all": ["check", "all"],
        "replication-status all": ["replication-status", "all"], "show-servers all": ["show-servers", "all"],
        "list-servers": ["list-servers"],
    }.items()}
    cost.update({name: cpu_seconds(config, *arguments) for name, arguments in {
        "show-backup SERVER": ["show-backup", "srv000", "latest"], "list-backups SERVER": ["list-backups", "srv000"],
        "status SERVER": ["status", "srv000"], "check SERVER": ["check", "srv000"],
    }.items()})
    return cost


def models(n, cost):
    """(processes, CPU seconds) per hour for each exporter."""
    r = REFRESHES_PER_HOUR
    steady = cost["list-backups all"] + cost["replication-status all"]
    checks = 3600 // 300  # checks_cache_ttl 300 s
    return {
        "ours now": (r * 2 + checks + 6, r * steady + checks * cost["check all"] + 6 * cost["show-servers all"]),
        "ours before (checks every minute)": (r * 3 + 6, r * (steady + cost["check all"]) + 6 * cost["show-servers all"]),
        "Go exporter (3 + 2N a refresh)": (r * (3 + 2 * n), r * (cost["list-servers"] + cost["list-backups all"] + cost["check all"]
                                                                  + n * (cost["list-backups SERVER"] + cost["show-backup SERVER"]))),
        "Python exporter (1 + 4N an hour)": (1 + 4 * n, cost["list-servers"] + n * (cost["status SERVER"] + cost["check SERVER"]
                                                                                 + cost["list-backups SERVER"] + cost["show-backup SERVER"])),
    }


def main():
    if os.geteuid() != 0 or shutil.which("barman") is None:
        print("barman cost: needs root and Debian's barman (scripts/install-deps.sh test); skipped", file=sys.stderr)
        return 1
    version = subprocess.run(["barman", "--version"], capture_output=True, text=True).stdout.split()[0]
    work = tempfile.mkdtemp(prefix="barman-cost-")
    os.chmod(work, 0o755)
    try:
        results = {n: costs(work, n) for n in SIZES}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n## barman's cost per hour at the default settings (real barman {version}, CPU seconds of its processes)\n")
    print("| servers | " + " | ".join(models(3, results[3]).keys()) + " |")
    print("| ---: |" + " ---: |" * 4)
    for n in SIZES:
        cells = [f"{processes:,} processes, {seconds:,.0f} CPU s" for processes, seconds in models(n, results[n]).values()]
        print(f"| {n} | " + " | ".join(cells) + " |")
    print("\nCPU seconds of one run, by command:\n")
    print("| command | " + " | ".join(f"{n} servers" for n in SIZES) + " |")
    print("| --- |" + " ---: |" * len(SIZES))
    for name in results[3]:
        print(f"| `{name}` | " + " | ".join(f"{results[n][name]:.2f}" for n in SIZES) + " |")
    largest = models(SIZES[-1], results[SIZES[-1]])
    ours, python = largest["ours now"][1], largest["Python exporter (1 + 4N an hour)"][1]
    print(f"\n{'met' if ours <= python else 'MISSED':8}barman's CPU at the defaults at {SIZES[-1]} servers at most the Python exporter's:"
          f" {ours:,.0f} against {python:,.0f} CPU s an hour")
    return 0


if __name__ == "__main__":
    sys.exit(main())
