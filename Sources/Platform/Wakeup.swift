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
        wait(orInputOn: nil, timeout: timeout).signalled
    }

    /// Waits until `signal`, input on `fd`, or `timeout` (nil: none), and says which came; a
    /// signal consumes every pending one.
    public func wait(orInputOn fd: Int32?, timeout: Duration?) -> (signalled: Bool, input: Bool) {
        var descriptors = [pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)]
        if let fd { descriptors.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
        // EINTR is retried with the whole timeout: at worst a wait is a little longer.
        let count = nfds_t(descriptors.count)
        let ready = (try? System.call("poll") { poll(&descriptors, count, timeout.map(Self.milliseconds) ?? -1) }) ?? 0
        guard ready > 0 else { return (false, false) }
        let signalled = descriptors[0].revents != 0
        if signalled {
            var buffer = [UInt8](repeating: 0, count: 64)
            while buffer.withUnsafeMutableBytes({ read(readEnd, $0.baseAddress, $0.count) }) > 0 {}
        }
        // POLLERR or POLLHUP count as input: the caller's read finds out what happened.
        return (signalled, descriptors.count > 1 && descriptors[1].revents != 0)
    }

    /// Rounded up: waking a moment early would find the second not started yet and wait again.
    private static func milliseconds(_ timeout: Duration) -> Int32 {
        let (seconds, attoseconds) = timeout.components
        return max(0, Int32(clamping: seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000))
    }
}
