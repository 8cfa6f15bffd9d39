import Synchronization
import Platform
import Exposition
import Configuration
import Barman

/// Renders each second's bodies just before the second starts, and a new snapshot's once
/// snapshots settle (`ExpositionCache.settleTime`), for the formats scraped lately
/// (`ExpositionCache.prepare`): no scrape waits for a render. It sleeps until the next second,
/// woken early by a new snapshot or a stop.
/// Costs one render a second while scraped (about 25 ms at 30,000 series, well under a
/// millisecond at a few hundred), nothing when nobody scrapes. Runs on its own thread at a lower
/// priority (nice +10), so the HTTP threads serving scrapes go first on a busy host.
final class Renderer: Service {
    private let store: SnapshotStore
    private let cache: ExpositionCache
    private let logger: Logger
    private let wakeup: Wakeup
    private let stopped = Atomic<Bool>(false)
    /// How many times the render loop has run (tests check it sleeps).
    private let loops = Atomic<Int>(0)
    var wakeups: Int { loops.load(ordering: .relaxed) }

    init(store: SnapshotStore, cache: ExpositionCache, logger: Logger) throws(SystemError) {
        self.store = store
        self.cache = cache
        self.logger = logger
        let wakeup = try Wakeup()
        self.wakeup = wakeup
        store.onUpdate { wakeup.signal() }
    }

    func run() async {
        let started: Bool = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                do {
                    try DetachedThread.start(name: "renderer") { [self] in
                        Threads.lowerPriority()  // best effort: at worst it renders at normal priority
                        cache.withRenderer { renderAhead() }
                        continuation.resume(returning: true)
                    }
                } catch {
                    logger.error("cannot start the renderer thread; scrapes render their own bodies", ["error": "\(error)"])
                    continuation.resume(returning: false)
                }
            }
        } onCancel: {
            stopped.store(true, ordering: .releasing)
            wakeup.signal()
        }
        if !started { await ServiceGroup.waitForCancellation() }
    }

    private func renderAhead() {
        let clock = ContinuousClock()
        var renderTime = Duration.zero
        while !stopped.load(ordering: .acquiring) {
            loops.add(1, ordering: .relaxed)
            let now = WallClock.nowSeconds()
            let second = now.rounded(.down)
            // Ahead of the next second by twice the last render, so it is ready in time.
            let lead = min(0.5, 2 * Refresher.seconds(renderTime) + 0.005)
            let started = clock.now
            var rendered = cache.prepare(store: store, second: second, now: now)
            if second + 1 - now <= lead {
                rendered = cache.prepare(store: store, second: second + 1, now: now) || rendered
            }
            if rendered { renderTime = clock.now - started }
            // Until the next second's render is due (or that second starts, if rendered already).
            let untilNextRender = second + 1 - lead - WallClock.nowSeconds()
            let pause = untilNextRender > 0 ? untilNextRender : max(0.001, second + 1 - WallClock.nowSeconds())
            wakeup.wait(timeout: .seconds(pause))
        }
    }
}
