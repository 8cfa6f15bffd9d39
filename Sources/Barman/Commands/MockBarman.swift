import Platform
import Exposition
import Configuration

/// Embedded barman output for `integration_type: mock`: a demo and test bed that needs no barman.
///
/// The JSON has the exact shapes barman 3.4.0 (Debian 12) prints, taken from the captures in
/// Tests/ExporterTests/Fixtures/3.4.0 with the servers renamed and the values changed, plus
/// `backup_type` in `list-backups` (barman >= 3.11):
/// - `pg-main`: a backup running now (STARTED), two DONE backups (the newest incremental, the
///   oldest full and kept: KEEP:FULL) and a FAILED one between them, so its
///   `failed_backups` check fails; PostgreSQL's archiver (`archiver = on`) failed 3 times;
/// - `pg-new`: no backups yet while `minimum_redundancy` is 1, every check OK;
/// - `pg-reports`: one DONE backup that is too old, so `backup_maximum_age` fails, and no WAL
///   streaming client (its receive-wal is gone), so its newest WAL is a day old;
/// `pg-main` and `pg-new` each have one streaming client, `pg-new`'s 16 MiB behind in flushing.
/// It goes through the same decoding as the shell integration's output.
public struct MockBarman: BarmanRunner, BarmanFiles {
    public init() {}

    /// What barman would be asked; the mock answers without running anything.
    public func argv(for command: BarmanCommand) -> [String] {
        ["barman(mock)", "-f", "json"] + command.arguments
    }

    public func run(_ command: BarmanCommand) async throws(CommandFailure) -> CommandOutput {
        if let answer = Self.answers[command.description] {
            return CommandOutput(stdout: Array(answer.json.utf8), exitStatus: answer.exitStatus)
        }
        let error = #"{"_ERROR": ["Unknown command '\#(command)' (the mock answers only what barman would be asked for its sample servers)"]}"#
        return CommandOutput(stdout: Array(error.utf8), exitStatus: 1)
    }

    /// The WAL catalogs of the three servers, by the paths `showServers` names.
    public func read(path: String, from offset: Int, maxBytes: Int) throws(SystemError) -> (bytes: [UInt8], size: Int, identity: FileIdentity) {
        guard let catalog = Self.walCatalogs[path] else { throw SystemError.notFound("open", path) }
        let bytes = Array(catalog.utf8)
        let start = min(offset, bytes.count)
        return (Array(bytes[start..<min(bytes.count, start + maxBytes)]), bytes.count, FileIdentity(device: 1, inode: UInt64(bytes.count)))
    }

    /// The servers' WAL inboxes and error directories: `pg-reports`' cron has stopped, so two
    /// segments wait in its `streaming` directory (and the one being written, `.partial`).
    public func visitDirectory(path: String, _ body: (_ name: String, _ modificationTime: () -> Double?) -> Void) throws(SystemError) {
        guard let entries = Self.directories[path] else { throw SystemError.notFound("open directory", path) }
        for (name, time) in entries { body(name) { time } }
    }

    /// A file system of 100 GiB with 37.5 GiB free, for every directory.
    public func fileSystemSpace(path: String) throws(SystemError) -> (availableBytes: UInt64, sizeBytes: UInt64) {
        (40_265_318_400, 107_374_182_400)
    }

    static let directories: [String: [(String, Double)]] = [
        "/var/lib/barman/pg-main/incoming": [],
        "/var/lib/barman/pg-main/streaming": [("000000010000000000000013.partial", 1795544800)],
        "/var/lib/barman/pg-main/errors": [],
        "/var/lib/barman/pg-new/incoming": [],
        "/var/lib/barman/pg-new/streaming": [("00000001000000000000000C.partial", 1795544700)],
        "/var/lib/barman/pg-new/errors": [("00000001000000000000000A.20261124T183000Z.duplicate", 1795545000)],
        "/var/lib/barman/pg-reports/incoming": [],
        "/var/lib/barman/pg-reports/streaming": [("000000010000000000000004", 1795458300), ("000000010000000000000005", 1795459000),
                                                  ("000000010000000000000006.partial", 1795459100)],
        "/var/lib/barman/pg-reports/errors": [],
    ]

