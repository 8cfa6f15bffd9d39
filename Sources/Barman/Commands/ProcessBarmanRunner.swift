import Platform
import Exposition
import Configuration

/// Runs the real barman CLI: `barman [-c FILE] -f json ARGS...` as a child process
/// (`ChildProcess`: posix_spawn, argv only, never a shell; its own process group; output capped;
/// terminated at the timeout), on a thread of its own so Swift's pool never blocks on it.
public struct ProcessBarmanRunner: BarmanRunner {
    public var executable: String
    public var configFile: String?
    public var timeout: Duration
    public var killGracePeriod: Duration = .seconds(5)
    /// After barman itself has exited, how long its pipes may stay open (a daemonized
    /// grandchild, such as an ssh ControlPersist master, keeps them) before what was read is used.
    public var pipeGracePeriod: Duration = .seconds(1)
    /// barman's answers are a few MB even for 200 servers with 60 backups each.
    public var stdoutLimit = 64 << 20
    /// Only an excerpt of stderr is logged; more is read and discarded so barman never blocks.
    public var stderrLimit = 64 << 10
    /// Where running process groups are recorded, so their owner can terminate them on shutdown.
    public var processGroups: ProcessGroups
    /// Memory for barman's output, shared by every command of the pipeline.
    public var outputBudget: OutputBudget
    /// This runner's commands in `processGroups`, so a reload can cancel them alone.
    let runnerID = ProcessGroups.newRunnerID()

    public init(executable: String, configFile: String?, timeout: Duration, processGroups: ProcessGroups = ProcessGroups(),
                outputBudget: OutputBudget = OutputBudget()) {
        self.executable = executable
        self.configFile = configFile
        self.timeout = timeout
        self.processGroups = processGroups
        self.outputBudget = outputBudget
    }

    /// Terminates this runner's running commands and starts no more (its source was replaced).
    public func cancelRunning() {
        processGroups.cancel(runner: runnerID)
    }

    public func argv(for command: BarmanCommand) -> [String] {
        var argv = [executable]
        if let configFile { argv += ["-c", configFile] }
        return argv + ["-f", "json"] + command.arguments
    }

    public func run(_ command: BarmanCommand) async throws(CommandFailure) -> CommandOutput {
        let argv = argv(for: command)
        let process = ChildProcess(timeout: timeout, killGracePeriod: killGracePeriod, pipeGracePeriod: pipeGracePeriod,
                                   stdoutLimit: stdoutLimit, stderrLimit: stderrLimit, processGroups: processGroups,
                                   outputBudget: outputBudget, runnerID: runnerID,
                                   program: "barman", setting: "barman_command", timeoutSetting: "command_timeout")
        let outcome: Result<ChildProcessOutput, ChildProcessFailure> = await withCheckedContinuation { continuation in
            do {
                try DetachedThread.start(name: "barman") { continuation.resume(returning: Result { () throws(ChildProcessFailure) in try process.run(argv) }) }
            } catch {
                continuation.resume(returning: .failure(ChildProcessFailure("cannot start a thread to run barman: \(error)")))
            }
        }
        switch outcome {
        case .success(let output):
            return CommandOutput(stdout: output.stdout, stderr: output.stderr, exitStatus: output.exitStatus)
        case .failure(let failure):
            throw CommandFailure(failure.message, exitStatus: failure.exitStatus, stderr: failure.stderr,
                                 reason: failure.cancelled ? .cancelled : .failed)
        }
    }
}
