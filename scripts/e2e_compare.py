#!/usr/bin/env python3
"""Compares what the exporter serves with what `barman -f json` reports for the same state.

barman's state moves on its own (WAL keeps streaming, so the newest backup's wal_size grows;
replication clients come and go, and every `barman check` briefly adds walsenders), so like is
compared with like: barman is asked, then the exporter is scraped once every command it runs has
been run again after barman was asked, then barman is asked again. A round counts only when
barman's two answers agree; then every value the exporter serves must equal them. Retries for up
to 30 s (--within); prints every difference of the last round and exits 1 when none agreed.
"""
import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import time
import urllib.request

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(url):
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        if not match:
            raise SystemExit(f"unparsable line: {line!r}")
        labels = tuple(sorted(LABEL.findall(match.group(3) or "")))
        samples[(match.group(1), labels)] = float(match.group(4))
    return samples, time.time()


BARMAN = "barman"


def barman(config, *args):
    run = subprocess.run([BARMAN, "-c", config, "-f", "json", *args], capture_output=True, text=True, timeout=120)
    if run.returncode not in (0, 1):
        raise SystemExit(f"barman {' '.join(args)} exited {run.returncode}: {run.stderr}")
    return json.loads(run.stdout)


STATUSES = ("DONE", "EMPTY", "FAILED", "STARTED", "SYNCING", "WAITING_FOR_WALS")
RETENTION = ("-", "KEEP:FULL", "KEEP:STANDALONE", "OBSOLETE", "OBSOLETE*")


def catalog_text(info, server):
    """The server's WAL catalog's complete lines, read here directly: `<xlogdb_directory>/<server>-xlog.db`
    (barman 3.13 and later; the old name until barman migrated it), else `<wals_directory>/xlog.db`."""
    if info.get("xlogdb_directory"):
        paths = [f"{info['xlogdb_directory']}/{server}-xlog.db", f"{info['wals_directory']}/xlog.db"]
    else:
        paths = [f"{info['wals_directory']}/xlog.db"]
    for path in paths:
        try:
            with open(path) as catalog:
                return [line.split("\t") for line in catalog if line.endswith("\n")]
        except FileNotFoundError:
            continue
    return []


def newest_archived_wal(info, server):
    """The largest archive time of a WAL segment in the server's catalog."""
    times = [float(fields[2]) for fields in catalog_text(info, server) if re.fullmatch(r"[0-9A-Fa-f]{24}", fields[0])]
    return max(times) if times else None


def lsn(text):
    high, low = text.split("/")
    return int(high, 16) << 32 | int(low, 16)


SLOT = re.compile(r"^Record\(slot_name='([^']+)', active=(True|False), restart_lsn=(?:'([0-9A-F]+/[0-9A-F]+)'|None)\)$")
FINISHED_WAL = re.compile(r"^[0-9A-F]{24}$|^[0-9A-F]{8}\.history$|^[0-9A-F]{24}\.[0-9A-F]{8}\.backup$")


def catalog_lines(info, server):
    """The WAL catalog's lines as (name, size)."""
    return [(fields[0], int(fields[1])) for fields in catalog_text(info, server)]


def missing_segments(names, begin, segment_size):
    """Segments missing from `begin` to the newest, timeline by timeline (a new timeline may
    start inside its parent's last segment)."""
    per_log = 0x100000000 // segment_size
    by_timeline = {}
    for name in names:
        if re.fullmatch(r"[0-9A-F]{24}", name):
            by_timeline.setdefault(int(name[:8], 16), set()).add(int(name[8:16], 16) * per_log + int(name[16:], 16))
    begin_timeline, next_number = int(begin[:8], 16), int(begin[8:16], 16) * per_log + int(begin[16:], 16)
    missing, first = 0, True
    for timeline in sorted(t for t in by_timeline if t >= begin_timeline):
        start_from = next_number if first or next_number == 0 else next_number - 1
        numbers = sorted(n for n in by_timeline[timeline] if n >= start_from)
        if not numbers:
            continue
        missing += max(0, numbers[0] - next_number) + (numbers[-1] - numbers[0] + 1 - len(numbers))
        next_number, first = numbers[-1] + 1, False
    return 1 if first else missing


