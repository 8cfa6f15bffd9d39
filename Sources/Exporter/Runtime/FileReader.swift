#if canImport(Glibc)
import Glibc
#endif

/// A failed system call, with the operation and path it concerned.
public struct SystemError: Error, Sendable, CustomStringConvertible {
    public var operation: String
    public var path: String
    public var code: Int32
    private var custom: String?

    public init(_ operation: String, path: String, code: Int32 = errno) {
        self.operation = operation
        self.path = path
        self.code = code
    }

    /// An error whose text is already complete (e.g. from getaddrinfo, which has its own codes).
    public init(message: String) {
        self.operation = ""
        self.path = ""
        self.code = 0
        self.custom = message
    }

    public var description: String {
        if let custom { return custom }
        let reason = strerror(code).map { String(cString: $0) } ?? "error \(code)"
        return "cannot \(operation) '\(path)': \(reason)"
    }
}

/// Reads whole small files without Foundation (keeps ICU and 50 MB out of the binary).
public enum FileReader {
    public static func readAll(path: String, limit: Int) -> Result<[UInt8], SystemError> {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(SystemError("open", path: path)) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return .failure(SystemError("read", path: path))
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
            if bytes.count > limit {
                return .failure(SystemError("read", path: path, code: EFBIG))
            }
        }
        return .success(bytes)
    }
}

/// Writes whole buffers to a descriptor, retrying short writes and EINTR.
public enum FileWriter {
    /// Nil on success, else the errno of the failed write.
    @discardableResult
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Int32? {
        bytes.withUnsafeBytes { buffer in
            guard let base = buffer.baseAddress else { return nil }
            var offset = 0
            while offset < buffer.count {
                let written = write(fd, base + offset, buffer.count - offset)
                if written > 0 {
                    offset += written
                } else if written < 0 && errno == EINTR {
                    continue
                } else {
                    return written < 0 ? errno : EIO
                }
            }
            return nil
        }
    }
}
