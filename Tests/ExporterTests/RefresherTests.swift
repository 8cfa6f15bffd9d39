@testable import Barman
@testable import Configuration
@testable import Exporter
@testable import Exposition
@testable import Platform
import Testing
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The refresh loop and caches: what runs when, against an in-memory barman.
@Suite("Refresh and cache")
struct RefresherTests {
    /// A refresher reading an in-memory barman.
    struct Harness: BarmanAnswers {
        let barman = ScriptedBarman()
        let store = SnapshotStore(MetricsSnapshot(version: "test"))
        var refresher: Refresher

        init(cacheTTL: Int = 0, checksCacheTTL: Int = 0, serversCacheTTL: Int = 0) {
            refresher = Refresher(runner: barman,
                                  settings: RefreshSettings(cacheTTL: .seconds(cacheTTL), checksCacheTTL: .seconds(checksCacheTTL),
                                                            serversCacheTTL: .seconds(serversCacheTTL), refreshInterval: .seconds(60)),
                                  store: store, logger: Logger(level: .error))
        }

        func answer(_ name: String, _ json: String) {
            barman.answer(name, json)
        }

        /// A refresher with other settings on the same barman and store.
        mutating func settings(_ settings: RefreshSettings) {
            refresher = Refresher(runner: barman, settings: settings, store: store, logger: Logger(level: .error))
        }

        func exitStatus(_ command: String, _ status: Int32) {
            barman.exitStatus(command, status)
        }

        /// Every barman invocation so far, one argument string each, in order.
        func invocations() -> [String] { barman.invocations }
    }

