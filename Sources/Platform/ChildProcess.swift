#if canImport(Glibc)
import Glibc
#endif
import CGlibcShims
import Synchronization

/// What a finished child process left behind.
public struct ChildProcessOutput: Sendable, Equatable {
    public var stdout: [UInt8]
    public var stderr: [UInt8]
    public var exitStatus: Int32
}

/// Why a child process gave no output to use.
public struct ChildProcessFailure: Error, Sendable, Equatable {
    public var message: String
    public var exitStatus: Int32?
    public var stderr: [UInt8]
    /// Stopped on purpose (shutdown, or its runner cancelled), not the program's failure.
    public var cancelled: Bool

    public init(_ message: String, exitStatus: Int32? = nil, stderr: [UInt8] = [], cancelled: Bool = false) {
        self.message = message
        self.exitStatus = exitStatus
        self.stderr = stderr
        self.cancelled = cancelled
    }

    static func cancelled(_ message: String) -> ChildProcessFailure {
        ChildProcessFailure(message, cancelled: true)
    }
}

/// Runs a program as a child process started with posix_spawn (argv only, never a shell; PATH
/// searched by `ExecutableLookup`), with this process' environment, and reads its output.
///
/// Each run gets its own process group so a timeout can stop the program and everything it
/// started (pg_basebackup, ssh...). stdout and stderr are read concurrently with a size cap; a
/// run over the timeout or the cap is terminated with SIGTERM, then SIGKILL after a grace
/// period, and always reaped. Blocking: call it on a thread of its own.
public struct ChildProcess: Sendable {
    public var timeout: Duration
    public var killGracePeriod: Duration
    /// After the program itself has exited, how long its pipes may stay open (a daemonized
    /// grandchild, such as an ssh ControlPersist master, keeps them) before what was read is used.
    public var pipeGracePeriod: Duration
    public var stdoutLimit: Int
    /// Only an excerpt of stderr is kept; more is read and discarded so the program never blocks.
    public var stderrLimit: Int
    public var processGroups: ProcessGroups
    public var outputBudget: OutputBudget
    /// This runner's processes in `processGroups`, so they can be cancelled alone.
    public var runnerID: UInt64
    /// The program's name in errors ("barman did not finish..."), the setting that names it and
    /// the one that sets the timeout, for the advice in errors ("set barman_command...").
    public var program: String
    public var setting: String
    public var timeoutSetting: String

    public init(timeout: Duration, killGracePeriod: Duration, pipeGracePeriod: Duration, stdoutLimit: Int, stderrLimit: Int,
                processGroups: ProcessGroups, outputBudget: OutputBudget, runnerID: UInt64,
                program: String, setting: String, timeoutSetting: String) {
        self.timeout = timeout
        self.killGracePeriod = killGracePeriod
        self.pipeGracePeriod = pipeGracePeriod
        self.stdoutLimit = stdoutLimit
        self.stderrLimit = stderrLimit
        self.processGroups = processGroups
        self.outputBudget = outputBudget
        self.runnerID = runnerID
        self.program = program
        self.setting = setting
        self.timeoutSetting = timeoutSetting
    }

    public func run(_ argv: [String]) throws(ChildProcessFailure) -> ChildProcessOutput {
        let stdoutPipe = try pipe()
        let stderrPipe: (read: Int32, write: Int32)
        do {
            stderrPipe = try pipe()
        } catch {
            System.close(stdoutPipe.read); System.close(stdoutPipe.write)
            throw error
        }
        let spawned = Result { () throws(ChildProcessFailure) in
            try processGroups.start(for: runnerID) { () throws(ChildProcessFailure) in try spawn(argv, stdout: stdoutPipe.write, stderr: stderrPipe.write) }
        }
        System.close(stdoutPipe.write)
        System.close(stderrPipe.write)
        defer {
            System.close(stdoutPipe.read)
            System.close(stderrPipe.read)
        }
        let pid = try spawned.get()
        defer { processGroups.remove(pid) }

        let collected = collect(pid: pid, stdout: stdoutPipe.read, stderr: stderrPipe.read)
        let status = reap(pid)

        // Stopped by shutdown or a reload (barman may exit on SIGTERM or die of it): not
        // barman's failure.
        let finishedCleanly = collected.problem == nil && status.exitCode == 0
        if !finishedCleanly, let reason = processGroups.cancellation(of: runnerID) {
            throw ChildProcessFailure.cancelled(reason)
        }
        if let problem = collected.problem {
            throw ChildProcessFailure(problem, exitStatus: status.exitCode, stderr: collected.stderr)
        }
        if let signal = status.signal {
            throw ChildProcessFailure("\(program) was killed by signal \(signal)", stderr: collected.stderr)
        }
        return ChildProcessOutput(stdout: collected.stdout, stderr: collected.stderr, exitStatus: status.exitCode ?? -1)
    }

