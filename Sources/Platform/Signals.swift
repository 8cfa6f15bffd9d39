#if canImport(Glibc)
import Glibc
#endif
import CGlibcShims
import Synchronization

/// Signal handling with the self-pipe pattern: the handler only writes the signal number to a
/// pipe (async-signal-safe), and one thread turns the bytes into an AsyncStream. The handlers
/// are installed on the first line of `main`, so a signal sent during start-up waits in the
/// pipe until the lifecycle reads it. (Blocking signals with a mask does not work here:
/// libdispatch's main-queue loop runs the main thread with an empty mask.)
public enum Signals {
    public static let handled: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGUSR1]
    /// Signals that reload the config; the other handled ones stop the exporter.
    public static let reloads: Set<Int32> = [SIGHUP, SIGUSR1]
    public static let stops: Set<Int32> = [SIGTERM, SIGINT]
    static let pipeRead = Atomic<Int32>(-1)
    static let pipeWrite = Atomic<Int32>(-1)

    /// Installs the handlers. Returns false (and leaves default dispositions) if it cannot.
    @discardableResult
    public static func install() -> Bool {
        var fds: [Int32] = [-1, -1]
        // Close-on-exec so barman never inherits it; non-blocking so a full pipe (thousands of
        // unread signals) never blocks the handler.
        guard cgs_pipe_cloexec(&fds) == 0, fcntl(fds[1], F_SETFL, O_NONBLOCK) == 0 else { return false }
        pipeRead.store(fds[0], ordering: .relaxed)
        pipeWrite.store(fds[1], ordering: .relaxed)

        var action = sigaction()
        action.__sigaction_handler.sa_handler = signalHandler
        sigemptyset(&action.sa_mask)
        action.sa_flags = SA_RESTART
        for number in handled where sigaction(number, &action, nil) != 0 {
            return false
        }
        // A scraper that hangs up mid-response must not kill the process.
        var ignore = sigaction()
        ignore.__sigaction_handler.sa_handler = SIG_IGN
        sigemptyset(&ignore.sa_mask)
        guard sigaction(SIGPIPE, &ignore, nil) == 0 else { return false }
        // A parent may have started us with these blocked; a signal it sent already is pending
        // and is delivered to the handler now.
        var handledSet = sigset_t()
        sigemptyset(&handledSet)
        for number in handled { sigaddset(&handledSet, number) }
        return pthread_sigmask(SIG_UNBLOCK, &handledSet, nil) == 0
    }

    /// The signals barman must get back at their default disposition when it is spawned.
    static func signalSet() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for number in handled + [SIGPIPE] { sigaddset(&set, number) }
        return set
    }

    /// Every handled signal, in the order received.
    public static func stream() throws(SystemError) -> AsyncStream<Int32> {
        let (stream, continuation) = AsyncStream<Int32>.makeStream(bufferingPolicy: .unbounded)
        let fd = pipeRead.load(ordering: .relaxed)
        guard fd >= 0 else { throw SystemError(message: "signal handlers are not installed") }
        try DetachedThread.start(name: "signals") {
            var byte: UInt8 = 0
            while (try? System.call("read") { read(fd, &byte, 1) }) == 1 {
                continuation.yield(Int32(byte))
            }
            continuation.finish()
        }
        return stream
    }

    public static func name(_ number: Int32) -> String {
        switch number {
        case SIGTERM: return "SIGTERM"
        case SIGINT: return "SIGINT"
        case SIGHUP: return "SIGHUP"
        case SIGUSR1: return "SIGUSR1"
        default: return "signal \(number)"
        }
    }
}

private let signalHandler: @convention(c) (Int32) -> Void = { number in
    let savedErrno = errno
    var byte = UInt8(truncatingIfNeeded: number)
    _ = write(Signals.pipeWrite.load(ordering: .relaxed), &byte, 1)
    errno = savedErrno
}
