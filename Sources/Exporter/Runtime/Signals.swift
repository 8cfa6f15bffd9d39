#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Signal handling with the self-pipe pattern: the handler only writes the signal number to a
/// pipe (async-signal-safe), and one thread turns the bytes into an AsyncStream. The handlers
/// are installed on the first line of `main`, so a signal sent during start-up waits in the
/// pipe until the lifecycle reads it. (Blocking signals with a mask does not work here:
/// libdispatch's main-queue loop runs the main thread with an empty mask.)
public enum Signals {
    public static let handled: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGUSR1]
    static let pipeRead = Atomic<Int32>(-1)
    static let pipeWrite = Atomic<Int32>(-1)

    /// Installs the handlers. Returns false (and leaves default dispositions) if it cannot.
    @discardableResult
    public static func install() -> Bool {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return false }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        // A full pipe (thousands of unread signals) must not block the handler.
        _ = fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK)
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
        signal(SIGPIPE, SIG_IGN)
        // A parent may have started us with these blocked; a signal it sent already is pending
        // and is delivered to the handler now.
        var handledSet = sigset_t()
        sigemptyset(&handledSet)
        for number in handled { sigaddset(&handledSet, number) }
        pthread_sigmask(SIG_UNBLOCK, &handledSet, nil)
        return true
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
        try DetachedThread.start {
            var byte: UInt8 = 0
            while true {
                let count = read(fd, &byte, 1)
                if count == 1 {
                    continuation.yield(Int32(byte))
                } else if count < 0 && errno == EINTR {
                    continue
                } else {
                    continuation.finish()
                    return
                }
            }
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
