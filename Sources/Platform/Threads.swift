#if canImport(Glibc)
import Glibc
#endif
import CGlibcShims

/// Starts a detached OS thread for work that blocks (waitpid, poll, blocking reads), so it
/// never occupies one of the few threads of Swift's cooperative pool.
public enum DetachedThread {
    public static func start(_ body: @escaping @Sendable () -> Void) throws(SystemError) {
        let box = Unmanaged.passRetained(ThreadBody(body))
        var thread = pthread_t()
        let status = pthread_create(&thread, nil, { raw in
            guard let raw else { return nil }
            let body = Unmanaged<ThreadBody>.fromOpaque(raw).takeRetainedValue()
            body.run()
            return nil
        }, box.toOpaque())
        guard status == 0 else {
            box.release()
            throw SystemError("start", "a thread", call: "pthread_create", code: status)
        }
        // Cannot fail: the thread was just created and nobody else has its handle.
        _ = pthread_detach(thread)
    }
}

private final class ThreadBody: Sendable {
    let run: @Sendable () -> Void
    init(_ run: @escaping @Sendable () -> Void) { self.run = run }
}

/// The calling thread's scheduling.
public enum Threads {
    /// Nice +10 (or `nice`) for this thread alone (Linux schedules threads as tasks), so the
    /// HTTP thread goes first on a busy host. Best effort: false when the kernel refused.
    @discardableResult
    public static func lowerPriority(nice: Int32 = 10) -> Bool {
        cgs_set_thread_nice(nice) == 0
    }
}

/// The processors this process may run on.
public enum Processors {
    /// How many processors the scheduler lets this process use (its affinity mask: a container's
    /// cpuset or systemd's `CPUAffinity=`), at least 1; 1 if the kernel will not say.
    public static func available() -> Int {
        max(1, Int(cgs_available_processors()))
    }
}

/// The end of the process.
public enum ProcessExit {
    /// Exits with `status` (exit(3): atexit handlers run, stdio is flushed).
    public static func exit(_ status: Int32) -> Never {
        Glibc.exit(status)
    }
}
