import Synchronization

/// Password checks per client address: at most `allowedFailures` wrong passwords (checks under
/// way count as wrong until they are done) in a `window`; past that, that address's logins that
/// would need a bcrypt are refused (429, after a delay) without one, until the window has
/// passed. A scraper whose password was already verified is never throttled: it is answered
/// before this is asked.
final class LoginThrottle: Sendable {
    static let allowedFailures = 5
    static let window: Duration = .seconds(60)
    /// Addresses remembered at most (a flood from many addresses cannot grow it without bound).
    static let capacity = 4096

    private struct Entry {
        var failures = 0
        var checking = 0
        var since: ContinuousClock.Instant
    }

    private let entries = Mutex<[String: Entry]>([:])
    private let clock = ContinuousClock()

    /// Takes one password check for `address`; false when its failures (and the checks it has
    /// under way) used up the window's allowance.
    func beginCheck(_ address: String) -> Bool {
        let now = clock.now
        return entries.withLock { entries in
            var entry = entries[address] ?? Entry(since: now)
            if now - entry.since >= Self.window { entry = Entry(checking: entry.checking, since: now) }
            guard entry.failures + entry.checking < Self.allowedFailures else { return false }
            if entries[address] == nil && entries.count >= Self.capacity {
                entries = entries.filter { now - $0.value.since < Self.window || $0.value.checking > 0 }
                if entries.count >= Self.capacity { entries = [:] }
            }
            entry.checking += 1
            entries[address] = entry
            return true
        }
    }

    /// Ends a check that `beginCheck` allowed.
    func endCheck(_ address: String, failed: Bool) {
        entries.withLock { entries in
            guard var entry = entries[address] else { return }
            entry.checking = max(0, entry.checking - 1)
            if failed { entry.failures += 1 }
            entries[address] = entry
        }
    }
}
