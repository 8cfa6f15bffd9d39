import Platform
import Exposition
import Configuration

/// `barman check all`: every check barman runs for every server (`barman_up`).
///
/// Often the slowest command (two PostgreSQL connections per server), with its own TTL
/// (`checks_cache_ttl`). It opens replication connections, which replication-status would count
/// as streaming clients, so the two never overlap (see `ReplicationStatusCollector`).
public struct ChecksCollector: Collector {
    public static let answer = AnswerKey<[ServerName: [CheckResult]]>("check")
    static let command = BarmanCommand("check", ["all"])

    public init() {}

    public var name: String { "check" }
    public var schedule: Schedule { Schedule(.afterTTL { $0.checksCacheTTL }) }
    public var metrics: [MetricDefinition] { [Metric.up] }

    public func collect(_ context: CollectContext) async {
        await context.run(Self.command, decode: BarmanDecoding.checks) { checks, snapshot in
            snapshot.checks = context.selected(checks)
        }
    }

    public func emit(_ snapshot: MetricsSnapshot, _ scrape: Scrape, into families: inout FamilyBuilder) {
        for (name, checks) in snapshot.checks ?? [:] {
            for check in checks {
                families.add(Metric.up, [check.name, name.text], check.ok ? 1 : 0)
            }
        }
    }
}

extension MetricsSnapshot {
    /// Server -> checks (`check all`); nil until the first usable answer.
    public var checks: [ServerName: [CheckResult]]? {
        get { self[ChecksCollector.answer] }
        set { self[ChecksCollector.answer] = newValue }
    }
}

extension Metric {
    public static let up = MetricDefinition(
        "barman_up", .gauge,
        "Barman status checks", labels: ["check", "server"])

}

/// One `barman check` result for one server.
public struct CheckResult: Sendable, Equatable {
    public var name: String
    public var ok: Bool

    public init(name: String, ok: Bool) {
        self.name = name
        self.ok = ok
    }
}

extension BarmanDecoding {
    public static func checks(_ output: CommandOutput) throws(DecodeFailure) -> [ServerName: [CheckResult]] {
        let command = ChecksCollector.command
        var result: [ServerName: [CheckResult]] = [:]
        // Every server has the same few check names: keep one copy of each instead of one per
        // server (200 servers x 22 checks would otherwise keep 4,400 heap strings alive).
        var names = StringPool()
        for (server, value) in try servers(of: command, output) {
            guard case .object(let checks) = value else {
                throw DecodeFailure("barman \(command): server '\(server)': expected an object of checks")
            }
            var results: [CheckResult] = []
            results.reserveCapacity(checks.count)
            for (name, check) in checks {
                let status = try requiredString(check, "status", "barman \(command): server '\(server)': check '\(name)'")
                results.append(CheckResult(name: names.shared(name), ok: status == "OK"))
            }
            result[server] = results.sorted { $0.name < $1.name }
        }
        return result
    }
}