    /// `servers` servers, each with two DONE backups and a FAILED one, plus two servers without backups.
    func syntheticListing(servers: Int) -> String {
        var entries: [String] = []
        for index in 0..<servers {
            let done = #"{"backup_id": "B%", "end_time_timestamp": "1795544728", "size_bytes": 100, "status": "DONE", "wal_size_bytes": 10}"#
            entries.append(#""srv\#(index)": [\#(done.replacingPercent("2")), {"backup_id": "F", "status": "FAILED"}, \#(done.replacingPercent("1"))]"#)
        }
        entries.append(#""empty1": []"#)
        entries.append(#""empty2": [{"backup_id": "F", "status": "FAILED"}]"#)
        return "{" + entries.joined(separator: ", ") + "}"
    }

    /// `syntheticListing`, with empty `check` and `replication-status` answers and every
    /// server's `show-backup`.
    func answerSynthetic(_ harness: Harness, servers: Int) {
        harness.answer("list-backups", syntheticListing(servers: servers))
        harness.answer("check", "{}")
        harness.answer("replication-status", "{}")
        harness.answer("show-servers", "{}")
        harness.answer("version", "3.4.0 Barman by EnterpriseDB (www.enterprisedb.com)\n")
        for index in 0..<servers {
            harness.answer("show-backup-srv\(index)-B2", Self.showBackup.replacingPercent("srv\(index)"))
            harness.answer("show-backup-srv\(index)-B1", Self.showBackup.replacingPercent("srv\(index)").replacing("\"B2\"", with: "\"B1\""))
        }
    }

    static let showBackup = #"{"%": {"backup_id": "B2", "status": "DONE", "base_backup_information": {"copy_time_seconds": 1.5, "throughput_bytes": 100}, "wal_information": {"no_of_files": 3, "wal_rate_per_second": 0.5}}}"#

    /// One `all` call per source (list-backups, check, replication-status, show-servers) plus one
    /// show-backup per server with backups (its newest DONE backup) and, at start, one per
    /// server whose oldest DONE backup is another (for its first WAL; asked once per backup):
    /// 4 + 2N barman processes at start (the Go exporter needs 3 + 2N every time, Python
    /// 1 + 4N), and `--version` once after start.
    @Test func invocationBudgetIsFourPlusOnePerServerWithBackups() async throws {
        let harness = Harness()
        let servers = 5
        answerSynthetic(harness, servers: servers)
        await harness.refresher.refreshCycle()
        let calls = harness.invocations()
        #expect(calls.count == 1 + 4 + 2 * servers)
        #expect(calls.filter { $0 == "--version" }.count == 1)
        #expect(calls.filter { $0 == "list-backups all" }.count == 1)
        #expect(calls.filter { $0 == "check all" }.count == 1)
        #expect(calls.filter { $0 == "replication-status all" }.count == 1)
        #expect(calls.filter { $0 == "show-servers all" }.count == 1)
        // One show-backup per server with a DONE backup, of its newest and its oldest DONE backup.
        #expect(calls.filter { $0.hasPrefix("show-backup") }.sorted() == (0..<servers).flatMap { ["show-backup srv\($0) B1", "show-backup srv\($0) B2"] })
        await harness.refresher.refreshCycle()
        #expect(harness.invocations().filter { $0.hasPrefix("show-backup") }.count == 2 * servers, "the oldest backups' begin is asked once")
        let families = MetricsBuilder.families(harness.store.snapshot, now: 1795544800)
        #expect(families.first { $0.definition == Metric.lastBackupCopyTime }?.samples.count == servers)
    }

    /// An oldest backup whose show-backup fails is not asked about at every refresh (it backs
    /// off, from a minute); the newest backups' show-backup is unaffected.
    @Test func aFailingOldestBackupIsNotAskedAtEveryRefresh() async throws {
        let harness = Harness()
        answerSynthetic(harness, servers: 2)
        harness.answer("show-backup-srv1-B1", #"{"_ERROR": ["backup.info of B1 is unreadable"]}"#)
        harness.exitStatus("show-backup-srv1-B1", 1)
        for _ in 0..<4 { await harness.refresher.refreshCycle() }
        let asked = harness.invocations().filter { $0.hasPrefix("show-backup srv1 B1") }
        #expect(asked.count == 1, "\(asked)")
        #expect(harness.store.snapshot.oldestBackupBeginWAL[ServerName("srv0")]?.backupID == "B1")
    }

    @Test(arguments: ["3.4.0", "3.20.1"])
    func realBarmanOutputThroughTheShellIntegration(version: String) async throws {
        let harness = Harness()
        try harness.answerFromFixtures(version)
        await harness.refresher.refreshCycle()
        let snapshot = harness.store.snapshot
        // --version, the four `all` commands, show-backup of pg's newest and of its oldest backup;
        // with barman 3.14 and later (3.19.1's --version here), list-processes of each server.
        #expect(harness.invocations().count == (version == "3.4.0" ? 7 : 7 + 3))
        #expect(snapshot.backups?.keys.sorted() == ["pg", "pg2", "pg3"])
        #expect(snapshot.replication?["pg"]?.count == 2)
        #expect(snapshot.checks?["pg3"]?.contains(CheckResult(name: "failed_backups", ok: false)) == true)
        #expect(snapshot.details["pg"]?.walFiles != nil)
        #expect(snapshot.health["check"]?.lastRunSucceeded == true)  // exit status 1 with JSON is data
        #expect(snapshot.health.values.allSatisfy { $0.failures == 0 })
        #expect(snapshot.lastRefreshMilliseconds != nil)
    }

    @Test func cachedAnswersAreReusedWithinTheTTL() async throws {
        let harness = Harness(cacheTTL: 3600, checksCacheTTL: 3600, serversCacheTTL: 3600)
        try harness.answerFromFixtures("3.4.0")
        await harness.refresher.refreshCycle()
        await harness.refresher.refreshCycle()
        #expect(harness.invocations().count == 7)
    }

    @Test func expiredAnswersAreFetchedAgain() async throws {
        let harness = Harness(cacheTTL: 0, checksCacheTTL: 0)
        try harness.answerFromFixtures("3.4.0")
        await harness.refresher.refreshCycle()
        await harness.refresher.refreshCycle()
        // --version only once (it is asked again after a reload), show-backup only when the
        // listing of the newest backup changes, and of the oldest only once.
        #expect(harness.invocations().count == 7 + 4)
    }

    @Test func checksHaveTheirOwnTTL() async throws {
        let harness = Harness(cacheTTL: 0, checksCacheTTL: 3600)
        try harness.answerFromFixtures("3.4.0")
        await harness.refresher.refreshCycle()
        await harness.refresher.refreshCycle()
        let calls = harness.invocations()
        #expect(calls.filter { $0 == "check all" }.count == 1)
        #expect(calls.filter { $0 == "list-backups all" }.count == 2)
        #expect(calls.filter { $0.hasPrefix("show-backup") }.count == 2)
    }

    /// 200 servers, every cache expired at every refresh but show-servers' (every tenth at the
    /// defaults): once barman has answered, a refresh runs list-backups, check and
    /// replication-status, and a show-backup only for a server whose newest backup changed.
    @Test func steadyStateRunsThreeCommandsAndShowBackupOnlyForWhatChanged() async throws {
        let servers = 200
        let harness = Harness(cacheTTL: 0, checksCacheTTL: 0, serversCacheTTL: 3600)
        func listing(_ change: (Int) -> (id: String, walSize: Int)) -> String {
            "{" + (0..<servers).map { index in
                let (id, walSize) = change(index)
                return #""srv\#(index)": [{"backup_id": "\#(id)", "end_time_timestamp": "1795544728", "size_bytes": 100, "status": "DONE", "wal_size_bytes": \#(walSize)}]"#
            }.joined(separator: ", ") + "}"
        }
        answerSynthetic(harness, servers: servers)
        for index in 0..<servers { harness.answer("show-backup-srv\(index)-B3", Self.showBackup.replacingPercent("srv\(index)")) }
        harness.answer("list-backups", listing { _ in ("B2", 10) })
        await harness.refresher.refreshCycle()
        #expect(harness.invocations().count == 1 + 4 + servers)

        func callsOfNextRefresh() async -> [String] {
            let before = harness.invocations().count
            await harness.refresher.refreshCycle()
            return Array(harness.invocations().dropFirst(before)).sorted()
        }
        let steady = ["check all", "list-backups all", "replication-status all"]
        for _ in 0..<5 { #expect(await callsOfNextRefresh() == steady) }

        // New WAL of srv7 (its wal_size_bytes grows) and a new backup of srv9: those two only.
        harness.answer("list-backups", listing { index in (index == 9 ? "B3" : "B2", index == 7 ? 26 : 10) })
        #expect(await callsOfNextRefresh() == steady + ["show-backup srv7 B2", "show-backup srv9 B3"])
        #expect(await callsOfNextRefresh() == steady)

        // A reload to another barman with the same answers: everything is asked again, once.
        let replacement = ScriptedBarman()
        for name in ["check", "replication-status", "show-servers", "version"] { replacement.answer(name, harness.barman.answers[name] ?? "") }
        replacement.answer("list-backups", listing { _ in ("B2", 10) })
        for index in 0..<servers { replacement.answer("show-backup-srv\(index)-B2", Self.showBackup.replacingPercent("srv\(index)")) }
        await harness.refresher.reconfigure(runner: replacement, settings: RefreshSettings(cacheTTL: .zero, checksCacheTTL: .zero, serversCacheTTL: .seconds(3600), refreshInterval: .seconds(60)),
                                            sourceChanged: true)
        await harness.refresher.refreshCycle()
        #expect(replacement.invocations.count == 1 + 4 + servers)
        #expect(replacement.invocations.filter { $0.hasPrefix("show-backup") }.count == servers)
        await harness.refresher.refreshCycle()
        #expect(replacement.invocations.count == 1 + 4 + servers + 3)
    }

    @Test func aFailedRefreshKeepsTheLastGoodDataAndSaysSo() async throws {
        let harness = Harness()
        try harness.answerFromFixtures("3.4.0")
        await harness.refresher.refreshCycle()
        let good = harness.store.snapshot
        #expect(good.backups?.count == 3)

        harness.answer("list-backups", #"{"pg": [{"backup_id": "x""#)  // truncated JSON
        harness.exitStatus("check", 2)
        await harness.refresher.refreshCycle()
        let stale = harness.store.snapshot
        #expect(stale.backups == good.backups)
        #expect(stale.checks == good.checks)
        #expect(stale.details == good.details)
        let listHealth = try #require(stale.health["list-backups"])
        #expect(listHealth.lastRunSucceeded == false)
        #expect(listHealth.failures == 1)
        #expect(listHealth.runs == 2)
        #expect(listHealth.lastSuccessUnixTime == good.health["list-backups"]?.lastSuccessUnixTime)
        #expect(stale.health["check"]?.lastRunSucceeded == false)

        let text = TestSupport.exposition(stale, now: 1795544800)
        #expect(text.contains("barman_exporter_command_success{command=\"list-backups\"} 0\n"))
        #expect(text.contains("barman_exporter_command_failures_total{command=\"check\"} 1\n"))
        #expect(text.contains("barman_backups_total{server=\"pg\"} 2\n"))
    }

    @Test func aSlowCheckDelaysNothingElseAndIsNeverStartedTwice() async throws {
        let harness = Harness()
        try harness.answerFromFixtures("3.4.0")
        harness.barman.holdCheck()
        let first = Task { await harness.refresher.refreshCycle() }

        // list-backups and show-backup complete and publish while check is still running.
        try await TestSupport.waitUntil("list-backups and show-backup are done") {
            await !harness.refresher.isRunning("list-backups") && harness.store.snapshot.details["pg"] != nil
        }
        #expect(harness.store.snapshot.backups != nil)
        #expect(harness.store.snapshot.checks == nil)

        // A second cycle refreshes list-backups again but does not start a second `check all`.
        await harness.refresher.refreshCycle()
        #expect(harness.invocations().filter { $0 == "check all" }.count == 1)
        #expect(harness.invocations().filter { $0 == "list-backups all" }.count == 2)

        harness.barman.releaseCheck()
        await first.value
        #expect(harness.store.snapshot.checks?.count == 3)
    }

    /// The Go exporter's troubleshooting guide (its README): every command logged with a logId, argv, duration and exit
    /// status at DEBUG, and a failure once at ERROR with the same logId and barman's stderr.
    @Test func commandsAreLoggedWithLogIDArgvStatusAndStderr() async throws {
        let log = try LogCapture()
        let barman = ScriptedBarman(configFile: "/etc/barman conf")
        barman.stderr("usage: barman [-h]\n")
        for command in ["list-backups", "check", "replication-status", "show-servers", "version"] {
            barman.answer(command, "")  // like barman's usage error: nothing on stdout
            barman.exitStatus(command, 2)
        }
        let store = SnapshotStore(MetricsSnapshot(version: "test"))
        let refresher = Refresher(runner: barman,
                                  settings: RefreshSettings(cacheTTL: .zero, checksCacheTTL: .zero, refreshInterval: .seconds(60)),
                                  store: store, logger: log.logger())
        await refresher.refreshCycle()
        let lines = try log.text.split(separator: "\n")
        let errors = lines.filter { $0.contains("level=error") && $0.contains("check all") }
        try #require(errors.count == 1, "\(lines)")
        let error = String(errors[0])
        #expect(error.contains("argv=\"barman -c '/etc/barman conf' -f json check all\""))
        #expect(error.contains("exit_status=2"))
        #expect(error.contains("stderr=\"usage: barman [-h]\""))
        let logID = try #require(error.split(separator: " ").first { $0.hasPrefix("logId=") })
        #expect(lines.contains { $0.contains("level=debug msg=\"running barman\" \(logID) ") })
        #expect(lines.contains { $0.contains("level=debug msg=\"barman finished\" \(logID) ") && $0.contains("exit_status=2") && $0.contains("duration_s=") })
    }

    @Test func aServerThatVanishesLosesItsDetails() async throws {
        let harness = Harness()
        try harness.answerFromFixtures("3.4.0")
        await harness.refresher.refreshCycle()
        #expect(harness.store.snapshot.details["pg"] != nil)
        harness.answer("list-backups", #"{"pg2": []}"#)
        await harness.refresher.refreshCycle()
        #expect(harness.store.snapshot.details["pg"] == nil)
        let text = TestSupport.exposition(harness.store.snapshot, now: 0)
        #expect(!text.contains("barman_backups_total{server=\"pg\"}"))
        #expect(!text.contains("barman_last_backup_copy_time{server=\"pg\"}"))
    }

    /// The copy time, throughput, WAL figures and duration describe one backup: while the
    /// newest DONE backup's `show-backup` fails, none are served, never the previous backup's
    /// next to the new backup's time.
    @Test func detailsOfAnotherBackupAreNeverServed() async throws {
        let harness = Harness()
        answerSynthetic(harness, servers: 1)
        await harness.refresher.refreshCycle()
        var text = TestSupport.exposition(harness.store.snapshot, now: 0)
        #expect(text.contains("barman_last_backup_copy_time{server=\"srv0\"} 1.5"))
        // A new DONE backup B3 whose show-backup fails (no answer prepared).
        harness.answer("list-backups", syntheticListing(servers: 1).replacing("\"B2\"", with: "\"B3\""))
        await harness.refresher.refreshCycle()
        text = TestSupport.exposition(harness.store.snapshot, now: 0)
        #expect(text.contains("barman_last_backup_timestamp_seconds{server=\"srv0\"}"))
        for name in ["copy_time", "throughput", "wal_files", "wal_rate_per_second", "duration_seconds"] {
            #expect(!text.contains("barman_last_backup_\(name){"), "\(name) of backup B2 served for B3")
        }
        #expect(text.contains("barman_exporter_command_success{command=\"show-backup\"} 0"))
        // Once B3's show-backup answers, its figures are served.
        harness.answer("show-backup-srv0-B3", Self.showBackup.replacingPercent("srv0").replacing("\"B2\"", with: "\"B3\""))
        await harness.refresher.refreshCycle()
        text = TestSupport.exposition(harness.store.snapshot, now: 0)
        #expect(text.contains("barman_last_backup_copy_time{server=\"srv0\"} 1.5"))
    }

    /// Refresh ticks that come faster than barman answers must not stack: one run of each
    /// source at a time, one `show-backup` per server, never more processes than the limit.
    @Test func refreshesDoNotStackAndRespectTheProcessLimit() async throws {
        var setup = Harness(cacheTTL: 3600, checksCacheTTL: 3600)
        setup.settings(RefreshSettings(cacheTTL: .seconds(3600), checksCacheTTL: .seconds(3600), refreshInterval: .seconds(60),
                                       maxConcurrentCommands: 3))
        let harness = setup
        let servers = 60
        answerSynthetic(harness, servers: servers)
        harness.barman.delay(.milliseconds(10))
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<8 { group.addTask { await harness.refresher.refreshCycle() } }
        }
        let calls = harness.invocations()
        #expect(calls.filter { $0 == "list-backups all" }.count == 1)
        #expect(calls.filter { $0 == "check all" }.count == 1)
        #expect(calls.filter { $0.hasPrefix("show-backup") }.count == 2 * servers)
        #expect(harness.barman.mostAtOnce <= 3)
        #expect(harness.store.snapshot.details.count == servers)
    }

    /// barman check opens replication connections, which replication-status would count as
    /// streaming clients: the two never run at the same time within a refresh.
    /// `check` and `show-servers` open replication connections that replication-status would
    /// count as streaming clients.
    @Test func checkAndShowServersNeverOverlapReplicationStatus() async throws {
        let harness = Harness()
        try harness.answerFromFixtures("3.4.0")
        harness.barman.delay(.milliseconds(30))
        for _ in 0..<3 { await harness.refresher.refreshCycle() }
        #expect(harness.invocations().filter { $0 == "check all" }.count == 3)
        #expect(harness.invocations().filter { $0 == "show-servers all" }.count == 3)
        #expect(!harness.barman.overlaps.contains("check+replication-status"), "\(harness.barman.overlaps)")
        #expect(!harness.barman.overlaps.contains("replication-status+show-servers"), "\(harness.barman.overlaps)")
    }

    /// A check still running from an earlier refresh (a slow one, or refreshes every second):
    /// replication-status waits for the first refresh after it, instead of counting its
    /// connections.
    @Test func replicationStatusWaitsForARunningCheck() async throws {
        let harness = Harness()
        try harness.answerFromFixtures("3.4.0")
        harness.barman.holdCheck()
        let first = Task { await harness.refresher.refreshCycle() }
        try await TestSupport.waitUntil("check runs") { harness.invocations().contains("check all") }
        await harness.refresher.refreshCycle()
        #expect(harness.invocations().filter { $0 == "replication-status all" }.count == 1)
        harness.barman.releaseCheck()
        await first.value
        await harness.refresher.refreshCycle()
        #expect(harness.invocations().filter { $0 == "replication-status all" }.count == 2)
        #expect(!harness.barman.overlaps.contains("check+replication-status"), "\(harness.barman.overlaps)")
    }

    /// The other way round: a replication-status still running from an earlier refresh holds
    /// back check and show-servers (that refresh's, waiting for it) until it is done; a later
    /// refresh does not start them either.
    @Test func checkAndShowServersWaitForARunningReplicationStatus() async throws {
        let harness = Harness()
        try harness.answerFromFixtures("3.4.0")
        harness.barman.hold("replication-status")
        let first = Task { await harness.refresher.refreshCycle() }
        try await TestSupport.waitUntil("replication-status runs") { harness.invocations().contains("replication-status all") }
        await harness.refresher.refreshCycle()
        #expect(!harness.invocations().contains("check all") && !harness.invocations().contains("show-servers all"))
        harness.barman.release("replication-status")
        await first.value
        #expect(harness.invocations().filter { $0 == "check all" }.count == 1)
        #expect(!harness.barman.overlaps.contains("check+replication-status"), "\(harness.barman.overlaps)")
        #expect(!harness.barman.overlaps.contains("replication-status+show-servers"), "\(harness.barman.overlaps)")
    }

    @Test func barmanVersionIsAskedAfterStartAndAfterEachReload() async throws {
        let harness = Harness()
        try harness.answerFromFixtures("3.4.0")
        await harness.refresher.refreshCycle()
        await harness.refresher.refreshCycle()
        #expect(harness.invocations().filter { $0 == "--version" }.count == 1)
        #expect(harness.store.snapshot.barmanVersion == "3.4.0")
        // A reload that changes nothing else (barman may have been upgraded meanwhile).
        await harness.refresher.reconfigure(runner: harness.barman, settings: RefreshSettings(cacheTTL: .zero, checksCacheTTL: .zero, serversCacheTTL: .zero, refreshInterval: .seconds(60)),
                                            sourceChanged: false)
        await harness.refresher.refreshCycle()
        #expect(harness.invocations().filter { $0 == "--version" }.count == 2)
    }

    /// A barman with one server `srv` and no backups, whose WAL catalog is in `walsDirectory`.
    static func barmanWithOneServer(walsDirectory directory: String) -> ScriptedBarman {
        let barman = ScriptedBarman()
        barman.answer("list-backups", #"{"srv": []}"#)
        barman.answer("check", "{}")
        barman.answer("replication-status", "{}")
        barman.answer("version", "3.4.0 Barman by EnterpriseDB (www.enterprisedb.com)\n")
        barman.answer("show-servers", #"{"srv": {"active": true, "disabled": false, "minimum_redundancy": 0, "passive_node": false, "wals_directory": "\#(directory)"}}"#)
        return barman
    }

    /// The catalog is a file: read at every refresh, while show-servers (which says where it
    /// is) waits for its own TTL. A catalog that cannot be read keeps its last value, logged once.
    @Test func walCatalogsAreReadAtEveryRefresh() async throws {
        let directory = try TestSupport.temporaryDirectory()
        defer { TestSupport.removeTree(directory) }
        let barman = Self.barmanWithOneServer(walsDirectory: directory)
        let log = try LogCapture()
        let store = SnapshotStore(MetricsSnapshot(version: "test"))
        let refresher = Refresher(runner: barman, settings: RefreshSettings(cacheTTL: .zero, checksCacheTTL: .zero, serversCacheTTL: .seconds(3600), refreshInterval: .seconds(60)),
                                  store: store, logger: log.logger(.warn))
        let catalog = directory + "/xlog.db"
        try TestSupport.write("000000010000000000000001\t16777216\t1795544001.5\tNone\n", to: catalog)
        await refresher.refreshCycle()
        #expect(store.snapshot.lastArchivedWAL == [ServerName("srv"): 1795544001.5])
        try TestSupport.write("000000010000000000000001\t16777216\t1795544001.5\tNone\n000000010000000000000002\t16777216\t1795544060.0\tNone\n", to: catalog)
        await refresher.refreshCycle()
        #expect(store.snapshot.lastArchivedWAL == [ServerName("srv"): 1795544060])
        #expect(barman.invocations.filter { $0 == "show-servers all" }.count == 1)

        // Not a file any more (as unreadable as a catalog of another user): the value stays.
        #expect(unlink(catalog) == 0 && mkdir(catalog, 0o755) == 0)
        await refresher.refreshCycle()
        await refresher.refreshCycle()
        #expect(store.snapshot.lastArchivedWAL == [ServerName("srv"): 1795544060])
        let logged = try log.text
        #expect(logged.ranges(of: "cannot read the WAL catalog").count == 1, "logged once: \(logged)")
    }

    /// A show-servers that hangs (an unreachable PostgreSQL) holds up neither the WAL catalog,
    /// read at every refresh from the last location, nor --version or the backups.
    @Test func aHangingShowServersHoldsUpNoOtherSource() async throws {
        let directory = try TestSupport.temporaryDirectory()
        defer { TestSupport.removeTree(directory) }
        let barman = Self.barmanWithOneServer(walsDirectory: directory)
        let store = SnapshotStore(MetricsSnapshot(version: "test"))
        let refresher = Refresher(runner: barman, settings: RefreshSettings(cacheTTL: .zero, checksCacheTTL: .zero, serversCacheTTL: .zero, refreshInterval: .seconds(60)),
                                  store: store, logger: Logger(level: .error))
        let catalog = directory + "/xlog.db"
        var lines = ""
        func append(_ segment: Int, _ time: Double) throws {
            lines += "0000000100000000000000\(segment < 10 ? "0" : "")\(segment)\t16777216\t\(time)\tNone\n"
            try TestSupport.write(lines, to: catalog)
        }
        try append(1, 1795544001)
        await refresher.refreshCycle()
        #expect(store.snapshot.lastArchivedWAL == [ServerName("srv"): 1795544001])

        barman.hold("show-servers")
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await refresher.refreshCycle() }  // its show-servers hangs
            // That refresh's show-servers hangs in barman, and the rest of it is done.
            try await TestSupport.waitUntil("show-servers hangs") {
                let started = barman.invocations.filter { $0 == "show-servers all" }.count == 2
                let backupsRunning = await refresher.isRunning("list-backups")
                let catalogRunning = await refresher.isRunning("wal-catalog")
                return started && !backupsRunning && !catalogRunning
            }
            for segment in 2...4 {
                try append(segment, 1795544000 + Double(segment) * 60)
                await refresher.refreshCycle()
                #expect(store.snapshot.lastArchivedWAL == [ServerName("srv"): 1795544000 + Double(segment) * 60], "refresh \(segment)")
            }
            #expect(barman.invocations.filter { $0 == "list-backups all" }.count == 5, "\(barman.invocations)")
            barman.release("show-servers")
            try await group.waitForAll()
        }
    }

    /// A source that keeps failing is asked again at the next refresh, then after 2, 4, 8...
    /// refreshes (at most 10 minutes apart); a usable answer ends the backoff.
    @Test func failingSourcesBackOff() async throws {
        let harness = Harness()
        answerSynthetic(harness, servers: 1)
        harness.exitStatus("show-servers", 2)
        harness.exitStatus("version", 2)
        var ran: [Int] = []
        for refresh in 1...9 {
            let before = harness.invocations().filter { $0 == "show-servers all" }.count
            await harness.refresher.refreshCycle()
            if harness.invocations().filter({ $0 == "show-servers all" }).count > before { ran.append(refresh) }
        }
        #expect(ran == [1, 2, 4, 8])
        #expect(harness.invocations().filter { $0 == "--version" }.count == 4)
        // Every other source ran at every refresh.
        #expect(harness.invocations().filter { $0 == "list-backups all" }.count == 9)
        harness.exitStatus("show-servers", 0)
        for _ in 10...16 { await harness.refresher.refreshCycle() }  // the next try is at 16
        let afterRecovery = harness.invocations().filter { $0 == "show-servers all" }.count
        await harness.refresher.refreshCycle()
        await harness.refresher.refreshCycle()
        #expect(harness.invocations().filter { $0 == "show-servers all" }.count == afterRecovery + 2, "answered: asked at every refresh again")
        #expect(Refresher.retryBackoff(streak: 30, refreshInterval: .seconds(60)) == 10)
        #expect(Refresher.retryBackoff(streak: 3, refreshInterval: .seconds(1)) == 4)
    }

    /// A reload that shortens refresh_interval applies at once, not after the old interval.
    @Test func aNewIntervalAppliesAtOnce() async throws {
        var setup = Harness()
        setup.settings(RefreshSettings(cacheTTL: .zero, checksCacheTTL: .zero, refreshInterval: .seconds(3600)))
        let harness = setup
        try harness.answerFromFixtures("3.4.0")
        let running = Task { await harness.refresher.runForever() }
        defer { running.cancel() }
        try await TestSupport.waitUntil("the first refresh") { harness.invocations().filter { $0 == "list-backups all" }.count == 1 }
        await harness.refresher.reconfigure(runner: harness.barman,
                                            settings: RefreshSettings(cacheTTL: .zero, checksCacheTTL: .zero, refreshInterval: .milliseconds(50)),
                                            sourceChanged: false)
        try await TestSupport.waitUntil("refreshes at the new interval") { harness.invocations().filter { $0 == "list-backups all" }.count >= 3 }
    }

    /// `show-backup`s run for servers never asked first, then for those asked longest ago.
    @Test func showBackupOrderIsFair() {
        let clock = ContinuousClock()
        let now = clock.now
        func due(_ server: String, _ lastAsked: ContinuousClock.Instant?) -> BackupDetailsCollector.Due {
            BackupDetailsCollector.Due(command: BackupDetailsCollector.command(server: server, backupID: "1"), lastAsked: lastAsked,
                                       server: ServerName(server), backup: BackupSummary(id: "1", status: "DONE"))
        }
        let order = BackupDetailsCollector.fairOrder([due("b", now), due("c", nil), due("a", now + .seconds(5)), due("d", now - .seconds(5))])
        #expect(order.map(\.command.description) == ["show-backup c 1", "show-backup d 1", "show-backup b 1", "show-backup a 1"])
    }

    /// A reload to another barman while the old one hangs: the new one answers at once, the old
    /// one's commands are cancelled and its answers never served.
    @Test func aReloadToAnotherSourceDoesNotWaitForTheHungOne() async throws {
        let harness = Harness()
        try harness.answerFromFixtures("3.4.0")
        harness.barman.holdEverything()
        let hung = Task { await harness.refresher.refreshCycle() }
        // list-backups, replication-status and --version hang (check and show-servers would
        // start after replication-status).
        try await TestSupport.waitUntil("the old barman hangs") { harness.invocations().count == 3 }

        let replacement = ScriptedBarman()
        replacement.answer("list-backups", #"{"new": []}"#)
        replacement.answer("check", "{}")
        replacement.answer("replication-status", "{}")
        replacement.answer("show-servers", "{}")
        replacement.answer("version", "3.19.1 Barman by EnterpriseDB (www.enterprisedb.com)\n")
        replacement.answer("list-processes-new", #"{"new": []}"#)
        await harness.refresher.reconfigure(runner: replacement, settings: RefreshSettings(cacheTTL: .zero, checksCacheTTL: .zero, refreshInterval: .seconds(60)),
                                            sourceChanged: true)
        await harness.refresher.refreshCycle()
        #expect(harness.barman.wasCancelled)
        #expect(replacement.invocations.count == 6)
        #expect(harness.store.snapshot.backups?.keys.sorted() == ["new"])
        await hung.value
        #expect(harness.store.snapshot.backups?.keys.sorted() == ["new"])
        #expect(harness.store.snapshot.health.values.allSatisfy { $0.failures == 0 })
    }

    /// After a reload that changes the source, the old source's series go at once; until the new
    /// source answers only the exporter's own metrics are served, with success 0.
    @Test func aNewSourceThatFailsServesNoneOfTheOldData() async throws {
        let store = SnapshotStore(MetricsSnapshot(version: "test"))
        let settings = RefreshSettings(cacheTTL: .zero, checksCacheTTL: .zero, refreshInterval: .seconds(60))
        let refresher = Refresher(runner: MockBarman(), settings: settings, store: store, logger: Logger(level: .error))
        await refresher.refreshCycle()
        #expect(TestSupport.exposition(store.snapshot, now: 1795544800).contains("barman_backups_total{server=\"pg-main\"}"))

        let failing = ScriptedBarman()  // answers nothing: every command fails
        await refresher.reconfigure(runner: failing, settings: settings, sourceChanged: true)
        let afterReload = TestSupport.exposition(store.snapshot, now: 1795544800)
        await refresher.refreshCycle()
        let afterFailure = TestSupport.exposition(store.snapshot, now: 1795544800)
        for text in [afterReload, afterFailure] {
            #expect(!text.contains("server=\""))
            #expect(text.contains("barman_exporter_command_success{command=\"list-backups\"} 0\n"))
            #expect(!text.contains("barman_exporter_command_success{command=\"check\"} 1"))
        }
    }
}

private extension String {
    func replacingPercent(_ value: String) -> String {
        split(separator: "%", omittingEmptySubsequences: false).joined(separator: value)
    }
}

extension RefresherTests {
    /// A collector's per-server commands are started a bounded number at a time, in order, not
    /// all as waiting tasks at once (1,000 servers made 1,000 tasks, 5 MB at a first refresh).
    @Test func perServerWorkRunsABoundedNumberAtOnce() async {
        let inFlight = Atomic<Int>(0)
        let most = Atomic<Int>(0)
        let started = Mutex<[Int]>([])
        await CollectContext.forEach(Array(0..<40), atMost: 4) { item in
            started.withLock { $0.append(item) }
            let now = inFlight.add(1, ordering: .relaxed).newValue
            most.max(now, ordering: .relaxed)
            try? await Task.sleep(for: .milliseconds(2))
            inFlight.subtract(1, ordering: .relaxed)
        }
        #expect(most.load(ordering: .relaxed) <= 4)
        #expect(started.withLock { $0.count } == 40)
        #expect(started.withLock { Array($0.prefix(4)).sorted() } == [0, 1, 2, 3])
        // Fewer items than slots, and none.
        let done = Atomic<Int>(0)
        await CollectContext.forEach([1, 2], atMost: 4) { _ in done.add(1, ordering: .relaxed) }
        await CollectContext.forEach([Int](), atMost: 4) { _ in done.add(1, ordering: .relaxed) }
        #expect(done.load(ordering: .relaxed) == 2)
    }
}
