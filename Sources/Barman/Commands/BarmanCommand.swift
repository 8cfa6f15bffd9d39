import Platform
import Exposition
import Configuration

/// One barman invocation: the arguments after `barman [-c FILE] -f json`. Each collector
/// declares the commands it runs in its own file. Names from barman's output go in as separate
/// arguments, never through a shell.
public struct BarmanCommand: Hashable, Sendable, CustomStringConvertible {
    /// barman's sub-command (`list-backups`, `version` for `--version`): the `command` label of
    /// the exporter-health metrics, shared by every run of it (every server's `show-backup`).
    public let kind: String
    public let arguments: [String]

    /// `barman -f json KIND ARGUMENTS...`; positional arguments that start with "-" are put
    /// after "--" so that barman (argparse) never reads one as an option.
    public init(_ kind: String, _ positional: [String] = []) {
        self.kind = kind
        arguments = [kind] + (positional.contains { $0.hasPrefix("-") } ? ["--"] : []) + positional
    }

    /// A command spelled as an option (`--version`), labelled `kind`.
    public init(kind: String, option: String) {
        self.kind = kind
        arguments = [option]
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
    public var reason: Reason

    public enum Reason: Sendable, Equatable {
        /// barman could not be run, timed out, or gave no usable output: logged and counted.
        case failed
        /// Stopped on purpose (shutdown, or its source replaced by a reload): not barman's
        /// failure, so neither logged as an error nor counted.
        case cancelled
    }

    public init(_ message: String, exitStatus: Int32? = nil, stderr: [UInt8] = [], reason: Reason = .failed) {
        self.message = message
        self.exitStatus = exitStatus
        self.stderrExcerpt = CommandFailure.excerpt(stderr)
        self.reason = reason
    }

    static func cancelled(_ message: String) -> CommandFailure {
        CommandFailure(message, reason: .cancelled)
    }

    public var description: String { message }

    static func excerpt(_ bytes: [UInt8], limit: Int = 512) -> String {
        let text = String(decoding: bytes.prefix(limit), as: UTF8.self)
        let trimmed = text.trimmingTrailingWhitespace()
        return bytes.count > limit ? trimmed + "…" : trimmed
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
}

extension BarmanRunner {
    public func cancelRunning() {}

    /// argv as one log field: arguments separated by spaces, each quoted when it needs it.
    func loggedArgv(for command: BarmanCommand) -> String {
        argv(for: command).map { argument in
            argument.isEmpty || argument.contains(where: { $0 == " " || $0 == "\"" || $0 == "'" || $0 == "\\" || $0.isNewline })
                ? "'" + argument.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'" : argument
        }.joined(separator: " ")
    }
}