    /// A close-on-exec pipe, so no other child inherits it.
    private func pipe() throws(ChildProcessFailure) -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        do {
            try System.call("pipe2", "create", on: "a pipe for \(program)'s output") { cgs_pipe_cloexec(&fds) }
        } catch {
            throw ChildProcessFailure(error.description)
        }
        return (fds[0], fds[1])
    }

    /// Further attempts after ETXTBSY, 10 ms apart and doubling: about 0.6 s in all.
    static let textBusyRetries = 6

    private func spawn(_ argv: [String], stdout: Int32, stderr: Int32) throws(ChildProcessFailure) -> pid_t {
        // A C string ends at NUL: such an argument would reach barman cut short, as another name.
        if let bad = argv.first(where: { $0.utf8.contains(0) }) {
            throw ChildProcessFailure("not run: the argument \(Logger.quoted(bad)) contains a NUL byte, which cannot be passed to a program")
        }
        let path = try ExecutableLookup.resolve(argv[0], searchPath: ExecutableLookup.currentSearchPath(), program: program, setting: setting)
        var actions = posix_spawn_file_actions_t()
        var attributes = posix_spawnattr_t()
        do {
            try System.checkReturnedCode("posix_spawn_file_actions_init", "prepare to run", on: path, posix_spawn_file_actions_init(&actions))
        } catch {
            throw ChildProcessFailure(error.description)
        }
        defer { posix_spawn_file_actions_destroy(&actions) }
        do {
            try System.checkReturnedCode("posix_spawnattr_init", "prepare to run", on: path, posix_spawnattr_init(&attributes))
        } catch {
            throw ChildProcessFailure(error.description)
        }
        defer { posix_spawnattr_destroy(&attributes) }

        // barman gets an empty signal mask and default dispositions (the exporter ignores SIGPIPE).
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        var defaults = Signals.signalSet()
        let results: [Int32] = [
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0),
            posix_spawn_file_actions_adddup2(&actions, stdout, 1),
            posix_spawn_file_actions_adddup2(&actions, stderr, 2),
            cgs_spawn_file_actions_addclosefrom(&actions, 3),
            // Own process group, so a timeout can stop barman and its children together.
            posix_spawnattr_setpgroup(&attributes, 0),
            posix_spawnattr_setsigmask(&attributes, &emptyMask),
            posix_spawnattr_setsigdefault(&attributes, &defaults),
            posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)),
        ]
        if let failed = results.first(where: { $0 != 0 }) {
            throw ChildProcessFailure("cannot prepare to run '\(path)': \(SystemError.reason(failed))")
        }

        var cArguments: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) }
        cArguments.append(nil)
        defer { for pointer in cArguments { free(pointer) } }
        guard !cArguments.dropLast().contains(where: { $0 == nil }) else { throw ChildProcessFailure("cannot run '\(path)': out of memory") }
        var pid: pid_t = 0
        var status = posix_spawn(&pid, path, &actions, &attributes, cArguments, environ)
        // ETXTBSY: the program is open for writing somewhere, typically for a moment (a package
        // upgrade replacing it, or a descriptor another child inherited before its exec closed
        // it). Retried briefly rather than failing this refresh.
        var delay = Duration.milliseconds(10)
        for _ in 0..<Self.textBusyRetries where status == ETXTBSY {
            Deadline.sleep(delay)
            delay *= 2
            status = posix_spawn(&pid, path, &actions, &attributes, cArguments, environ)
        }
        guard status == 0 else {
            var message = "cannot run '\(path)': \(SystemError.reason(status))"
            if status == ENOENT { message += "; install \(program) or set \(setting) to its full path" }
            if status == EACCES { message += "; check that it is executable by this user" }
            throw ChildProcessFailure(message)
        }
        return pid
    }

    private struct Collected {
        var stdout: [UInt8] = []
        var stderr: [UInt8] = []
        var problem: String?
    }

    /// Reads both pipes until they close, the deadline passes, or the output is over its caps.
    /// Reaps barman as soon as it exits, and then waits at most `pipeGracePeriod` for the pipes.
    private func collect(pid: pid_t, stdout: Int32, stderr: Int32) -> Collected {
        var collected = Collected()
        var reserved = 0
        defer { outputBudget.release(reserved) }
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var pipesDeadline: ContinuousClock.Instant?
        var open = [stdout, stderr]
        var chunk = [UInt8](repeating: 0, count: 65536)
        while !open.isEmpty {
            if pipesDeadline == nil, reapIfExited(pid) {
                pipesDeadline = clock.now + pipeGracePeriod
            }
            if let pipesDeadline, clock.now >= pipesDeadline { break }  // barman is done; a grandchild holds the pipes
            let remaining = deadline - clock.now
            if remaining <= .zero {
                collected.problem = "\(program) did not finish within \(timeoutSetting) (\(timeout.components.seconds) s) and was terminated"
                terminate(pid)
                break
            }
            var fds = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            // Short waits, so barman's exit is noticed even while a grandchild keeps the pipes open.
            let milliseconds = Int32(min(remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000 + 1, 100))
            do {
                try System.call("poll") { poll(&fds, nfds_t(fds.count), milliseconds) }
            } catch {
                collected.problem = "cannot wait for \(program)'s output: \(SystemError.reason(error.code))"
                terminate(pid)
                break
            }
            for descriptor in fds where descriptor.revents != 0 {
                let count = (try? System.call("read") { chunk.withUnsafeMutableBytes { read(descriptor.fd, $0.baseAddress, $0.count) } }) ?? 0
                if count > 0 {
                    if descriptor.fd == stdout {
                        if let problem = makeRoom(for: count, in: &collected.stdout, reserved: &reserved) {
                            collected.problem = problem
                            break
                        }
                        collected.stdout.append(contentsOf: chunk[0..<count])
                    } else if collected.stderr.count < stderrLimit {
                        collected.stderr.append(contentsOf: chunk[0..<min(count, stderrLimit - collected.stderr.count)])
                    }
                } else {
                    // End of file, or a read error that will not go away: this pipe is done.
                    open.removeAll { $0 == descriptor.fd }
                }
            }
            if collected.problem != nil {
                collected.stdout = []
                terminate(pid)
                break
            }
        }
        return collected
    }

    /// Grows `buffer` for `count` more bytes within the per-command cap and the shared budget;
    /// the reason when it cannot.
    private func makeRoom(for count: Int, in buffer: inout [UInt8], reserved: inout Int) -> String? {
        let needed = buffer.count + count
        guard needed <= stdoutLimit else {
            return "\(program) printed more than \(stdoutLimit) bytes on stdout and was terminated"
        }
        guard needed > buffer.capacity else { return nil }
        // Grow by doubling, as Array would, but within the cap, and count what is allocated.
        let capacity = min(max(needed, buffer.capacity * 2, 65536), stdoutLimit)
        guard outputBudget.reserve(capacity - reserved) else {
            return "\(program)'s output would take the exporter over its \(outputBudget.limit >> 20) MiB limit for \(program) output held at once and was terminated"
        }
        reserved = capacity
        buffer.reserveCapacity(capacity)
        return nil
    }

    /// Reaps barman if it has exited, keeping its status for `reap`.
    private func reapIfExited(_ pid: pid_t) -> Bool {
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) == pid else { return false }
        processGroups.markReaped(pid, status: status)
        return true
    }

    /// SIGTERM to the whole group, then SIGKILL if it is still there after the grace period.
    private func terminate(_ pid: pid_t) {
        kill(-pid, SIGTERM)
        let gone = Deadline.poll(for: killGracePeriod) {
            // The leader may go first; stragglers of its group still get the SIGKILL below.
            _ = reapIfExited(pid)
            // Signal 0 probes whether any process of the group is left.
            return kill(-pid, 0) != 0
        }
        if !gone { kill(-pid, SIGKILL) }
    }

    private func reap(_ pid: pid_t) -> (exitCode: Int32?, signal: Int32?) {
        var status: Int32 = 0
        if let early = processGroups.takeReaped(pid) {
            status = early
        } else if (try? System.call("waitpid") { waitpid(pid, &status, 0) }) == nil {
            return (nil, nil)
        }
        if cgs_wifexited(status) != 0 { return (cgs_wexitstatus(status), nil) }
        if cgs_wifsignaled(status) != 0 { return (nil, cgs_wtermsig(status)) }
        return (nil, nil)
    }
}

