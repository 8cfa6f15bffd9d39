#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import CGlibcShims

/// A bound, listening TCP socket. Created by us rather than by libmicrohttpd so that host names
/// resolve, errors are precise, the real port is known when port 0 was asked for, and a reload
/// can open the new socket before the old server is stopped.
public final class ListenSocket: Sendable {
    /// -1 once closed or handed over.
    private let descriptor: Atomic<Int32>
    public let port: Int
    public let displayAddress: String

    /// Binds to `address` (IP literal or host name; the first resolved address that binds wins).
    public init(address: String, port: Int, backlog: Int32 = 128) throws(SystemError) {
        let display = address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)"
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(address, String(port), &hints, &list)
        guard status == 0, let first = list else {
            let reason = status == EAI_SYSTEM ? String(cString: strerror(errno)) : String(cString: gai_strerror(status))
            throw SystemError(message: "cannot resolve listen address '\(address)': \(reason)")
        }
        defer { freeaddrinfo(list) }

        var lastError = SystemError("bind", display, code: EADDRNOTAVAIL)
        var candidate: UnsafeMutablePointer<addrinfo>? = first
        while let info = candidate {
            candidate = info.pointee.ai_next
            do {
                let fd = try Self.listeningSocket(info.pointee, display: display, backlog: backlog)
                let boundPort = Self.localPort(fd) ?? port
                descriptor = Atomic(fd)
                self.port = boundPort
                self.displayAddress = address.contains(":") ? "[\(address)]:\(boundPort)" : "\(address):\(boundPort)"
                return
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    /// The socket, or -1 once closed.
    public var fileDescriptor: Int32 { descriptor.load(ordering: .acquiring) }

    /// A socket another process bound and passed on (systemd's socket activation); it must be a
    /// listening TCP socket.
    public init(adopting fd: Int32) throws(SystemError) {
        func option(_ name: Int32) -> Int32? {
            var value: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            return getsockopt(fd, SOL_SOCKET, name, &value, &length) == 0 ? value : nil
        }
        guard option(SO_TYPE) == Int32(SOCK_STREAM.rawValue), option(SO_ACCEPTCONN) == 1 else {
            throw SystemError(message: "file descriptor \(fd) from systemd is not a listening TCP socket; use ListenStream= in the socket unit")
        }
        // The exporter's barman children must not inherit it.
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        descriptor = Atomic(fd)
        port = Self.localPort(fd) ?? 0
        displayAddress = "systemd socket \(fd) (port \(port))"
    }

    /// The descriptors systemd passes to a socket-activated service (sd_listen_fds(3)): from 3,
    /// `$LISTEN_FDS` of them when `$LISTEN_PID` is this process. The variables are removed so
    /// child processes do not see them.
    public static func systemdListenDescriptors() throws(SystemError) -> [Int32] {
        let pid = getenv("LISTEN_PID").map { String(cString: $0) }
        let count = getenv("LISTEN_FDS").map { String(cString: $0) }
        defer {
            unsetenv("LISTEN_PID")
            unsetenv("LISTEN_FDS")
            unsetenv("LISTEN_FDNAMES")
        }
        guard let pid, let count else {
            throw SystemError(message: "--web.systemd-socket: systemd passed no socket (LISTEN_FDS is not set); start the exporter from a .socket unit, or drop the flag")
        }
        guard Int32(pid) == getpid() else {
            throw SystemError(message: "--web.systemd-socket: the sockets systemd passed are for process \(pid), not this one (\(getpid()))")
        }
        guard let number = Int32(count), (1...64).contains(number) else {
            throw SystemError(message: "--web.systemd-socket: LISTEN_FDS is '\(count)'; expected 1 or more sockets")
        }
        return (0..<number).map { 3 + $0 }
    }

    /// A socket of `info`'s family, bound and listening.
    private static func listeningSocket(_ info: addrinfo, display: String, backlog: Int32) throws(SystemError) -> Int32 {
        let fd = try System.call("socket", "create a socket for", on: display) {
            socket(info.ai_family, info.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), info.ai_protocol)
        }
        do {
            var yes: Int32 = 1
            try System.call("setsockopt", "set SO_REUSEADDR on", on: display) {
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
            }
            if info.ai_family == AF_INET6 {
                // "::" means every address, IPv4 included; "::1" stays IPv6-only by nature.
                var no: Int32 = 0
                try System.call("setsockopt", "clear IPV6_V6ONLY on", on: display) {
                    setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &no, socklen_t(MemoryLayout<Int32>.size))
                }
            }
            try System.call("bind", on: display) { bind(fd, info.ai_addr, info.ai_addrlen) }
            try System.call("listen", "listen on", on: display) { listen(fd, backlog) }
        } catch {
            Glibc.close(fd)
            throw error
        }
        return fd
    }

    /// The port the kernel bound `fd` to (the real one when port 0 was asked for).
    private static func localPort(_ fd: Int32) -> Int? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        return withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address -> Int? in
                guard getsockname(fd, address, &length) == 0 else { return nil }
                if address.pointee.sa_family == sa_family_t(AF_INET6) {
                    return address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
                }
                return address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
            }
        }
    }

    /// Whether `text` is an IPv4 or IPv6 address literal (inet_pton), not a host name.
    public static func isIPLiteral(_ text: String) -> Bool {
        var ipv4 = in_addr()
        var ipv6 = in6_addr()
        return inet_pton(AF_INET, text, &ipv4) == 1 || inet_pton(AF_INET6, text, &ipv6) == 1
    }

    /// Makes `accept` return at once when another process took the connection first (a
    /// successor serving on the same socket during a reload).
    public func makeNonBlocking() throws(SystemError) {
        let fd = fileDescriptor
        let flags = try System.call("fcntl", "read the flags of", on: displayAddress) { fcntl(fd, F_GETFL) }
        try System.call("fcntl", "make non-blocking", on: displayAddress) { fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
    }

    /// The next waiting connection (non-blocking and close-on-exec) and its peer's address; nil
    /// when none is waiting or the client gave up before it was accepted.
    public func accept() throws(SystemError) -> AcceptedConnection? {
        var connection = AcceptedConnection()
        let fd = withUnsafeMutablePointer(to: &connection.address) { storage in
            storage.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                cgs_accept_nonblocking(fileDescriptor, address, &connection.addressLength)
            }
        }
        guard fd < 0 else {
            connection.descriptor = fd
            return connection
        }
        switch errno {
        case EAGAIN, EWOULDBLOCK, EINTR, ECONNABORTED, EPROTO: return nil
        case let code: throw SystemError("accept a connection on", displayAddress, call: "accept4", code: code)
        }
    }

    public func close() {
        let fd = descriptor.exchange(-1, ordering: .acquiringAndReleasing)
        if fd >= 0 { System.close(fd) }
    }

    deinit { close() }
}

/// A connection just accepted: its descriptor (the receiver closes it) and its peer's address.
public struct AcceptedConnection: Sendable {
    public var descriptor: Int32 = -1
    public var address = sockaddr_storage()
    public var addressLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
}
