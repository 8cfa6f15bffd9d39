import Synchronization

/// Holds the current snapshot. Refreshes swap in a new value; scrapes copy the current one out.
/// Both take the lock only to copy a reference-counted value, so a scrape never waits on barman.
public final class SnapshotStore: Sendable {
    private let current: Mutex<MetricsSnapshot>

    public init(_ initial: MetricsSnapshot) {
        current = Mutex(initial)
    }

    public var snapshot: MetricsSnapshot {
        current.withLock { $0 }
    }

    public func update(_ change: (inout MetricsSnapshot) -> Void) {
        current.withLock { change(&$0) }
    }
}
