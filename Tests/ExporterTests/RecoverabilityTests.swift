@testable import Barman
@testable import Configuration
@testable import Exporter
@testable import Exposition
@testable import Platform
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// WAL arrival, backup lifecycle, types and retention: the pieces that answer "can I restore,
/// and to when?".
@Suite("Recoverability")
struct RecoverabilityTests {
    // MARK: - Times barman writes

    @Test func pythonDateTimesWithOffsetsAreUnixTime() {
        #expect(BarmanTime.parseDateTime("2026-11-24 18:25:31.250000+00:00") == 1795544731.25)
        #expect(BarmanTime.parseDateTime("2026-11-24 18:25:31+00:00") == 1795544731)
        // The same instant written in another zone.
        #expect(BarmanTime.parseDateTime("2026-11-24 19:25:31+01:00") == 1795544731)
        #expect(BarmanTime.parseDateTime("2026-11-24 13:55:31-04:30") == 1795544731)
        #expect(BarmanTime.parseDateTime("1970-01-01 00:00:00+00:00") == 0)
        #expect(BarmanTime.parseDateTime("2000-02-29 00:00:00+00:00") == 951782400)
        // No offset: which zone it meant would be a guess.
        #expect(BarmanTime.parseDateTime("2026-11-24 18:25:31") == nil)
        for bad in ["", "None", "2026-13-24 18:25:31+00:00", "2026-11-24 18:25:31.+00:00", "2026-11-24 18:25:31+0000", "yesterday at noon, UTC!!"] {
            #expect(BarmanTime.parseDateTime(bad) == nil, "\(bad)")
        }
    }

