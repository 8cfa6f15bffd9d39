import Synchronization
import Platform
import Exposition
import Configuration

/// `barman list-backups all`: every backup of every server, newest first. Backup counts, sizes,
/// ages, lifecycle, type and retention.
public final class ListBackupsCollector: Collector {
    public static let answer = AnswerKey<[ServerName: [BackupSummary]]>("list-backups")
    static let command = BarmanCommand("list-backups", ["all"])

    /// Server patterns already logged as matching no server.
    private let loggedUnmatched = Mutex<Set<String>>([])

    public init() {}

    public var name: String { "list-backups" }
    public var schedule: Schedule { Schedule(.afterTTL { $0.cacheTTL }) }

    public var metrics: [MetricDefinition] {
        [Metric.backupSize, Metric.backupWALSize, Metric.backupsFailed, Metric.backupsTotal, Metric.firstBackup, Metric.lastBackup,
         Metric.lastBackupTimestamp, Metric.firstBackupTimestamp, Metric.backupsByStatus, Metric.backupsByType,
         Metric.backupInProgressStart, Metric.lastFailedBackupTimestamp, Metric.lastFullBackupTimestamp,
         Metric.backupsByRetentionStatus, Metric.minimumRedundancySatisfied]
    }

    public func collect(_ context: CollectContext) async {
        let listed = await context.run(Self.command, decode: BarmanDecoding.backupList) { listed, snapshot in
            snapshot.backups = context.selected(listed)
        }
        // Every server barman knows is listed here: a pattern that selects none is a mistake
        // worth one log line (per pattern, until the next reload).
        let names = (listed ?? [:]).keys.map(\.text)
        for pattern in context.selection.unmatched(by: names) where loggedUnmatched.withLock({ $0.insert(pattern).inserted }) {
            context.logger.warn("a server pattern matches none of barman's servers; check servers_include and servers_exclude",
                                ["pattern": pattern, "servers": names.sorted().joined(separator: ",")])
        }
    }

    public func emit(_ snapshot: MetricsSnapshot, _ scrape: Scrape, into families: inout FamilyBuilder) {
        for (name, backups) in snapshot.backups ?? [:] {
            let server = name.text
            families.add(Metric.backupsTotal, [server], Double(backups.count))
            families.add(Metric.backupsFailed, [server], Double(backups.count { $0.status == "FAILED" }))
            // barman lists newest first; `number` counts DONE backups only, 0 = newest.
            let done = backups.filter(\.isDone)
            for (number, backup) in done.enumerated() {
                // One label array for both families: the samples share it (tens of thousands of
                // them at 1,000 servers, most of a render's memory).
                let labels = [String(number), server]
                families.add(Metric.backupSize, labels, backup.sizeBytes)
                families.add(Metric.backupWALSize, labels, backup.walSizeBytes)
            }
            if let newest = done.first?.endTime {
                families.add(Metric.lastBackup, [server], scrape.now - Double(newest))
                families.add(Metric.lastBackupTimestamp, [server], Double(newest))
            }
            if let oldest = done.last?.endTime {
                families.add(Metric.firstBackup, [server], scrape.now - Double(oldest))
                families.add(Metric.firstBackupTimestamp, [server], Double(oldest))
            }
            emitLifecycle(server, backups, done, into: &families)
            if let minimum = snapshot.servers?[name]?.minimumRedundancy {
                families.add(Metric.minimumRedundancySatisfied, [server], done.count(where: \.isFull) >= minimum ? 1 : 0)
            }
        }
    }

    /// Every status and retention status barman defines (`BackupInfo`) gets a series, 0 when no
    /// backup has it, so that an alert on "none DONE" or "one OBSOLETE" has a series to test.
    static let statuses = ["DONE", "EMPTY", "FAILED", "STARTED", "SYNCING", "WAITING_FOR_WALS"]
    /// `list-backups` prints a VALID backup as `-`, like one without a retention policy
    /// (`Server.list_backups`), so VALID is not among them.
    static let retentionStatuses = ["-", "KEEP:FULL", "KEEP:STANDALONE", "OBSOLETE", "OBSOLETE*"]

    /// Backup lifecycle, type and retention of one server, from its entries (newest first).
    private func emitLifecycle(_ server: String, _ backups: [BackupSummary], _ done: [BackupSummary], into families: inout FamilyBuilder) {
        var byStatus = Dictionary(uniqueKeysWithValues: Self.statuses.map { ($0, 0) })
        for backup in backups { byStatus[backup.status, default: 0] += 1 }
        for (status, count) in byStatus { families.add(Metric.backupsByStatus, [server, status], Double(count)) }

        var byRetention = Dictionary(uniqueKeysWithValues: Self.retentionStatuses.map { ($0, 0) })
        var byType: [String: Int] = [:]
        for backup in done {
            if let retention = backup.retentionStatus { byRetention[retention, default: 0] += 1 }
            if let type = backup.backupType { byType[type, default: 0] += 1 }
        }
        for (retention, count) in byRetention { families.add(Metric.backupsByRetentionStatus, [retention, server], Double(count)) }
        for (type, count) in byType { families.add(Metric.backupsByType, [type, server], Double(count)) }

        // Running: STARTED, WAITING_FOR_WALS, SYNCING, EMPTY. The oldest one is the one to worry about.
        let starts = backups.filter { !$0.isDone && $0.status != "FAILED" }.compactMap { BarmanTime.backupStart(id: $0.id) }
        families.add(Metric.backupInProgressStart, [server], starts.min().map(Double.init))
        let failedStarts = backups.filter { $0.status == "FAILED" }.compactMap { BarmanTime.backupStart(id: $0.id) }
        families.add(Metric.lastFailedBackupTimestamp, [server], failedStarts.max().map(Double.init))
        families.add(Metric.lastFullBackupTimestamp, [server], done.first(where: \.isFull)?.endTime.map(Double.init))
    }
}