def directory_files(path):
    """Finished WAL files waiting in a directory: their modification times (none while barman
    has not made the directory)."""
    times = []
    if not os.path.isdir(path):
        return times
    for entry in os.scandir(path):
        if FINISHED_WAL.match(entry.name) and entry.is_file(follow_symlinks=False):
            times.append(entry.stat(follow_symlinks=False).st_mtime)
    return times


def wal_pipeline(config, listing, servers, replication, series):
    """The WAL pipeline's series, each computed here from barman's JSON and files."""
    for server, info in servers.items():
        key = (("server", server),)
        segment_size = int(info.get("xlog_segment_size") or 16777216)
        server_lsn = replication.get(server, {}).get("server_lsn")
        slot = SLOT.match(info.get("replication_slot") or "")
        if slot:
            labels = (("server", server), ("slot", slot.group(1)))
            series[("barman_replication_slot_active", labels)] = int(slot.group(2) == "True")
            if slot.group(3) and server_lsn:
                series[("barman_replication_slot_retained_bytes", labels)] = max(0, lsn(server_lsn) - lsn(slot.group(3)))
        lines = catalog_lines(info, server)
        series[("barman_wal_archive_files", key)] = len(lines)
        series[("barman_wal_archive_size_bytes", key)] = sum(size for _, size in lines)
        segments = [name for name, _ in lines if re.fullmatch(r"[0-9A-F]{24}", name)]
        if segments and server_lsn:
            per_log = 0x100000000 // segment_size
            newest = max(int(name[8:16], 16) * per_log + int(name[16:], 16) for name in segments)
            series[("barman_wal_archive_lag_bytes", key)] = max(0, lsn(server_lsn) - (newest + 1) * segment_size)
        done = [b for b in listing.get(server, []) if b["status"] == "DONE"]
        if done and segments:
            begin = barman(config, "show-backup", server, done[-1]["backup_id"])[server]["base_backup_information"]["begin_wal"]
            series[("barman_wal_missing_segments", key)] = missing_segments(segments, begin, segment_size)
        oldest = []
        for label, field in (("incoming", "incoming_wals_directory"), ("streaming", "streaming_wals_directory")):
            times = directory_files(info[field])
            series[("barman_wal_pending_files", (("directory", label), ("server", server)))] = len(times)
            oldest += times
        if oldest:
            series[("barman_wal_pending_oldest_timestamp_seconds", key)] = min(oldest)
        errors = info["errors_directory"]
        series[("barman_wal_error_files", key)] = sum(1 for e in os.scandir(errors) if e.is_file(follow_symlinks=False)) if os.path.isdir(errors) else 0
        for label, field in (("backups", "basebackups_directory"), ("wals", "wals_directory")):
            if not os.path.exists(info[field]):
                continue
            space = os.statvfs(info[field])
            labels = (("directory", label), ("server", server))
            series[("barman_filesystem_avail_bytes", labels)] = space.f_bavail * space.f_frsize
            series[("barman_filesystem_size_bytes", labels)] = space.f_blocks * space.f_frsize
        for field, metric in (("last_backup_maximum_age", "barman_server_last_backup_maximum_age_seconds"),
                              ("last_wal_maximum_age", "barman_server_last_wal_maximum_age_seconds")):
            if server in CONFIGURED_AGES and field in CONFIGURED_AGES[server]:
                series[(metric, key)] = CONFIGURED_AGES[server][field]
    if barman_version_tuple() >= (3, 14):
        for server in listing:
            counts = {}
            for process in barman(config, "list-processes", server)[server]:
                counts[process["name"]] = counts.get(process["name"], 0) + 1
            for task in ("archive-wal", "backup", "cron", "receive-wal", "sync-backup", "sync-wal", *counts):
                series[("barman_running_processes", (("server", server), ("task", task)))] = counts.get(task, 0)