    /// barman's answer to each command line (after `-f json`) and its exit status.
    static let answers: [String: (json: String, exitStatus: Int32)] = [
        "list-backups all": (listBackups, 0),
        // Like barman: exit status 1 because a check failed; the JSON is still the answer.
        "check all": (check, 1),
        "replication-status all": (replicationStatus, 0),
        "show-servers all": (showServers, 0),
        "--version": ("3.20.1 Barman by EnterpriseDB (www.enterprisedb.com)\n", 0),
        "show-backup pg-main 20261124T020004": (showBackupMain, 0),
        "show-backup pg-reports 20261121T230001": (showBackupReports, 0),
        "show-backup pg-main 20261122T020002": (showBackupMainOldest, 0),
        // pg-main's backup runs now; pg-reports' receive-wal is gone.
        "list-processes pg-main": (#"{"pg-main": [{"pid": 526, "name": "receive-wal"}, {"pid": 4411, "name": "backup"}]}"#, 0),
        "list-processes pg-new": (#"{"pg-new": [{"pid": 528, "name": "receive-wal"}]}"#, 0),
        "list-processes pg-reports": (#"{"pg-reports": []}"#, 0),
    ]

    static let walCatalogs: [String: String] = [
        "/var/lib/barman/pg-main/wals/xlog.db": """
            000000010000000000000011\t16777216\t1795544700.25\tNone
            000000010000000000000012\t16777216\t1795544727.5\tNone
            000000010000000000000012.00000028.backup\t341\t1795544729.0\tNone

            """,
        "/var/lib/barman/pg-new/wals/xlog.db": """
            00000001000000000000000A\t16777216\t1795540000.75\tNone
            00000001000000000000000B\t16777216\t1795544640.0\tNone

            """,
        "/var/lib/barman/pg-reports/wals/xlog.db": """
            000000010000000000000002\t16777216\t1795215000.0\tNone
            000000010000000000000003\t16777216\t1795458240.0\tNone

            """,
    ]

    /// The keys of `show-servers` the exporter reads, with a few of the 129 others (3.4.0 shape).
    static let showServers = #"""
{"pg-main": {"active": true, "archive_command": "barman-wal-archive backup pg-main %p", "archive_mode": "on", "archived_count": 412, "archiver": true, "backup_method": "postgres", "current_xlog": "000000010000000000000013", "description": "Main cluster", "disabled": false, "failed_count": 3, "is_archiving": true, "last_archived_time": "2026-11-24 18:25:20.520000+00:00", "last_archived_wal": "000000010000000000000012", "last_failed_time": "2026-11-24 03:10:07.000000+00:00", "last_failed_wal": "00000001000000000000000C", "minimum_redundancy": 1, "passive_node": false, "retention_policy": "RECOVERY WINDOW OF 7 DAYS", "streaming_archiver": true, "basebackups_directory": "/var/lib/barman/pg-main/base", "errors_directory": "/var/lib/barman/pg-main/errors", "incoming_wals_directory": "/var/lib/barman/pg-main/incoming", "last_backup_maximum_age": "7 days (latest backup: 1 day, 16 hours, 31 minutes )", "last_wal_maximum_age": "1:00:00", "replication_slot": "Record(slot_name='barman', active=True, restart_lsn='0/13000000')", "streaming_wals_directory": "/var/lib/barman/pg-main/streaming", "wals_directory": "/var/lib/barman/pg-main/wals", "xlog_segment_size": 16777216}, "pg-new": {"active": true, "archiver": false, "backup_method": "postgres", "description": "New cluster", "disabled": false, "minimum_redundancy": 1, "passive_node": false, "retention_policy": null, "streaming_archiver": true, "basebackups_directory": "/var/lib/barman/pg-new/base", "errors_directory": "/var/lib/barman/pg-new/errors", "incoming_wals_directory": "/var/lib/barman/pg-new/incoming", "last_backup_maximum_age": "7 days (WARNING! latest backup is No available backups old)", "last_wal_maximum_age": "1:00:00", "replication_slot": "Record(slot_name='barman', active=True, restart_lsn='0/B000000')", "streaming_wals_directory": "/var/lib/barman/pg-new/streaming", "wals_directory": "/var/lib/barman/pg-new/wals", "xlog_segment_size": 16777216}, "pg-reports": {"active": true, "archiver": false, "backup_method": "postgres", "description": "Reporting cluster", "disabled": false, "minimum_redundancy": 0, "passive_node": false, "retention_policy": null, "streaming_archiver": true, "basebackups_directory": "/var/lib/barman/pg-reports/base", "errors_directory": "/var/lib/barman/pg-reports/errors", "incoming_wals_directory": "/var/lib/barman/pg-reports/incoming", "last_backup_maximum_age": "1 day (WARNING! latest backup is 3 days, 2 hours old)", "last_wal_maximum_age": null, "replication_slot": "Record(slot_name='barman', active=False, restart_lsn='0/4000000')", "streaming_wals_directory": "/var/lib/barman/pg-reports/streaming", "wals_directory": "/var/lib/barman/pg-reports/wals", "xlog_segment_size": 16777216}}
"""#

    static let listBackups = #"""
{"pg-main": [{"backup_id": "20261125T020001", "backup_type": "full", "status": "STARTED"}, {"backup_id": "20261124T020004", "backup_type": "incremental", "end_time": "Tue Nov 24 2:02:15 2026", "end_time_timestamp": "1795485735", "retention_status": "-", "size": "51.2 MiB", "size_bytes": 53674590, "status": "DONE", "tablespaces": [], "wal_size": "192.0 MiB", "wal_size_bytes": 201326592}, {"backup_id": "20261123T020003", "backup_type": "full", "status": "FAILED"}, {"backup_id": "20261122T020002", "backup_type": "full", "end_time": "Sun Nov 22 2:02:15 2026", "end_time_timestamp": "1795312935", "retention_status": "KEEP:FULL", "size": "51.2 MiB", "size_bytes": 53674593, "status": "DONE", "tablespaces": [], "wal_size": "32.0 MiB", "wal_size_bytes": 33554432}], "pg-new": [], "pg-reports": [{"backup_id": "20261121T230001", "backup_type": "full", "end_time": "Fri Nov 20 23:04:00 2026", "end_time_timestamp": "1795215840", "retention_status": "-", "size": "1228.8 MiB", "size_bytes": 1288490188, "status": "DONE", "tablespaces": [], "wal_size": "16.0 MiB", "wal_size_bytes": 16777216}]}
"""#

    static let check = #"""
{"pg-main": {"archiver_errors": {"hint": "", "status": "OK"}, "backup_maximum_age": {"hint": "", "status": "OK"}, "backup_minimum_size": {"hint": "51.2 MiB", "status": "OK"}, "compression_settings": {"hint": "", "status": "OK"}, "directories": {"hint": "", "status": "OK"}, "failed_backups": {"hint": "there are 1 failed backups", "status": "FAILED"}, "minimum_redundancy_requirements": {"hint": "", "status": "OK"}, "pg_basebackup": {"hint": "", "status": "OK"}, "pg_basebackup_compatible": {"hint": "", "status": "OK"}, "pg_basebackup_supports_tablespaces_mapping": {"hint": "", "status": "OK"}, "pg_receivexlog": {"hint": "", "status": "OK"}, "pg_receivexlog_compatible": {"hint": "", "status": "OK"}, "postgresql": {"hint": "", "status": "OK"}, "postgresql_streaming": {"hint": "", "status": "OK"}, "receive_wal_running": {"hint": "", "status": "OK"}, "replication_slot": {"hint": "", "status": "OK"}, "retention_policy_settings": {"hint": "", "status": "OK"}, "superuser_or_standard_user_with_backup_privileges": {"hint": "", "status": "OK"}, "systemid_coherence": {"hint": "", "status": "OK"}, "wal_level": {"hint": "", "status": "OK"}, "wal_maximum_age": {"hint": "", "status": "OK"}, "wal_size": {"hint": "192.0 MiB", "status": "OK"}}, "pg-new": {"archiver_errors": {"hint": "", "status": "OK"}, "backup_maximum_age": {"hint": "", "status": "OK"}, "backup_minimum_size": {"hint": "", "status": "OK"}, "compression_settings": {"hint": "", "status": "OK"}, "directories": {"hint": "", "status": "OK"}, "failed_backups": {"hint": "", "status": "OK"}, "minimum_redundancy_requirements": {"hint": "have 0 backups, expected at least 1", "status": "FAILED"}, "pg_basebackup": {"hint": "", "status": "OK"}, "pg_basebackup_compatible": {"hint": "", "status": "OK"}, "pg_basebackup_supports_tablespaces_mapping": {"hint": "", "status": "OK"}, "pg_receivexlog": {"hint": "", "status": "OK"}, "pg_receivexlog_compatible": {"hint": "", "status": "OK"}, "postgresql": {"hint": "", "status": "OK"}, "postgresql_streaming": {"hint": "", "status": "OK"}, "receive_wal_running": {"hint": "", "status": "OK"}, "replication_slot": {"hint": "", "status": "OK"}, "retention_policy_settings": {"hint": "", "status": "OK"}, "superuser_or_standard_user_with_backup_privileges": {"hint": "", "status": "OK"}, "systemid_coherence": {"hint": "no system Id stored on disk", "status": "OK"}, "wal_level": {"hint": "", "status": "OK"}, "wal_maximum_age": {"hint": "", "status": "OK"}, "wal_size": {"hint": "", "status": "OK"}}, "pg-reports": {"archiver_errors": {"hint": "", "status": "OK"}, "backup_maximum_age": {"hint": "interval provided: 1 day, latest backup age: 3 days, 2 hours", "status": "FAILED"}, "backup_minimum_size": {"hint": "", "status": "OK"}, "compression_settings": {"hint": "", "status": "OK"}, "directories": {"hint": "", "status": "OK"}, "failed_backups": {"hint": "", "status": "OK"}, "minimum_redundancy_requirements": {"hint": "", "status": "OK"}, "pg_basebackup": {"hint": "", "status": "OK"}, "pg_basebackup_compatible": {"hint": "", "status": "OK"}, "pg_basebackup_supports_tablespaces_mapping": {"hint": "", "status": "OK"}, "pg_receivexlog": {"hint": "", "status": "OK"}, "pg_receivexlog_compatible": {"hint": "", "status": "OK"}, "postgresql": {"hint": "", "status": "OK"}, "postgresql_streaming": {"hint": "", "status": "OK"}, "receive_wal_running": {"hint": "", "status": "OK"}, "replication_slot": {"hint": "", "status": "OK"}, "retention_policy_settings": {"hint": "", "status": "OK"}, "superuser_or_standard_user_with_backup_privileges": {"hint": "", "status": "OK"}, "systemid_coherence": {"hint": "", "status": "OK"}, "wal_level": {"hint": "", "status": "OK"}, "wal_maximum_age": {"hint": "", "status": "OK"}, "wal_size": {"hint": "", "status": "OK"}}}
"""#

    static let replicationStatus = #"""
{"pg-main": {"server_lsn": "0/13000060", "streaming_clients": [{"application_name": "barman_receive_wal", "communication": "TCP/IP", "current_state": "streaming", "current_sync_state": "async", "flush_lsn": "0/13000000", "flush_lsn_diff": "-96 B", "flush_lsn_diff_bytes": -96, "host": null, "ip_address": "127.0.0.1", "name": "Async WAL streamer", "port": 39576, "replication_slot": "barman", "sent_lsn": "0/13000060", "sent_lsn_diff": "0 B", "sent_lsn_diff_bytes": 0, "started_at": "2026-11-24 18:41:14.557508+00:00", "sync_stage": "3/3 Remote write", "user_name": "streaming_barman", "wal_sender_pid": 526, "write_lsn": "0/13000060", "write_lsn_diff": "0 B", "write_lsn_diff_bytes": 0}]}, "pg-new": {"server_lsn": "0/B000060", "streaming_clients": [{"application_name": "barman_receive_wal", "communication": "TCP/IP", "current_state": "streaming", "current_sync_state": "async", "flush_lsn": "0/13000000", "flush_lsn_diff": "-16777216 B", "flush_lsn_diff_bytes": -16777216, "host": null, "ip_address": "127.0.0.1", "name": "Async WAL streamer", "port": 34306, "replication_slot": "barman", "sent_lsn": "0/13000060", "sent_lsn_diff": "0 B", "sent_lsn_diff_bytes": 0, "started_at": "2026-11-24 18:41:14.557508+00:00", "sync_stage": "3/3 Remote write", "user_name": "streaming_barman", "wal_sender_pid": 528, "write_lsn": "0/13000060", "write_lsn_diff": "0 B", "write_lsn_diff_bytes": 0}]}, "pg-reports": {"server_lsn": "0/6123456", "standby_info": "No streaming clients attached", "streaming_clients": []}}
"""#

    static let showBackupMain = #"""
{"pg-main": {"backup_id": "20261124T020004", "base_backup_information": {"analysis_time": "less than one second", "analysis_time_seconds": 0, "begin_lsn": "0/6000028", "begin_offset": 40, "begin_time": "2026-11-24 01:00:04.681458+00:00", "begin_time_timestamp": "1795485604", "begin_wal": "000000010000000000000006", "copy_time": "4 seconds", "copy_time_seconds": 8.239298, "disk_usage": "35.2 MiB", "disk_usage_bytes": 36897374, "disk_usage_with_wals": "51.2 MiB", "disk_usage_with_wals_bytes": 53674590, "end_lsn": "0/7000000", "end_offset": 0, "end_time": "2026-11-24 01:02:15.804955+00:00", "end_time_timestamp": "1795485735", "end_wal": "000000010000000000000006", "incremental_size": "35.2 MiB", "incremental_size_bytes": 36897374, "incremental_size_ratio": "-0.00%", "number_of_workers": 1, "throughput": "8.6 MiB/s", "throughput_bytes": 4664618.514829783, "timeline": 1}, "catalog_information": {"next_backup": "- (this is the latest base backup)", "previous_backup": "20261123T020003", "retention_policy": "not enforced"}, "pgdata_directory": "/var/lib/postgresql/15/main", "postgresql_version": 150018, "status": "DONE", "tablespaces": [], "wal_information": {"compression_ratio": 0, "disk_usage": "192.0 MiB", "disk_usage_bytes": 201326592, "last_available": "000000010000000000000012", "no_of_files": 12, "timelines": [], "wal_rate": "47.75/hour", "wal_rate_per_second": 0.05102330047234898}}}
"""#

    /// pg-main's oldest DONE backup (KEEP:FULL): its first WAL segment, 0x11, is the oldest its
    /// catalog lists, so no segment is missing.
    static let showBackupMainOldest = #"""
{"pg-main": {"backup_id": "20261122T020002", "base_backup_information": {"analysis_time": "less than one second", "analysis_time_seconds": 0, "begin_lsn": "0/11000028", "begin_offset": 40, "begin_time": "2026-11-22 01:00:02.681458+00:00", "begin_time_timestamp": "1795312802", "begin_wal": "000000010000000000000011", "copy_time": "4 seconds", "copy_time_seconds": 8.1, "end_lsn": "0/11000138", "end_offset": 312, "end_time": "2026-11-22 01:02:15.804955+00:00", "end_time_timestamp": "1795312935", "end_wal": "000000010000000000000011", "number_of_workers": 1, "throughput": "8.6 MiB/s", "throughput_bytes": 4664618.5, "timeline": 1}, "catalog_information": {"next_backup": "20261123T020003", "previous_backup": "- (this is the oldest base backup)", "retention_policy": "KEEP:FULL"}, "pgdata_directory": "/var/lib/postgresql/15/main", "postgresql_version": 150018, "status": "DONE", "tablespaces": [], "wal_information": {"compression_ratio": 0, "disk_usage": "32.0 MiB", "disk_usage_bytes": 33554432, "last_available": "000000010000000000000012", "no_of_files": 2, "timelines": [], "wal_rate": "1.00/hour", "wal_rate_per_second": 0.0003}}}
"""#

    static let showBackupReports = #"""
{"pg-reports": {"backup_id": "20261121T230001", "base_backup_information": {"analysis_time": "less than one second", "analysis_time_seconds": 0, "begin_lsn": "0/6000028", "begin_offset": 40, "begin_time": "2026-11-20 22:00:01.681458+00:00", "begin_time_timestamp": "1795215601", "begin_wal": "000000010000000000000002", "copy_time": "4 seconds", "copy_time_seconds": 74.52, "disk_usage": "35.2 MiB", "disk_usage_bytes": 36897374, "disk_usage_with_wals": "51.2 MiB", "disk_usage_with_wals_bytes": 53674590, "end_lsn": "0/7000000", "end_offset": 0, "end_time": "2026-11-20 23:04:00.804955+00:00", "end_time_timestamp": "1795215840", "end_wal": "000000010000000000000002", "incremental_size": "35.2 MiB", "incremental_size_bytes": 36897374, "incremental_size_ratio": "-0.00%", "number_of_workers": 1, "throughput": "8.6 MiB/s", "throughput_bytes": 17290214.0, "timeline": 1}, "catalog_information": {"next_backup": "- (this is the latest base backup)", "previous_backup": "- (this is the oldest base backup)", "retention_policy": "not enforced"}, "pgdata_directory": "/var/lib/postgresql/15/main", "postgresql_version": 150018, "status": "DONE", "tablespaces": [], "wal_information": {"compression_ratio": 0, "disk_usage": "192.0 MiB", "disk_usage_bytes": 201326592, "last_available": "000000010000000000000012", "no_of_files": 1, "timelines": [], "wal_rate": "47.75/hour", "wal_rate_per_second": 0.0004}}}
"""#
}
