#if canImport(Glibc)
import Glibc
#endif

/// What identifies a file across renames: a catalog replaced by a new file has another one.
public struct FileIdentity: Sendable, Equatable {
    public var device: UInt64
    public var inode: UInt64

    public init(device: UInt64, inode: UInt64) {
        self.device = device
        self.inode = inode
    }
}

extension FileReader {
    /// Up to `maxBytes` of a regular file from `offset`, read without locking it, with the
    /// file's size and identity now: for catalogs another program appends to, read a piece at
    /// a time as they grow.
    public static func readChunk(path: String, from offset: Int, maxBytes: Int) throws(SystemError) -> (bytes: [UInt8], size: Int, identity: FileIdentity) {
        let fd = try System.call("open", on: path) { open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY) }
        defer { System.close(fd) }
        var information = stat()
        try System.call("fstat", "examine", on: path) { fstat(fd, &information) }
        guard information.st_mode & S_IFMT == S_IFREG else {
            throw SystemError(message: "cannot read '\(path)': not a regular file")
        }
        let size = Int(information.st_size)
        let identity = FileIdentity(device: UInt64(information.st_dev), inode: UInt64(information.st_ino))
        guard offset < size else { return ([], size, identity) }
        var bytes = [UInt8](repeating: 0, count: min(maxBytes, size - offset))
        var filled = 0
        while filled < bytes.count {
            let count = try System.call("pread", "read", on: path) {
                bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress.map { $0 + filled }, $0.count - filled, off_t(offset + filled)) }
            }
            if count == 0 { break }  // truncated meanwhile
            filled += count
        }
        bytes.removeLast(bytes.count - filled)
        return (bytes, size, identity)
    }
}

/// Reading directories: the names in one, and the regular files' modification times.
public enum Directory {
    /// Calls `body` with the name of each entry of `path` but `.` and `..`, and its modification
    /// time when it is a regular file (nil for anything else, or one removed meanwhile).
    /// `body` returns whether it needs the time; a `stat` is made only then.
    public static func visit(path: String, _ body: (_ name: String, _ modificationTime: () -> Double?) -> Void) throws(SystemError) {
        guard let directory = opendir(path) else { throw SystemError("open directory", path, call: "opendir") }
        defer { _ = closedir(directory) }
        let descriptor = dirfd(directory)
        while true {
            errno = 0
            guard let entry = readdir(directory) else {
                if errno != 0 { throw SystemError("read directory", path, call: "readdir") }
                return
            }
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name == "." || name == ".." { continue }
            body(name) {
                var information = stat()
                guard fstatat(descriptor, name, &information, AT_SYMLINK_NOFOLLOW) == 0,
                      information.st_mode & S_IFMT == S_IFREG else { return nil }
                return Double(information.st_mtim.tv_sec) + Double(information.st_mtim.tv_nsec) / 1e9
            }
        }
    }
}

/// The space of the file system holding a path.
public enum FileSystemSpace {
    /// Bytes an unprivileged user can still write there (what `df` shows as available), and the
    /// file system's size.
    public static func of(path: String) throws(SystemError) -> (availableBytes: UInt64, sizeBytes: UInt64) {
        var information = statvfs()
        try System.call("statvfs", "examine the file system of", on: path) { statvfs(path, &information) }
        let unit = UInt64(information.f_frsize)
        return (UInt64(information.f_bavail) * unit, UInt64(information.f_blocks) * unit)
    }
}

/// Shell wildcard patterns (`*`, `?`, `[...]`), as fnmatch(3) matches them.
public enum Glob {
    public static func matches(_ pattern: String, _ name: String) -> Bool {
        fnmatch(pattern, name, 0) == 0
    }
}
