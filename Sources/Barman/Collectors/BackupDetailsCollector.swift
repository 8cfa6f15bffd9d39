import Synchronization
import Platform
import Exposition
import Configuration

/// `barman show-backup SERVER BACKUP_ID` of each server's newest DONE backup: copy time,
/// throughput, duration, WAL files and rate of that backup.
///
/// Asked only when `list-backups` shows that backup changed: a new backup, or new WAL in its
/// `size_bytes`/`wal_size_bytes`. Nothing else changes its answer, so no TTL re-asks it, and
/// at the defaults a steady refresh runs no `show-backup` at all.
public final class BackupDetailsCollector: Collector {
    public static let answer = AnswerKey<[ServerName: BackupDetails]>("show-backup")

    /// Per server: which listing of its newest DONE backup the last usable answer was for, and
    /// when it was asked.
    private let asked = Mutex<[ServerName: (listing: DetailsKey, at: ContinuousClock.Instant)]>([:])
    private let clock = ContinuousClock()

    public init() {}

    public var name: String { "show-backup" }
    /// After list-backups, whose answer says which show-backups are due.
    public var schedule: Schedule { Schedule(.everyRefresh, after: ["list-backups"]) }

    public var metrics: [MetricDefinition] {
        [Metric.lastBackupCopyTime, Metric.lastBackupThroughput, Metric.lastBackupWALFiles, Metric.lastBackupWALRate, Metric.lastBackupDuration]
    }

    static func command(server: String, backupID: String) -> BarmanCommand {
        BarmanCommand("show-backup", [server, backupID])
    }

    /// What `list-backups` says of a newest DONE backup that moves whenever its `show-backup`
    /// figures do. Copy time, throughput, begin and end never change once a backup is DONE;
    /// its WAL file count and rate change only when WAL files enter barman's catalog
    /// (`Server.get_wal_info`), and each such file adds to `wal_size_bytes` (WAL after the
    /// backup) or `size_bytes` (WAL the backup needs, arriving late).
    struct DetailsKey: Hashable {
        var backupID: String
        var sizeBytes: Double?
        var walSizeBytes: Double?

        init(_ backup: BackupSummary) {
            backupID = backup.id
            sizeBytes = backup.sizeBytes
            walSizeBytes = backup.walSizeBytes
        }
    }

    /// `show-backup` for the newest DONE backup of each server that needs one, servers never
    /// asked or asked longest ago first, so none waits behind the others for ever; up to the
    /// refresher's process limit at once.
    public func collect(_ context: CollectContext) async {
        let listing = context.snapshot.backups ?? [:]
        let newest = listing.compactMapValues { $0.first(where: \.isDone) }
        // Servers that vanished, or lost every DONE backup, forget what was asked for them.
        let asked = self.asked.withLock { asked in
            asked = asked.filter { newest[$0.key] != nil }
            return asked
        }
        await context.publish { snapshot in
            snapshot.details = snapshot.details.filter { newest[$0.key] != nil }
        }
        var due: [Due] = []
        for (server, backup) in newest where asked[server]?.listing != DetailsKey(backup) {
            due.append(Due(command: Self.command(server: server.text, backupID: backup.id), lastAsked: asked[server]?.at, server: server, backup: backup))
        }
        guard !due.isEmpty else { return }
        await context.forEach(Self.fairOrder(due)) { item in await self.ask(item.command, server: item.server, backup: item.backup, context) }
    }

    /// A `show-backup` to run, and when it was last asked for its server.
    struct Due {
        var command: BarmanCommand
        var lastAsked: ContinuousClock.Instant?
        var server: ServerName
        var backup: BackupSummary
    }

    private func ask(_ command: BarmanCommand, server: ServerName, backup: BackupSummary, _ context: CollectContext) async {
        // The listing this answer is for: taken when the command starts, so WAL that arrives
        // while it runs makes the next listing differ and asks again.
        let listing = DetailsKey(backup)
        let started = clock.now
        let serverText = server.text, backupID = backup.id
        let answered = await context.run(command, stillDue: {
            // Not when a newer listing (a later refresh) shows another newest backup meanwhile.
            context.snapshot.backups?[server]?.first(where: \.isDone)?.id == backupID
        }, decode: { output throws(DecodeFailure) in
            try BarmanDecoding.backupDetails(output, server: serverText, backupID: backupID)
        }, publish: { details, snapshot in
            snapshot.details[server] = details
        })
        if answered != nil { asked.withLock { $0[server] = (listing, started) } }
    }

