/// Cache lifetimes and limits, from the config.
public struct RefreshSettings: Sendable, Equatable {
    public var cacheTTL: Duration
    public var checksCacheTTL: Duration
    public var serversCacheTTL: Duration
    public var refreshInterval: Duration
    /// At most this many barman processes run at once, across every source: room for a slow
    /// `check`, `replication-status` and two `show-backup`s, and no more on a small backup host.
    public var maxConcurrentCommands: Int

    public init(cacheTTL: Duration, checksCacheTTL: Duration, serversCacheTTL: Duration = .seconds(600), refreshInterval: Duration, maxConcurrentCommands: Int = 4) {
        self.cacheTTL = cacheTTL
        self.checksCacheTTL = checksCacheTTL
        self.serversCacheTTL = serversCacheTTL
        self.refreshInterval = refreshInterval
        self.maxConcurrentCommands = maxConcurrentCommands
    }

    public init(_ config: Config) {
        self.init(cacheTTL: .seconds(config.cacheTTL), checksCacheTTL: .seconds(config.checksCacheTTL),
                  serversCacheTTL: .seconds(config.serversCacheTTL), refreshInterval: .seconds(config.refreshInterval))
    }
}

/// Runs barman, caches each answer for its TTL, and publishes snapshots.
///
/// Four sources are independent: `check all` (often the slow one), `list-backups all` (followed
/// by `show-backup` per server), `replication-status all`, and `show-servers all` (followed by a
/// read of each server's WAL catalog, and `--version` after start and each reload) run
/// concurrently, and each publishes as soon as it is done. A source still running when the next
/// refresh starts is not started again, so refreshes never stack; every barman process waits for one of
/// `maxConcurrentCommands` slots, and checks again that its answer is still due once it has one.
/// A failed run keeps the last good data of that source and is recorded in the health metrics.
public actor Refresher {
    /// The independent parts of a refresh.
    enum Source: Hashable, CaseIterable {
        case backups, checks, replication, servers
    }

    /// Sources whose barman command opens replication connections of its own (`check`, and
    /// `show-servers` through `get_remote_status`), which `replication-status` would count as
    /// streaming clients: the two never run at the same time. When both are due in a cycle,
    /// these start once replication-status is done (a second or so later); while one of them
    /// runs, replication-status waits for the next refresh.
    static let opensReplicationConnections: Set<Source> = [.checks, .servers]

    private let store: SnapshotStore
    private let logger: Logger
    private var runner: any BarmanRunner
    private var settings: RefreshSettings
    private let clock = ContinuousClock()

    /// Bumped when a reload changes where barman's answers come from: runs of an older
    /// generation are cancelled, their answers discarded, and they block nothing new.
    private var generation: UInt64 = 0
    /// Sources running now, by generation.
    private var running: Set<SourceRun> = []

    /// When each source last gave usable output (monotonic), for the TTLs. `replication-status`
    /// uses `cache_ttl` like the backup commands.
    private var backupsFetchedAt: ContinuousClock.Instant?
    private var checksFetchedAt: ContinuousClock.Instant?
    private var replicationFetchedAt: ContinuousClock.Instant?
    private var serversFetchedAt: ContinuousClock.Instant?
    /// `barman --version` is asked after start and after each reload (barman may have been upgraded).
    private var versionDue = true
    /// The last good `show-servers` answer: where each server's WAL catalog is.
    private var serverInfo: [ServerName: ServerInfo] = [:]
    /// Why a server's WAL catalog could not be read, while it cannot (logged when it changes).
    private var walCatalogProblems: [ServerName: String] = [:]
    /// Per server: which listing of its newest DONE backup the last `show-backup` answered, and when.
    private var detailsFetchedAt: [ServerName: (listing: DetailsKey, at: ContinuousClock.Instant)] = [:]
    /// The last good `list-backups` answer: which `show-backup` each server needs.
    private var backups: [ServerName: [BackupSummary]] = [:]

    /// The wait between two refreshes of `runForever`, cut short by a reload that changes the
    /// interval or the source.
    private var pause: Task<Void, Never>?

    /// Barman processes running now, and the runs waiting for a slot (first come, first served).
    private var commandsRunning = 0
    private var waitingForSlot: [CheckedContinuation<Void, Never>] = []

    private struct SourceRun: Hashable {
        var source: Source
        var generation: UInt64
    }

    public init(runner: any BarmanRunner, settings: RefreshSettings, store: SnapshotStore, logger: Logger) {
        self.runner = runner
        self.settings = settings
        self.store = store
        self.logger = logger
    }

    /// Applies a reloaded config. Cached answers stay valid unless the data source changed; then
    /// the old source's running commands are cancelled and its data is no longer served.
    public func reconfigure(runner: any BarmanRunner, settings: RefreshSettings, sourceChanged: Bool) {
        let previous = self.runner
        let intervalChanged = settings.refreshInterval != self.settings.refreshInterval
        self.runner = runner
        self.settings = settings
        releaseSlots()
        versionDue = true
        // The new interval (or source) applies now: the next refresh starts at once, instead of
        // at the end of a pause the old interval set (up to an hour, say). Otherwise barman's
        // version is asked at the next refresh.
        if intervalChanged || sourceChanged { pause?.cancel() }
        guard sourceChanged else { return }
        generation += 1
        previous.cancelRunning()
        backupsFetchedAt = nil
        checksFetchedAt = nil
        replicationFetchedAt = nil
        serversFetchedAt = nil
        detailsFetchedAt = [:]
        backups = [:]
        serverInfo = [:]
        walCatalogProblems = [:]
        // Until the new source answers, only the exporter's own metrics, with success 0.
        store.update { snapshot in
            snapshot.backups = nil
            snapshot.checks = nil
            snapshot.replication = nil
            snapshot.details = [:]
            snapshot.servers = nil
            snapshot.lastArchivedWAL = [:]
            snapshot.barmanVersion = nil
            for kind in snapshot.health.keys { snapshot.health[kind]?.lastRunSucceeded = false }
        }
    }

    public var refreshInterval: Duration { settings.refreshInterval }

    /// Refreshes immediately, then every `refreshInterval`, until the task is cancelled. A source
    /// still running at a tick is left to finish; it starts again at the first tick after.
    public func runForever() async {
        await withDiscardingTaskGroup { group in
            while !Task.isCancelled {
                group.addTask { await self.refreshCycle() }
                let interval = settings.refreshInterval
                let pause = Task { _ = try? await Task.sleep(for: interval) }
                self.pause = pause
                // Cancelling runForever ends the pause too.
                await withTaskCancellationHandler { await pause.value } onCancel: { pause.cancel() }
            }
            group.cancelAll()
        }
    }

    /// One cycle: every source that is not already running, and whose cache has expired, is
    /// asked again.
    public func refreshCycle() async {
        let started = clock.now
        let generation = self.generation
        // Nor does replication-status start while a check or show-servers of an earlier cycle
        // still runs: it would count their connections as streaming clients. (The other way
        // round cannot happen: a cycle that starts replication-status holds its check and
        // show-servers until it is done, and they count as running meanwhile.)
        let connectionsOpen = Self.opensReplicationConnections.contains { isRunning($0) }
        let sources = Source.allCases.filter { source in
            if source == .replication && connectionsOpen { return false }
            return running.insert(SourceRun(source: source, generation: generation)).inserted
        }
        if sources.count < Source.allCases.count {
            logger.debug("a source of the previous refresh is still running: it is not started again, nor is replication-status while check or show-servers runs")
        }
        let afterReplication = sources.contains(.replication) ? sources.filter(Self.opensReplicationConnections.contains) : []
        await withTaskGroup(of: Void.self) { group in
            for source in sources where !afterReplication.contains(source) {
                group.addTask {
                    await self.refresh(source)
                    await self.finished(SourceRun(source: source, generation: generation))
                    guard source == .replication else { return }
                    await withTaskGroup(of: Void.self) { later in
                        for source in afterReplication {
                            later.addTask {
                                // Not for a source a reload replaced meanwhile.
                                if await self.isCurrent(generation) { await self.refresh(source) }
                                await self.finished(SourceRun(source: source, generation: generation))
                            }
                        }
                    }
                }
            }
        }
        let milliseconds = Self.milliseconds(clock.now - started)
        store.update { $0.lastRefreshMilliseconds = milliseconds }
        logger.debug("refresh cycle done", ["duration_ms": Logger.number(milliseconds)])
    }

    private func finished(_ run: SourceRun) {
        running.remove(run)
    }

    private func isCurrent(_ generation: UInt64) -> Bool { generation == self.generation }

    /// Whether `source` of the current barman source is running now.
    func isRunning(_ source: Source) -> Bool {
        running.contains(SourceRun(source: source, generation: generation))
    }

    private func refresh(_ source: Source) async {
        switch source {
        case .backups: await refreshBackupsAndDetails()
        case .checks: await refreshChecks()
        case .replication: await refreshReplication()
        case .servers: await refreshServersAndWALCatalogs()
        }
    }

    private func expired(_ fetchedAt: ContinuousClock.Instant?, ttl: Duration) -> Bool {
        guard let fetchedAt else { return true }
        return clock.now - fetchedAt >= ttl
    }

    private func refreshChecks() async {
        guard let (checks, fetchedAt) = await fetch(.check, due: { $0.expired($0.checksFetchedAt, ttl: $0.settings.checksCacheTTL) },
                                                    decode: { output throws(DecodeFailure) in try BarmanDecoding.checks(output) }) else { return }
        checksFetchedAt = fetchedAt
        store.update { $0.checks = checks }
    }

    private func refreshReplication() async {
        guard let (report, fetchedAt) = await fetch(.replicationStatus, due: { $0.expired($0.replicationFetchedAt, ttl: $0.settings.cacheTTL) },
                                                    decode: { output throws(DecodeFailure) in try BarmanDecoding.replication(output) }) else { return }
        if !report.errors.isEmpty {
            logger.warn("barman replication-status could not reach every server; they have no streaming metrics until it can",
                        ["servers": report.unreachable.joined(separator: ","), "error": report.errors.joined(separator: "; ")])
        }
        replicationFetchedAt = fetchedAt
        store.update { $0.replication = report.clients }
    }

    /// `--version` when due, `show-servers all` when its TTL expired, then every server's WAL
    /// catalog, which is read at each refresh: it is a file, no barman process.
    private func refreshServersAndWALCatalogs() async {
        if let (version, _) = await fetch(.version, due: { $0.versionDue },
                                          decode: { output throws(DecodeFailure) in try BarmanDecoding.version(output) }) {
            versionDue = false
            store.update { $0.barmanVersion = version }
        }
        if let (servers, fetchedAt) = await fetch(.showServers, due: { $0.expired($0.serversFetchedAt, ttl: $0.settings.serversCacheTTL) },
                                                  decode: { output throws(DecodeFailure) in try BarmanDecoding.serverInfo(output) }) {
            serversFetchedAt = fetchedAt
            serverInfo = servers
            store.update { snapshot in
                snapshot.servers = servers
                snapshot.lastArchivedWAL = snapshot.lastArchivedWAL.filter { servers[$0.key] != nil }
            }
        }
        await readWALCatalogs()
    }

    /// A catalog that cannot be read keeps its last value (and is logged once per new reason):
    /// the age then grows, so a WAL alert fires rather than staying silent.
    private func readWALCatalogs() async {
        let locations = serverInfo.compactMapValues(\.walCatalog)
        guard !locations.isEmpty else { return }
        let generation = self.generation
        let results = await Self.newestArchiveTimes(locations, reader: runner)
        guard generation == self.generation else { return }
        var times: [ServerName: Double] = [:]
        for (server, result) in results {
            switch result {
            case .success(let time):
                if walCatalogProblems.removeValue(forKey: server) != nil {
                    logger.info("the WAL catalog is readable again", ["server": server.text])
                }
                if let time { times[server] = time }
            case .failure(let error):
                if walCatalogProblems[server] != error.description {
                    walCatalogProblems[server] = error.description
                    logger.error("cannot read the WAL catalog; barman_last_archived_wal_timestamp_seconds keeps its last value (run the exporter as barman's user)",
                                 ["server": server.text, "error": error.description])
                }
            }
        }
        store.update { snapshot in
            var kept = snapshot.lastArchivedWAL.filter { results[$0.key].map { if case .failure = $0 { true } else { false } } ?? false }
            kept.merge(times) { _, new in new }
            snapshot.lastArchivedWAL = kept
        }
    }

    /// Off the actor: file reads, a few kilobytes per server.
    private nonisolated static func newestArchiveTimes(_ locations: [ServerName: WALCatalogLocation], reader: any BarmanRunner) async
        -> [ServerName: Result<Double?, SystemError>] {
        locations.mapValues { location in
            Result { () throws(SystemError) -> Double? in try WALCatalog.newestArchiveTime(location, reader: reader) }
        }
    }

    private func refreshBackupsAndDetails() async {
        if let (listed, fetchedAt) = await fetch(.listBackups, due: { $0.expired($0.backupsFetchedAt, ttl: $0.settings.cacheTTL) },
                                                 decode: { output throws(DecodeFailure) in try BarmanDecoding.backupList(output) }) {
            backupsFetchedAt = fetchedAt
            backups = listed
            detailsFetchedAt = detailsFetchedAt.filter { listed[$0.key] != nil }
            store.update { snapshot in
                snapshot.backups = listed
                snapshot.details = snapshot.details.filter { listed[$0.key] != nil }
            }
        }
        await refreshDetails()
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

    /// Whether the newest DONE backup of `server` needs a `show-backup`: never asked, or
    /// `list-backups` shows it changed since (a new backup, or new WAL). Nothing else changes
    /// its answer, so no TTL re-asks it.
    private func detailsDue(_ server: ServerName, _ listing: DetailsKey) -> Bool {
        detailsFetchedAt[server]?.listing != listing
    }

    /// `show-backup` for the newest DONE backup of each server that needs one, servers never
    /// asked or asked longest ago first, so none waits behind the others for ever.
    private func refreshDetails() async {
        var due: [(command: BarmanCommand, lastAsked: ContinuousClock.Instant?)] = []
        for (server, list) in backups {
            guard let newest = list.first(where: \.isDone), detailsDue(server, DetailsKey(newest)) else { continue }
            due.append((.showBackup(server: server.text, backupID: newest.id), detailsFetchedAt[server]?.at))
        }
        let ordered = Self.fairOrder(due).map(\.command)
        guard !ordered.isEmpty else { return }
        // Up to the slot limit at once; each waits for its slot in `fetch`.
        await withTaskGroup(of: Void.self) { group in
            for command in ordered {
                group.addTask { await self.refreshDetails(command) }
            }
        }
    }

    /// The listing of `server`'s newest DONE backup now, if it is still `backupID`.
    private func currentListing(_ server: ServerName, _ backupID: String) -> DetailsKey? {
        guard let newest = backups[server]?.first(where: \.isDone), newest.id == backupID else { return nil }
        return DetailsKey(newest)
    }

    /// Never asked first, then longest ago, then by command (server name) for a stable order.
    static func fairOrder(_ due: [(command: BarmanCommand, lastAsked: ContinuousClock.Instant?)]) -> [(command: BarmanCommand, lastAsked: ContinuousClock.Instant?)] {
        due.sorted { left, right in
            switch (left.lastAsked, right.lastAsked) {
            case (nil, nil): return left.command.description < right.command.description
            case (nil, _): return true
            case (_, nil): return false
            case let (a?, b?): return a == b ? left.command.description < right.command.description : a < b
            }
        }
    }

    private func refreshDetails(_ command: BarmanCommand) async {
        guard case .showBackup(let serverText, let backupID) = command else { return }
        let server = ServerName(serverText)
        // The listing this answer is for: taken when the command starts, so WAL that arrives
        // while it runs makes the next listing differ and asks again.
        var answered: DetailsKey?
        guard let (details, fetchedAt) = await fetch(command, due: { refresher in
            answered = refresher.currentListing(server, backupID)
            return answered.map { refresher.detailsDue(server, $0) } ?? false
        }, decode: { output throws(DecodeFailure) in
            try BarmanDecoding.backupDetails(output, server: serverText, backupID: backupID)
        }), let answered else { return }
        detailsFetchedAt[server] = (answered, fetchedAt)
        store.update { $0.details[server] = details }
    }

    // MARK: - Running one command

    /// Waits for a barman slot (first come, first served).
    private func acquireSlot() async {
        if commandsRunning < max(1, settings.maxConcurrentCommands) {
            commandsRunning += 1
            return
        }
        await withCheckedContinuation { waitingForSlot.append($0) }
    }

    private func releaseSlot() {
        commandsRunning -= 1
        releaseSlots()
    }

    /// Hands free slots to waiting runs (also after a reload raised the limit).
    private func releaseSlots() {
        while commandsRunning < max(1, settings.maxConcurrentCommands), !waitingForSlot.isEmpty {
            commandsRunning += 1
            waitingForSlot.removeFirst().resume()
        }
    }

    /// Runs one command once it has a slot and is still `due`, decodes it, logs and records the
    /// outcome. Nil when there is no usable output, it is no longer due, or a reload replaced
    /// its source meanwhile. The instant is when the command started, for the TTL.
    private func fetch<Value>(_ command: BarmanCommand, due: (isolated Refresher) -> Bool,
                              decode: (CommandOutput) throws(DecodeFailure) -> Value) async -> (Value, ContinuousClock.Instant)? {
        guard due(self) else { return nil }
        await acquireSlot()
        defer { releaseSlot() }
        // Another run may have answered while this one waited.
        guard due(self), !Task.isCancelled else { return nil }
        let generation = self.generation
        let runner = self.runner

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

        guard generation == self.generation else {
            logger.debug("barman answer discarded: a reload changed the barman source", ["logId": logID, "argv": argv])
            return nil
        }
        if let failure, failure.isCancellation {
            logger.debug("barman command cancelled", ["logId": logID, "argv": argv, "reason": failure.message])
            return nil
        }
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
        return result.map { ($0, started) }
    }

    /// A short random id that ties together the log lines of one barman run (the Go exporter's
    /// troubleshooting guide).
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
