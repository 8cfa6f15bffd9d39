@testable import Barman
@testable import Configuration
@testable import Exporter
@testable import Exposition
@testable import Platform
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// What barman, a scraper or the filesystem may throw at the exporter: each case must be logged,
/// keep the last good data, and never crash.
@Suite("Hostile input")
struct HostileInputTests {
    /// barman's answers through the real process runner: the fake barman script
    /// (Fixtures/fake-barman.sh) serves files from a directory removed when the harness goes.
    final class Harness: BarmanAnswers {
        let directory: String
        let store = SnapshotStore(MetricsSnapshot(version: "test"))
        let refresher: Refresher

        init() throws {
            directory = try TestSupport.temporaryDirectory()
            let runner = ProcessBarmanRunner(executable: TestSupport.packageRoot + "/Tests/ExporterTests/Fixtures/fake-barman.sh",
                                             configFile: directory, timeout: .seconds(30))
            refresher = Refresher(runner: runner,
                                  settings: RefreshSettings(cacheTTL: .zero, checksCacheTTL: .zero, refreshInterval: .seconds(60)),
                                  store: store, logger: Logger(level: .error))
        }

        deinit { TestSupport.removeTree(directory) }

        func answer(_ name: String, _ json: String) throws {
            try TestSupport.write(json, to: "\(directory)/\(name).json")
        }

        func exitStatus(_ command: String, _ status: Int) throws {
            try TestSupport.write("\(status)\n", to: "\(directory)/\(command).rc")
        }
    }

    /// A refresher that first gets good data, then `break` is applied and one more cycle runs.
    func afterGoodData(_ breakIt: (Harness) async throws -> Void) async throws -> (good: MetricsSnapshot, after: MetricsSnapshot) {
        let harness = try Harness()
        try harness.answerFromFixtures("3.4.0")
        await harness.refresher.refreshCycle()
        let good = harness.store.snapshot
        try #require(good.backups?.count == 3)
        try await breakIt(harness)
        await harness.refresher.refreshCycle()
        return (good, harness.store.snapshot)
    }

