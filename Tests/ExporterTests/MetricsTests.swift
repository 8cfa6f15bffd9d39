@testable import Barman
@testable import Configuration
@testable import Exporter
@testable import Exposition
@testable import Platform
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Metric semantics")
struct MetricsTests {
    /// A snapshot decoded from a real barman 3.4.0 capture.
    func snapshot(_ version: String = "3.4.0") throws -> MetricsSnapshot {
        var snapshot = MetricsSnapshot(version: "1.2.3")
        snapshot.backups = try BarmanDecoding.backupList(try TestSupport.fixture(version, "list-backups-all"))
        snapshot.checks = try BarmanDecoding.checks(try TestSupport.fixture(version, "check-all"))
        let newest = try #require(snapshot.backups?["pg"]?.first)
        snapshot.details["pg"] = try BarmanDecoding.backupDetails(try TestSupport.fixture(version, "show-backup-pg-latest"), server: "pg", backupID: newest.id)
        snapshot.replication = try BarmanDecoding.replication(try TestSupport.fixture(version, "replication-status-all")).clients
        snapshot.lastRefreshMilliseconds = 734
        return snapshot
    }

    func values(_ families: [MetricFamily], _ metric: MetricDefinition) -> [[String]: Double] {
        var result: [[String]: Double] = [:]
        for sample in families.first(where: { $0.definition == metric })?.samples ?? [] {
            result[sample.labelValues] = sample.value
        }
        return result
    }