    /// A backup id is its start in local time: formatting a known instant the way barman does
    /// (`localtime`, `%Y%m%dT%H%M%S`) and reading it back gives that instant, whatever the zone.
    @Test(arguments: [Int64(1795544731), 1782864000, 1774746000, 1761444000])
    func backupIDsAreTheirLocalStartTime(instant: Int64) {
        var seconds = time_t(instant)
        var parts = tm()
        #expect(localtime_r(&seconds, &parts) != nil)
        func pad(_ value: Int32, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        let id = pad(parts.tm_year + 1900, 4) + pad(parts.tm_mon + 1, 2) + pad(parts.tm_mday, 2) + "T"
            + pad(parts.tm_hour, 2) + pad(parts.tm_min, 2) + pad(parts.tm_sec, 2)
        #expect(BarmanTime.backupStart(id: id) == instant, "\(id)")
    }

    @Test func otherBackupIDsHaveNoStartTime() {
        for id in ["", "latest", "20261124T18253", "20261124X182531", "20261324T182531", "20261124T256000", "2026112aT182531", "my-named-backup"] {
            #expect(BarmanTime.backupStart(id: id) == nil, "\(id)")
        }
    }

    // MARK: - The WAL catalog

    @Test func newestSegmentTimeIgnoresOtherFilesAndCutLines() {
        let catalog = Array("""
            0000000100000000000000\t16777216\t1795544000.0\tNone
            000000010000000000000011\t16777216\t1795544700.25\tNone
            000000010000000000000012\t16777216\t1795544727.5\tNone
            00000002.history\t41\t1795544800.0\tNone
            000000010000000000000012.00000028.backup\t341\t1795544900.0\tNone
            000000010000000000000013\t16777216\t1795545000.0\tNo
            """.utf8)
        // The last line has no newline yet (barman is writing it); the first may be cut.
        #expect(WALCatalog.newestArchiveTime(in: catalog, startsAtLineBoundary: true) == 1795544727.5)
        let cut = Array(catalog.dropFirst(10))
        #expect(WALCatalog.newestArchiveTime(in: cut, startsAtLineBoundary: false) == 1795544727.5)
        #expect(WALCatalog.newestArchiveTime(in: Array("garbage\n\t\t\n\n".utf8), startsAtLineBoundary: true) == nil)
        #expect(WALCatalog.newestArchiveTime(in: [], startsAtLineBoundary: true) == nil)
    }

    /// The newest segment is found with many `.backup` or `.history` lines after it (once the
    /// whole file, read incrementally now, was read only from its end), and a missing catalog is
    /// "no WAL yet".
    @Test func catalogFilesAreReadFromTheEndAndFallBackToTheLegacyName() throws {
        let directory = try TestSupport.temporaryDirectory()
        defer { TestSupport.removeTree(directory) }
        let filler = String(repeating: "00000002.history\t41\t1795549999.0\tNone\n", count: 3000)  // ~110 KiB
        try TestSupport.write("000000010000000000000001\t16777216\t1795544001.0\tNone\n" + filler, to: directory + "/xlog.db")
        let files = LocalBarmanFiles()
        #expect(try WALCatalog.newestArchiveTime(WALCatalogLocation(path: directory + "/xlog.db"), files: files) == 1795544001)
        // barman >= 3.13 before its migration: the new name is missing, the old one is read.
        let migrating = WALCatalogLocation(path: directory + "/srv-xlog.db", legacyPath: directory + "/xlog.db")
        #expect(try WALCatalog.newestArchiveTime(migrating, files: files) == 1795544001)
        #expect(try WALCatalog.newestArchiveTime(WALCatalogLocation(path: directory + "/none.db"), files: files) == nil)
        // Anything else is an error the caller reports.
        #expect(throws: SystemError.self) { try WALCatalog.newestArchiveTime(WALCatalogLocation(path: directory), files: files) }
    }

    // MARK: - Metrics from the snapshot

    func families(_ snapshot: MetricsSnapshot) -> [String: [Sample]] {
        Dictionary(uniqueKeysWithValues: MetricsBuilder.families(snapshot, now: 1795600000).map { ($0.definition.name, $0.samples) })
    }

    @Test func everyStatusAndRetentionStatusHasASeries() {
        var snapshot = MetricsSnapshot(version: "test")
        snapshot.backups = [
            ServerName("a"): [
                BackupSummary(id: "20261125T020001", status: "WAITING_FOR_WALS"),
                BackupSummary(id: "3", status: "DONE", endTime: 300, sizeBytes: 1, walSizeBytes: 1, backupType: "incremental", retentionStatus: "-"),
                BackupSummary(id: "2", status: "FAILED", backupType: "full"),
                BackupSummary(id: "1", status: "DONE", endTime: 100, sizeBytes: 1, walSizeBytes: 1, backupType: "full", retentionStatus: "KEEP:STANDALONE"),
            ],
            ServerName("b"): [],
        ]
        let metrics = families(snapshot)
        let byStatus = metrics["barman_backups_by_status"] ?? []
        #expect(byStatus.count == 12)
        #expect(byStatus.filter { $0.labelValues[0] == "a" && $0.value > 0 }.map { "\($0.labelValues[1])=\($0.value)" }.sorted()
                == ["DONE=2.0", "FAILED=1.0", "WAITING_FOR_WALS=1.0"])
        #expect(byStatus.filter { $0.labelValues[0] == "b" }.allSatisfy { $0.value == 0 })
        let byRetention = metrics["barman_backups_by_retention_status"] ?? []
        #expect(byRetention.count == 10)
        #expect(byRetention.filter { $0.value > 0 }.map(\.labelValues).sorted { $0[0] < $1[0] } == [["-", "a"], ["KEEP:STANDALONE", "a"]])
        #expect(metrics["barman_backups_by_type"] == [Sample(["full", "a"], 1), Sample(["incremental", "a"], 1)])
        // The newest DONE backup is incremental: the last full one is the older.
        #expect(metrics["barman_last_full_backup_timestamp_seconds"] == [Sample(["a"], 100)])
        #expect(metrics["barman_last_backup_timestamp_seconds"] == [Sample(["a"], 300)])
        #expect(metrics["barman_backup_in_progress_start_timestamp_seconds"] == [Sample(["a"], Double(BarmanTime.backupStart(id: "20261125T020001") ?? -1))])
    }

    @Test func nothingRunningMeansNoInProgressSeries() {
        var snapshot = MetricsSnapshot(version: "test")
        snapshot.backups = [ServerName("a"): [BackupSummary(id: "20261125T020001", status: "FAILED"), BackupSummary(id: "1", status: "DONE", endTime: 1, sizeBytes: 1, walSizeBytes: 1)]]
        #expect(families(snapshot)["barman_backup_in_progress_start_timestamp_seconds"] == nil)
        // Without backup_type (barman < 3.11) every DONE backup is full, and no type is made up.
        #expect(families(snapshot)["barman_last_full_backup_timestamp_seconds"] == [Sample(["a"], 1)])
        #expect(families(snapshot)["barman_backups_by_type"] == nil)
    }