    static let badOutputs: [(String, [UInt8])] = [
        ("truncated JSON", Array(#"{"pg": [{"backup_id": "20261124T182524", "status": "DO"#.utf8)),
        ("JSON of the wrong shape", Array(#"{"pg": {"backups": 3}}"#.utf8)),
        ("a JSON list", Array("[]".utf8)),
        ("binary junk", (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 7) }),
        ("non-UTF-8 in a server name", Array(#"{"p"#.utf8) + [0xFF, 0xFE] + Array(#"": []}"#.utf8)),
        ("deep nesting", Array(String(repeating: "[", count: 100_000).utf8)),
        ("an _ERROR entry", Array(#"{"_ERROR": ["Unknown server 'x'"]}"#.utf8)),
        ("nothing", []),
    ]

    @Test(arguments: badOutputs)
    func badListBackupsOutputKeepsLastGoodData(name: String, bytes: [UInt8]) async throws {
        let (good, after) = try await afterGoodData { harness in
            try TestSupport.write(String(decoding: [], as: UTF8.self), to: harness.directory + "/list-backups.json")
            let fd = open(harness.directory + "/list-backups.json", O_WRONLY | O_TRUNC)
            _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            close(fd)
        }
        #expect(after.backups == good.backups, "\(name)")
        #expect(after.health["list-backups"]?.lastRunSucceeded == false, "\(name)")
        #expect(after.health["list-backups"]?.failures == 1, "\(name)")
    }

    @Test func nonZeroExitKeepsLastGoodData() async throws {
        let (good, after) = try await afterGoodData { try $0.exitStatus("list-backups", 1) }
        #expect(after.backups == good.backups)
        #expect(after.health["list-backups"]?.failures == 1)
    }

    @Test func missingOrNotExecutableBarman() async throws {
        for path in ["/nonexistent/barman", "/etc/hostname"] {
            let (good, after) = try await afterGoodData { harness in
                await harness.refresher.reconfigure(
                    runner: ProcessBarmanRunner(executable: path, configFile: harness.directory, timeout: .seconds(5)),
                    settings: RefreshSettings(cacheTTL: .zero, checksCacheTTL: .zero, refreshInterval: .seconds(60)), sourceChanged: false)
            }
            #expect(after.backups == good.backups)
            #expect(after.checks == good.checks)
            #expect(after.health["list-backups"]?.failures == 1)
            #expect(after.health["check"]?.failures == 1)
        }
    }

    @Test func gigabytesOfOutputAreCut() async throws {
        let (good, after) = try await afterGoodData { harness in
            let script = harness.directory + "/endless-barman"
            try TestSupport.write("#!/bin/sh\nexec yes '{\"pg\": [], \"pg2\": [], \"pg3\": []}'\n", to: script, mode: 0o755)
            var runner = ProcessBarmanRunner(executable: script, configFile: nil, timeout: .seconds(30))
            runner.stdoutLimit = 8 << 20
            await harness.refresher.reconfigure(runner: runner, settings: RefreshSettings(cacheTTL: .zero, checksCacheTTL: .zero, refreshInterval: .seconds(60)),
                                                sourceChanged: false)
        }
        #expect(after.backups == good.backups)
        #expect(after.health["list-backups"]?.failures == 1)
    }

    @Test func hangingBarmanIsKilledAtTheTimeoutWhileScrapesStayFast() async throws {
        let harness = try Harness()
        try harness.answerFromFixtures("3.4.0")
        await harness.refresher.refreshCycle()
        let script = harness.directory + "/hanging-barman"
        let started = harness.directory + "/started"
        // Records its pid, then hangs (exec keeps the pid: the sleep is barman).
        try TestSupport.write("#!/bin/sh\necho $$ >> '\(started)'\nexec sleep 600\n", to: script, mode: 0o755)
        var runner = ProcessBarmanRunner(executable: script, configFile: nil, timeout: .seconds(2))
        runner.killGracePeriod = .milliseconds(200)
        await harness.refresher.reconfigure(runner: runner, settings: RefreshSettings(cacheTTL: .zero, checksCacheTTL: .zero, refreshInterval: .seconds(60)),
                                            sourceChanged: false)
        let clock = ContinuousClock()
        let cycleStart = clock.now
        let refresher = harness.refresher
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await refresher.refreshCycle() }
            try await TestSupport.waitUntil("barman hangs") { startedPIDs(started).count >= 2 }
            // While barman hangs, a scrape is answered from the last snapshot, and it is answered
            // while the refresh still waits for barman: it never waited for it.
            let routes = Routes(store: harness.store, now: { 1795544800 })
            let response = routes.handle(HTTPRequest(method: "GET", path: "/metrics"))
            #expect(response.status == 200)
            #expect(String(decoding: response.body, as: UTF8.self).contains("barman_backups_total{server=\"pg\"} 2\n"))
            #expect(await refresher.isRunning("list-backups"), "the scrape was answered only after barman's run ended")
            try await group.waitForAll()
        }
        // The refresh ended because barman was killed at the timeout, not because it answered.
        #expect(clock.now - cycleStart >= .seconds(2))
        let pids = startedPIDs(started)
        #expect(!pids.isEmpty && pids.allSatisfy { kill($0, 0) != 0 }, "a hanging barman is still running")
        let after = harness.store.snapshot
        #expect(after.health["list-backups"]?.lastRunSucceeded == false)
        #expect(after.health["check"]?.lastRunSucceeded == false)
        #expect(after.backups?.count == 3)
    }

    func startedPIDs(_ path: String) -> [pid_t] {
        let text = String(decoding: (try? FileReader.readAll(path: path, limit: 1 << 16)) ?? [], as: UTF8.self)
        return text.split(separator: "\n").compactMap { pid_t($0) }
    }

    /// Names barman could report (a server or check named by an operator), through decoding,
    /// rendering, and back through a parser of the text format.
    @Test func oddNamesRoundTripThroughTheExposition() throws {
        let names = ["with \"quotes\"", #"back\slash"#, "new\nline", "spa ce", "ünïcødé-サーバ", "tab\there", "{brace}=,"]
        var json = "{"
        for (index, name) in names.enumerated() {
            let escaped = name.replacingOccurrences("\\", "\\\\").replacingOccurrences("\"", "\\\"").replacingOccurrences("\n", "\\n").replacingOccurrences("\t", "\\t")
            json += (index > 0 ? ", " : "") + "\"\(escaped)\": {\"\(escaped)\": {\"hint\": \"\", \"status\": \"OK\"}}"
        }
        json += "}"
        var snapshot = MetricsSnapshot(version: "1")
        snapshot.checks = try BarmanDecoding.checks(CommandOutput(stdout: Array(json.utf8)))
        let text = TestSupport.exposition(snapshot, now: 0)
        let parsed = text.split(separator: "\n").filter { $0.hasPrefix("barman_up{") }.compactMap { ExpositionLine.labels(String($0)) }
        #expect(Set(parsed.map { $0["server"] ?? "" }) == Set(names))
        #expect(parsed.count == names.count)
        #expect(parsed.allSatisfy { $0["server"] == $0["check"] })
    }
}

/// Just enough of the text format to read label values back, unescaping as Prometheus does.
enum ExpositionLine {
    static func labels(_ line: String) -> [String: String]? {
        guard let open = line.firstIndex(of: "{") else { return nil }
        var result: [String: String] = [:]
        var index = line.index(after: open)
        while index < line.endIndex, line[index] != "}" {
            guard let equals = line[index...].firstIndex(of: "=") else { return nil }
            let name = String(line[index..<equals])
            index = line.index(equals, offsetBy: 2)  // skip ="
            var value = ""
            while line[index] != "\"" {
                if line[index] == "\\" {
                    index = line.index(after: index)
                    switch line[index] {
                    case "n": value.append("\n")
                    case "\\": value.append("\\")
                    case "\"": value.append("\"")
                    default: return nil  // invalid escape
                    }
                } else {
                    value.append(line[index])
                }
                index = line.index(after: index)
            }
            result[name] = value
            index = line.index(after: index)
            if index < line.endIndex, line[index] == "," { index = line.index(after: index) }
        }
        return result
    }
}

extension String {
    func replacingOccurrences(_ target: String, _ replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