    @Test func countsAndNumbering() throws {
        var snapshot = try snapshot()
        // DONE, FAILED, DONE, STARTED: `number` skips non-DONE backups and has no gaps.
        snapshot.backups?["mixed"] = [
            BackupSummary(id: "4", status: "STARTED"),
            BackupSummary(id: "3", status: "DONE", endTime: 300, sizeBytes: 30, walSizeBytes: 3),
            BackupSummary(id: "2", status: "FAILED"),
            BackupSummary(id: "1", status: "DONE", endTime: 100, sizeBytes: 10, walSizeBytes: 1),
        ]
        let families = MetricsBuilder.families(snapshot, now: 1000)
        #expect(values(families, Metric.backupsTotal) == [["pg"]: 2, ["pg2"]: 0, ["pg3"]: 1, ["mixed"]: 4])
        #expect(values(families, Metric.backupsFailed) == [["pg"]: 0, ["pg2"]: 0, ["pg3"]: 1, ["mixed"]: 1])
        #expect(values(families, Metric.backupSize) == [
            ["0", "pg"]: 53674590, ["1", "pg"]: 53674593, ["0", "mixed"]: 30, ["1", "mixed"]: 10,
        ])
        #expect(values(families, Metric.backupWALSize) == [
            ["0", "pg"]: 201326592, ["1", "pg"]: 33554432, ["0", "mixed"]: 3, ["1", "mixed"]: 1,
        ])
        #expect(values(families, Metric.lastBackup)[["mixed"]] == 700)
        #expect(values(families, Metric.firstBackup)[["mixed"]] == 900)
    }

    @Test func agesAreComputedAtScrapeTime() throws {
        let snapshot = try snapshot()
        let early = MetricsBuilder.families(snapshot, now: 1795544800)
        let later = MetricsBuilder.families(snapshot, now: 1795544900)
        // Newest DONE ended at 1795544728, oldest at 1795544721 (list-backups end_time_timestamp).
        #expect(values(early, Metric.lastBackup) == [["pg"]: 72])
        #expect(values(early, Metric.firstBackup) == [["pg"]: 79])
        #expect(values(later, Metric.lastBackup) == [["pg"]: 172])
    }

    @Test func backupTimestampsAreTheEndTimes() throws {
        let families = MetricsBuilder.families(try snapshot(), now: 1795544800)
        #expect(values(families, Metric.lastBackupTimestamp) == [["pg"]: 1795544728])
        #expect(values(families, Metric.firstBackupTimestamp) == [["pg"]: 1795544721])
    }

    @Test func streamingClientsAndLag() throws {
        var snapshot = try snapshot()
        snapshot.replication?["quiet"] = []
        // Two clients with identical labels: the larger lag is exported, once.
        snapshot.replication?["dup"] = [StreamingClient(applicationName: "pg_basebackup", syncState: "async", sentLagBytes: 5, writeLagBytes: 1, flushLagBytes: nil),
                                        StreamingClient(applicationName: "pg_basebackup", syncState: "sync", sentLagBytes: 3, writeLagBytes: 7, flushLagBytes: 2)]
        let families = MetricsBuilder.families(snapshot, now: 0)
        #expect(values(families, Metric.streamingClients) == [["pg"]: 2, ["pg2"]: 2, ["pg3"]: 2, ["quiet"]: 0, ["dup"]: 2])
        #expect(values(families, Metric.streamingClientsBySyncState)[["pg", "async"]] == 2)
        #expect(values(families, Metric.streamingClientsBySyncState)[["dup", "sync"]] == 1)
        #expect(values(families, Metric.clientFlushLag)[["barman_receive_wal", "127.0.0.1", "pg", "barman_new"]] == 96)
        #expect(values(families, Metric.clientSentLag)[["pg_basebackup", "", "dup", ""]] == 5)
        #expect(values(families, Metric.clientWriteLag)[["pg_basebackup", "", "dup", ""]] == 7)
        #expect(values(families, Metric.clientFlushLag)[["pg_basebackup", "", "dup", ""]] == 2)
    }

    @Test func serverWithoutDoneBackupHasNoAgeOrDetails() throws {
        let families = MetricsBuilder.families(try snapshot(), now: 1795544800)
        for metric in [Metric.lastBackup, Metric.firstBackup, Metric.lastBackupTimestamp, Metric.firstBackupTimestamp, Metric.lastBackupCopyTime, Metric.lastBackupThroughput,
                       Metric.lastBackupWALFiles, Metric.lastBackupWALRate] {
            #expect(values(families, metric).keys.map { $0.last } == ["pg"], "\(metric.name)")
        }
    }

    @Test(arguments: ["3.4.0", "3.20.1"])
    func lastBackupDetails(version: String) throws {
        let families = MetricsBuilder.families(try snapshot(version), now: 1795544800)
        let details = try #require(try snapshot(version).details["pg"])
        let copyTimeSeconds = try #require(details.copyTimeSeconds)
        let throughputBytesPerSecond = try #require(details.throughputBytesPerSecond)
        let walFiles = try #require(details.walFiles)
        let walRatePerSecond = try #require(details.walRatePerSecond)
        #expect(values(families, Metric.lastBackupCopyTime) == [["pg"]: copyTimeSeconds])
        #expect(values(families, Metric.lastBackupThroughput) == [["pg"]: throughputBytesPerSecond])
        #expect(values(families, Metric.lastBackupWALFiles) == [["pg"]: walFiles])
        #expect(values(families, Metric.lastBackupWALRate) == [["pg"]: walRatePerSecond])
    }

    @Test func upIsOnePerCheckBarmanRan() throws {
        var snapshot = try snapshot()
        snapshot.checks?["pg2"] = [CheckResult(name: "postgresql", ok: false), CheckResult(name: "wal_archive", ok: false)]
        let up = values(MetricsBuilder.families(snapshot, now: 0), Metric.up)
        #expect(up.count == 22 + 2 + 22)
        #expect(up[["failed_backups", "pg3"]] == 0)
        #expect(up[["failed_backups", "pg"]] == 1)
        #expect(up[["wal_archive", "pg2"]] == 0)
        #expect(up[["wal_archive", "pg"]] == nil)  // never invented
    }

    @Test func vanishedServerVanishes() throws {
        var snapshot = try snapshot()
        snapshot.backups?["pg"] = nil
        snapshot.checks?["pg"] = nil
        snapshot.replication?["pg"] = nil
        let text = TestSupport.exposition(snapshot, now: 1795544800)
        #expect(!text.contains("server=\"pg\""))
        #expect(text.contains("server=\"pg2\""))
    }

    @Test func beforeFirstDataOnlyExporterMetrics() {
        let text = TestSupport.exposition(MetricsSnapshot(version: "1.2.3"), now: 0)
        #expect(text == """
            # HELP barman_exporter_build_info A metric with a constant '1' value labeled by the version of prometheus-barman-exporter.
            # TYPE barman_exporter_build_info gauge
            barman_exporter_build_info{version="1.2.3"} 1

            """)
    }

    @Test func zeroServersGiveNoServerMetrics() throws {
        var snapshot = MetricsSnapshot(version: "1.2.3")
        snapshot.backups = try BarmanDecoding.backupList(try TestSupport.fixture("3.4.0", "empty-list-backups-all"))
        snapshot.checks = try BarmanDecoding.checks(try TestSupport.fixture("3.4.0", "empty-check-all"))
        snapshot.lastRefreshMilliseconds = 3
        let text = TestSupport.exposition(snapshot, now: 0)
        #expect(!text.contains("server="))
        #expect(text.contains("barman_metrics_update 3\n"))
    }
}

@Suite("Text exposition")
struct RenderingTests {
    /// The whole exposition of the mock integration's data, scraped at a fixed time.
    @Test func goldenMockExposition() async throws {
        let store = SnapshotStore(MetricsSnapshot(version: "0.0.0-test"))
        let refresher = Refresher(runner: MockBarman(), settings: RefreshSettings(cacheTTL: .seconds(50), checksCacheTTL: .seconds(50), refreshInterval: .seconds(60)),
                                  store: store, logger: Logger(level: .error))
        await refresher.refreshCycle()
        var snapshot = store.snapshot
        // Durations and times of this run vary; the golden file pins everything barman said.
        snapshot.health = [:]
        snapshot.lastRefreshMilliseconds = 5
        var text = TestSupport.exposition(snapshot, now: 1795580000)
        // A backup's start is its id read in local time: the same in every zone only as that
        // reading, so the golden file names it (LOCALTIME(id)) instead of a number.
        let running = try #require(BarmanTime.backupStart(id: "20261125T020001"))
        #expect(text.contains(#"barman_backup_in_progress_start_timestamp_seconds{server="pg-main"} "# + TextRenderer.formatValue(Double(running)) + "\n"))
        for (_, backups) in snapshot.backups ?? [:] {
            for backup in backups {
                guard let start = BarmanTime.backupStart(id: backup.id) else { continue }
                text = text.replacingOccurrences("} " + TextRenderer.formatValue(Double(start)) + "\n", "} LOCALTIME(\(backup.id))\n")
            }
        }
        let golden = try? TestSupport.text("Tests/ExporterTests/Golden/mock.prom")
        if text != golden {
            // Leaves the new output next to the golden file for review (git-ignored).
            try TestSupport.write(text, to: TestSupport.packageRoot + "/Tests/ExporterTests/Golden/mock.prom.actual")
        }
        #expect(text == golden)
    }

    @Test func labelValuesAreEscaped() {
        var snapshot = MetricsSnapshot(version: "1")
        snapshot.backups = ["a\"b\\c\nd é": []]
        let text = TestSupport.exposition(snapshot, now: 0)
        #expect(text.contains(#"barman_backups_total{server="a\"b\\c\nd é"} 0"#))
    }

    @Test func helpIsEscaped() {
        var out: [UInt8] = []
        TextRenderer.appendEscaped("a\\b\n\"c\"", escapeQuotes: false, to: &out)
        #expect(String(decoding: out, as: UTF8.self) == #"a\\b\n"c""#)
    }

    @Test func numbersRoundTrip() {
        for value in [0, 1, -1, 0.1, 0.30000000000000004, 4664618.514829783, 1e15, 1e16, 123456789012, 1.7976931348623157e308, Double.leastNonzeroMagnitude] {
            let text = TextRenderer.formatValue(value)
            #expect(Double(text) == value, "\(text)")
        }
        #expect(TextRenderer.formatValue(53674590) == "53674590")
        #expect(TextRenderer.formatValue(.nan) == "NaN")
        #expect(TextRenderer.formatValue(.infinity) == "+Inf")
        #expect(TextRenderer.formatValue(-.infinity) == "-Inf")
    }

    /// The linear-time sort orders series exactly as comparing whole label arrays does.
    @Test func rankSortEqualsComparingLabelArrays() {
        var generator = SystemRandomNumberGenerator()
        let pool = ["pg", "pg10", "pg2", "a", "B", "10", "2", "02", "e\u{301}", "\u{E9}", "", "x y", "ü"]
        for _ in 0..<200 {
            let width = Int.random(in: 1...3, using: &generator)
            let samples = (0..<Int.random(in: 0...60, using: &generator)).map { value in
                Sample((0..<width).map { _ in pool.randomElement(using: &generator) ?? "" }, Double(value))
            }
            let reference = samples.sorted { LabelOrder.lessKeys($0.labelValues.map(LabelOrder.Key.init), $1.labelValues.map(LabelOrder.Key.init)) }
            let sorted = LabelOrder.sorted(samples)
            #expect(sorted.map { $0.labelValues.map { Array($0.utf8) } } == reference.map { $0.labelValues.map { Array($0.utf8) } })
            #expect(sorted.map(\.value).sorted() == samples.map(\.value).sorted())
        }
    }

    @Test func seriesSortNumerically() {
        var snapshot = MetricsSnapshot(version: "1")
        snapshot.backups = ["s": (0..<12).map { BackupSummary(id: "\($0)", status: "DONE", endTime: Int64(100 - $0), sizeBytes: Double($0), walSizeBytes: 0) }]
        let text = TestSupport.exposition(snapshot, now: 200)
        let numbers = text.split(separator: "\n").filter { $0.hasPrefix("barman_backup_size{") }.map { $0.split(separator: "\"")[1] }
        #expect(numbers == (0..<12).map { Substring(String($0)) })
    }
}

@Suite("Documentation")
struct DocumentationTests {
    /// docs/metrics.md must describe every metric with its exact type, labels and HELP text.
    @Test func metricsReferenceMatchesDefinitions() throws {
        let docs = try TestSupport.text("docs/metrics.md")
        for metric in Metric.all {
            #expect(docs.contains("### `\(metric.name)`"), "\(metric.name) has no section")
            #expect(docs.contains("HELP: `\(metric.help)`"), "\(metric.name) HELP differs")
            let labels = metric.labels.isEmpty ? "none" : metric.labels.map { "`\($0)`" }.joined(separator: ", ")
            #expect(docs.contains("Type: \(metric.type.rawValue). Labels: \(labels)."), "\(metric.name) type/labels differ")
        }
    }

    /// `Metric.all` (what the docs are checked against) is derived from the collectors'
    /// `metrics`: a family a collector emits without declaring it would escape the check.
    @Test func everyServedFamilyIsDeclaredByTheCollectorThatEmitsIt() async throws {
        let store = SnapshotStore(MetricsSnapshot(version: "test"))
        let refresher = Refresher(runner: MockBarman(), settings: RefreshSettings(cacheTTL: .zero, checksCacheTTL: .zero, refreshInterval: .seconds(60)),
                                  store: store, logger: Logger(level: .error))
        await refresher.refreshCycle()
        let process = try #require(ProcessStatistics.current())
        let built = MetricsBuilder.build(store.snapshot, Scrape(now: 1795580000, process: process))
        #expect(built.undeclared.isEmpty, "emitted but not declared: \(built.undeclared)")
        // The mock exercises every family: nothing declared goes unserved.
        #expect(Set(built.build().map(\.definition.name)) == Set(Metric.all.map(\.name)))
        #expect(Set(Metric.all.map(\.name)).count == Metric.all.count, "a family declared twice")

        // And the check does catch one: a collector that emits a family it did not declare.
        var families = FamilyBuilder()
        families.declared = [Metric.up.name]
        families.add(Metric.lastBackup, ["pg"], 1)
        #expect(families.undeclared == [Metric.lastBackup.name])
    }

    @Test func debianChangelogHasTheBuildVersion() throws {
        let firstLine = try TestSupport.text("debian/changelog").split(separator: "\n").first ?? ""
        #expect(firstLine.hasPrefix("prometheus-barman-exporter (\(BuildInfo.version)-"))
    }

    /// The docs' key table is exactly the one the loader uses: same keys, order, types,
    /// defaults and meanings.
    /// Every flag and key is in `--help`, the man page, docs/configuration.md and the README.
    @Test func everyFlagAndKeyIsDocumentedEverywhere() throws {
        let manPage = try TestSupport.text("debian/prometheus-barman-exporter.1").replacing("\\-", with: "-")
        let places = [("--help", CommandLineOptions.usage), ("the man page", manPage),
                      ("docs/configuration.md", try TestSupport.text("docs/configuration.md")), ("README.md", try TestSupport.text("README.md"))]
        for (place, text) in places {
            for flag in CommandLineOptions.flags {
                #expect(text.contains(flag), "\(flag) is not in \(place)")
            }
            guard place != "--help" else { continue }
            for key in ConfigKey.all {
                #expect(text.contains(key.name), "\(key.name) is not in \(place)")
            }
        }
    }

    @Test func configurationReferenceIsTheKeyTable() throws {
        let docs = try TestSupport.text("docs/configuration.md")
        // The key table's rows (the command line table's start with a dash).
        let rows = docs.split(separator: "\n").filter { $0.hasPrefix("| `") && !$0.hasPrefix("| `-") }.map(String.init)
        let expected = ConfigKey.all.map { key in
            let defaultCell = key.defaultText == "none" ? "none" : "`\(key.defaultText)`"
            return "| `\(key.name)` | \(key.typeDescription) | \(defaultCell) | \(key.summary) |"
        }
        #expect(rows == expected)
    }
}

@Suite("Process metrics")
struct ProcessMetricsTests {
    /// This test process's own figures, as /proc and getrlimit give them.
    @Test func theProcessFiguresAreThisProcesss() throws {
        let process = try #require(ProcessStatistics.current())
        var limit = rlimit()
        #expect(getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0)
        #expect(process.maxFileDescriptors == Double(limit.rlim_cur))
        // stdin, stdout, stderr at least, and never more than the limit.
        #expect(process.openFileDescriptors >= 3 && process.openFileDescriptors <= process.maxFileDescriptors)
        #expect(process.residentBytes > 1_000_000 && process.virtualBytes >= process.residentBytes)
        #expect(process.cpuSeconds > 0)
        // Started before now, and after the machine booted a while ago (within a day here).
        let now = WallClock.nowSeconds()
        #expect(process.startTimeSeconds <= now + 1 && process.startTimeSeconds > now - 86_400 * 365)
        // CPU time only grows.
        var spin = 0.0
        for index in 0..<3_000_000 { spin += Double(index).squareRoot() }
        #expect(spin > 0)
        let later = try #require(ProcessStatistics.current())
        #expect(later.cpuSeconds >= process.cpuSeconds)
    }

    @Test func theDaemonServesThemTheOnceOutputDoesNot() {
        let process = ProcessStatistics(cpuSeconds: 1.5, residentBytes: 12_000_000, virtualBytes: 90_000_000, openFileDescriptors: 9,
                                        maxFileDescriptors: 1024, startTimeSeconds: 1795600000)
        let snapshot = MetricsSnapshot(version: "1")
        let served = TextRenderer.render(MetricsBuilder.families(snapshot, now: 1795600100, process: process))
        let text = String(decoding: served, as: UTF8.self)
        for line in ["process_cpu_seconds_total 1.5", "process_resident_memory_bytes 12000000", "process_virtual_memory_bytes 90000000",
                     "process_open_fds 9", "process_max_fds 1024", "process_start_time_seconds 1795600000",
                     "# TYPE process_cpu_seconds_total counter"] {
            #expect(text.contains(line + "\n"), "\(line)")
        }
        #expect(!String(decoding: TextRenderer.render(MetricsBuilder.families(snapshot, now: 1795600100)), as: UTF8.self).contains("process_"))
    }
}
