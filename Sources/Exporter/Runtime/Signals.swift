#if canImport(Glibc)
import Glibc
#endif

/// Signal handling without async-signal-safety traps: the signals are blocked in every thread
/// from the first line of `main`, and one thread takes them with `sigwait`. A signal sent during
/// start-up stays pending until then, so none is lost.
public enum Signals {
    public static let handled: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGUSR1]

    /// Call before any other thread exists; threads created later inherit the mask.
    public static func blockHandledSignals() {
        var set = signalSet()
        pthread_sigmask(SIG_BLOCK, &set, nil)
        // A scraper that hangs up mid-response must not kill the process.
        signal(SIGPIPE, SIG_IGN)
    }

    static func signalSet() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for number in handled { sigaddset(&set, number) }
        return set
    }

    /// Every handled signal, in the order received.
    public static func stream() throws(SystemError) -> AsyncStream<Int32> {
        let (stream, continuation) = AsyncStream<Int32>.makeStream(bufferingPolicy: .unbounded)
        try DetachedThread.start {
            var set = signalSet()
            while true {
                var number: Int32 = 0
                if sigwait(&set, &number) == 0 {
                    continuation.yield(number)
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