# What the e2e test's barman configuration sets (scripts/e2e.sh), in seconds: barman prints these
# in its own words, which the exporter reads.
CONFIGURED_AGES = {"pg-a": {"last_backup_maximum_age": 86400, "last_wal_maximum_age": 21600}}


def barman_version_tuple():
    return tuple(int(part) for part in re.findall(r"\d+", barman_version())[:2])


def barman_version():
    run = subprocess.run([BARMAN, "--version"], capture_output=True, text=True, timeout=60)
    return (run.stdout.split() or [""])[0]


def recoverability(config, listing, series):
    """The recoverability series: lifecycle, type and retention from list-backups, state and
    catalog from show-servers, barman's version. Returns show-servers' answer."""
    servers = {k: v for k, v in barman(config, "show-servers", "all").items() if not k.startswith("_")}
    for server, backups in listing.items():
        key = (("server", server),)
        done = [b for b in backups if b["status"] == "DONE"]
        for status in STATUSES + tuple(b["status"] for b in backups):
            series[("barman_backups_by_status", (("server", server), ("status", status)))] = sum(b["status"] == status for b in backups)
        for status in RETENTION + tuple(b["retention_status"] for b in done):
            series[("barman_backups_by_retention_status", (("retention_status", status), ("server", server)))] = \
                sum(b["retention_status"] == status for b in done)
        for kind in {b["backup_type"] for b in done if "backup_type" in b}:
            series[("barman_backups_by_type", (("backup_type", kind), ("server", server)))] = sum(b.get("backup_type") == kind for b in done)
        full = [b for b in done if b.get("backup_type") != "incremental"]
        if full:
            series[("barman_last_full_backup_timestamp_seconds", key)] = int(full[0]["end_time_timestamp"])
        running = [b["backup_id"] for b in backups if b["status"] not in ("DONE", "FAILED")]
        if running:
            series[("barman_backup_in_progress_start_timestamp_seconds", key)] = min(
                time.mktime(time.strptime(backup_id, "%Y%m%dT%H%M%S")) for backup_id in running)
        failed = [b["backup_id"] for b in backups if b["status"] == "FAILED"]
        if failed:
            series[("barman_last_failed_backup_timestamp_seconds", key)] = max(
                time.mktime(time.strptime(backup_id, "%Y%m%dT%H%M%S")) for backup_id in failed)
        if server in servers:
            series[("barman_minimum_redundancy_satisfied", key)] = int(len(full) >= int(servers[server]["minimum_redundancy"]))
    for server, info in servers.items():
        key = (("server", server),)
        series[("barman_server_active", key)] = int(info["active"])
        series[("barman_server_disabled", key)] = int(info["disabled"])
        series[("barman_server_passive_node", key)] = int(info["passive_node"])
        if info.get("failed_count") is not None:
            series[("barman_archiver_failures_total", key)] = info["failed_count"]
            for field, metric in (("last_failed_time", "barman_archiver_last_failure_timestamp_seconds"),
                                  ("last_archived_time", "barman_archiver_last_archived_timestamp_seconds")):
                if info.get(field):
                    series[(metric, key)] = datetime.datetime.fromisoformat(info[field]).timestamp()
        newest = newest_archived_wal(info, server)
        if newest is not None:
            series[("barman_last_archived_wal_timestamp_seconds", key)] = newest
    series[("barman_version_info", (("version", barman_version()),))] = 1
    return servers