    /// Never asked first, then longest ago, then by command (server name) for a stable order.
    static func fairOrder(_ due: [Due]) -> [Due] {
        due.sorted { left, right in
            switch (left.lastAsked, right.lastAsked) {
            case (nil, nil): return left.command.description < right.command.description
            case (nil, _): return true
            case (_, nil): return false
            case let (a?, b?): return a == b ? left.command.description < right.command.description : a < b
            }
        }
    }

    public func emit(_ snapshot: MetricsSnapshot, _ scrape: Scrape, into families: inout FamilyBuilder) {
        for (name, backups) in snapshot.backups ?? [:] {
            // Only the newest DONE backup listed now: until its own show-backup answers, none,
            // never the previous backup's figures next to the new backup's time (nor a vanished
            // server's old "last backup").
            guard let newest = backups.first(where: \.isDone), let details = snapshot.details[name], details.backupID == newest.id else { continue }
            let server = [name.text]
            families.add(Metric.lastBackupCopyTime, server, details.copyTimeSeconds)
            families.add(Metric.lastBackupThroughput, server, details.throughputBytesPerSecond)
            families.add(Metric.lastBackupWALFiles, server, details.walFiles)
            families.add(Metric.lastBackupWALRate, server, details.walRatePerSecond)
            families.add(Metric.lastBackupDuration, server, details.durationSeconds)
        }
    }
}

extension MetricsSnapshot {
    /// Server -> `show-backup` of the backup that was its newest DONE one when asked.
    public var details: [ServerName: BackupDetails] {
        get { self[BackupDetailsCollector.answer] ?? [:] }
        set { self[BackupDetailsCollector.answer] = newValue }
    }
}

extension Metric {
    public static let lastBackupCopyTime = MetricDefinition(
        "barman_last_backup_copy_time", .gauge,
        "Outputs the time it took to get the latest backup in seconds", labels: ["server"])
    public static let lastBackupThroughput = MetricDefinition(
        "barman_last_backup_throughput", .gauge,
        "Outputs the throughput(in bytes/second) during the last backup creation", labels: ["server"])
    public static let lastBackupWALFiles = MetricDefinition(
        "barman_last_backup_wal_files", .gauge,
        "outputs the number of wals for the last backup", labels: ["server"])
    public static let lastBackupWALRate = MetricDefinition(
        "barman_last_backup_wal_rate_per_second", .gauge,
        "Outputs the wal rate for the last backup", labels: ["server"])
    public static let lastBackupDuration = MetricDefinition(
        "barman_last_backup_duration_seconds", .gauge,
        "End minus begin of the newest DONE backup of the server in seconds (barman show-backup).", labels: ["server"])

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
    /// The backup's first WAL segment (`base_backup_information.begin_wal`).
    public var beginWAL: String?

    public var durationSeconds: Double? {
        guard let beginTime, let endTime, endTime >= beginTime else { return nil }
        return Double(endTime - beginTime)
    }

    public init(backupID: String, copyTimeSeconds: Double? = nil, throughputBytesPerSecond: Double? = nil, walFiles: Double? = nil, walRatePerSecond: Double? = nil,
                beginTime: Int64? = nil, endTime: Int64? = nil, beginWAL: String? = nil) {
        self.beginWAL = beginWAL
        self.beginTime = beginTime
        self.endTime = endTime
        self.backupID = backupID
        self.copyTimeSeconds = copyTimeSeconds
        self.throughputBytesPerSecond = throughputBytesPerSecond
        self.walFiles = walFiles
        self.walRatePerSecond = walRatePerSecond
    }
}

extension BarmanDecoding {
    /// A segment file name (24 hex digits), else nil.
    static func beginWAL(_ value: JSONValue?) -> String? {
        guard case .string(let name)? = value, name.utf8.count == 24,
              name.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x41...0x46).contains($0) }) else { return nil }
        return name
    }

    public static func backupDetails(_ output: CommandOutput, server: String, backupID: String) throws(DecodeFailure) -> BackupDetails {
        let command = BackupDetailsCollector.command(server: server, backupID: backupID)
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
            endTime: integer(base["end_time_timestamp"]),
            beginWAL: beginWAL(base["begin_wal"]))
    }
}
