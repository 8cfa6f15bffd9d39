#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: which call, what it was doing and to what, and errno.
public struct SystemError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The C function that failed (`open`, `bind`...), for debugging; not in the message.
    public var call: String
    /// What was being done, as a verb phrase: "open", "bind", "rename x to".
    public var operation: String
    /// What it was done to: a path, an address.
    public var subject: String
    public var code: Int32
    private var custom: String?

    public init(_ operation: String, _ subject: String, call: String? = nil, code: Int32 = errno) {
        self.call = call ?? operation
        self.operation = operation
        self.subject = subject
        self.code = code
    }

    /// An error whose text is already complete (e.g. from getaddrinfo, which has its own codes).
    public init(message: String) {
        self.call = ""
        self.operation = ""
        self.subject = ""
        self.code = 0
        self.custom = message
    }

    public var description: String {
        if let custom { return custom }
        return "cannot \(operation) '\(subject)': \(Self.reason(code))"
    }

    /// Nothing at the path (ENOENT).
    public var isNotFound: Bool { code == ENOENT }
    /// The address is taken (EADDRINUSE).
    public var isAddressInUse: Bool { code == EADDRINUSE }
    /// `SystemError` for "nothing at `path`", as open would fail.
    public static func notFound(_ operation: String, _ path: String) -> SystemError {
        SystemError(operation, path, code: ENOENT)
    }

    /// strerror's text for `code`.
    public static func reason(_ code: Int32) -> String {
        strerror(code).map { String(cString: $0) } ?? "error \(code)"
    }
}

/// The one way this code makes a system call that reports failure as -1 and errno, in the spirit
/// of swift-nio's `syscall(blocking:)`: an interrupted call (EINTR) is retried, any other failure
/// is thrown with errno and the call's name.
public enum System {
    /// Runs `body` until it is not interrupted; its result when it is not -1.
    @discardableResult
    @inline(__always)
    public static func call<Result: FixedWidthInteger>(
        _ name: String, _ operation: @autoclosure () -> String? = nil, on subject: @autoclosure () -> String = "",
        _ body: () -> Result
    ) throws(SystemError) -> Result {
        while true {
            let result = body()
            if result != -1 { return result }
            let code = errno
            if code == EINTR { continue }
            throw SystemError(operation() ?? name, subject(), call: name, code: code)
        }
    }

    /// Closes `fd`, never retrying: on Linux the descriptor is released even when close is
    /// interrupted (EINTR), and a retry could close a descriptor another thread was just given.
    /// Errors are not reported: there is nothing left to do with the descriptor either way.
    public static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    /// Closes `fd` and reports a failure (EIO: data written may be lost), never retrying.
    public static func closeChecked(_ fd: Int32, _ operation: @autoclosure () -> String = "close", on subject: @autoclosure () -> String = "") throws(SystemError) {
        guard Glibc.close(fd) == 0 else { throw SystemError(operation(), subject(), call: "close", code: errno) }
    }

    /// For the pthread and posix_spawn families, which return the error number instead of
    /// setting errno.
    @inline(__always)
    public static func checkReturnedCode(_ name: String, _ operation: @autoclosure () -> String, on subject: @autoclosure () -> String = "",
                                         _ code: Int32) throws(SystemError) {
        guard code != 0 else { return }
        throw SystemError(operation(), subject(), call: name, code: code)
    }
}
