import Platform
import Exposition
import Configuration
import Barman

/// A long-running part of the daemon; it runs until its task is cancelled (or, for the signal
/// handler, until a stop signal).
public protocol Service: Sendable {
    func run() async
}

/// Runs services in one task group, in the spirit of swift-service-lifecycle's ServiceGroup:
/// when the first one returns (the signal handler, on SIGTERM or SIGINT), the others are
/// cancelled and waited for.
public enum ServiceGroup {
    public static func run(_ services: [any Service]) async {
        await withTaskGroup(of: Void.self) { group in
            for service in services {
                group.addTask { await service.run() }
            }
            await group.next()
            group.cancelAll()
        }
    }

    /// Returns when the task is cancelled (for a service that has nothing left to do).
    static func waitForCancellation() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(3600))
        }
    }
}

/// Refreshes every `refresh_interval` (`Refresher.runForever`).
struct RefreshService: Service {
    let refresher: Refresher

    func run() async {
        await refresher.runForever()
    }
}

/// Every second: frees rendered bodies of seconds before the previous one (a large body is
/// ~2 MB that would otherwise wait for the next scrape, typically a minute, to be replaced), and
/// hands freed memory back to the kernel after a refresh or a render. The only caller of
/// `Memory.releaseFreeMemory`, so no scrape or refresh pays for it.
struct MemoryReclaimer: Service {
    let store: SnapshotStore
    let cache: ExpositionCache

    func run() async {
        var lastSeen: (generation: UInt64, renders: Int)?
        while !Task.isCancelled {
            do { try await Task.sleep(for: .seconds(1)) } catch { return }
            // The previous second's body stays: it is served while a late renderer catches up.
            let dropped = cache.dropExpired(before: WallClock.nowSeconds().rounded(.down) - 1)
            let seen = (store.versioned.generation, cache.renders)
            if dropped || lastSeen.map({ $0 != seen }) ?? true {
                Memory.releaseFreeMemory()
            }
            lastSeen = seen
        }
    }
}

/// Waits for signals: reload on SIGHUP/SIGUSR1; on SIGTERM/SIGINT stops the HTTP server and
/// barman, and returns, which ends the other services.
struct SignalHandler: Service {
    let signals: AsyncStream<Int32>
    let exporter: ExporterService
    let logger: Logger

    func run() async {
        for await signal in signals {
            if Signals.reloads.contains(signal) {
                SystemdNotifier.notify("RELOADING=1")
                await exporter.reload(reason: Signals.name(signal))
                SystemdNotifier.notify("READY=1")
            } else {
                logger.info("stopping", ["signal": Signals.name(signal)])
                SystemdNotifier.notify("STOPPING=1")
                exporter.stop()
                return
            }
        }
    }
}
