import Platform

/// How the exporter gets barman's JSON: by running the barman CLI, or from embedded sample data.
public enum IntegrationType: String, Sendable, CaseIterable {
    case shell
    case mock
}

/// The validated contents of the config file. Immutable; a reload builds a new one.
public struct Config: Sendable, Equatable {
    public var address: String = "127.0.0.1"
    public var port: Int = 9780
    public var integrationType: IntegrationType = .shell
    /// Seconds a `list-backups` or `replication-status` answer is reused before barman is asked
    /// again (`show-backup` is asked again only when `list-backups` shows its backup changed).
    public var cacheTTL: Int = 50
    /// Seconds a `check` answer is reused; `check` is the slow command (the Go exporter's README, Known problems).
    public var checksCacheTTL: Int = 300
    /// Seconds a `show-servers` answer is reused; like `check`, it connects to every PostgreSQL
    /// server, and what it tells (server state, WAL catalog location, archiver statistics)
    /// changes rarely.
    public var serversCacheTTL: Int = 600
    /// Seconds between refresh cycles.
    public var refreshInterval: Int = 60
    public var logLevel: LogLevel = .warn
    /// The barman executable: a path, or a name looked up in `PATH`.
    public var barmanCommand: String = "barman"
    /// Passed to barman as `-c FILE` when set; otherwise barman uses its own default.
    public var barmanConfigFile: String? = nil
    /// Seconds one barman command may run before its process group is terminated.
    public var commandTimeout: Int = 600
    /// exporter-toolkit's web config (TLS, basic auth, headers); `--web.config.file` wins.
    public var webConfigFile: String? = nil
    /// Server names or shell globs: only these servers are served (all when empty).
    public var serversInclude: [String] = []
    /// Server names or shell globs left out, after `serversInclude`.
    public var serversExclude: [String] = []

    /// Which barman servers the exporter asks about and serves.
    public var serverSelection: ServerSelection { ServerSelection(include: serversInclude, exclude: serversExclude) }

    public init() {}
}

/// One problem found in the config file, with its 1-based position.
public struct ConfigProblem: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    public var message: String

    public init(file: String, line: Int, column: Int, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
    }

    /// `FILE:LINE:COLUMN: message`, the form compilers use, so editors can jump to it.
    public var description: String {
        line > 0 ? "\(file):\(line):\(column): \(message)" : "\(file): \(message)"
    }
}

/// Every problem found in one config file (loading reports all of them, not just the first).
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var problems: [ConfigProblem]

    public init(_ problems: [ConfigProblem]) { self.problems = problems }

    public var description: String { problems.map(\.description).joined(separator: "\n") }
}

/// The servers the exporter serves: those matching an `include` pattern (every server when there
/// is none) and no `exclude` pattern. Patterns are server names or shell globs (`pg-*`).
public struct ServerSelection: Sendable, Equatable {
    public var include: [String]
    public var exclude: [String]

    public init(include: [String] = [], exclude: [String] = []) {
        self.include = include
        self.exclude = exclude
    }

    public var selectsAll: Bool { include.isEmpty && exclude.isEmpty }

    public func includes(_ server: String) -> Bool {
        (include.isEmpty || include.contains { Glob.matches($0, server) }) && !exclude.contains { Glob.matches($0, server) }
    }

    /// The patterns that match none of `servers` (`include:` or `exclude:` before each).
    public func unmatched(by servers: [String]) -> [String] {
        include.filter { pattern in !servers.contains { Glob.matches(pattern, $0) } }.map { "servers_include: \($0)" }
            + exclude.filter { pattern in !servers.contains { Glob.matches(pattern, $0) } }.map { "servers_exclude: \($0)" }
    }
}
