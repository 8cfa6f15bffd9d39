/// How one kind of barman command has fared since start-up (exporter-health metrics).
public struct CommandHealth: Sendable, Equatable {
    public var lastRunSucceeded = false
    public var lastSuccessUnixTime: Double?
    public var lastRunDurationSeconds: Double = 0
    public var runs: Int = 0
    public var failures: Int = 0

    public init() {}
}

/// Everything known at one moment, as immutable values: the latest good answer of each barman
/// source plus the exporter's own health. Scrapes render from one snapshot, so a response never
/// mixes two refreshes.
public struct MetricsSnapshot: Sendable, Equatable {
    /// Server -> backups, newest first (`list-backups all`); nil until the first success.
    public var backups: [ServerName: [BackupSummary]]?
    /// Server -> checks (`check all`); nil until the first success.
    public var checks: [ServerName: [CheckResult]]?
    /// Server -> its WAL streaming clients (`replication-status all`); nil until the first success.
    /// A server barman could not reach has no entry.
    public var replication: [ServerName: [StreamingClient]]?
    /// Server -> `show-backup` of its newest DONE backup.
    public var details: [ServerName: BackupDetails] = [:]
    /// Server -> what `show-servers all` says of it; nil until the first success.
    public var servers: [ServerName: ServerInfo]?
    /// Server -> Unix time its newest WAL segment was archived (its WAL catalog).
    public var lastArchivedWAL: [ServerName: Double] = [:]
    /// What `barman --version` printed (first word).
    public var barmanVersion: String?
    public var health: [CommandKind: CommandHealth] = [:]
    /// Duration of the last complete refresh cycle; nil before the first one ends.
    public var lastRefreshMilliseconds: Double?
    public var version: String

    public init(version: String) {
        self.version = version
    }
}
