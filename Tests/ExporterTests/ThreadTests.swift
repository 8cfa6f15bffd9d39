import Platform
import Synchronization
import Testing

/// A stop that frees what a loop uses (an HTTP daemon) relies on `join` returning only after
/// the loop's thread has ended.
@Suite("Threads")
struct ThreadTests {
    private final class Counter: Sendable {
        private let value = Atomic<Int>(0)
        func add() { value.add(1, ordering: .releasing) }
        var count: Int { value.load(ordering: .acquiring) }
    }

    @Test func joinReturnsOnlyOnceTheBodyHasEnded() throws {
        let ended = Counter()
        let thread = try JoinableThread(name: "test join") {
            Deadline.sleep(.milliseconds(100))
            ended.add()
        }
        thread.join()
        #expect(ended.count == 1)
    }

    @Test func joiningFromTwoThreadsWaitsForTheEndInBoth() throws {
        let release = try Wakeup()
        let ended = Counter()
        let thread = try JoinableThread {
            _ = release.wait(timeout: .seconds(10))
            ended.add()
        }
        let sawEnd = Counter()
        let joiners = try (0..<2).map { _ in
            try JoinableThread {
                thread.join()
                if ended.count == 1 { sawEnd.add() }
            }
        }
        Deadline.sleep(.milliseconds(50))
        release.signal()
        for joiner in joiners { joiner.join() }
        #expect(sawEnd.count == 2)
        thread.join()  // a third join, after the end, returns at once
    }

    /// `stop` wakes a waiting loop and returns only once it has ended: what the loop uses may be
    /// freed right after.
    @Test func stopWakesTheLoopAndWaitsForItsEnd() throws {
        let wakeup = try Wakeup()
        let ended = Counter()
        let loop = StoppableThread()
        try loop.start(name: "test loop") {
            while !loop.isStopping { _ = wakeup.wait(timeout: .seconds(10)) }
            Deadline.sleep(.milliseconds(100))  // cleaning up after the last turn
            ended.add()
        }
        Deadline.sleep(.milliseconds(20))
        let asked = ContinuousClock.now
        loop.stop(waking: { wakeup.signal() })
        #expect(ended.count == 1)
        #expect(ContinuousClock.now - asked < .seconds(5), "woken, not timed out")
        loop.stop(waking: {})  // a second stop returns at once
    }
}
