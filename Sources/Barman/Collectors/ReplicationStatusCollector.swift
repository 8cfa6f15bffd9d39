import Platform
import Exposition
import Configuration

/// `barman replication-status all`: the WAL streaming clients of each server
/// (`pg_stat_replication`) and how far each is behind.
///
/// `check` and `show-servers` open replication connections of their own (`get_remote_status`),
/// which this command would count as streaming clients: it never runs while they do. When all
/// three are due in one refresh, they start once it is done (a second or so later); while one
/// of them runs, it waits for the next refresh.
public struct ReplicationStatusCollector: Collector {
    public static let answer = AnswerKey<[ServerName: [StreamingClient]]>("replication-status")
    public static let serverLSNAnswer = AnswerKey<[ServerName: UInt64]>("server-lsn")
    static let command = BarmanCommand("replication-status", ["all"])

    public init() {}

    public var name: String { "replication-status" }
    public var schedule: Schedule { Schedule(.afterTTL { $0.cacheTTL }, notWhileRunning: ["check", "show-servers"]) }

    public var metrics: [MetricDefinition] {
        [Metric.streamingClients, Metric.streamingClientsBySyncState, Metric.clientSentLag, Metric.clientWriteLag, Metric.clientFlushLag]
    }

    public func collect(_ context: CollectContext) async {
        let report = await context.run(Self.command, decode: BarmanDecoding.replication) { report, snapshot in
            snapshot.replication = context.selected(report.clients)
            snapshot.serverLSN = context.selected(report.serverLSN)
        }
        if let report, !report.errors.isEmpty {
            context.logger.warn("barman replication-status could not reach every server; they have no streaming metrics until it can",
                                ["servers": report.unreachable.joined(separator: ","), "error": report.errors.joined(separator: "; ")])
        }
    }

    public func emit(_ snapshot: MetricsSnapshot, _ scrape: Scrape, into families: inout FamilyBuilder) {
        for (name, clients) in snapshot.replication ?? [:] {
            let server = name.text
            families.add(Metric.streamingClients, [server], Double(clients.count))
            var bySyncState: [String: Int] = [:]
            // Two clients may share every identifying label (no slot, same host and name): one
            // series each is impossible, so the worst (largest) lag of them is exported.
            var lags: [[String]: (sent: Double?, write: Double?, flush: Double?)] = [:]
            for client in clients {
                bySyncState[client.syncState, default: 0] += 1
                let labels = [client.applicationName, client.clientAddress, server, client.slot]
                let previous = lags[labels]
                lags[labels] = (Self.larger(previous?.sent, client.sentLagBytes), Self.larger(previous?.write, client.writeLagBytes),
                                Self.larger(previous?.flush, client.flushLagBytes))
            }
            for (state, count) in bySyncState { families.add(Metric.streamingClientsBySyncState, [server, state], Double(count)) }
            for (labels, lag) in lags {
                families.add(Metric.clientSentLag, labels, lag.sent)
                families.add(Metric.clientWriteLag, labels, lag.write)
                families.add(Metric.clientFlushLag, labels, lag.flush)
            }
        }
    }

    private static func larger(_ a: Double?, _ b: Double?) -> Double? {
        switch (a, b) {
        case let (a?, b?): return max(a, b)
        default: return a ?? b
        }
    }
}

extension MetricsSnapshot {
    /// Server -> its WAL streaming clients (`replication-status all`); nil until the first
    /// usable answer. A server barman could not reach has no entry.
    public var replication: [ServerName: [StreamingClient]]? {
        get { self[ReplicationStatusCollector.answer] }
        set { self[ReplicationStatusCollector.answer] = newValue }
    }

    /// Server -> PostgreSQL's current WAL position (`server_lsn` of `replication-status`), as
    /// of its last usable answer; the WAL lag metrics measure against it.
    public var serverLSN: [ServerName: UInt64] {
        get { self[ReplicationStatusCollector.serverLSNAnswer] ?? [:] }
        set { self[ReplicationStatusCollector.serverLSNAnswer] = newValue }
    }
}

