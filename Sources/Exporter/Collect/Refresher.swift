/// Cache lifetimes, from the config.
public struct RefreshSettings: Sendable, Equatable {
    public var cacheTTL: Duration
    public var checksCacheTTL: Duration
    public var refreshInterval: Duration
    /// At most this many `show-backup` processes run at once.
    public var showBackupConcurrency: Int

    public init(cacheTTL: Duration, checksCacheTTL: Duration, refreshInterval: Duration, showBackupConcurrency: Int = 2) {
        self.cacheTTL = cacheTTL
        self.checksCacheTTL = checksCacheTTL
        self.refreshInterval = refreshInterval
        self.showBackupConcurrency = showBackupConcurrency
    }

    public init(_ config: Config) {
        self.init(cacheTTL: .seconds(config.cacheTTL), checksCacheTTL: .seconds(config.checksCacheTTL),
                  refreshInterval: .seconds(config.refreshInterval))
    }
}

/// Runs barman, caches each answer for its TTL, and publishes snapshots.
///
/// Sources are independent: `check all` (often the slow one), `list-backups all` (followed by
/// `show-backup`) and `replication-status all` run concurrently, and each publishes as soon as
/// it is done. A source still running when the next
/// cycle starts is not started again. A failed run keeps the last good data of that source and
/// is recorded in the health metrics.
public actor Refresher {
    private let store: SnapshotStore
    private let logger: Logger
    private var runner: any BarmanRunner
    private var settings: RefreshSettings
    private let clock = ContinuousClock()

    /// When each source last gave usable output (monotonic), for the TTLs. `replication-status`
    /// uses `cache_ttl` like the backup commands.
    private var backupsFetchedAt: ContinuousClock.Instant?
    private var checksFetchedAt: ContinuousClock.Instant?
    private var replicationFetchedAt: ContinuousClock.Instant?
    private var detailsFetchedAt: [String: (backupID: String, at: ContinuousClock.Instant)] = [:]
    /// The last good `list-backups` answer: which `show-backup` each server needs.
    private var backups: [String: [BackupSummary]] = [:]
    private var inFlight: Set<BarmanCommand> = []

    public init(runner: any BarmanRunner, settings: RefreshSettings, store: SnapshotStore, logger: Logger) {
        self.runner = runner
        self.settings = settings
        self.store = store
        self.logger = logger
    }

    /// Applies a reloaded config. Cached answers stay valid unless the data source changed.
    public func reconfigure(runner: any BarmanRunner, settings: RefreshSettings, sourceChanged: Bool) {
        self.runner = runner
        self.settings = settings
        if sourceChanged {
            backupsFetchedAt = nil
            checksFetchedAt = nil
            replicationFetchedAt = nil
            detailsFetchedAt = [:]
            backups = [:]
        }
    }

    public var refreshInterval: Duration { settings.refreshInterval }

    /// Refreshes immediately, then every `refreshInterval`, until the task is cancelled. Each
    /// cycle runs as its own task so a slow one never delays the next tick.
    public func runForever() async {
        await withDiscardingTaskGroup { group in
            while !Task.isCancelled {
                group.addTask { await self.refreshCycle() }
                do {
                    try await Task.sleep(for: settings.refreshInterval)
                } catch {
                    break
                }
            }
            group.cancelAll()
        }
    }

    /// One cycle: every source whose cache has expired is asked again.
    public func refreshCycle() async {
        let started = clock.now
        async let backups: Void = refreshBackupsAndDetails()
        async let checks: Void = refreshChecks()
        async let replication: Void = refreshReplication()
        _ = await (backups, checks, replication)
        let milliseconds = Self.milliseconds(clock.now - started)
        store.update { $0.lastRefreshMilliseconds = milliseconds }
        logger.debug("refresh cycle done", ["duration_ms": Logger.number(milliseconds)])
    }

    private func expired(_ fetchedAt: ContinuousClock.Instant?, ttl: Duration) -> Bool {
        guard let fetchedAt else { return true }
        return clock.now - fetchedAt >= ttl
    }

    private func refreshChecks() async {
        guard expired(checksFetchedAt, ttl: settings.checksCacheTTL) else { return }
        let fetchedAt = clock.now
        guard let checks = await fetch(.check, decode: { output throws(DecodeFailure) in try BarmanDecoding.checks(output) }) else { return }
        checksFetchedAt = fetchedAt
        store.update { $0.checks = checks }
    }

    private func refreshReplication() async {
        guard expired(replicationFetchedAt, ttl: settings.cacheTTL) else { return }
        let fetchedAt = clock.now
        guard let report = await fetch(.replicationStatus, decode: { output throws(DecodeFailure) in try BarmanDecoding.replication(output) }) else { return }
        if !report.errors.isEmpty {
            logger.warn("barman replication-status could not reach every server; they have no streaming metrics until it can",
                        ["servers": report.unreachable.joined(separator: ","), "error": report.errors.joined(separator: "; ")])
        }
        replicationFetchedAt = fetchedAt
        store.update { $0.replication = report.clients }
    }

    private func refreshBackupsAndDetails() async {
        if expired(backupsFetchedAt, ttl: settings.cacheTTL) {
            let fetchedAt = clock.now
            if let listed = await fetch(.listBackups, decode: { output throws(DecodeFailure) in try BarmanDecoding.backupList(output) }) {
                backupsFetchedAt = fetchedAt
                backups = listed
                detailsFetchedAt = detailsFetchedAt.filter { listed[$0.key] != nil }
                store.update { snapshot in
                    snapshot.backups = listed
                    snapshot.details = snapshot.details.filter { listed[$0.key] != nil }
                }
            }
        }
        await refreshDetails()
    }

    /// `show-backup` for the newest DONE backup of each server, when it is new or its TTL expired.
    private func refreshDetails() async {
        var due: [BarmanCommand] = []
        for (server, list) in backups.sorted(by: { $0.key < $1.key }) {
            guard let newest = list.first(where: \.isDone) else { continue }
            if let cached = detailsFetchedAt[server], cached.backupID == newest.id, !expired(cached.at, ttl: settings.cacheTTL) {
                continue
            }
            due.append(.showBackup(server: server, backupID: newest.id))
        }
        guard !due.isEmpty else { return }
        let width = max(1, settings.showBackupConcurrency)
        await withTaskGroup(of: Void.self) { group in
            var pending = due[...]
            for _ in 0..<min(width, pending.count) {
                let command = pending.removeFirst()
                group.addTask { await self.refreshDetails(command) }
            }
            while await group.next() != nil {
                if let command = pending.popFirst() {
                    group.addTask { await self.refreshDetails(command) }
                }
            }
        }
    }

    private func refreshDetails(_ command: BarmanCommand) async {
        guard case .showBackup(let server, let backupID) = command else { return }
        let fetchedAt = clock.now
        guard let details = await fetch(command, decode: { output throws(DecodeFailure) in
            try BarmanDecoding.backupDetails(output, server: server, backupID: backupID)
        }) else { return }
        detailsFetchedAt[server] = (backupID, fetchedAt)
        store.update { $0.details[server] = details }
    }

    /// Runs one command, decodes it, logs and records the outcome. Nil when there is no usable
    /// output (or the same command is already running).
    private func fetch<Value>(_ command: BarmanCommand, decode: (CommandOutput) throws(DecodeFailure) -> Value) async -> Value? {
        guard !inFlight.contains(command) else {
            logger.debug("barman command still running, not started again", ["command": command.description])
            return nil
        }
        inFlight.insert(command)
        defer { inFlight.remove(command) }

        let logID = Self.newLogID()
        let argv = runner.loggedArgv(for: command)
        logger.debug("running barman", ["logId": logID, "argv": argv])
        let started = clock.now
        var result: Value?
        var failure: CommandFailure?
        do {
            let output = try await runner.run(command)
            logger.debug("barman finished", ["logId": logID, "argv": argv,
                                             "exit_status": String(output.exitStatus), "duration_s": Logger.number(Self.seconds(clock.now - started))])
            do {
                result = try decode(output)
            } catch {
                failure = CommandFailure(error.message, exitStatus: output.exitStatus, stderr: output.stderr)
            }
        } catch {
            failure = error
        }
        let seconds = Self.seconds(clock.now - started)

        if let failure {
            logger.error("barman command failed; serving its last good data", [
                "logId": logID, "argv": argv, "error": failure.message,
                "exit_status": failure.exitStatus.map(String.init) ?? "none", "stderr": failure.stderrExcerpt,
                "duration_s": Logger.number(seconds),
            ])
        }
        let succeeded = result != nil
        let now = WallClock.nowSeconds()
        store.update { snapshot in
            var health = snapshot.health[command.kind] ?? CommandHealth()
            health.runs += 1
            health.lastRunDurationSeconds = seconds
            health.lastRunSucceeded = succeeded
            if succeeded { health.lastSuccessUnixTime = now } else { health.failures += 1 }
            snapshot.health[command.kind] = health
        }
        return result
    }

    /// A short random id that ties together the log lines of one barman run (the Go exporter's troubleshooting guide).
    static func newLogID() -> String {
        let alphabet = Array("0123456789abcdefghijklmnopqrstuvwxyz")
        return String((0..<8).map { _ in alphabet[Int.random(in: 0..<alphabet.count)] })
    }

    static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    static func milliseconds(_ duration: Duration) -> Double {
        (seconds(duration) * 1000).rounded()
    }
}