extension MetricsSnapshot {
    /// Server -> backups, newest first (`list-backups all`); nil until the first usable answer.
    public var backups: [ServerName: [BackupSummary]]? {
        get { self[ListBackupsCollector.answer] }
        set { self[ListBackupsCollector.answer] = newValue }
    }
}

extension Metric {
    public static let backupSize = MetricDefinition(
        "barman_backup_size", .gauge,
        "Outputs the size of a specific backup(for specific server) in bytes", labels: ["number", "server"])
    public static let backupWALSize = MetricDefinition(
        "barman_backup_wal_size", .gauge,
        "Outputs the size of a the wals for specific backup(for specific server) in bytes", labels: ["number", "server"])
    public static let backupsFailed = MetricDefinition(
        "barman_backups_failed", .gauge,
        "Outputs the current number of backups with status FAILED for specific server", labels: ["server"])
    public static let backupsTotal = MetricDefinition(
        "barman_backups_total", .gauge,
        "Outputs the current number of available backups for specific server", labels: ["server"])
    public static let firstBackup = MetricDefinition(
        "barman_first_backup", .gauge,
        "Time since the first backup was taken in seconds", labels: ["server"], perScrape: .ageOf(Metric.firstBackupTimestamp.name))
    public static let lastBackup = MetricDefinition(
        "barman_last_backup", .gauge,
        "Time since the last backup was taken in seconds", labels: ["server"], perScrape: .ageOf(Metric.lastBackupTimestamp.name))

    public static let lastBackupTimestamp = MetricDefinition(
        "barman_last_backup_timestamp_seconds", .gauge,
        "Unix time the newest DONE backup of the server ended (end_time_timestamp from barman list-backups).", labels: ["server"])
    public static let firstBackupTimestamp = MetricDefinition(
        "barman_first_backup_timestamp_seconds", .gauge,
        "Unix time the oldest DONE backup of the server ended (end_time_timestamp from barman list-backups).", labels: ["server"])
    public static let backupsByStatus = MetricDefinition(
        "barman_backups_by_status", .gauge,
        "Number of backups of the server per status (DONE, FAILED, STARTED, WAITING_FOR_WALS, EMPTY, SYNCING; 0 when none) from barman list-backups.",
        labels: ["server", "status"])
    public static let backupsByType = MetricDefinition(
        "barman_backups_by_type", .gauge,
        "Number of DONE backups of the server per backup_type (full, incremental, rsync, snapshot) from barman list-backups (barman 3.11 and later).",
        labels: ["backup_type", "server"])
    public static let backupInProgressStart = MetricDefinition(
        "barman_backup_in_progress_start_timestamp_seconds", .gauge,
        "Unix time the oldest backup of the server that is neither DONE nor FAILED started (from its backup id, the start in local time); absent when none is running.",
        labels: ["server"])
    public static let lastFailedBackupTimestamp = MetricDefinition(
        "barman_last_failed_backup_timestamp_seconds", .gauge,
        "Unix time the newest FAILED backup of the server started (from its backup id, the start in local time); absent when none is listed.",
        labels: ["server"])
    public static let lastFullBackupTimestamp = MetricDefinition(
        "barman_last_full_backup_timestamp_seconds", .gauge,
        "Unix time the newest DONE backup of the server that is not incremental ended (end_time_timestamp from barman list-backups).",
        labels: ["server"])
    public static let backupsByRetentionStatus = MetricDefinition(
        "barman_backups_by_retention_status", .gauge,
        "Number of DONE backups of the server per retention status as barman list-backups prints it (- for valid or no policy, OBSOLETE, OBSOLETE*, KEEP:FULL, KEEP:STANDALONE; 0 when none).",
        labels: ["retention_status", "server"])
    public static let minimumRedundancySatisfied = MetricDefinition(
        "barman_minimum_redundancy_satisfied", .gauge,
        "1 when the server has at least minimum_redundancy DONE non-incremental backups (barman's own rule), else 0.", labels: ["server"])

}

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

extension BarmanDecoding {
    /// `list-backups all`, read as a stream rather than a tree: for 200 servers x 60 backups the
    /// answer is 3 MB, and a tree of it was 30 MB of small allocations that left the heap
    /// fragmented (resident) long after the few kept values were copied out.
    public static func backupList(_ output: CommandOutput) throws(DecodeFailure) -> [ServerName: [BackupSummary]] {
        try streamServers(of: ListBackupsCollector.command, output) { server, reader in
            let context = "barman \(ListBackupsCollector.command): server '\(server)'"
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
        let backupContext = "\(context): backup '\(backupID)'"
        guard case .string(let statusText)? = status else { throw missing("status", backupContext) }
        var backup = BackupSummary(id: backupID, status: statusText)
        if case .string(let text)? = type { backup.backupType = text }
        if case .string(let text)? = retention { backup.retentionStatus = text }
        if backup.isDone {
            guard let endTime = integer(end) else { throw missing("end_time_timestamp", backupContext) }
            guard let sizeBytes = number(size) else { throw missing("size_bytes", backupContext) }
            guard let walSizeBytes = number(walSize) else { throw missing("wal_size_bytes", backupContext) }
            backup.endTime = endTime
            backup.sizeBytes = sizeBytes
            backup.walSizeBytes = walSizeBytes
        }
        return backup
    }
}
