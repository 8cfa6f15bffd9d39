@testable import Barman
@testable import Configuration
@testable import Exporter
@testable import Exposition
@testable import Platform
import Synchronization
import Testing

/// Where a test puts barman's answers, keyed like `Fixtures/fake-barman.sh`'s files:
/// `list-backups`, `check`, `replication-status`, `show-backup-SERVER-ID`.
protocol BarmanAnswers {
    func answer(_ name: String, _ json: String) throws
}

extension BarmanAnswers {
    /// Answers from a real barman capture (servers pg, pg2, pg3).
    func answerFromFixtures(_ version: String) throws {
        let fixtures = "Tests/ExporterTests/Fixtures/\(version)"
        try answer("list-backups", try TestSupport.text("\(fixtures)/list-backups-all.stdout"))
        try answer("check", try TestSupport.text("\(fixtures)/check-all.stdout"))
        try answer("replication-status", try TestSupport.text("\(fixtures)/replication-status-all.stdout"))
        let listing = try BarmanDecoding.backupList(CommandOutput(stdout: try TestSupport.read("\(fixtures)/list-backups-all.stdout")))
        let newest = try #require(listing["pg"]?.first?.id)
        try answer("show-backup-pg-\(newest)", try TestSupport.text("\(fixtures)/show-backup-pg-latest.stdout"))
        // The oldest DONE backup, for its first WAL (the catalog's continuity is counted from it).
        let oldest = try #require(listing["pg"]?.last { $0.isDone }?.id)
        try answer("show-backup-pg-\(oldest)", try TestSupport.text("\(fixtures)/show-backup-pg-oldest.stdout"))
        // show-servers and --version come from the end-to-end test's capture of the same JSON
        // shapes (3.19.1 prints what 3.20.1 does); its servers are named pg-a, pg-b and pg-c.
        let captured = "Tests/ExporterTests/Fixtures/e2e/\(version == "3.4.0" ? "3.4.0" : "3.19.1")"
        try answer("show-servers", try TestSupport.text("\(captured)/show-servers-all.stdout"))
        try answer("version", try TestSupport.text("\(captured)/version.stdout"))
        // barman >= 3.14's list-processes with nothing running, as it prints it.
        for server in listing.keys { try answer("list-processes-\(server.text)", "{\"\(server.text)\": []}") }
    }
}

/// An in-memory barman for tests of what runs when: answers by command, records every call, and
/// can hold `check` until released. The process runner has its own tests (ProcessRunnerTests).
final class ScriptedBarman: BarmanRunner, BarmanAnswers {
    private struct State {
        var answers: [String: String] = [:]
        var exitStatuses: [String: Int32] = [:]
        var stderr = ""
        var invocations: [String] = []
        /// Commands of these kinds wait until released (or cancelled).
        var held: Set<String> = []
        /// Every command waits until released (or cancelled), like a hung barman.
        var allHeld = false
        var cancelled = false
        var delay: Duration = .zero
        var runningNow = 0
        var mostAtOnce = 0
        var runningKinds: [String] = []
        /// Kinds of command that were running at the same moment, as "a+b" (sorted).
        var overlaps: Set<String> = []
    }
    private let state = Mutex(State())
    private let configFile: String

    init(configFile: String = "/etc/barman.conf") {
        self.configFile = configFile
    }

    func answer(_ name: String, _ json: String) {
        state.withLock { $0.answers[name] = json }
    }

    /// The answers prepared so far, by name.
    var answers: [String: String] { state.withLock { $0.answers } }

    /// Exit status of every run of `command` (a sub-command such as `check`).
    func exitStatus(_ command: String, _ status: Int32) {
        state.withLock { $0.exitStatuses[command] = status }
    }

    func stderr(_ text: String) {
        state.withLock { $0.stderr = text }
    }

    func hold(_ kind: String) { _ = state.withLock { $0.held.insert(kind) } }
    func release(_ kind: String) { _ = state.withLock { $0.held.remove(kind) } }
    func holdCheck() { hold("check") }
    func releaseCheck() { release("check") }
    func holdEverything() { state.withLock { $0.allHeld = true } }

    /// How long each run takes.
    func delay(_ duration: Duration) { state.withLock { $0.delay = duration } }

    /// The most runs that were in progress at the same moment.
    var mostAtOnce: Int { state.withLock { $0.mostAtOnce } }
    var overlaps: Set<String> { state.withLock { $0.overlaps } }
    var wasCancelled: Bool { state.withLock { $0.cancelled } }

    /// Like the process runner: held runs end as cancelled.
    func cancelRunning() { state.withLock { $0.cancelled = true } }

    /// Every call so far, as its arguments after `-f json`, in order.
    var invocations: [String] { state.withLock { $0.invocations } }

    func argv(for command: BarmanCommand) -> [String] {
        ["barman", "-c", configFile, "-f", "json"] + command.arguments
    }

    func run(_ command: BarmanCommand) async throws(CommandFailure) -> CommandOutput {
        let delay = state.withLock { state in
            state.invocations.append(command.arguments.joined(separator: " "))
            state.runningNow += 1
            state.mostAtOnce = max(state.mostAtOnce, state.runningNow)
            for other in state.runningKinds { state.overlaps.insert([other, command.kind].sorted().joined(separator: "+")) }
            state.runningKinds.append(command.kind)
            return state.delay
        }
        defer {
            state.withLock { state in
                state.runningNow -= 1
                if let index = state.runningKinds.firstIndex(of: command.kind) { state.runningKinds.remove(at: index) }
            }
        }
        if delay > .zero { try? await Task.sleep(for: delay) }
        while state.withLock({ !$0.cancelled && ($0.allHeld || $0.held.contains(command.kind)) }) {
            try? await Task.sleep(for: .milliseconds(5))
        }
        if state.withLock({ $0.cancelled }) {
            throw CommandFailure("cancelled", reason: .cancelled)
        }
        let key: String
        if command.kind == "show-backup" || command.kind == "list-processes" {
            key = command.kind + "-" + command.arguments.dropFirst().filter { $0 != "--" }.joined(separator: "-")
        } else {
            key = command.kind
        }
        return state.withLock { state in
            guard let json = state.answers[key] else {
                return CommandOutput(stdout: Array(#"{"_ERROR": ["no answer prepared"]}"#.utf8), exitStatus: 1)
            }
            return CommandOutput(stdout: Array(json.utf8), stderr: Array(state.stderr.utf8), exitStatus: state.exitStatuses[command.kind] ?? 0)
        }
    }
}