    @Test func minimumRedundancyCountsDoneNonIncrementalBackups() {
        var snapshot = MetricsSnapshot(version: "test")
        let incremental = BackupSummary(id: "2", status: "DONE", endTime: 2, sizeBytes: 1, walSizeBytes: 1, backupType: "incremental")
        let full = BackupSummary(id: "1", status: "DONE", endTime: 1, sizeBytes: 1, walSizeBytes: 1, backupType: "full")
        snapshot.backups = [ServerName("two"): [incremental, full], ServerName("one"): [full, BackupSummary(id: "0", status: "FAILED")],
                            ServerName("zero"): [], ServerName("unknown"): [full]]
        snapshot.servers = [ServerName("two"): ServerInfo(minimumRedundancy: 2), ServerName("one"): ServerInfo(minimumRedundancy: 1),
                            ServerName("zero"): ServerInfo(minimumRedundancy: 0), ServerName("unknown"): ServerInfo()]
        #expect(families(snapshot)["barman_minimum_redundancy_satisfied"] == [Sample(["one"], 1), Sample(["two"], 0), Sample(["zero"], 1)])
    }

    @Test func serverStateArchiverAndWALFromShowServers() {
        var snapshot = MetricsSnapshot(version: "test")
        snapshot.servers = [
            ServerName("a"): ServerInfo(active: true, disabled: false, passiveNode: false,
                                        archiver: ArchiverStatistics(failedCount: 3, lastFailedTime: 1795500000, lastArchivedTime: 1795544000)),
            ServerName("p"): ServerInfo(active: false, disabled: true, passiveNode: true),
        ]
        snapshot.lastArchivedWAL = [ServerName("a"): 1795544727.5]
        snapshot.barmanVersion = "3.4.0"
        let metrics = families(snapshot)
        #expect(metrics["barman_server_active"] == [Sample(["a"], 1), Sample(["p"], 0)])
        #expect(metrics["barman_server_disabled"] == [Sample(["a"], 0), Sample(["p"], 1)])
        #expect(metrics["barman_server_passive_node"] == [Sample(["a"], 0), Sample(["p"], 1)])
        #expect(metrics["barman_archiver_failures_total"] == [Sample(["a"], 3)])
        #expect(metrics["barman_archiver_last_failure_timestamp_seconds"] == [Sample(["a"], 1795500000)])
        #expect(metrics["barman_archiver_last_archived_timestamp_seconds"] == [Sample(["a"], 1795544000)])
        #expect(metrics["barman_last_archived_wal_timestamp_seconds"] == [Sample(["a"], 1795544727.5)])
        #expect(metrics["barman_version_info"] == [Sample(["3.4.0"], 1)])
    }

    @Test func backupDurationComesWithTheShowBackupAlreadyRun() {
        var snapshot = MetricsSnapshot(version: "test")
        snapshot.backups = [ServerName("a"): [BackupSummary(id: "1", status: "DONE", endTime: 200, sizeBytes: 1, walSizeBytes: 1)], ServerName("gone"): []]
        snapshot.details = [ServerName("a"): BackupDetails(backupID: "1", beginTime: 80, endTime: 200),
                            ServerName("gone"): BackupDetails(backupID: "0", beginTime: 1, endTime: 2)]
        #expect(families(snapshot)["barman_last_backup_duration_seconds"] == [Sample(["a"], 120)])
    }
}

/// Reads real files, like the shell integration.
/// The end-to-end test's captures of real barman (`make fixtures`): Debian's 3.4.0 and pip's 3.19.1.
@Suite("Recoverability: real barman output")
struct RecoverabilityFixtureTests {
    static let versions = ["3.4.0", "3.19.1"]

    func fixture(_ version: String, _ name: String) throws -> CommandOutput {
        try TestSupport.fixture("e2e/\(version)", name)
    }

    @Test(arguments: versions)
    func versionIsTheFirstWord(version: String) throws {
        #expect(try BarmanDecoding.version(try fixture(version, "version")) == version)
    }

