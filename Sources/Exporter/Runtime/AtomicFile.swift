#if canImport(Glibc)
import Glibc
#endif

/// Replaces a file so readers (node_exporter's textfile collector) see the old or the new
/// content, never a partial one: a temporary file in the same directory, fsync, rename, and an
/// fsync of the directory so the rename survives a crash.
public enum AtomicFile {
    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t = 0o644) -> Result<Void, SystemError> {
        let directory = path.contains("/") ? String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)]) : "."
        let name = path.split(separator: "/").last.map(String.init) ?? path
        let temporary = "\(directory.isEmpty ? "/" : directory)/.\(name).tmp.\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { return .failure(SystemError("create", path: temporary)) }
        if let code = FileWriter.writeAll(fd, bytes) {
            close(fd)
            unlink(temporary)
            return .failure(SystemError("write", path: temporary, code: code))
        }
        guard fsync(fd) == 0 else {
            let error = SystemError("fsync", path: temporary)
            close(fd)
            unlink(temporary)
            return .failure(error)
        }
        guard close(fd) == 0 else {
            let error = SystemError("close", path: temporary)
            unlink(temporary)
            return .failure(error)
        }
        guard rename(temporary, path) == 0 else {
            let error = SystemError("rename \(temporary) to", path: path)
            unlink(temporary)
            return .failure(error)
        }
        let directoryFD = open(directory.isEmpty ? "/" : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryFD >= 0 {
            _ = fsync(directoryFD)
            close(directoryFD)
        }
        return .success(())
    }
}
