/// Prometheus metric types the exporter uses.
public enum MetricType: String, Sendable {
    case gauge
    case counter
}

/// Everything that defines one metric family: the single source of truth for the builder, the
/// renderer and `docs/metrics.md` (a test checks the docs against this table).
public struct MetricDefinition: Sendable, Hashable {
    public var name: String
    public var type: MetricType
    /// HELP text; for the Go and Python exporters' metrics it is kept byte for byte, typos included, because
    /// dashboards and alert rules were written against it.
    public var help: String
    /// Label names, in the (alphabetical) order they are printed.
    public var labels: [String]

    init(_ name: String, _ type: MetricType, _ help: String, labels: [String] = []) {
        self.name = name
        self.type = type
        self.help = help
        self.labels = labels
    }
}

/// The metrics the exporter serves. How each is computed is in `MetricsBuilder`, the field it
/// comes from in docs/metrics.md.
public enum Metric {
    // The Go exporter's metrics (barman-metrics-exporter: the Python exporter's, plus three of its own).
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
        "Time since the first backup was taken in seconds", labels: ["server"])
    public static let lastBackup = MetricDefinition(
        "barman_last_backup", .gauge,
        "Time since the last backup was taken in seconds", labels: ["server"])
    public static let lastBackupCopyTime = MetricDefinition(
        "barman_last_backup_copy_time", .gauge,
        "Outputs the time it took to get the latest backup in seconds", labels: ["server"])
    public static let metricsUpdate = MetricDefinition(
        "barman_metrics_update", .gauge,
        "Outputs the time(in ms) it took update all metrics exporter by this exporter")
    public static let up = MetricDefinition(
        "barman_up", .gauge,
        "Barman status checks", labels: ["check", "server"])
    public static let lastBackupThroughput = MetricDefinition(
        "barman_last_backup_throughput", .gauge,
        "Outputs the throughput(in bytes/second) during the last backup creation", labels: ["server"])
    public static let lastBackupWALFiles = MetricDefinition(
        "barman_last_backup_wal_files", .gauge,
        "outputs the number of wals for the last backup", labels: ["server"])
    public static let lastBackupWALRate = MetricDefinition(
        "barman_last_backup_wal_rate_per_second", .gauge,
        "Outputs the wal rate for the last backup", labels: ["server"])

    // Beyond the Go and Python exporters: absolute times (the form Prometheus recommends for alerting) and WAL
    // streaming from `replication-status` (planned in the Go exporter's docs).
    public static let lastBackupTimestamp = MetricDefinition(
        "barman_last_backup_timestamp_seconds", .gauge,
        "Unix time the newest DONE backup of the server ended (end_time_timestamp from barman list-backups).", labels: ["server"])
    public static let firstBackupTimestamp = MetricDefinition(
        "barman_first_backup_timestamp_seconds", .gauge,
        "Unix time the oldest DONE backup of the server ended (end_time_timestamp from barman list-backups).", labels: ["server"])
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

    // Recoverability: can a backup be restored, and up to when? From list-backups, the show-backup
    // already run, show-servers and each server's WAL catalog.
    public static let lastArchivedWALTimestamp = MetricDefinition(
        "barman_last_archived_wal_timestamp_seconds", .gauge,
        "Unix time the newest WAL segment in barman's WAL catalog (xlog.db) of the server was archived by barman.", labels: ["server"])
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
    public static let lastFullBackupTimestamp = MetricDefinition(
        "barman_last_full_backup_timestamp_seconds", .gauge,
        "Unix time the newest DONE backup of the server that is not incremental ended (end_time_timestamp from barman list-backups).",
        labels: ["server"])
    public static let lastBackupDuration = MetricDefinition(
        "barman_last_backup_duration_seconds", .gauge,
        "End minus begin of the newest DONE backup of the server in seconds (barman show-backup).", labels: ["server"])
    public static let backupsByRetentionStatus = MetricDefinition(
        "barman_backups_by_retention_status", .gauge,
        "Number of DONE backups of the server per retention status as barman list-backups prints it (- for valid or no policy, OBSOLETE, OBSOLETE*, KEEP:FULL, KEEP:STANDALONE; 0 when none).",
        labels: ["retention_status", "server"])
    public static let minimumRedundancySatisfied = MetricDefinition(
        "barman_minimum_redundancy_satisfied", .gauge,
        "1 when the server has at least minimum_redundancy DONE non-incremental backups (barman's own rule), else 0.", labels: ["server"])
    public static let versionInfo = MetricDefinition(
        "barman_version_info", .gauge,
        "A metric with a constant '1' value labeled by the version barman --version reports.", labels: ["version"])
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

    // The exporter's own metrics.
    public static let buildInfo = MetricDefinition(
        "barman_exporter_build_info", .gauge,
        "A metric with a constant '1' value labeled by the version of prometheus-barman-exporter.", labels: ["version"])
    public static let commandSuccess = MetricDefinition(
        "barman_exporter_command_success", .gauge,
        "Whether the last run of this barman command gave usable output (1) or failed (0); on failure the last good data is still served.",
        labels: ["command"])
    public static let commandLastSuccess = MetricDefinition(
        "barman_exporter_command_last_success_timestamp_seconds", .gauge,
        "Unix time of the last run of this barman command that gave usable output.", labels: ["command"])
    public static let commandDuration = MetricDefinition(
        "barman_exporter_command_duration_seconds", .gauge,
        "Wall time of the last run of this barman command in seconds.", labels: ["command"])
    public static let commandRuns = MetricDefinition(
        "barman_exporter_command_runs_total", .counter,
        "Runs of this barman command since the exporter started.", labels: ["command"])
    public static let commandFailures = MetricDefinition(
        "barman_exporter_command_failures_total", .counter,
        "Runs of this barman command that failed (error exit, timeout, invalid output) since the exporter started.",
        labels: ["command"])

    // The process, with the names, types and HELP texts of every Prometheus client library.
    public static let processCPU = MetricDefinition(
        "process_cpu_seconds_total", .counter, "Total user and system CPU time spent in seconds.")
    public static let processResidentMemory = MetricDefinition(
        "process_resident_memory_bytes", .gauge, "Resident memory size in bytes.")
    public static let processVirtualMemory = MetricDefinition(
        "process_virtual_memory_bytes", .gauge, "Virtual memory size in bytes.")
    public static let processOpenFDs = MetricDefinition(
        "process_open_fds", .gauge, "Number of open file descriptors.")
    public static let processMaxFDs = MetricDefinition(
        "process_max_fds", .gauge, "Maximum number of open file descriptors.")
    public static let processStartTime = MetricDefinition(
        "process_start_time_seconds", .gauge, "Start time of the process since unix epoch in seconds.")

    public static let all: [MetricDefinition] = [
        backupSize, backupWALSize, backupsFailed, backupsTotal, firstBackup, lastBackup, lastBackupCopyTime,
        metricsUpdate, up, lastBackupThroughput, lastBackupWALFiles, lastBackupWALRate,
        lastBackupTimestamp, firstBackupTimestamp, streamingClients, streamingClientsBySyncState,
        clientSentLag, clientWriteLag, clientFlushLag,
        lastArchivedWALTimestamp, archiverFailures, archiverLastFailureTimestamp, archiverLastArchivedTimestamp,
        backupsByStatus, backupsByType, backupInProgressStart, lastFullBackupTimestamp, lastBackupDuration,
        backupsByRetentionStatus, minimumRedundancySatisfied, versionInfo, serverActive, serverDisabled, serverPassiveNode,
        buildInfo, commandSuccess, commandLastSuccess, commandDuration, commandRuns, commandFailures,
        processCPU, processResidentMemory, processVirtualMemory, processOpenFDs, processMaxFDs, processStartTime,
    ]
}

/// One sample: label values in the order of the definition's `labels`, and the value.
public struct Sample: Sendable, Equatable {
    public var labelValues: [String]
    public var value: Double

    public init(_ labelValues: [String], _ value: Double) {
        self.labelValues = labelValues
        self.value = value
    }
}

/// A metric definition with its samples, ready to render.
public struct MetricFamily: Sendable, Equatable {
    public var definition: MetricDefinition
    public var samples: [Sample]
}