/// Process groups of running child processes (barman commands), by the runner that started them, so shutdown
/// (or a reload that changes the barman source) can terminate them; plus the exit status of
/// leaders reaped early while their group was being terminated.
public final class ProcessGroups: Sendable {
    private struct State {
        var groups: [pid_t: UInt64] = [:]
        var reaped: [pid_t: Int32] = [:]
        /// Set by terminateAll: nothing is started any more.
        var stopping = false
        /// Runners whose commands were cancelled (their source was replaced).
        var cancelledRunners: Set<UInt64> = []
    }
    private let state = Mutex(State())
    private static let nextRunnerID = Atomic<UInt64>(1)

    public init() {}

    /// A new id for a runner's commands.
    public static func newRunnerID() -> UInt64 { nextRunnerID.wrappingAdd(1, ordering: .relaxed).oldValue }

    /// Starts a process group with `spawn` and records it, under the same lock that
    /// `terminateAll` takes: a group is either recorded before shutdown looks, or never started.
    func start(for runner: UInt64, _ spawn: () throws(ChildProcessFailure) -> pid_t) throws(ChildProcessFailure) -> pid_t {
        try state.withLock { (state) throws(ChildProcessFailure) -> pid_t in
            if state.stopping { throw ChildProcessFailure.cancelled("not started: the exporter is stopping") }
            if state.cancelledRunners.contains(runner) { throw ChildProcessFailure.cancelled("not started: its source was replaced by a reload") }
            let pid = try spawn()
            state.groups[pid] = runner
            return pid
        }
    }