    @Test(arguments: versions)
    func showServersGivesStateRedundancyAndTheCatalog(version: String) throws {
        let servers = try BarmanDecoding.serverInfo(try fixture(version, "show-servers-all"))
        #expect(servers.keys.sorted() == ["pg-a", "pg-b", "pg-c"])
        let a = try #require(servers["pg-a"])
        #expect(a.active == true && a.disabled == false && a.passiveNode == false)
        #expect(a.minimumRedundancy == 0)
        #expect(servers["pg-b"]?.minimumRedundancy == 1)
        let catalog = try #require(a.walCatalog)
        if version == "3.4.0" {
            #expect(catalog.path.hasSuffix("/home/pg-a/wals/xlog.db") && catalog.legacyPath == nil, "\(catalog)")
        } else {
            // barman >= 3.13: <xlogdb_directory>/<server>-xlog.db, the old name as the fallback.
            #expect(catalog.path.hasSuffix("/home/pg-a/wals/pg-a-xlog.db"), "\(catalog)")
            #expect(catalog.legacyPath?.hasSuffix("/home/pg-a/wals/xlog.db") == true, "\(catalog)")
        }
    }

    /// pg-b has `archiver = on` and its archive_command failed: PostgreSQL's pg_stat_archiver,
    /// as barman prints it (times as Python datetimes with their offset).
    @Test(arguments: versions)
    func archiverStatisticsOfAFailingArchiveCommand(version: String) throws {
        let servers = try BarmanDecoding.serverInfo(try fixture(version, "show-servers-all-archiver-failing"))
        let archiver = try #require(servers["pg-b"]?.archiver)
        #expect(archiver.failedCount >= 1)
        let failed = try #require(archiver.lastFailedTime), archived = try #require(archiver.lastArchivedTime)
        // Both on the capture's day (2026-11-25 UTC), the failure after the last success.
        #expect(failed > 1795564800 && failed < 1795651200 && archived > 1795564800 && failed > archived)
        #expect(servers["pg-a"]?.archiver == nil && servers["pg-c"]?.archiver == nil)
    }

    /// The running backup: only its id and status; the id is its start.
    @Test(arguments: versions)
    func aRunningBackupIsInProgressSinceItsID(version: String) throws {
        let listing = try BarmanDecoding.backupList(try fixture(version, "list-backups-all-in-progress"))
        let running = try #require(listing["pg-c"]?.first)
        #expect(running.status == "STARTED")
        var snapshot = MetricsSnapshot(version: "test")
        snapshot.backups = listing
        let family = MetricsBuilder.families(snapshot, now: 1795700000).first { $0.definition == Metric.backupInProgressStart }
        let start = try #require(BarmanTime.backupStart(id: running.id))
        #expect(family?.samples == [Sample(["pg-c"], Double(start))])
    }

    @Test(arguments: versions)
    func retentionAndKeepAsBarmanPrintsThem(version: String) throws {
        func retention(_ name: String) throws -> [String: Double] {
            var snapshot = MetricsSnapshot(version: "test")
            snapshot.backups = try BarmanDecoding.backupList(try fixture(version, name))
            let family = MetricsBuilder.families(snapshot, now: 1795700000).first { $0.definition == Metric.backupsByRetentionStatus }
            return Dictionary(uniqueKeysWithValues: (family?.samples ?? []).filter { $0.labelValues[1] == "pg-a" && $0.value > 0 }.map { ($0.labelValues[0], $0.value) })
        }
        // REDUNDANCY 1 with two backups: the newer one is kept (barman prints VALID as "-").
        #expect(try retention("list-backups-all-retention") == ["-": 1, "OBSOLETE": 1])
        #expect(try retention("list-backups-all-keep") == ["-": 1, "KEEP:FULL": 1])
    }

    @Test(arguments: versions)
    func backupDurationFromShowBackup(version: String) throws {
        let output = try fixture(version, "show-backup-pg-a-latest")
        let id = try #require(try BarmanDecoding.servers(of: BackupDetailsCollector.command(server: "pg-a", backupID: "latest"), output)["pg-a"]?["backup_id"])
        guard case .string(let backupID) = id else { Issue.record("no backup id"); return }
        let details = try BarmanDecoding.backupDetails(output, server: "pg-a", backupID: backupID)
        let begin = try #require(details.beginTime), end = try #require(details.endTime)
        #expect(end >= begin && details.durationSeconds == Double(end - begin))
    }