extension Metric {
    public static let streamingClients = MetricDefinition(
        "barman_replication_streaming_clients", .gauge,
        "Number of WAL streaming clients of the server (barman replication-status).", labels: ["server"])
    public static let streamingClientsBySyncState = MetricDefinition(
        "barman_replication_streaming_clients_by_sync_state", .gauge,
        "Number of WAL streaming clients of the server per sync state (async, sync, potential, quorum).", labels: ["server", "sync_state"])
    public static let clientSentLag = MetricDefinition(
        "barman_replication_client_sent_lag_bytes", .gauge,
        "Bytes of WAL the server has not yet sent to this streaming client (server LSN minus sent LSN).",
        labels: ["application_name", "client_address", "server", "slot"])
    public static let clientWriteLag = MetricDefinition(
        "barman_replication_client_write_lag_bytes", .gauge,
        "Bytes of WAL this streaming client has not yet written (server LSN minus write LSN).",
        labels: ["application_name", "client_address", "server", "slot"])
    public static let clientFlushLag = MetricDefinition(
        "barman_replication_client_flush_lag_bytes", .gauge,
        "Bytes of WAL this streaming client has not yet flushed to disk (server LSN minus flush LSN).",
        labels: ["application_name", "client_address", "server", "slot"])

}

/// A WAL streaming client of one server, from `replication-status` (pg_stat_replication).
public struct StreamingClient: Sendable, Equatable {
    public var applicationName: String
    public var slot: String
    public var clientAddress: String
    public var syncState: String
    /// Bytes the client is behind the server's current LSN (barman's `*_lsn_diff_bytes`, negated).
    public var sentLagBytes: Double?
    public var writeLagBytes: Double?
    public var flushLagBytes: Double?

    public init(applicationName: String, slot: String = "", clientAddress: String = "", syncState: String = "",
                sentLagBytes: Double? = nil, writeLagBytes: Double? = nil, flushLagBytes: Double? = nil) {
        self.applicationName = applicationName
        self.slot = slot
        self.clientAddress = clientAddress
        self.syncState = syncState
        self.sentLagBytes = sentLagBytes
        self.writeLagBytes = writeLagBytes
        self.flushLagBytes = flushLagBytes
    }
}

/// `replication-status all`: clients per reachable server. barman reports a server whose
/// PostgreSQL it cannot reach as `{}` plus an `_ERROR` message (and exits 1); such a server has
/// no entry here, and the others keep theirs.
public struct ReplicationReport: Sendable, Equatable {
    public var clients: [ServerName: [StreamingClient]]
    /// PostgreSQL's current WAL position per reachable server (`server_lsn`).
    public var serverLSN: [ServerName: UInt64] = [:]
    public var unreachable: [String]
    public var errors: [String]

    public init(clients: [ServerName: [StreamingClient]], serverLSN: [ServerName: UInt64] = [:], unreachable: [String] = [], errors: [String] = []) {
        self.clients = clients
        self.serverLSN = serverLSN
        self.unreachable = unreachable
        self.errors = errors
    }
}

extension BarmanDecoding {
    /// `replication-status all`. Exit status 1 with valid JSON is partial data when some server
    /// answered: unreachable servers (`{}`) are listed, the others decoded.
    public static func replication(_ output: CommandOutput) throws(DecodeFailure) -> ReplicationReport {
        let command = ReplicationStatusCollector.command
        let (servers, errors) = try envelope(of: command, output, tolerated: [0, 1])
        var report = ReplicationReport(clients: [:], errors: errors)
        // Names and states repeat across servers: keep one copy of each (see `checks`).
        var strings = StringPool()
        func shared(_ value: JSONValue?) -> String { strings.shared(string(value)) }
        for (server, value) in servers {
            let context = "barman \(command): server '\(server)'"
            guard case .object(let fields) = value else { throw DecodeFailure("\(context): expected an object") }
            guard !fields.isEmpty else {
                report.unreachable.append(server.text)
                continue
            }
            guard case .array(let entries)? = fields["streaming_clients"] else { throw missing("streaming_clients", context) }
            if case .string(let text)? = fields["server_lsn"] {
                guard let lsn = WALPosition.lsn(text) else { throw DecodeFailure("\(context): server_lsn '\(text.prefix(40))' is not an LSN") }
                report.serverLSN[server] = lsn
            }
            report.clients[server] = entries.map { entry in
                StreamingClient(
                    applicationName: shared(entry["application_name"]),
                    slot: shared(entry["replication_slot"]),
                    clientAddress: shared(entry["ip_address"]),
                    syncState: shared(entry["current_sync_state"]),
                    sentLagBytes: number(entry["sent_lsn_diff_bytes"]).map { -$0 },
                    writeLagBytes: number(entry["write_lsn_diff_bytes"]).map { -$0 },
                    flushLagBytes: number(entry["flush_lsn_diff_bytes"]).map { -$0 })
            }
        }
        if output.exitStatus != 0 && report.clients.isEmpty {
            throw DecodeFailure("barman \(command) exited with status \(output.exitStatus): \(errors.joined(separator: "; "))")
        }
        report.unreachable.sort()
        return report
    }
}
