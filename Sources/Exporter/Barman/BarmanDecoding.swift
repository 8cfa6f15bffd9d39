/// A backup as `list-backups` reports it. Only DONE backups carry times and sizes.
public struct BackupSummary: Sendable, Equatable {
    public var id: String
    public var status: String
    /// Unix seconds, from `end_time_timestamp`.
    public var endTime: Int64?
    public var sizeBytes: Double?
    public var walSizeBytes: Double?
    /// `full`, `incremental`, `rsync` or `snapshot` (barman >= 3.11); nil where barman does not
    /// say, which on older versions means a full backup.
    public var backupType: String?
    /// `OBSOLETE`, `OBSOLETE*`, `KEEP:FULL`, `KEEP:STANDALONE`, or `-` for a valid backup or
    /// when no retention policy applies (barman prints VALID as `-`).
    public var retentionStatus: String?

    public var isDone: Bool { status == "DONE" }
    /// A base backup that restores without a parent: every backup but a block-level incremental one.
    public var isFull: Bool { backupType != "incremental" }

    public init(id: String, status: String, endTime: Int64? = nil, sizeBytes: Double? = nil, walSizeBytes: Double? = nil,
                backupType: String? = nil, retentionStatus: String? = nil) {
        self.id = id
        self.status = status
        self.endTime = endTime
        self.sizeBytes = sizeBytes
        self.walSizeBytes = walSizeBytes
        self.backupType = backupType
        self.retentionStatus = retentionStatus
    }
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

/// The figures `show-backup` gives for one backup. Each may be absent: barman 3.4 prints copy
/// statistics only when it has them.
public struct BackupDetails: Sendable, Equatable {
    public var backupID: String
    public var copyTimeSeconds: Double?
    public var throughputBytesPerSecond: Double?
    public var walFiles: Double?
    public var walRatePerSecond: Double?
    /// Unix seconds, from `base_backup_information.begin_time_timestamp` and `end_time_timestamp`.
    public var beginTime: Int64?
    public var endTime: Int64?

    public var durationSeconds: Double? {
        guard let beginTime, let endTime, endTime >= beginTime else { return nil }
        return Double(endTime - beginTime)
    }

    public init(backupID: String, copyTimeSeconds: Double? = nil, throughputBytesPerSecond: Double? = nil, walFiles: Double? = nil, walRatePerSecond: Double? = nil,
                beginTime: Int64? = nil, endTime: Int64? = nil) {
        self.beginTime = beginTime
        self.endTime = endTime
        self.backupID = backupID
        self.copyTimeSeconds = copyTimeSeconds
        self.throughputBytesPerSecond = throughputBytesPerSecond
        self.walFiles = walFiles
        self.walRatePerSecond = walRatePerSecond
    }
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
    public var unreachable: [String]
    public var errors: [String]

    public init(clients: [ServerName: [StreamingClient]], unreachable: [String] = [], errors: [String] = []) {
        self.clients = clients
        self.unreachable = unreachable
        self.errors = errors
    }
}

/// Why barman's answer to a command could not be used.
public struct DecodeFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Turns barman's JSON (3.4 and 3.20 shapes) into typed records.
///
/// The envelope rules, as barman 3.4.0 and 3.20.1 print it with `-f json`: one JSON object whose
/// keys are server names plus `_ERROR`/`_WARNING`/`_INFO`/... message lists; exit status 0,
/// except `check`, which exits 1 when a check fails and is still data.
public enum BarmanDecoding {
    /// Server name -> that server's JSON, after checking exit status, JSON validity and `_ERROR`.
    public static func servers(of command: BarmanCommand, _ output: CommandOutput) throws(DecodeFailure) -> [ServerName: JSONValue] {
        let (members, errors) = try envelope(of: command, output, tolerated: command.kind == .check ? [0, 1] : [0])
        if !errors.isEmpty {
            throw DecodeFailure("barman \(command) reported an error: \(errors.joined(separator: "; "))")
        }
        return members
    }

    /// The servers of a JSON answer and barman's `_ERROR` messages, after checking the exit
    /// status and JSON validity.
    /// The top level is read member by member so that server names keep their exact bytes
    /// (see `ServerName`); each server's own JSON becomes a tree.
    static func envelope(of command: BarmanCommand, _ output: CommandOutput, tolerated: Set<Int32>) throws(DecodeFailure) -> ([ServerName: JSONValue], [String]) {
        try checkStatus(of: command, output, tolerated: tolerated)
        let decoded: Result<([ServerName: JSONValue], [String]), DecodeFailure> = JSONReader.withReader(output.stdout) { reader in
            do throws(JSONError) {
                guard reader.peek() == UInt8(ascii: "{") else {
                    try reader.skipValue()
                    try reader.finish()
                    return .failure(notAnObject(command))
                }
                var members: [ServerName: JSONValue] = [:]
                var errors: [String] = []
                try reader.beginObject()
                while let key = try reader.nextKey() {
                    let value = try reader.readValue()
                    if key == "_ERROR" {
                        errors = messageList(value)
                    } else if !key.hasPrefix("_") {
                        members[ServerName(key)] = value
                    }
                }
                try reader.finish()
                return .success((members, errors))
            } catch {
                return .failure(invalidJSON(command, error))
            }
        }
        return try decoded.get()
    }