    @Test(arguments: versions)
    func catalogTailGivesTheNewestSegment(version: String) throws {
        let tail = try TestSupport.read("Tests/ExporterTests/Fixtures/e2e/\(version)/xlog-pg-a.db")
        let lines = String(decoding: tail, as: UTF8.self).split(separator: "\n")
        let newest = lines.compactMap { line -> Double? in
            let fields = line.split(separator: "\t")
            return fields.count >= 4 && fields[0].count == 24 ? Double(fields[2]) : nil
        }.max()
        #expect(newest != nil)
        #expect(WALCatalog.newestArchiveTime(in: tail, startsAtLineBoundary: true) == newest)
    }
}

/// Values barman cannot have written are refused, not served as facts, and said once.
@Suite("Absurd values")
struct AbsurdValueTests {
    @Test(arguments: ["1e308", "99999999999", "0x1.ap30", "-1795544001", "nan", "inf", "1795544001.5.5", ""])
    func catalogTimesBarmanDoesNotWriteAreRefused(time: String) {
        let scan = WALCatalog.scan(Array("000000010000000000000001\t16777216\t\(time)\tNone\n".utf8), startsAtLineBoundary: true)
        #expect(scan.newest == nil)
        #expect(scan.problem != nil)
    }

    @Test func catalogsWithoutAUsableLineAreAProblem() {
        let random = WALCatalog.scan((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7919 &+ 13) }, startsAtLineBoundary: true)
        #expect(random.newest == nil && random.problem != nil)
        let oneHugeLine = WALCatalog.scan(Array(String(repeating: "x", count: 100_000).utf8) + [0x0A], startsAtLineBoundary: true)
        #expect(oneHugeLine.problem != nil)
        // Only history and backup-label lines: a catalog barman writes (no segment yet), fine.
        let labels = WALCatalog.scan(Array("00000002.history\t41\t1795549999.0\tNone\n000000010000000000000012.00000028.backup\t341\t1795544729.0\tNone\n".utf8),
                                     startsAtLineBoundary: true)
        #expect(labels.newest == nil && labels.problem == nil)
        #expect(WALCatalog.scan([], startsAtLineBoundary: true).problem == nil)
        let good = WALCatalog.scan(Array("000000010000000000000001\t16777216\t1795544001.5\tNone\n".utf8), startsAtLineBoundary: true)
        #expect(good.newest == 1795544001.5 && good.problem == nil)
    }

    @Test func archiverValuesPostgreSQLCannotReportAreRefused() {
        func info(_ failed: String, _ archived: String = "2026-11-24 18:25:20.520000+00:00") -> ServerInfo {
            BarmanDecoding.serverInfo(server: "pg", ["failed_count": .string(failed), "last_archived_time": .string(archived)])
        }
        for failed in ["-5.5", "1e308", "2.5", "-1"] {
            #expect(info(failed).archiver == nil, "\(failed)")
            #expect(info(failed).refused == ["failed_count \(Double(failed) ?? 0)"], "\(failed)")
        }
        let yearOne = info("3", "0001-01-01 00:00:00+00:00")
        #expect(yearOne.archiver?.failedCount == 3 && yearOne.archiver?.lastArchivedTime == nil)
        #expect(yearOne.refused == ["last_archived_time 0001-01-01 00:00:00+00:00"])
        #expect(info("3").refused.isEmpty && info("3").archiver?.lastArchivedTime != nil)
    }
}

extension AbsurdValueTests {
    /// 100,000 servers (60 MB of check) made the exporter hold 875 MB: past the limit the answer
    /// is refused with an error that says so, before more of it is decoded.
    @Test func answersListingTooManyServersAreRefused() {
        let servers = BarmanDecoding.maximumServers + 1
        let json = "{" + (0..<servers).map { #""s\#($0)": {"postgresql": {"hint": "", "status": "OK"}}"# }.joined(separator: ", ") + "}"
        do {
            _ = try BarmanDecoding.checks(CommandOutput(stdout: Array(json.utf8)))
            Issue.record("accepted \(servers) servers")
        } catch {
            #expect(error.message.contains("lists more than \(BarmanDecoding.maximumServers) servers"))
        }
        let fewer = "{" + (0..<100).map { #""s\#($0)": {"postgresql": {"hint": "", "status": "OK"}}"# }.joined(separator: ", ") + "}"
        #expect((try? BarmanDecoding.checks(CommandOutput(stdout: Array(fewer.utf8))))?.count == 100)
    }
}
