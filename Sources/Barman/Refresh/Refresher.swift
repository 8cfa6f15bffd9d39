import Platform
import Exposition
import Configuration

/// Cache lifetimes and limits, from the config.
public struct RefreshSettings: Sendable, Equatable {
    public var cacheTTL: Duration
    public var checksCacheTTL: Duration
    public var serversCacheTTL: Duration
    public var refreshInterval: Duration
    /// At most this many barman processes run at once, across every collector: room for a slow
    /// `check`, `replication-status` and two `show-backup`s, and no more on a small backup host.
    public var maxConcurrentCommands: Int
    /// The servers asked about and served (`servers_include`, `servers_exclude`).
    public var serverSelection: ServerSelection

    public init(cacheTTL: Duration, checksCacheTTL: Duration, serversCacheTTL: Duration = .seconds(600), refreshInterval: Duration, maxConcurrentCommands: Int = 4,
                serverSelection: ServerSelection = ServerSelection()) {
        self.serverSelection = serverSelection
        self.cacheTTL = cacheTTL
        self.checksCacheTTL = checksCacheTTL
        self.serversCacheTTL = serversCacheTTL
        self.refreshInterval = refreshInterval
        self.maxConcurrentCommands = maxConcurrentCommands
    }

    public init(_ config: Config) {
        self.init(cacheTTL: .seconds(config.cacheTTL), checksCacheTTL: .seconds(config.checksCacheTTL),
                  serversCacheTTL: .seconds(config.serversCacheTTL), refreshInterval: .seconds(config.refreshInterval),
                  serverSelection: config.serverSelection)
    }
}