def expected(config):
    """Every series the exporter must serve for barman's current state (ages as end times)."""
    series = {}
    ages = {}
    listing = {k: v for k, v in barman(config, "list-backups", "all").items() if not k.startswith("_")}
    # First what opens replication connections of its own (show-servers, check): every
    # replication-status meanwhile, the exporter's too, counts them as streaming clients.
    servers = recoverability(config, listing, series)
    checks = {k: v for k, v in barman(config, "check", "all").items() if not k.startswith("_")}
    for server, results in checks.items():
        for name, result in results.items():
            series[("barman_up", (("check", name), ("server", server)))] = 1 if result["status"] == "OK" else 0
    quiet_since = time.time()
    for server, backups in listing.items():
        key = (("server", server),)
        series[("barman_backups_total", key)] = len(backups)
        series[("barman_backups_failed", key)] = sum(1 for b in backups if b["status"] == "FAILED")
        done = [b for b in backups if b["status"] == "DONE"]
        for number, backup in enumerate(done):
            labels = (("number", str(number)), ("server", server))
            series[("barman_backup_size", labels)] = backup["size_bytes"]
            series[("barman_backup_wal_size", labels)] = backup["wal_size_bytes"]
        if done:
            series[("barman_last_backup_timestamp_seconds", key)] = int(done[0]["end_time_timestamp"])
            series[("barman_first_backup_timestamp_seconds", key)] = int(done[-1]["end_time_timestamp"])
            ages[("barman_last_backup", key)] = int(done[0]["end_time_timestamp"])
            ages[("barman_first_backup", key)] = int(done[-1]["end_time_timestamp"])
            show = barman(config, "show-backup", server, done[0]["backup_id"])[server]
            base, wal = show["base_backup_information"], show["wal_information"]
            series[("barman_last_backup_copy_time", key)] = base["copy_time_seconds"]
            series[("barman_last_backup_throughput", key)] = base["throughput_bytes"]
            series[("barman_last_backup_wal_files", key)] = wal["no_of_files"]
            series[("barman_last_backup_wal_rate_per_second", key)] = wal["wal_rate_per_second"]
            series[("barman_last_backup_duration_seconds", key)] = int(base["end_time_timestamp"]) - int(base["begin_time_timestamp"])
    replication = {k: v for k, v in barman(config, "replication-status", "all").items() if not k.startswith("_")}
    for server, status in replication.items():
        clients = status.get("streaming_clients", [])
        series[("barman_replication_streaming_clients", (("server", server),))] = len(clients)
        states = {}
        lags = {}
        for client in clients:
            state = client.get("current_sync_state") or ""
            states[state] = states.get(state, 0) + 1
            # Fields barman leaves out (e.g. replication_slot of a client without a slot) are "".
            labels = (("application_name", client.get("application_name") or ""), ("client_address", client.get("ip_address") or ""),
                      ("server", server), ("slot", client.get("replication_slot") or ""))
            for kind in ("sent", "write", "flush"):
                diff = client.get(f"{kind}_lsn_diff_bytes")
                if diff is not None:
                    key = (f"barman_replication_client_{kind}_lag_bytes", labels)
                    lags[key] = max(lags.get(key, -diff), -diff)  # clients sharing labels: the largest lag
        series.update(lags)
        for state, count in states.items():
            series[("barman_replication_streaming_clients_by_sync_state", (("server", server), ("sync_state", state)))] = count
    wal_pipeline(config, listing, servers, replication, series)
    return series, ages, set(listing), quiet_since


# Values that change whenever PostgreSQL writes WAL: with a cache of many seconds they can only be
# compared for presence, not value (the cache_ttl 0 runs compare them exactly).
MOVING = {"barman_replication_client_sent_lag_bytes", "barman_replication_client_write_lag_bytes",
          "barman_replication_client_flush_lag_bytes", "barman_wal_archive_lag_bytes", "barman_replication_slot_retained_bytes"}

# Values compared within a tolerance: free space changes with every file PostgreSQL and barman
# write; barman's own retained bytes and archive lag take PostgreSQL's position and the slot's or
# archive's from commands run moments apart (a segment or so while WAL streams).
TOLERANCE = {"barman_filesystem_avail_bytes": 256 << 20, "barman_replication_slot_retained_bytes": 32 << 20,
             "barman_wal_archive_lag_bytes": 32 << 20}


