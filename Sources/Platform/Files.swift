#if canImport(Glibc)
import Glibc
#endif

/// Reads whole small files without Foundation (keeps ICU and 50 MB out of the binary).
public enum FileReader {
    /// The file's bytes; fails with EFBIG past `limit`. With `regularOnly`, anything but a
    /// regular file (a FIFO, a device, a directory) is refused without blocking on it.
    /// Whether something exists at `path` (a dangling symbolic link does not).
    public static func exists(path: String) -> Bool {
        var information = stat()
        return stat(path, &information) == 0
    }

    public static func readAll(path: String, limit: Int, regularOnly: Bool = false) throws(SystemError) -> [UInt8] {
        // O_NONBLOCK: opening a FIFO with no writer would otherwise wait for ever.
        let flags = O_RDONLY | O_CLOEXEC | (regularOnly ? O_NONBLOCK | O_NOCTTY : 0)
        let fd = try System.call("open", on: path) { open(path, flags) }
        defer { System.close(fd) }
        if regularOnly {
            var information = stat()
            try System.call("fstat", "examine", on: path) { fstat(fd, &information) }
            guard information.st_mode & S_IFMT == S_IFREG else {
                throw SystemError(message: "cannot read '\(path)': not a regular file; give the path of the config file itself")
            }
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = try System.call("read", on: path) { chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
            if bytes.count > limit { throw SystemError("read", path, code: EFBIG) }
        }
        return bytes
    }
}

/// Writes whole buffers to a descriptor, retrying short writes.
public enum FileWriter {
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8], to name: @autoclosure () -> String = "") throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            let written = try System.call("write", on: name()) {
                bytes.withUnsafeBytes { buffer in write(fd, buffer.baseAddress.map { $0 + offset }, buffer.count - offset) }
            }
            guard written > 0 else { throw SystemError("write", name(), code: EIO) }
            offset += written
        }
    }

    /// Appends `bytes` to the file at `path` (created if missing), as barman appends to its
    /// WAL catalog: for benchmarks that grow a catalog the way barman does.
    public static func append(_ bytes: [UInt8], to path: String) throws(SystemError) {
        let fd = try System.call("open", on: path) { open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644) }
        defer { System.close(fd) }
        try writeAll(fd, bytes, to: path)
    }

    /// Removes the file at `path`; a file already gone is fine.
    public static func remove(path: String) throws(SystemError) {
        guard unlink(path) == 0 || errno == ENOENT else { throw SystemError("remove", path, call: "unlink") }
    }

    /// For logs and last-resort messages: nowhere is left to report a failed write.
    public static func writeIgnoringErrors(_ fd: Int32, _ bytes: [UInt8]) {
        try? writeAll(fd, bytes)
    }
}

/// Replaces a file so readers (node_exporter's textfile collector) see the old or the new
/// content, never a partial one: a temporary file in the same directory, fsync, rename, and an
/// fsync of the directory so the rename survives a crash.
///
/// The directory may be writable by others (a textfile directory owned by another user): the
/// temporary file gets an unpredictable name and is created with O_EXCL | O_NOFOLLOW, so a link
/// planted there is never followed, and rename() replaces a link at the final name instead of
/// writing through it.
public enum AtomicFile {
    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t = 0o644) throws(SystemError) {
        let directory = path.contains("/") ? String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)]) : "."
        let name = path.split(separator: "/").last.map(String.init) ?? path
        let (fd, temporary) = try createTemporary(in: directory.isEmpty ? "/" : directory, for: name, mode: mode)
        do {
            try FileWriter.writeAll(fd, bytes, to: temporary)
            // The mode asked for, whatever the umask: the scraper's user must be able to read it.
            try System.call("fchmod", "set the mode of", on: temporary) { fchmod(fd, mode) }
            try System.call("fsync", on: temporary) { fsync(fd) }
        } catch {
            System.close(fd)
            unlink(temporary)
            throw error
        }
        do {
            try System.closeChecked(fd, on: temporary)
            try System.call("rename", "rename \(temporary) to", on: path) { rename(temporary, path) }
        } catch {
            unlink(temporary)
            throw error
        }
        // Best effort: the data is in place; only its survival of a power cut depends on this.
        let directoryFD = try? System.call("open", on: directory) { open(directory.isEmpty ? "/" : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        if let directoryFD {
            _ = fsync(directoryFD)
            System.close(directoryFD)
        }
    }

    /// `DIR/.NAME.XXXXXXXXXXXX` made by this call alone: a new random name after EEXIST.
    private static func createTemporary(in directory: String, for name: String, mode: mode_t) throws(SystemError) -> (Int32, String) {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".utf8)
        var attempts = 0
        while true {
            var generator = SystemRandomNumberGenerator()
            let suffix = String(decoding: (0..<12).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &generator)] }, as: UTF8.self)
            let temporary = "\(directory)/.\(name).\(suffix)"
            do {
                let fd = try System.call("open", "create", on: temporary) {
                    open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode & 0o600)
                }
                return (fd, temporary)
            } catch where error.code == EEXIST && attempts < 100 {
                attempts += 1
            }
        }
    }
}
