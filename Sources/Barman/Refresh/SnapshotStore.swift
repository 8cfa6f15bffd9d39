import Synchronization
import Platform
import Exposition
import Configuration

/// Holds the current snapshot. Refreshes swap in a new value; scrapes copy the current one out.
/// Both take the lock only to copy a reference-counted value, so a scrape never waits on barman.
public final class SnapshotStore: Sendable {
    private let current: Mutex<(snapshot: MetricsSnapshot, generation: UInt64)>
    private let observers = Mutex<[@Sendable () -> Void]>([])

    public init(_ initial: MetricsSnapshot) {
        current = Mutex((initial, 0))
    }

    public var snapshot: MetricsSnapshot {
        current.withLock { $0.snapshot }
    }

    /// The snapshot with a number that changes whenever the snapshot does, so a rendered body
    /// can be reused until then.
    public var versioned: (snapshot: MetricsSnapshot, generation: UInt64) {
        current.withLock { $0 }
    }

    /// Applies `change` as one new snapshot, then tells the observers.
    public func update(_ change: (inout MetricsSnapshot) -> Void) {
        current.withLock { state in
            change(&state.snapshot)
            state.generation &+= 1
        }
        for observer in observers.withLock({ $0 }) { observer() }
    }

    /// Calls `observer` after every update (the renderer's wakeup); it must return at once.
    public func onUpdate(_ observer: @escaping @Sendable () -> Void) {
        observers.withLock { $0.append(observer) }
    }
}
