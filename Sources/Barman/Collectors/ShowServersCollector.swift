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
         Metric.archiverFailures, Metric.archiverLastFailureTimestamp, Metric.archiverLastArchivedTimestamp,
         Metric.replicationSlotActive, Metric.replicationSlotRetainedBytes,
         Metric.lastBackupMaximumAge, Metric.lastWALMaximumAge]
    }

    public func collect(_ context: CollectContext) async {
        let servers = await context.run(Self.command, decode: { output throws(DecodeFailure) in
            context.selected(try BarmanDecoding.serverInfo(output))
        }) { servers, snapshot in
            snapshot.servers = servers
            // A server barman no longer knows (or no longer selected) has no WAL catalog or
            // directories to report.
            snapshot.lastArchivedWAL = snapshot.lastArchivedWAL.filter { servers[$0.key] != nil }
            snapshot.walArchives = snapshot.walArchives.filter { servers[$0.key] != nil }
            snapshot.walDirectories = snapshot.walDirectories.filter { servers[$0.key] != nil }
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
            if let slot = info.replicationSlot {
                let streaming = Self.clients(streamingOn: slot, of: name, in: snapshot)
                families.add(Metric.replicationSlotActive, [name.text, slot.name], (streaming.map { !$0.isEmpty } ?? slot.active) ? 1 : 0)
                families.add(Metric.replicationSlotRetainedBytes, [name.text, slot.name], Self.retainedBytes(slot, streaming, of: name, in: snapshot))
            }
            families.add(Metric.lastBackupMaximumAge, server, info.lastBackupMaximumAge)
            families.add(Metric.lastWALMaximumAge, server, info.lastWALMaximumAge)
        }
    }
}

extension ShowServersCollector {
    /// The clients streaming on the slot as of the last replication-status (every refresh),
    /// which lists each walsender with the slot it uses; nil while it has no answer for the
    /// server, when only show-servers' view (up to servers_cache_ttl old) is left.
    static func clients(streamingOn slot: ReplicationSlot, of server: ServerName, in snapshot: MetricsSnapshot) -> [StreamingClient]? {
        snapshot.replication?[server].map { $0.filter { $0.slot == slot.name } }
    }

    /// PostgreSQL's position (replication-status) minus where the slot holds WAL from. While a
    /// client streams on the slot, PostgreSQL moves the slot's restart_lsn to the flush position
    /// that client reports, so its flush lag in the same replication-status answer is the exact
    /// figure; show-servers' restart_lsn would count every segment streamed since it ran as
    /// retained. An unused slot does not move, so its cached restart_lsn stays exact. Never below
    /// 0 (the two commands run at different moments).
    static func retainedBytes(_ slot: ReplicationSlot, _ streaming: [StreamingClient]?, of server: ServerName, in snapshot: MetricsSnapshot) -> Double? {
        guard let current = snapshot.serverLSN[server] else { return nil }
        if let flushLag = (streaming ?? []).compactMap(\.flushLagBytes).max() { return max(0, flushLag) }
        guard let restart = slot.restartLSN else { return nil }
        return Double(current >= restart ? current - restart : 0)
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
        "1 when the server is active in barman's configuration (active = true), else 0 (barman show-servers). Cached for servers_cache_ttl (600 s by default).", labels: ["server"])
    public static let serverDisabled = MetricDefinition(
        "barman_server_disabled", .gauge,
        "1 when barman has disabled the server because of a configuration error, else 0 (barman show-servers). Cached for servers_cache_ttl (600 s by default).", labels: ["server"])
    public static let serverPassiveNode = MetricDefinition(
        "barman_server_passive_node", .gauge,
        "1 when the server is a passive node that copies backups from another barman (primary_ssh_command), else 0 (barman show-servers). Cached for servers_cache_ttl (600 s by default).",
        labels: ["server"])
    public static let archiverFailures = MetricDefinition(
        "barman_archiver_failures_total", .counter,
        "Failed WAL archive attempts of PostgreSQL's archiver since its statistics were reset (pg_stat_archiver.failed_count via barman show-servers; servers with archiver = on). Cached for servers_cache_ttl (600 s by default).",
        labels: ["server"])
    public static let archiverLastFailureTimestamp = MetricDefinition(
        "barman_archiver_last_failure_timestamp_seconds", .gauge,
        "Unix time of the last failed WAL archive attempt of PostgreSQL's archiver (pg_stat_archiver.last_failed_time via barman show-servers). Cached for servers_cache_ttl (600 s by default).",
        labels: ["server"])
    public static let archiverLastArchivedTimestamp = MetricDefinition(
        "barman_archiver_last_archived_timestamp_seconds", .gauge,
        "Unix time PostgreSQL's archiver last archived a WAL file successfully (pg_stat_archiver.last_archived_time via barman show-servers). Cached for servers_cache_ttl (600 s by default).",
        labels: ["server"])
    public static let replicationSlotActive = MetricDefinition(
        "barman_replication_slot_active", .gauge,
        "1 when a WAL receiver streams on the server's replication slot for barman, else 0: as of the last replication-status (every refresh), or until it has answered for the server, active of the slot in barman show-servers (cached for servers_cache_ttl).",
        labels: ["server", "slot"])
    public static let replicationSlotRetainedBytes = MetricDefinition(
        "barman_replication_slot_retained_bytes", .gauge,
        "Bytes of WAL PostgreSQL keeps for barman's replication slot: the server's current LSN minus the flush LSN of the client streaming on the slot (replication-status), or while none does, minus the slot's restart_lsn (show-servers, cached for servers_cache_ttl).",
        labels: ["server", "slot"])
    public static let lastBackupMaximumAge = MetricDefinition(
        "barman_server_last_backup_maximum_age_seconds", .gauge,
        "barman's last_backup_maximum_age of the server in seconds: the age of the newest backup barman check accepts (barman show-servers; absent when not set). Cached for servers_cache_ttl (600 s by default).",
        labels: ["server"])
    public static let lastWALMaximumAge = MetricDefinition(
        "barman_server_last_wal_maximum_age_seconds", .gauge,
        "barman's last_wal_maximum_age of the server in seconds: the age of the newest WAL barman check accepts (barman show-servers; absent when not set). Cached for servers_cache_ttl (600 s by default).",
        labels: ["server"])
}