    static func checkStatus(of command: BarmanCommand, _ output: CommandOutput, tolerated: Set<Int32>) throws(DecodeFailure) {
        guard tolerated.contains(output.exitStatus) else {
            throw DecodeFailure("barman \(command) exited with status \(output.exitStatus)" + errorMessages(output.stdout))
        }
        guard !output.stdout.isEmpty else {
            throw DecodeFailure("barman \(command) printed nothing on stdout (is -q set in an alias or wrapper?)")
        }
    }

    /// `list-backups all`, read as a stream rather than a tree: for 200 servers x 60 backups the
    /// answer is 3 MB, and a tree of it was 30 MB of small allocations that left the heap
    /// fragmented (resident) long after the few kept values were copied out.
    public static func backupList(_ output: CommandOutput) throws(DecodeFailure) -> [ServerName: [BackupSummary]] {
        try streamServers(of: .listBackups, output) { server, reader in
            let context = "barman \(BarmanCommand.listBackups): server '\(server)'"
            guard reader.peek() == UInt8(ascii: "[") else {
                try reader.skipValue()
                throw DecodeFailure("\(context): expected a list of backups")
            }
            var backups: [BackupSummary] = []
            try reader.beginArray()
            while try reader.nextElement() {
                backups.append(try readBackupSummary(&reader, context))
            }
            return backups
        }
    }

    /// An answer read as a stream, server by server: `readServer` reads the value of one server
    /// (keys starting with `_` are barman's messages; `_ERROR` fails the answer). Throws
    /// `JSONError` for invalid JSON and `DecodeFailure` for JSON of the wrong shape, both turned
    /// into a `DecodeFailure` naming the command.
    static func streamServers<Value>(of command: BarmanCommand, _ output: CommandOutput,
                                     _ readServer: (String, inout JSONReader) throws -> Value) throws(DecodeFailure) -> [ServerName: Value] {
        try checkStatus(of: command, output, tolerated: [0])
        let decoded: Result<([ServerName: Value], [String]), DecodeFailure> = JSONReader.withReader(output.stdout) { reader in
            do {
                guard reader.peek() == UInt8(ascii: "{") else {
                    try reader.skipValue()
                    try reader.finish()
                    throw notAnObject(command)
                }
                var result: [ServerName: Value] = [:]
                var errors: [String] = []
                try reader.beginObject()
                while let server = try reader.nextKey() {
                    if server == "_ERROR" {
                        errors = messageList(try reader.readValue())
                    } else if server.hasPrefix("_") {
                        try reader.skipValue()
                    } else {
                        result[ServerName(server)] = try readServer(server, &reader)
                    }
                }
                try reader.finish()
                return .success((result, errors))
            } catch let failure as DecodeFailure {
                return .failure(failure)
            } catch {
                return .failure(invalidJSON(command, error))
            }
        }
        let (values, errors) = try decoded.get()
        if !errors.isEmpty {
            throw DecodeFailure("barman \(command) reported an error: \(errors.joined(separator: "; "))")
        }
        return values
    }

    /// One entry of a server's list; only the fields the metrics use are kept.
    private static func readBackupSummary(_ reader: inout JSONReader, _ context: String) throws -> BackupSummary {
        var id, status, end, size, walSize, type, retention: JSONValue?
        if reader.peek() == UInt8(ascii: "{") {
            try reader.beginObject()
            while let key = try reader.nextKey() {
                switch key {
                case "backup_id": id = try reader.readValue()
                case "status": status = try reader.readValue()
                case "end_time_timestamp": end = try reader.readValue()
                case "size_bytes": size = try reader.readValue()
                case "wal_size_bytes": walSize = try reader.readValue()
                case "backup_type": type = try reader.readValue()
                case "retention_status": retention = try reader.readValue()
                default: try reader.skipValue()
                }
            }
        } else {
            try reader.skipValue()
        }
        guard case .string(let backupID)? = id else { throw missing("backup_id", context) }
        let where_ = "\(context): backup '\(backupID)'"
        guard case .string(let statusText)? = status else { throw missing("status", where_) }
        var backup = BackupSummary(id: backupID, status: statusText)
        if case .string(let text)? = type { backup.backupType = text }
        if case .string(let text)? = retention { backup.retentionStatus = text }
        if backup.isDone {
            guard let endTime = integer(end) else { throw missing("end_time_timestamp", where_) }
            guard let sizeBytes = number(size) else { throw missing("size_bytes", where_) }
            guard let walSizeBytes = number(walSize) else { throw missing("wal_size_bytes", where_) }
            backup.endTime = endTime
            backup.sizeBytes = sizeBytes
            backup.walSizeBytes = walSizeBytes
        }
        return backup
    }

