#!/usr/bin/python3
"""A fake barman for benchmarks: prints barman 3.4.0-shaped JSON for a generated dataset.

The dataset comes from the environment: BENCH_SERVERS servers with BENCH_BACKUPS backups each
(one in ten FAILED), 22 checks per server, one streaming client per server. Every call appends
its arguments to $BENCH_LOG (if set), so a benchmark can count barman processes.
Handles what both exporters call: -v, list-server(s), status, check, list-backup(s), show-backup,
replication-status, show-servers; with SERVER or `all`; `-c FILE` is accepted and ignored.
"""
import json
import os
import sys
import time

SERVERS = int(os.environ.get("BENCH_SERVERS", "3"))
BACKUPS = int(os.environ.get("BENCH_BACKUPS", "5"))
NAMES = [f"pg{i:03d}" for i in range(SERVERS)]
CHECKS = ["archiver_errors", "backup_maximum_age", "backup_minimum_size", "compression_settings", "directories",
          "failed_backups", "minimum_redundancy_requirements", "pg_basebackup", "pg_basebackup_compatible",
          "pg_basebackup_supports_tablespaces_mapping", "pg_receivexlog", "pg_receivexlog_compatible", "postgresql",
          "postgresql_streaming", "receive_wal_running", "replication_slot", "retention_policy_settings",
          "superuser_or_standard_user_with_backup_privileges", "systemid_coherence", "wal_level", "wal_maximum_age",
          "wal_size"]
BASE_TIME = 1795544728


def backups(server):
    result = []
    for n in range(BACKUPS):
        end = BASE_TIME - n * 86400
        # Real backup IDs are always 15 characters (YYYYMMDDTHHMMSS).
        backup_id = f"2026{11 - n // 30:02d}{24 - n % 24:02d}T{n % 24:02d}{n % 60:02d}00"
        if n % 10 == 3:
            result.append({"backup_id": backup_id, "status": "FAILED"})
            continue
        result.append({"backup_id": backup_id, "end_time": "Tue Nov 24 18:25:28 2026", "end_time_timestamp": str(end),
                       "retention_status": "-", "size": "51.2 MiB", "size_bytes": 53674590 + n, "status": "DONE",
                       "tablespaces": [], "wal_size": "32.0 MiB", "wal_size_bytes": 33554432 + n})
    return result


def show(server, backup_id):
    return {server: {"backup_id": backup_id, "status": "DONE",
                     "base_backup_information": {"copy_time": "4 seconds", "copy_time_seconds": 4.099697, "throughput_bytes": 9000024.635967,
                                                 "begin_time_timestamp": str(BASE_TIME - 4), "end_time_timestamp": str(BASE_TIME),
                                                 "disk_usage_bytes": 36897374},
                     "wal_information": {"no_of_files": 12, "wal_rate_per_second": 0.01326498091819527, "disk_usage_bytes": 201326592}}}


def check(server):
    return {name: {"hint": "", "status": "OK"} for name in CHECKS}


def status(server):
    return {"active": {"description": "Active", "message": "True"},
            "first_backup": {"description": "First available backup", "message": backups(server)[-1]["backup_id"]},
            "last_backup": {"description": "Last available backup", "message": backups(server)[0]["backup_id"]}}


def replication(server):
    return {"server_lsn": "0/13000060", "streaming_clients": [{
        "application_name": "barman_receive_wal", "current_state": "streaming", "current_sync_state": "async",
        "ip_address": "127.0.0.1", "replication_slot": "barman", "sent_lsn_diff_bytes": 0, "write_lsn_diff_bytes": 0,
        "flush_lsn_diff_bytes": -96}]}


def process_start_time():
    """When this process was started (exec included), from /proc, to 10 ms."""
    with open("/proc/self/stat") as f:
        ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))


def main(argv):
    started = process_start_time()
    try:
        return answer(argv)
    finally:
        # One line per process: start and end time, then the arguments (the bench computes
        # barman's own share of a refresh from these).
        if os.environ.get("BENCH_LOG"):
            with open(os.environ["BENCH_LOG"], "a") as log:
                log.write(f"{started:.6f} {time.time():.6f} " + " ".join(argv) + "\n")


def answer(argv):
    args = list(argv)
    if "-c" in args:
        i = args.index("-c")
        del args[i:i + 2]
    if args[:2] == ["-f", "json"]:
        args = args[2:]
    if args[:1] in (["-v"], ["--version"]):
        print("3.4.0 Barman by EnterpriseDB (www.enterprisedb.com)")
        return 0
    command, rest = args[0], args[1:]
    servers = NAMES if rest[:1] == ["all"] else rest[:1]
    if command in ("list-server", "list-servers"):
        out = {name: {"description": f"bench {name}"} for name in NAMES}
    elif command in ("list-backup", "list-backups"):
        out = {name: backups(name) for name in servers}
    elif command == "check":
        out = {name: check(name) for name in servers}
    elif command == "status":
        out = {name: status(name) for name in servers}
    elif command == "replication-status":
        out = {name: replication(name) for name in servers}
    elif command in ("show-server", "show-servers"):
        out = {name: {"active": True, "archiver": False, "disabled": False, "minimum_redundancy": 0, "passive_node": False,
                      "wals_directory": f"/nonexistent/bench/{name}/wals"} for name in servers}
    elif command == "show-backup":
        out = show(rest[0], rest[1])
    else:
        print(f"fake barman: unknown command {command}", file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
