#if canImport(Glibc)
import Glibc
#endif
import CGlibcShims
import Synchronization

/// Starts a detached OS thread for work that blocks (waitpid, poll, blocking reads), so it
/// never occupies one of the few threads of Swift's cooperative pool.
public enum DetachedThread {
    /// `name` is what `top -H`, `ps -L` and perf show for the thread (Linux keeps 15 bytes);
    /// without one it keeps the name of the thread that started it.
    public static func start(name: String? = nil, _ body: @escaping @Sendable () -> Void) throws(SystemError) {
        let thread = try startThread(name: name, body)
        // Cannot fail: the thread was just created and nobody else has its handle.
        _ = pthread_detach(thread)
    }
}

/// An OS thread whose end can be waited for: for a loop whose stop must see it finish before
/// what the loop uses is freed (an HTTP event loop and its daemon, the accepting thread).
public final class JoinableThread: Sendable {
    /// nil once joined; held while joining, so a second `join` also returns only after the end.
    private let handle: Mutex<pthread_t?>

    /// Starts `body` on a thread of its own; `name` as for `DetachedThread`.
    public init(name: String? = nil, _ body: @escaping @Sendable () -> Void) throws(SystemError) {
        handle = Mutex(try startThread(name: name, body))
    }

    /// Never joined: the thread's resources go back to the system when it ends.
    deinit {
        handle.withLock { handle in
            // Cannot fail: the handle is valid and not joined (join sets it to nil).
            if let thread = handle { _ = pthread_detach(thread) }
        }
    }

    /// Returns once the body has returned. Idempotent; never from the thread itself (that would
    /// wait for itself).
    public func join() {
        handle.withLock { handle in
            guard let thread = handle else { return }
            let status = pthread_join(thread, nil)
            // Only a join from the thread itself (EDEADLK) fails for a handle joined once: a bug.
            precondition(status == 0, "pthread_join failed with error \(status)")
            handle = nil
        }
    }
}

/// A thread that runs a loop until `stop`, which returns only once the loop has ended: for an
/// owner that frees what the loop uses right after (an HTTP event loop and its daemon, the
/// accepting thread). Made before the owner's other stored properties and started last, so
/// the loop may capture the owner.
public final class StoppableThread: Sendable {
    private let stopRequested = Atomic<Bool>(false)
    /// nil until `start`.
    private let thread = Mutex<JoinableThread?>(nil)

    public init() {}

    /// True once `stop` was called: the loop checks it every turn.
    public var isStopping: Bool { stopRequested.load(ordering: .acquiring) }

    /// Starts `body` on a thread of its own (once); `name` as for `DetachedThread`.
    public func start(name: String, _ body: @escaping @Sendable () -> Void) throws(SystemError) {
        let started = try JoinableThread(name: name, body)
        thread.withLock { $0 = started }
    }

    /// Asks the loop to end, calls `wake` so that a waiting loop sees it, and returns once the
    /// loop has ended. Idempotent.
    public func stop(waking wake: () -> Void) {
        stopRequested.store(true, ordering: .releasing)
        wake()
        thread.withLock { $0 }?.join()
    }
}

private func startThread(name: String?, _ body: @escaping @Sendable () -> Void) throws(SystemError) -> pthread_t {
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
    return thread
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
