import Synchronization
import Platform
import Exposition
import Configuration

/// `barman show-servers all`: each server's state in barman's configuration, where its WAL
/// catalog is, its `minimum_redundancy`, and with `archiver = on` PostgreSQL's archiver statistics.
///
/// It changes rarely and costs a PostgreSQL connection per server, so it has its own TTL
/// (`servers_cache_ttl`); it opens replication connections (see `ReplicationStatusCollector`).
public final class ShowServersCollector: Collector {
    public static let answer = AnswerKey<[ServerName: ServerInfo]>("show-servers")
    static let command = BarmanCommand("show-servers", ["all"])

    /// Values refused (not what barman or PostgreSQL can report) already logged: once each.
    private let loggedRefusals = Mutex<Set<String>>([])

    public init() {}

    public var name: String { "show-servers" }
    public var schedule: Schedule { Schedule(.afterTTL { $0.serversCacheTTL }) }

    public var metrics: [MetricDefinition] {
        [Metric.serverActive, Metric.serverDisabled, Metric.serverPassiveNode,
         Metric.archiverFailures, Metric.archiverLastFailureTimestamp, Metric.archiverLastArchivedTimestamp]
    }

    public func collect(_ context: CollectContext) async {
        let servers = await context.run(Self.command, decode: BarmanDecoding.serverInfo) { servers, snapshot in
            snapshot.servers = servers
            // A server barman no longer knows has no WAL catalog to report.
            snapshot.lastArchivedWAL = snapshot.lastArchivedWAL.filter { servers[$0.key] != nil }
        }
        for (server, info) in servers ?? [:] {
            for refusal in info.refused where loggedRefusals.withLock({ $0.insert(server.text + "\u{0}" + refusal).inserted }) {
                context.logger.warn("barman show-servers printed a value it cannot have; it is not served", ["server": server.text, "value": refusal])
            }
        }
    }

    public func emit(_ snapshot: MetricsSnapshot, _ scrape: Scrape, into families: inout FamilyBuilder) {
        for (name, info) in snapshot.servers ?? [:] {
            let server = [name.text]
            families.add(Metric.serverActive, server, info.active.map { $0 ? 1 : 0 })
            families.add(Metric.serverDisabled, server, info.disabled.map { $0 ? 1 : 0 })
            families.add(Metric.serverPassiveNode, server, info.passiveNode.map { $0 ? 1 : 0 })
            if let archiver = info.archiver {
                families.add(Metric.archiverFailures, server, archiver.failedCount)
                families.add(Metric.archiverLastFailureTimestamp, server, archiver.lastFailedTime)
                families.add(Metric.archiverLastArchivedTimestamp, server, archiver.lastArchivedTime)
            }
        }
    }
}

extension MetricsSnapshot {
    /// Server -> what `show-servers all` says of it; nil until the first usable answer.
    public var servers: [ServerName: ServerInfo]? {
        get { self[ShowServersCollector.answer] }
        set { self[ShowServersCollector.answer] = newValue }
    }
}

extension Metric {
    public static let serverActive = MetricDefinition(
        "barman_server_active", .gauge,
        "1 when the server is active in barman's configuration (active = true), else 0 (barman show-servers).", labels: ["server"])
    public static let serverDisabled = MetricDefinition(
        "barman_server_disabled", .gauge,
        "1 when barman has disabled the server because of a configuration error, else 0 (barman show-servers).", labels: ["server"])
    public static let serverPassiveNode = MetricDefinition(
        "barman_server_passive_node", .gauge,
        "1 when the server is a passive node that copies backups from another barman (primary_ssh_command), else 0 (barman show-servers).",
        labels: ["server"])
    public static let archiverFailures = MetricDefinition(
        "barman_archiver_failures_total", .counter,
        "Failed WAL archive attempts of PostgreSQL's archiver since its statistics were reset (pg_stat_archiver.failed_count via barman show-servers; servers with archiver = on).",
        labels: ["server"])
    public static let archiverLastFailureTimestamp = MetricDefinition(
        "barman_archiver_last_failure_timestamp_seconds", .gauge,
        "Unix time of the last failed WAL archive attempt of PostgreSQL's archiver (pg_stat_archiver.last_failed_time via barman show-servers).",
        labels: ["server"])
    public static let archiverLastArchivedTimestamp = MetricDefinition(
        "barman_archiver_last_archived_timestamp_seconds", .gauge,
        "Unix time PostgreSQL's archiver last archived a WAL file successfully (pg_stat_archiver.last_archived_time via barman show-servers).",
        labels: ["server"])

}

/// Where barman keeps a server's WAL catalog (`xlog.db`: one line per archived WAL file).
public struct WALCatalogLocation: Sendable, Equatable {
    /// The catalog barman uses.
    public var path: String
    /// The pre-3.13 catalog that barman >= 3.13 migrates to `path` the first time it needs it;
    /// read while `path` does not exist yet.
    public var legacyPath: String?

    public init(path: String, legacyPath: String? = nil) {
        self.path = path
        self.legacyPath = legacyPath
    }
}