/// Runs the collectors on their schedules and publishes their answers to the store.
///
/// At each refresh every collector that is due and not still running from an earlier refresh
/// starts; they run concurrently, except that one waits for those named in its `after` and
/// for those whose `notWhileRunning` names it, when they start in the same refresh. Refreshes
/// never stack: a collector still running at the next tick is not started again. Every barman
/// process waits for one of `maxConcurrentCommands` slots. A failed run keeps the collector's
/// last usable answer and is recorded in the health metrics.
public actor Refresher {
    let store: SnapshotStore
    private let logger: Logger
    private var runner: any BarmanRunner
    private var files: any BarmanFiles
    private var settings: RefreshSettings
    private var collectors: [any Collector]
    private let clock = ContinuousClock()

    /// Bumped when a reload changes where barman's answers come from: runs of an older
    /// generation are cancelled, their answers discarded, and they block nothing new.
    private var generation: UInt64 = 0
    /// Collectors running now, by generation.
    private var running: Set<CollectorRun> = []
    /// When each collector's last usable answer was asked (monotonic), for the TTLs.
    private var answeredAt: [String: ContinuousClock.Instant] = [:]
    /// Collectors that answered since start or the last reload (`oncePerReload`).
    private var answeredSinceReload: Set<String> = []
    /// Collectors whose command failed at their last runs: how many times in a row, and the
    /// first refresh that may run them again (`retryBackoff`).
    private var failing: [String: (streak: Int, retryAtCycle: UInt64)] = [:]

    /// Per refresh: the collectors it started that are done, and who waits for which.
    private var cycles: UInt64 = 0
    private var finishedInCycle: [UInt64: Set<String>] = [:]
    private var waitingInCycle: [UInt64: [(name: String, continuation: CheckedContinuation<Void, Never>)]] = [:]

    /// The wait between two refreshes of `runForever`, cut short by a reload that changes the
    /// interval or the source.
    private var pauseWaiter: CheckedContinuation<Void, Never>?
    private var pauseEnded = false

    /// Barman processes running now, and the runs waiting for a slot (first come, first served).
    private var commandsRunning = 0
    private var waitingForSlot: [CheckedContinuation<Void, Never>] = []

    private struct CollectorRun: Hashable {
        var name: String
        var generation: UInt64
    }

    /// `files` defaults to the runner when it serves barman's files too (the mock), else this
    /// host's files.
    public init(runner: any BarmanRunner, files: (any BarmanFiles)? = nil, settings: RefreshSettings, store: SnapshotStore, logger: Logger,
                collectors: [any Collector] = Collectors.all()) {
        self.runner = runner
        self.files = files ?? (runner as? any BarmanFiles) ?? LocalBarmanFiles()
        self.settings = settings
        self.store = store
        self.logger = logger
        self.collectors = collectors
    }

    /// Applies a reloaded config. Cached answers stay valid unless the data source changed; then
    /// the old source's running commands are cancelled and its data is no longer served.
    public func reconfigure(runner: any BarmanRunner, files: (any BarmanFiles)? = nil, settings: RefreshSettings, sourceChanged: Bool) {
        let previous = self.runner
        let intervalChanged = settings.refreshInterval != self.settings.refreshInterval
        self.runner = runner
        self.files = files ?? (runner as? any BarmanFiles) ?? LocalBarmanFiles()
        self.settings = settings
        releaseSlots()
        // barman may have been upgraded: its version is asked again; and what failed may work now.
        answeredSinceReload = []
        failing = [:]
        // The new interval (or source) applies now: the next refresh starts at once, instead of
        // at the end of a pause the old interval set (up to an hour, say).
        if intervalChanged || sourceChanged { endPause() }
        guard sourceChanged else { return }
        generation += 1
        previous.cancelRunning()
        answeredAt = [:]
        // Collectors keep state about the old source (what they asked, what they logged).
        collectors = Collectors.all()
        // Until the new source answers, only the exporter's own metrics, with success 0.
        store.update { $0.forgetAnswers() }
    }

    public var refreshInterval: Duration { settings.refreshInterval }

    /// Refreshes immediately, then every `refreshInterval`, until the task is cancelled. A
    /// collector still running at a tick is left to finish; it starts again at the first tick after.
    public func runForever() async {
        await withDiscardingTaskGroup { group in
            while !Task.isCancelled {
                group.addTask { await self.refreshCycle() }
                await pause(settings.refreshInterval)
            }
            group.cancelAll()
        }
    }

    /// Sleeps for `interval`, or until a reload ends the pause or the task is cancelled (which
    /// ends the sleep, and the sleep ends the pause).
    private func pause(_ interval: Duration) async {
        pauseEnded = false
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: interval) }
            group.addTask { await self.waitForPauseEnd() }
            await group.next()
            group.cancelAll()
            endPause()
        }
    }

    private func waitForPauseEnd() async {
        await withCheckedContinuation { continuation in
            if pauseEnded {
                continuation.resume()
            } else {
                pauseWaiter = continuation
            }
        }
    }

    private func endPause() {
        pauseEnded = true
        pauseWaiter?.resume()
        pauseWaiter = nil
    }

    /// One refresh: every collector that is due and not running starts.
    public func refreshCycle() async {
        let started = clock.now
        let generation = self.generation
        cycles += 1
        let cycle = cycles
        let collectors = self.collectors
        let starting = collectors.filter { collector in
            guard isDue(collector), !isRunning(collector.name) else { return false }
            // Nor while a collector it must not overlap still runs from an earlier refresh.
            return !collector.schedule.notWhileRunning.contains { isRunning($0) }
        }
        if starting.count < collectors.count(where: isDue) {
            logger.debug("a collector of the previous refresh is still running: it is not started again, nor is one that must not overlap it")
        }
        let startingNames = Set(starting.map(\.name))
        for collector in starting { running.insert(CollectorRun(name: collector.name, generation: generation)) }
        finishedInCycle[cycle] = []
        await withTaskGroup(of: Void.self) { group in
            for collector in starting {
                // What it waits for in this refresh: what it reads, and whoever must not overlap it.
                let predecessors = startingNames.filter { other in
                    collector.schedule.after.contains(other)
                        || (collector.schedule.afterFirstAnswerOf.contains(other) && answeredAt[other] == nil)
                        || (starting.first { $0.name == other }?.schedule.notWhileRunning.contains(collector.name) ?? false)
                }
                group.addTask {
                    await self.waitFor(predecessors, in: cycle)
                    // Not for a source a reload replaced meanwhile.
                    if await self.isCurrent(generation) {
                        await collector.collect(CollectContext(refresher: self, collector: collector.name, schedule: collector.schedule, generation: generation,
                                                               files: await self.files, logger: self.logger,
                                                               selection: await self.settings.serverSelection))
                    }
                    await self.finished(collector.name, generation: generation, cycle: cycle)
                }
            }
        }
        finishedInCycle[cycle] = nil
        waitingInCycle[cycle] = nil
        let milliseconds = Self.milliseconds(clock.now - started)
        store.update { $0.lastRefreshMilliseconds = milliseconds }
        logger.debug("refresh cycle done", ["duration_ms": Logger.number(milliseconds)])
    }

    private func isDue(_ collector: any Collector) -> Bool {
        if let failure = failing[collector.name], cycles < failure.retryAtCycle { return false }
        switch collector.schedule.due {
        case .never: return false
        case .everyRefresh: return true
        case .oncePerReload: return !answeredSinceReload.contains(collector.name)
        case .afterTTL(let ttl):
            guard let answeredAt = answeredAt[collector.name] else { return true }
            return clock.now - answeredAt >= ttl(settings)
        }
    }

    private func waitFor(_ names: Set<String>, in cycle: UInt64) async {
        for name in names where !(finishedInCycle[cycle]?.contains(name) ?? true) {
            await withCheckedContinuation { waitingInCycle[cycle, default: []].append((name, $0)) }
        }
    }

    private func finished(_ name: String, generation: UInt64, cycle: UInt64) {
        running.remove(CollectorRun(name: name, generation: generation))
        finishedInCycle[cycle]?.insert(name)
        let waiting = waitingInCycle[cycle] ?? []
        waitingInCycle[cycle] = waiting.filter { $0.name != name }
        for waiter in waiting where waiter.name == name { waiter.continuation.resume() }
    }

    private func isCurrent(_ generation: UInt64) -> Bool { generation == self.generation }

    /// Whether the collector named `name` of the current barman source is running now.
    func isRunning(_ name: String) -> Bool {
        running.contains(CollectorRun(name: name, generation: generation))
    }

    // MARK: - For collectors (through CollectContext)

    func publish(_ change: (inout MetricsSnapshot) -> Void, generation: UInt64) {
        guard generation == self.generation else { return }
        store.update(change)
    }

    /// Runs one command once it has a slot and is still due, decodes it, logs the outcome and
    /// publishes its health and, when usable, `publish`'s change in one store update. Nil when
    /// there is no usable output, it is no longer due, or a reload replaced its source meanwhile.
    func run<Value: Sendable>(_ command: BarmanCommand, for context: CollectContext, stillDue: @Sendable () -> Bool,
                              decode: (CommandOutput) throws(DecodeFailure) -> Value,
                              publish: (Value, inout MetricsSnapshot) -> Void) async -> Value? {
        await acquireSlot()
        defer { releaseSlot() }
        guard stillDue(), !Task.isCancelled, context.generation == generation else { return nil }
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

        guard context.generation == generation else {
            logger.debug("barman answer discarded: a reload changed the barman source", ["logId": logID, "argv": argv])
            return nil
        }
        if let failure {
            switch failure.reason {
            case .cancelled:
                logger.debug("barman command cancelled", ["logId": logID, "argv": argv, "reason": failure.message])
                return nil
            case .failed:
                var fields = [
                    ("logId", logID), ("argv", argv), ("error", failure.message),
                    ("exit_status", failure.exitStatus.map(String.init) ?? "none"), ("stderr", failure.stderrExcerpt),
                    ("duration_s", Logger.number(seconds)),
                ]
                if context.schedule.backsOff {
                    let next = recordFailure(of: context.collector)
                    fields.append(("consecutive_failures", String(next.streak)))
                    fields.append(("next_try", next.refreshes == 1 ? "next refresh" : "in \(next.refreshes) refreshes"))
                }
                logger.log(.error, "barman command failed; serving its last good data", fields: fields)
            }
        }
        if result != nil {
            answeredAt[context.collector] = started
            answeredSinceReload.insert(context.collector)
            failing[context.collector] = nil
        }
        let now = WallClock.nowSeconds()
        store.update { snapshot in
            var health = snapshot.health[command.kind] ?? CommandHealth()
            health.runs += 1
            health.lastRunDurationSeconds = seconds
            health.lastRunSucceeded = result != nil
            if let result {
                health.lastSuccessUnixTime = now
                publish(result, &snapshot)
            } else {
                health.failures += 1
            }
            snapshot.health[command.kind] = health
        }
        return result
    }

    /// A collector whose command keeps failing (barman broken, PostgreSQL unreachable) is asked
    /// again at the next refresh after its first failure, then after 2, 4, 8... refreshes, at
    /// most `maximumBackoff` apart; a usable answer or a reload ends the backoff. Collectors that
    /// run at every refresh (show-backup, the WAL catalog) are not backed off.
    static let maximumBackoff: Duration = .seconds(600)

    static func retryBackoff(streak: Int, refreshInterval: Duration) -> UInt64 {
        let cap = max(1, Int(Self.seconds(maximumBackoff) / max(1, Self.seconds(refreshInterval))))
        return UInt64(min(1 << min(max(streak - 1, 0), 30), cap))
    }

    /// Counts a failure; how many in a row now, and in how many refreshes the next try is.
    private func recordFailure(of collector: String) -> (streak: Int, refreshes: UInt64) {
        let streak = (failing[collector]?.streak ?? 0) + 1
        let refreshes = Self.retryBackoff(streak: streak, refreshInterval: settings.refreshInterval)
        failing[collector] = (streak, cycles + refreshes)
        return (streak, refreshes)
    }

    /// Waits for a barman slot (first come, first served).
    private func acquireSlot() async {
        if commandsRunning < commandSlots {
            commandsRunning += 1
            return
        }
        await withCheckedContinuation { waitingForSlot.append($0) }
    }

    private func releaseSlot() {
        commandsRunning -= 1
        releaseSlots()
    }

    /// How many barman commands may run at once.
    var commandSlots: Int { max(1, settings.maxConcurrentCommands) }

    /// Hands free slots to waiting runs (also after a reload raised the limit).
    private func releaseSlots() {
        while commandsRunning < commandSlots, !waitingForSlot.isEmpty {
            commandsRunning += 1
            waitingForSlot.removeFirst().resume()
        }
    }

    /// A short random id that ties together the log lines of one barman run (the Go exporter's
    /// troubleshooting guide).
    static func newLogID() -> String {
        let alphabet = Array("0123456789abcdefghijklmnopqrstuvwxyz")
        return String((0..<8).map { _ in alphabet[Int.random(in: 0..<alphabet.count)] })
    }

    package static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    static func milliseconds(_ duration: Duration) -> Double {
        (seconds(duration) * 1000).rounded()
    }
}