/// The directories barman uses for a server (show-servers).
public struct ServerDirectories: Sendable, Equatable {
    /// Where `archive_command` delivers WAL files, until `barman cron` (archive-wal) archives them.
    public var incomingWALs: String?
    /// Where `receive-wal` writes streamed WAL, until `barman cron` archives it.
    public var streamingWALs: String?
    /// Where barman moves WAL files it refused (duplicates, unknown files).
    public var errors: String?
    public var basebackups: String?
    public var wals: String?

    public init(incomingWALs: String? = nil, streamingWALs: String? = nil, errors: String? = nil, basebackups: String? = nil, wals: String? = nil) {
        self.incomingWALs = incomingWALs
        self.streamingWALs = streamingWALs
        self.errors = errors
        self.basebackups = basebackups
        self.wals = wals
    }
}

/// The server's replication slot for barman, as PostgreSQL reports it through barman.
public struct ReplicationSlot: Sendable, Equatable {
    public var name: String
    public var active: Bool
    /// Where the slot holds WAL from; nil when PostgreSQL has none yet (a slot never used).
    public var restartLSN: UInt64?

    public init(name: String, active: Bool, restartLSN: UInt64?) {
        self.name = name
        self.active = active
        self.restartLSN = restartLSN
    }
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
    public var directories = ServerDirectories()
    /// PostgreSQL's `wal_segment_size` as barman last read it (`xlog_segment_size`).
    public var segmentSize: UInt64?
    public var replicationSlot: ReplicationSlot?
    /// barman's `last_backup_maximum_age` and `last_wal_maximum_age`, in seconds.
    public var lastBackupMaximumAge: Double?
    public var lastWALMaximumAge: Double?
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
        "incoming_wals_directory", "streaming_wals_directory", "errors_directory", "basebackups_directory",
        "xlog_segment_size", "replication_slot", "last_backup_maximum_age", "last_wal_maximum_age",
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
        info.directories = ServerDirectories(incomingWALs: nonEmptyString(fields["incoming_wals_directory"]),
                                             streamingWALs: nonEmptyString(fields["streaming_wals_directory"]),
                                             errors: nonEmptyString(fields["errors_directory"]),
                                             basebackups: nonEmptyString(fields["basebackups_directory"]),
                                             wals: walsDirectory)
        if let size = integer(fields["xlog_segment_size"]), size > 0 {
            if WALPosition.isValid(segmentSize: UInt64(size)) { info.segmentSize = UInt64(size) } else { refused.append("xlog_segment_size \(size)") }
        }
        if let slot = nonEmptyString(fields["replication_slot"]) {
            if let parsed = replicationSlot(slot) { info.replicationSlot = parsed } else { refused.append("replication_slot \(slot.prefix(120))") }
        }
        for (key, path) in [("last_backup_maximum_age", \ServerInfo.lastBackupMaximumAge), ("last_wal_maximum_age", \ServerInfo.lastWALMaximumAge)] {
            guard let text = nonEmptyString(fields[key]) else { continue }
            if let seconds = maximumAge(text) { info[keyPath: path] = seconds } else { refused.append("\(key) \(text.prefix(120))") }
        }
        info.refused += refused
        return info
    }

    /// `replication_slot` as barman prints it: the repr of psycopg2's named tuple,
    /// `Record(slot_name='barman', active=True, restart_lsn='0/13000000')` (restart_lsn None for a
    /// slot never used). Exactly these three fields, in this order; nil for anything else.
    static func replicationSlot(_ text: String) -> ReplicationSlot? {
        guard text.hasPrefix("Record("), text.hasSuffix(")") else { return nil }
        let body = text.dropFirst("Record(".count).dropLast()
        let fields = splitAtCommaSpace(body)
        guard fields.count == 3 else { return nil }
        func value(_ field: Substring, _ key: String) -> Substring? {
            guard field.hasPrefix(key + "=") else { return nil }
            return field.dropFirst(key.count + 1)
        }
        func quoted(_ value: Substring) -> Substring? {
            guard value.count >= 2, value.first == "'", value.last == "'" else { return nil }
            let inner = value.dropFirst().dropLast()
            return inner.contains("'") || inner.contains("\\") ? nil : inner
        }
        guard let nameValue = value(fields[0], "slot_name"), let name = quoted(nameValue), !name.isEmpty,
              let activeValue = value(fields[1], "active"), activeValue == "True" || activeValue == "False",
              let restartValue = value(fields[2], "restart_lsn") else { return nil }
        var restart: UInt64?
        if restartValue != "None" {
            guard let lsnText = quoted(restartValue), let lsn = WALPosition.lsn(String(lsnText)) else { return nil }
            restart = lsn
        }
        return ReplicationSlot(name: String(name), active: activeValue == "True", restartLSN: restart)
    }

    /// A maximum age as barman prints it, in seconds: its human form (`7 days`, `1 day, 6 hours`,
    /// followed by barman's ` (...)` comment on the newest backup), Python's timedelta (`6:00:00`,
    /// `2 days, 6:00:00`) or the config's own (`1 WEEKS`, `2 MONTHS`, a month being 31 days as
    /// barman counts it). nil for anything else.
    static func maximumAge(_ text: String) -> Double? {
        var rest = Substring(text)
        if let comment = firstIndex(of: " ", followedBy: "(", in: rest) { rest = rest[..<comment] }
        var seconds = 0.0
        for part in splitAtCommaSpace(rest) {
            let words = part.split(separator: " ", omittingEmptySubsequences: false)
            if words.count == 1 {
                // H:MM:SS of a timedelta.
                let clock = words[0].split(separator: ":", omittingEmptySubsequences: false)
                guard clock.count == 3, let hours = Int(clock[0]), let minutes = Int(clock[1]), let wholeSeconds = Double(clock[2]),
                      hours >= 0, (0..<60).contains(minutes), (0..<60).contains(wholeSeconds) else { return nil }
                seconds += Double(hours * 3600 + minutes * 60) + wholeSeconds
                continue
            }
            guard words.count == 2, let count = Int(words[0]), count >= 0 else { return nil }
            let unit = words[1].lowercased()
            let units: [String: Double] = ["second": 1, "minute": 60, "hour": 3_600, "day": 86_400, "week": 604_800, "month": 2_678_400]
            guard let size = units[unit.hasSuffix("s") ? String(unit.dropLast()) : unit] else { return nil }
            seconds += Double(count) * size
        }
        return rest.isEmpty ? nil : seconds
    }

    /// `text` split at each ", " (by hand: the standard library's string-separator split brings
    /// its whole regex engine, 1.7 MB, into the binary).
    static func splitAtCommaSpace(_ text: Substring) -> [Substring] {
        var parts: [Substring] = []
        var rest = text
        while let comma = firstIndex(of: ",", followedBy: " ", in: rest) {
            parts.append(rest[..<comma])
            rest = rest[rest.index(comma, offsetBy: 2)...]
        }
        parts.append(rest)
        return parts
    }

    /// Where `first` directly followed by `second` first occurs in `text` (the index of `first`).
    static func firstIndex(of first: Character, followedBy second: Character, in text: Substring) -> Substring.Index? {
        var index = text.startIndex
        while let found = text[index...].firstIndex(of: first) {
            let next = text.index(after: found)
            if next < text.endIndex, text[next] == second { return found }
            index = next
        }
        return nil
    }

    private static func nonEmptyString(_ value: JSONValue?) -> String? {
        guard case .string(let text)? = value, !text.isEmpty, text != "None" else { return nil }
        return text
    }
}