/// PostgreSQL's own archiver statistics (`pg_stat_archiver`), which barman reports for servers
/// with `archiver = on` whose PostgreSQL it can reach.
public struct ArchiverStatistics: Sendable, Equatable {
    /// Failed `archive_command` runs since the statistics were last reset.
    public var failedCount: Double
    /// Unix time of the last failure; nil when there was none.
    public var lastFailedTime: Double?
    /// Unix time PostgreSQL last archived a WAL file successfully; nil when it never did.
    public var lastArchivedTime: Double?

    public init(failedCount: Double, lastFailedTime: Double? = nil, lastArchivedTime: Double? = nil) {
        self.failedCount = failedCount
        self.lastFailedTime = lastFailedTime
        self.lastArchivedTime = lastArchivedTime
    }
}

/// What `show-servers` says about one server that the metrics use. Each field is nil when
/// barman did not print it.
public struct ServerInfo: Sendable, Equatable {
    public var active: Bool?
    public var disabled: Bool?
    /// A passive node copies backups from another barman (`primary_ssh_command`).
    public var passiveNode: Bool?
    public var minimumRedundancy: Int?
    public var walCatalog: WALCatalogLocation?
    public var archiver: ArchiverStatistics?
    /// Fields whose values barman or PostgreSQL cannot have reported (a negative count, a time
    /// in year 1), left out of the above: `field value` each, for the log.
    public var refused: [String] = []

    public init(active: Bool? = nil, disabled: Bool? = nil, passiveNode: Bool? = nil, minimumRedundancy: Int? = nil,
                walCatalog: WALCatalogLocation? = nil, archiver: ArchiverStatistics? = nil) {
        self.active = active
        self.disabled = disabled
        self.passiveNode = passiveNode
        self.minimumRedundancy = minimumRedundancy
        self.walCatalog = walCatalog
        self.archiver = archiver
    }
}

extension BarmanDecoding {
    /// `show-servers all`: about 130 (3.4) to 170 (3.20) keys per server, of which a few are
    /// kept. Read as a stream, like `list-backups`, so 200 servers never become a tree.
    public static func serverInfo(_ output: CommandOutput) throws(DecodeFailure) -> [ServerName: ServerInfo] {
        try streamServers(of: ShowServersCollector.command, output) { server, reader in
            guard reader.peek() == UInt8(ascii: "{") else {
                try reader.skipValue()
                throw DecodeFailure("barman \(ShowServersCollector.command): server '\(server)': expected an object")
            }
            var fields: [String: JSONValue] = [:]
            try reader.beginObject()
            while let key = try reader.nextKey() {
                if keptServerFields.contains(key) {
                    fields[key] = try reader.readValue()
                } else {
                    try reader.skipValue()
                }
            }
            return serverInfo(server: server, fields)
        }
    }

    private static let keptServerFields: Set<String> = [
        "active", "disabled", "passive_node", "minimum_redundancy", "wals_directory", "xlogdb_directory",
        "failed_count", "last_failed_time", "last_archived_time",
    ]

    static func serverInfo(server: String, _ fields: [String: JSONValue]) -> ServerInfo {
        func bool(_ key: String) -> Bool? {
            switch fields[key] {
            case .bool(let value)?: return value
            case .string("True")?: return true
            case .string("False")?: return false
            default: return nil
            }
        }
        var refused: [String] = []
        func time(_ key: String) -> Double? {
            guard case .string(let text)? = fields[key] else { return nil }
            guard let seconds = BarmanTime.parseDateTime(text) else { return nil }
            guard BarmanTime.isPlausible(seconds) else {
                refused.append("\(key) \(text)")
                return nil
            }
            return seconds
        }
        var info = ServerInfo(active: bool("active"), disabled: bool("disabled"), passiveNode: bool("passive_node"),
                              minimumRedundancy: integer(fields["minimum_redundancy"]).flatMap { Int(exactly: $0) })
        let walsDirectory = nonEmptyString(fields["wals_directory"])
        if let xlogdbDirectory = nonEmptyString(fields["xlogdb_directory"]) {
            // barman >= 3.13: `<xlogdb_directory>/<server>-xlog.db` (Server.XLOGDB_NAME).
            info.walCatalog = WALCatalogLocation(path: xlogdbDirectory + "/" + server + "-xlog.db",
                                                 legacyPath: walsDirectory.map { $0 + "/xlog.db" })
        } else if let walsDirectory {
            info.walCatalog = WALCatalogLocation(path: walsDirectory + "/xlog.db")
        }
        // pg_stat_archiver.failed_count is a bigint count; the times are of this century.
        if let failed = number(fields["failed_count"]), !(failed >= 0 && failed < 9_007_199_254_740_992 && failed == failed.rounded()) {
            info.refused.append("failed_count \(failed)")
        } else if let failed = number(fields["failed_count"]) {
            info.archiver = ArchiverStatistics(failedCount: failed, lastFailedTime: time("last_failed_time"),
                                               lastArchivedTime: time("last_archived_time"))
        }
        info.refused += refused
        return info
    }

    private static func nonEmptyString(_ value: JSONValue?) -> String? {
        guard case .string(let text)? = value, !text.isEmpty, text != "None" else { return nil }
        return text
    }
}
