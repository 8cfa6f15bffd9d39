import Platform
import Exposition
import Configuration

/// `barman list-processes SERVER` (barman 3.14 and later): the barman tasks running for each
/// server (backup, cron, receive-wal, archive-wal, sync-backup, sync-wal), from barman's lock files.
///
/// One barman process per server, so it is asked as rarely as `show-servers`
/// (`servers_cache_ttl`); before barman 3.14, which has no such command, it is never run.
public struct RunningProcessesCollector: Collector {
    public static let answer = AnswerKey<[ServerName: [String: Int]]>("list-processes")
    /// The tasks barman's ProcessManager knows: each has a series, 0 when not running.
    static let tasks = ["archive-wal", "backup", "cron", "receive-wal", "sync-backup", "sync-wal"]

    public init() {}

    public var name: String { "list-processes" }
    /// Once barman's version and the servers are known.
    public var schedule: Schedule { Schedule(.afterTTL { $0.serversCacheTTL }, afterFirstAnswerOf: ["version", "list-backups"]) }
    public var metrics: [MetricDefinition] { [Metric.runningProcesses] }

    static func command(server: String) -> BarmanCommand {
        BarmanCommand("list-processes", [server])
    }

    /// Whether barman `version` (`3.14.0`, `3.20.1`...) has `list-processes`.
    static func isSupported(version: String?) -> Bool {
        guard let version else { return false }
        let parts = version.split(separator: ".").map { Int($0) }
        guard parts.count >= 2, let major = parts[0], let minor = parts[1] else { return false }
        return major > 3 || (major == 3 && minor >= 14)
    }

    public func collect(_ context: CollectContext) async {
        let snapshot = context.snapshot
        guard Self.isSupported(version: snapshot.barmanVersion) else {
            if snapshot.runningProcesses != nil { await context.publish { $0.runningProcesses = nil } }
            return
        }
        let servers = (snapshot.backups ?? [:]).keys.sorted { $0.text < $1.text }
        await context.publish { snapshot in
            snapshot.runningProcesses = snapshot.runningProcesses?.filter { servers.contains($0.key) }
        }
        await context.forEach(servers) { server in
            let serverText = server.text
            await context.run(Self.command(server: serverText), decode: { output throws(DecodeFailure) in
                try BarmanDecoding.processes(output, server: serverText)
            }, publish: { counts, snapshot in
                snapshot.runningProcesses = (snapshot.runningProcesses ?? [:]).merging([server: counts]) { $1 }
            })
        }
    }

    public func emit(_ snapshot: MetricsSnapshot, _ scrape: Scrape, into families: inout FamilyBuilder) {
        for (name, counts) in snapshot.runningProcesses ?? [:] {
            for task in Set(Self.tasks).union(counts.keys) {
                families.add(Metric.runningProcesses, [name.text, task], Double(counts[task] ?? 0))
            }
        }
    }
}

extension MetricsSnapshot {
    /// Server -> task -> barman processes running it (`list-processes`); nil before barman 3.14.
    public var runningProcesses: [ServerName: [String: Int]]? {
        get { self[RunningProcessesCollector.answer] }
        set { self[RunningProcessesCollector.answer] = newValue }
    }
}

extension Metric {
    public static let runningProcesses = MetricDefinition(
        "barman_running_processes", .gauge,
        "barman processes running for the server per task (backup, cron, receive-wal, archive-wal, sync-backup, sync-wal), from barman list-processes (barman 3.14 and later). Cached for servers_cache_ttl (600 s by default).",
        labels: ["server", "task"])
}

extension BarmanDecoding {
    /// `list-processes SERVER`: `{"pg": [{"pid": 123, "name": "receive-wal"}, ...]}`; counts per task.
    public static func processes(_ output: CommandOutput, server: String) throws(DecodeFailure) -> [String: Int] {
        let command = RunningProcessesCollector.command(server: server)
        let context = "barman \(command): server '\(server)'"
        guard let value = try servers(of: command, output)[ServerName(server)] else {
            throw DecodeFailure("\(context): server missing from the output")
        }
        guard case .array(let entries) = value else { throw DecodeFailure("\(context): expected a list of processes") }
        var counts: [String: Int] = [:]
        for entry in entries {
            guard case .string(let task)? = entry["name"], !task.isEmpty, task.utf8.count <= 64, integer(entry["pid"]).map({ $0 > 0 }) == true else {
                throw DecodeFailure("\(context): a process without a task name and pid")
            }
            counts[task, default: 0] += 1
        }
        return counts
    }
}
