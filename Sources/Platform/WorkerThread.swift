import Synchronization

/// One OS thread that runs jobs one at a time, in the order of their due time, with a bounded
/// queue: work that must not run on the HTTP event thread (password hashing, delayed answers)
/// takes at most this one thread, whatever clients send. Started at the first job; it lives as
/// long as the process.
public final class WorkerThread: Sendable {
    private struct Job {
        var due: ContinuousClock.Instant
        var sequence: UInt64
        var run: @Sendable () -> Void
    }

    private struct State {
        var jobs: [Job] = []
        var sequence: UInt64 = 0
        var started = false
    }

    public let name: String
    /// Jobs waiting at most; `submit` refuses more.
    public let capacity: Int
    private let nice: Int32?
    private let state = Mutex(State())
    private let wakeup: Wakeup?
    private let clock = ContinuousClock()

    /// `nice`: a lower priority for the thread (10, 19), so the HTTP thread goes first when
    /// both want a core.
    public init(name: String, capacity: Int, nice: Int32? = nil) {
        self.name = name
        self.capacity = capacity
        self.nice = nice
        wakeup = try? Wakeup()
    }

    /// Jobs waiting now.
    public var queued: Int { state.withLock { $0.jobs.count } }

    /// Runs `job` on the worker once `delay` has passed (and the jobs before it are done).
    /// False, and nothing runs, when the queue is full or the thread cannot start.
    public func submit(after delay: Duration = .zero, _ job: @escaping @Sendable () -> Void) -> Bool {
        guard let wakeup else { return false }
        let due = clock.now + delay
        let (accepted, start) = state.withLock { state -> (Bool, Bool) in
            guard state.jobs.count < capacity else { return (false, false) }
            state.sequence += 1
            state.jobs.append(Job(due: due, sequence: state.sequence, run: job))
            defer { state.started = true }
            return (true, !state.started)
        }
        guard accepted else { return false }
        if start {
            do {
                try DetachedThread.start(name: name) { [self] in
                    if let nice { Threads.lowerPriority(nice: nice) }
                    runForever(wakeup)
                }
            } catch {
                // Nothing will run the job: take it back, and let a later submit try again.
                state.withLock { state in
                    state.jobs.removeAll()
                    state.started = false
                }
                return false
            }
        }
        wakeup.signal()
        return true
    }

    private func runForever(_ wakeup: Wakeup) {
        while true {
            let now = clock.now
            let next = state.withLock { state -> (job: Job?, wait: Duration?) in
                guard let index = state.jobs.indices.min(by: { Self.earlier(state.jobs[$0], state.jobs[$1]) }) else { return (nil, nil) }
                let job = state.jobs[index]
                guard job.due <= now else { return (nil, job.due - now) }
                state.jobs.remove(at: index)
                return (job, nil)
            }
            if let job = next.job {
                job.run()
            } else {
                wakeup.wait(timeout: next.wait ?? .seconds(3600))
            }
        }
    }

    private static func earlier(_ a: Job, _ b: Job) -> Bool {
        a.due == b.due ? a.sequence < b.sequence : a.due < b.due
    }
}