    /// Why a group of this runner ended early, if it was cancelled rather than failed.
    func cancellation(of runner: UInt64) -> String? {
        state.withLock { state in
            if state.stopping { return "cancelled: the exporter is stopping" }
            if state.cancelledRunners.contains(runner) { return "cancelled: its source was replaced by a reload" }
            return nil
        }
    }

    /// Terminates every barman process group still running and starts no more (on shutdown):
    /// SIGTERM, then SIGKILL for groups still there after `grace`.
    public func terminateAll(grace: Duration = .seconds(2)) {
        let groups = state.withLock { state in
            state.stopping = true
            return Array(state.groups.keys)
        }
        Self.terminate(groups, grace: grace)
    }

    /// Terminates the groups of one runner, in the background, and starts none for it any more
    /// (a reload replaced it).
    public func cancel(runner: UInt64, grace: Duration = .seconds(2)) {
        let groups = state.withLock { state in
            state.cancelledRunners.insert(runner)
            return state.groups.filter { $0.value == runner }.map(\.key)
        }
        guard !groups.isEmpty else { return }
        try? DetachedThread.start(name: "barman stop") { Self.terminate(groups, grace: grace) }
    }

    private static func terminate(_ groups: [pid_t], grace: Duration) {
        guard !groups.isEmpty else { return }
        for group in groups { kill(-group, SIGTERM) }
        Deadline.poll(for: grace) { !groups.contains { kill(-$0, 0) == 0 } }
        for group in groups where kill(-group, 0) == 0 { kill(-group, SIGKILL) }
    }

    func remove(_ pid: pid_t) { state.withLock { _ = $0.groups.removeValue(forKey: pid) } }
    func markReaped(_ pid: pid_t, status: Int32) { state.withLock { $0.reaped[pid] = status } }
    func takeReaped(_ pid: pid_t) -> Int32? { state.withLock { $0.reaped.removeValue(forKey: pid) } }
}

/// Memory for child processes' output while it is read (barman's answers), shared by every command of a pipeline: a few
/// runaway barman processes cannot take more than `limit` between them.
public final class OutputBudget: Sendable {
    public let limit: Int
    private let used = Atomic<Int>(0)

    /// 128 MiB: dozens of times the largest real answer, and little on a backup host.
    public init(limit: Int = 128 << 20) {
        self.limit = limit
    }

    /// Takes `bytes` (negative gives back) if they fit.
    func reserve(_ bytes: Int) -> Bool {
        var current = used.load(ordering: .relaxed)
        while true {
            let next = current + bytes
            if bytes > 0 && next > limit { return false }
            let (exchanged, original) = used.compareExchange(expected: current, desired: next, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    func release(_ bytes: Int) {
        used.subtract(bytes, ordering: .relaxed)
    }
}
