#if canImport(Glibc)
import Glibc
#endif

/// Waiting for something a system call can only probe (a process group gone, responses sent).
public enum Deadline {
    /// Checks `done` every `interval` until it is true (returns true) or `timeout` has passed
    /// (returns false). For short waits on other threads' or processes' progress, where no
    /// notification exists to wait on instead.
    @discardableResult
    public static func poll(every interval: Duration = .milliseconds(20), for timeout: Duration, until done: () -> Bool) -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while true {
            if done() { return true }
            let remaining = deadline - clock.now
            if remaining <= .zero { return false }
            sleep(min(interval, remaining))
        }
    }

    /// Blocks this thread for `duration` (nanosleep; resumed after a signal until it has passed).
    public static func sleep(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        var request = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
        var remaining = timespec()
        // Cannot fail but for EINTR (the arguments are valid), which resumes with the time left.
        _ = try? System.call("nanosleep") {
            let result = nanosleep(&request, &remaining)
            request = remaining
            return result
        }
    }
}
