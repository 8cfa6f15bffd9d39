#if canImport(Glibc)
import Glibc
#endif
import CGlibcShims

/// Starts a detached OS thread for work that blocks (waitpid, poll, blocking reads), so it
/// never occupies one of the few threads of Swift's cooperative pool.
public enum DetachedThread {
    /// `name` is what `top -H`, `ps -L` and perf show for the thread (Linux keeps 15 bytes);
    /// without one it keeps the name of the thread that started it.
    public static func start(name: String? = nil, _ body: @escaping @Sendable () -> Void) throws(SystemError) {
        let box = Unmanaged.passRetained(ThreadBody(name: name, body))
        var thread = pthread_t()
        let status = pthread_create(&thread, nil, { raw in
            guard let raw else { return nil }
            let body = Unmanaged<ThreadBody>.fromOpaque(raw).takeRetainedValue()
            if let name = body.name {
                // Only a name over 15 bytes fails (ERANGE): cut to fit, and a name is cosmetic.
                let fitted = String(decoding: name.utf8.prefix(15), as: UTF8.self)
                _ = cgs_set_thread_name(fitted)
            }
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
    let name: String?
    let run: @Sendable () -> Void
    init(name: String?, _ run: @escaping @Sendable () -> Void) {
        self.name = name
        self.run = run
    }
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
