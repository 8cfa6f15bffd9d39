#if canImport(Glibc)
import Glibc
#endif
import CGlibcShims

/// Wakes a thread that waits with a timeout (a self-pipe): the renderer sleeps until the next
/// second and is woken early by a new snapshot or a stop.
public final class Wakeup: Sendable {
    private let readEnd: Int32
    private let writeEnd: Int32

    public init() throws(SystemError) {
        var fds: [Int32] = [-1, -1]
        try System.call("pipe2", "create", on: "a wakeup pipe") { cgs_pipe_cloexec(&fds) }
        readEnd = fds[0]
        writeEnd = fds[1]
        // Non-blocking both ways: a full pipe (many wakeups unread) never blocks `signal`, and
        // draining stops when it is empty.
        for fd in fds where fcntl(fd, F_SETFL, O_NONBLOCK) != 0 {
            let error = SystemError("make non-blocking", "a wakeup pipe", call: "fcntl")
            System.close(readEnd)
            System.close(writeEnd)
            throw error
        }
    }

    deinit {
        System.close(readEnd)
        System.close(writeEnd)
    }

    /// Wakes the waiter now, or its next wait at once if none is waiting.
    public func signal() {
        var byte: UInt8 = 1
        // Only EAGAIN can fail here (the pipe is full): the waiter is woken anyway.
        _ = write(writeEnd, &byte, 1)
    }

    /// Waits until `signal` or `timeout`; true when signalled (every pending signal is consumed).
    @discardableResult
    public func wait(timeout: Duration) -> Bool {
        let (seconds, attoseconds) = timeout.components
        // Rounded up: waking a moment early would find the second not started yet and wait again.
        let milliseconds = max(0, Int32(clamping: seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000))
        var descriptor = pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)
        // EINTR is retried with the whole timeout: at worst a wait is a little longer.
        guard (try? System.call("poll") { poll(&descriptor, 1, milliseconds) }) == 1 else { return false }
        var buffer = [UInt8](repeating: 0, count: 64)
        while buffer.withUnsafeMutableBytes({ read(readEnd, $0.baseAddress, $0.count) }) > 0 {}
        return true
    }
}