def differences(source, want, ages, got, measured_at, age_tolerance, moving_values=False):
    """What `source` (the exporter, or Prometheus) has that differs from barman's values.
    Ages are compared with the time `got` was taken, within `age_tolerance` seconds.
    With `moving_values`, the MOVING metrics only have to be present."""
    problems = []
    for key, value in want.items():
        if key not in got:
            problems.append(f"{source} has no {key}")
        elif moving_values and key[0] in MOVING:
            continue
        elif abs(got[key] - float(value)) > max(TOLERANCE.get(key[0], 0), 1e-9 * max(1.0, abs(float(value)))):
            problems.append(f"{key}: {source} {got[key]!r}, barman {value!r}")
    for key, end_time in ages.items():
        age = measured_at - end_time
        if key not in got:
            problems.append(f"{source} has no {key}")
        elif abs(got[key] - age) > age_tolerance:
            problems.append(f"{key}: {source} {got[key]}, barman's end time gives {age:.1f}")
    return problems


# show-backup is not among them: the exporter asks it again only when list-backups shows the
# backup changed, and the comparison checks that its values are then barman's.
COMMANDS = ("list-backups", "check", "replication-status")


def run_starts(got):
    """When the exporter's last successful run of each command started (None before any)."""
    starts = {}
    for command in COMMANDS:
        labels = (("command", command),)
        ended = got.get(("barman_exporter_command_last_success_timestamp_seconds", labels))
        took = got.get(("barman_exporter_command_duration_seconds", labels))
        succeeded = got.get(("barman_exporter_command_success", labels))
        starts[command] = ended - took if ended is not None and took is not None and succeeded == 1 else None
    return starts


def scrape_after(url, moment, timeout):
    """A scrape whose every barman answer comes from a run that started after `moment` (or the
    last scrape when that takes longer than `timeout` seconds)."""
    deadline = time.time() + timeout
    while True:
        got, scraped_at = scrape(url)
        starts = run_starts(got)
        if all(start is not None and start >= moment for start in starts.values()) or time.time() > deadline:
            return got, scraped_at
        time.sleep(0.2)


def compare(url, config, servers, moving_values=False):
    want, ages, listed, quiet_since = expected(config)
    # Every answer from a run started after this test's own check and show-servers ended. With
    # the installed config's cache, the next refresh can be a minute away.
    got, scraped_at = scrape_after(url, quiet_since, 75 if moving_values else 25)
    again, _, _, _ = expected(config)
    def changed(key):
        before, after = want.get(key), again.get(key)
        if before is None or after is None:
            return before is not after
        return abs(float(before) - float(after)) > TOLERANCE.get(key[0], 0)
    moved = sorted(key for key in set(want) | set(again) if changed(key) and not (moving_values and key[0] in MOVING))
    if moved:
        return [f"barman's state moved during the comparison, not compared: {key}" for key in moved], 0
    problems = differences("exporter", want, ages, got, scraped_at, 2, moving_values)
    if listed != servers:
        problems.append(f"barman lists servers {sorted(listed)}, the test expected {sorted(servers)}")
    server_metrics = {k for k in got if any(name == "server" for name, _ in k[1])}
    for key in sorted(server_metrics - set(want) - set(ages)):
        problems.append(f"served but not in barman's output: {key}")
    for key in (("barman_last_backup", (("server", "pg-b"),)), ("barman_last_backup_copy_time", (("server", "pg-c"),))):
        if key in got:
            problems.append(f"{key} must be absent: the server has no DONE backup")
    return problems, len(want) + len(ages)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--barman", default="barman")
    parser.add_argument("--barman-config", required=True)
    parser.add_argument("--servers", required=True)
    parser.add_argument("--within", type=float, default=60, help="seconds to keep retrying")
    parser.add_argument("--cached", action="store_true", help="the exporter caches for long: replication lag only has to be present")
    args = parser.parse_args()
    global BARMAN
    BARMAN = args.barman
    servers = set(args.servers.split(","))
    deadline = time.time() + args.within
    while True:
        problems, count = compare(args.url, args.barman_config, servers, args.cached)
        if not problems:
            print(f"e2e: {count} series match barman's own JSON")
            return 0
        if time.time() > deadline:
            print("\n".join(problems))
            return 1
        time.sleep(2)


if __name__ == "__main__":
    sys.exit(main())