    public static func checks(_ output: CommandOutput) throws(DecodeFailure) -> [ServerName: [CheckResult]] {
        let command = BarmanCommand.check
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

    public static func backupDetails(_ output: CommandOutput, server: String, backupID: String) throws(DecodeFailure) -> BackupDetails {
        let command = BarmanCommand.showBackup(server: server, backupID: backupID)
        let context = "barman \(command): server '\(server)'"
        guard let backup = try servers(of: command, output)[ServerName(server)] else {
            throw DecodeFailure("\(context): server missing from the output")
        }
        let status = try requiredString(backup, "status", context)
        guard status == "DONE" else {
            throw DecodeFailure("\(context): backup status is \(status), expected DONE")
        }
        guard let base = backup["base_backup_information"], case .object = base else { throw missing("base_backup_information", context) }
        guard let wal = backup["wal_information"], case .object = wal else { throw missing("wal_information", context) }
        guard let walFiles = number(wal["no_of_files"]) else { throw missing("wal_information.no_of_files", context) }
        guard let walRate = number(wal["wal_rate_per_second"]) else { throw missing("wal_information.wal_rate_per_second", context) }
        return BackupDetails(
            backupID: backupID,
            copyTimeSeconds: number(base["copy_time_seconds"]),
            throughputBytesPerSecond: number(base["throughput_bytes"]),
            walFiles: walFiles,
            walRatePerSecond: walRate,
            beginTime: integer(base["begin_time_timestamp"]),
            endTime: integer(base["end_time_timestamp"]))
    }

    /// `replication-status all`. Exit status 1 with valid JSON is partial data when some server
    /// answered: unreachable servers (`{}`) are listed, the others decoded.
    public static func replication(_ output: CommandOutput) throws(DecodeFailure) -> ReplicationReport {
        let command = BarmanCommand.replicationStatus
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

    // MARK: - Field helpers (barman mixes ints, floats, numeric strings and the string "None")

    /// The same words whether an answer was read as a tree or as a stream.
    static func invalidJSON(_ command: BarmanCommand, _ error: any Error) -> DecodeFailure {
        DecodeFailure("barman \(command) printed \(error)")
    }

    static func notAnObject(_ command: BarmanCommand) -> DecodeFailure {
        DecodeFailure("barman \(command) printed JSON that is not an object")
    }

    static func missing(_ field: String, _ context: String) -> DecodeFailure {
        DecodeFailure("\(context): missing or invalid field '\(field)'")
    }

    /// A string field, "" when absent or null (barman prints `null` for a unix-socket client address).
    static func string(_ value: JSONValue?) -> String {
        if case .string(let text)? = value { return text }
        return ""
    }

    static func requiredString(_ value: JSONValue, _ field: String, _ context: String) throws(DecodeFailure) -> String {
        guard case .string(let text)? = value[field] else { throw missing(field, context) }
        return text
    }

    /// A number written as a JSON int, float or numeric string; `nil` for absent, null or "None".
    static func number(_ value: JSONValue?) -> Double? {
        switch value {
        case .integer(let integer)?: return Double(integer)
        case .float(let float)?: return float
        case .string(let text)?:
            guard let parsed = Double(text), parsed.isFinite else { return nil }
            return parsed
        default: return nil
        }
    }

    static func integer(_ value: JSONValue?) -> Int64? {
        switch value {
        case .integer(let integer)?: return integer
        case .string(let text)?: return Int64(text)
        case .float(let float)? where float.isFinite && float == float.rounded(.towardZero) && abs(float) < 9e15: return Int64(float)
        default: return nil
        }
    }

    static func errorMessages(_ stdout: [UInt8]) -> String {
        guard let document = try? JSONParser.parse(stdout), let errors = document["_ERROR"] else { return "" }
        return ": " + messageList(errors).joined(separator: "; ")
    }

    static func messageList(_ value: JSONValue) -> [String] {
        if case .array(let items) = value {
            return items.map { item -> String in
                if case .string(let text) = item { return text }
                return "\(item)"
            }
        }
        if case .string(let text) = value { return [text] }
        return ["\(value)"]
    }
}

/// One copy of each distinct string: decoded values that repeat across servers then share
/// storage instead of each pinning its own allocation.
struct StringPool {
    private var pool: [String: String] = [:]

    mutating func shared(_ text: String) -> String {
        if let existing = pool[text] { return existing }
        pool[text] = text
        return text
    }
}
