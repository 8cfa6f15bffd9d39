/// The kinds of barman command the exporter runs; the raw value is barman's sub-command and the
/// `command` label of the exporter-health metrics.
public enum CommandKind: String, Sendable, CaseIterable, Comparable {
    case check = "check"
    case listBackups = "list-backups"
    case replicationStatus = "replication-status"
    case showBackup = "show-backup"
    case showServers = "show-servers"
    case version = "version"

    public static func < (lhs: CommandKind, rhs: CommandKind) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// One barman invocation. Every refresh needs at most `list-backups all`, `check all`,
/// `replication-status all`, `show-servers all`, and one `show-backup` per server that has a
/// DONE backup; `--version` runs once at start and at each reload.
public enum BarmanCommand: Hashable, Sendable, CustomStringConvertible {
    case listBackups
    case check
    case replicationStatus
    case showBackup(server: String, backupID: String)
    case showServers
    case version

    public var kind: CommandKind {
        switch self {
        case .listBackups: return .listBackups
        case .check: return .check
        case .replicationStatus: return .replicationStatus
        case .showBackup: return .showBackup
        case .showServers: return .showServers
        case .version: return .version
        }
    }

    /// Arguments after `barman [-c FILE] -f json`. Names from barman's own output go in as
    /// separate arguments, never through a shell.
    public var arguments: [String] {
        switch self {
        case .listBackups: return ["list-backups", "all"]
        case .check: return ["check", "all"]
        case .replicationStatus: return ["replication-status", "all"]
        case .showServers: return ["show-servers", "all"]
        case .version: return ["--version"]
        case .showBackup(let server, let backupID):
            // A name from barman's output that starts with "-" must not be read as an option:
            // "--" ends barman's options (argparse), and is left out when not needed.
            let positional = [server, backupID]
            return ["show-backup"] + (positional.contains { $0.hasPrefix("-") } ? ["--"] : []) + positional
        }
    }

    public var description: String { arguments.joined(separator: " ") }
}

/// What a finished barman process left behind.
public struct CommandOutput: Sendable, Equatable {
    public var stdout: [UInt8]
    public var stderr: [UInt8]
    public var exitStatus: Int32

    public init(stdout: [UInt8], stderr: [UInt8] = [], exitStatus: Int32 = 0) {
        self.stdout = stdout
        self.stderr = stderr
        self.exitStatus = exitStatus
    }
}

/// Why a barman command produced no usable output.
public struct CommandFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var exitStatus: Int32?
    /// The start of barman's stderr, for the log line.
    public var stderrExcerpt: String
    /// Stopped on purpose (shutdown, or its source replaced by a reload): not barman's failure,
    /// so neither logged as an error nor counted.
    public var isCancellation = false

    public init(_ message: String, exitStatus: Int32? = nil, stderr: [UInt8] = []) {
        self.message = message
        self.exitStatus = exitStatus
        self.stderrExcerpt = CommandFailure.excerpt(stderr)
    }

    static func cancelled(_ message: String) -> CommandFailure {
        var failure = CommandFailure(message)
        failure.isCancellation = true
        return failure
    }

    public var description: String { message }

    static func excerpt(_ bytes: [UInt8], limit: Int = 512) -> String {
        let text = String(decoding: bytes.prefix(limit), as: UTF8.self)
        let trimmed = text.trimmingTrailingWhitespace()
        return bytes.count > limit ? trimmed + "…" : trimmed
    }
}

extension String {
    func trimmingTrailingWhitespace() -> String {
        var scalars = Substring(self)
        while let last = scalars.last, last == " " || last == "\n" || last == "\t" || last == "\r" { scalars.removeLast() }
        return String(scalars)
    }
}

/// Where barman output comes from: the real CLI (`integration_type: shell`) or embedded sample
/// data (`mock`). Everything after this point is shared, so the mock exercises the real decoding.
public protocol BarmanRunner: Sendable {
    func run(_ command: BarmanCommand) async throws(CommandFailure) -> CommandOutput
    /// The full command line as it is (or would be) run, for the logs.
    func argv(for command: BarmanCommand) -> [String]
    /// Stops this runner's commands still running; it runs none after this (a reload replaced it).
    func cancelRunning()
    /// The end of a file barman writes (its WAL catalog), read without taking barman's lock.
    func readTail(path: String, maxBytes: Int) throws(SystemError) -> (bytes: [UInt8], wholeFile: Bool)
}

extension BarmanRunner {
    public func cancelRunning() {}

    public func readTail(path: String, maxBytes: Int) throws(SystemError) -> (bytes: [UInt8], wholeFile: Bool) {
        try FileReader.readTail(path: path, maxBytes: maxBytes)
    }
}

extension BarmanRunner {
    /// argv as one log field: arguments separated by spaces, each quoted when it needs it.
    func loggedArgv(for command: BarmanCommand) -> String {
        argv(for: command).map { argument in
            argument.isEmpty || argument.contains(where: { $0 == " " || $0 == "\"" || $0 == "'" || $0 == "\\" || $0.isNewline })
                ? "'" + argument.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'" : argument
        }.joined(separator: " ")
    }
}
