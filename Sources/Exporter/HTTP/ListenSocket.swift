#if canImport(Glibc)
import Glibc
#endif

/// A bound, listening TCP socket. Created by us rather than by libmicrohttpd so that host names
/// resolve, errors are precise, the real port is known when port 0 was asked for, and a reload
/// can open the new socket before the old server is stopped.
public final class ListenSocket: @unchecked Sendable {
    // @unchecked: the descriptor is immutable except for close(), which is idempotent.
    public private(set) var fileDescriptor: Int32
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

        var lastError = SystemError("bind", path: display, code: EADDRNOTAVAIL)
        var candidate: UnsafeMutablePointer<addrinfo>? = first
        while let info = candidate {
            candidate = info.pointee.ai_next
            let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), info.pointee.ai_protocol)
            guard fd >= 0 else {
                lastError = SystemError("create a socket for", path: display)
                continue
            }
            var yes: Int32 = 1
            if setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size)) != 0 {
                lastError = SystemError("set SO_REUSEADDR on", path: display)
                Glibc.close(fd)
                continue
            }
            if info.pointee.ai_family == AF_INET6 {
                // "::" means every address, IPv4 included; "::1" stays IPv6-only by nature.
                var no: Int32 = 0
                _ = setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &no, socklen_t(MemoryLayout<Int32>.size))
            }
            guard bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
                lastError = SystemError("bind", path: display)
                Glibc.close(fd)
                continue
            }
            guard listen(fd, backlog) == 0 else {
                lastError = SystemError("listen on", path: display)
                Glibc.close(fd)
                continue
            }
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let boundPort: Int = withUnsafeMutablePointer(to: &storage) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                    guard getsockname(fd, address, &length) == 0 else { return port }
                    if address.pointee.sa_family == sa_family_t(AF_INET6) {
                        return address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
                    }
                    return address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
                }
            }
            self.fileDescriptor = fd
            self.port = boundPort
            self.displayAddress = address.contains(":") ? "[\(address)]:\(boundPort)" : "\(address):\(boundPort)"
            return
        }
        throw lastError
    }

    public func close() {
        if fileDescriptor >= 0 {
            Glibc.close(fileDescriptor)
            fileDescriptor = -1
        }
    }

    /// For when someone else (libmicrohttpd) has closed the descriptor.
    func relinquish() {
        fileDescriptor = -1
    }

    deinit { close() }
}
