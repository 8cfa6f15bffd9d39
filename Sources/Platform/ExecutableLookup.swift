#if canImport(Glibc)
import Glibc
#endif

/// Finds the program a setting (`barman_command`) names, the way a shell does, before each run.
///
/// posix_spawnp would do the search too, but its errors mislead: one unsearchable directory
/// anywhere in PATH turns "barman is not installed" into "Permission denied", and neither names
/// the PATH searched (systemd's PATH is not the operator's login PATH).
public enum ExecutableLookup {
    /// glibc's search path when PATH is unset.
    static let defaultSearchPath = "/bin:/usr/bin"

    /// The path to run for `name`: `name` itself when it contains a slash, else the first
    /// executable regular file called `name` in `searchPath` (colon-separated; an empty entry is
    /// the current directory).
    public static func resolve(_ name: String, searchPath: String?, program: String = "barman", setting: String = "barman_command") throws(ChildProcessFailure) -> String {
        if name.contains("/") { return name }
        let searchPath = searchPath ?? defaultSearchPath
        var foundNotExecutable: String?
        for directory in searchPath.split(separator: ":", omittingEmptySubsequences: false) {
            let candidate = (directory.isEmpty ? "." : String(directory)) + "/" + name
            guard isRegularFile(candidate) else { continue }
            if access(candidate, X_OK) == 0 { return candidate }
            if foundNotExecutable == nil { foundNotExecutable = candidate }
        }
        if let foundNotExecutable {
            throw ChildProcessFailure("cannot run '\(name)': \(foundNotExecutable) is not executable by this user; fix its permissions or set \(setting) to the right path")
        }
        throw ChildProcessFailure("cannot run '\(name)': not found in PATH (\(searchPath)); install \(program) or set \(setting) to its full path")
    }

    /// The search path of this process, read at each run so a changed environment applies.
    static func currentSearchPath() -> String? {
        guard let value = getenv("PATH") else { return nil }
        return String(cString: value)
    }

    private static func isRegularFile(_ path: String) -> Bool {
        var information = stat()
        guard stat(path, &information) == 0 else { return false }
        return information.st_mode & S_IFMT == S_IFREG
    }
}
