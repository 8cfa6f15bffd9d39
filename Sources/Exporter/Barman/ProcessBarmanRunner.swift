#if canImport(Glibc)
import Glibc
#endif
import CGlibcShims
import Synchronization

/// Runs the real barman CLI: `barman [-c FILE] -f json ARGS...` as a child process started
/// with posix_spawn (argv only, never a shell; PATH searched by `ExecutableLookup`), with the
/// exporter's environment unchanged.
///
/// Each run gets its own process group so a timeout can stop barman and everything it started
/// (pg_basebackup, ssh...). stdout and stderr are read concurrently with a size cap; a run over
/// the timeout or the cap is terminated with SIGTERM, then SIGKILL after a grace period, and
/// always reaped.
public struct ProcessBarmanRunner: BarmanRunner {
    public var executable: String
    public var configFile: String?
    public var timeout: Duration
    public var killGracePeriod: Duration = .seconds(5)
    public var stdoutLimit = 256 << 20
    /// Only an excerpt of stderr is logged; more is read and discarded so barman never blocks.
    public var stderrLimit = 64 << 10
    /// Where running process groups are recorded, so their owner can terminate them on shutdown.
    public var processGroups: ProcessGroups

    public init(executable: String, configFile: String?, timeout: Duration, processGroups: ProcessGroups = ProcessGroups()) {
        self.executable = executable
        self.configFile = configFile
        self.timeout = timeout
        self.processGroups = processGroups
    }

    public func argv(for command: BarmanCommand) -> [String] {
        var argv = [executable]
        if let configFile { argv += ["-c", configFile] }
        return argv + ["-f", "json"] + command.arguments
    }

    public func run(_ command: BarmanCommand) async -> Result<CommandOutput, CommandFailure> {
        let argv = argv(for: command)
        let runner = self
        return await withCheckedContinuation { continuation in
            do {
                try DetachedThread.start { continuation.resume(returning: runner.runBlocking(argv)) }
            } catch {
                continuation.resume(returning: .failure(CommandFailure("cannot start a thread to run barman: \(error)")))
            }
        }
    }

    func runBlocking(_ argv: [String]) -> Result<CommandOutput, CommandFailure> {
        var stdoutPipe: [Int32] = [-1, -1]
        var stderrPipe: [Int32] = [-1, -1]
        guard cgs_pipe_cloexec(&stdoutPipe) == 0 else { return .failure(CommandFailure("cannot create a pipe: \(errnoText())")) }
        guard cgs_pipe_cloexec(&stderrPipe) == 0 else {
            close(stdoutPipe[0]); close(stdoutPipe[1])
            return .failure(CommandFailure("cannot create a pipe: \(errnoText())"))
        }
        let spawned = spawn(argv, stdout: stdoutPipe[1], stderr: stderrPipe[1])
        close(stdoutPipe[1])
        close(stderrPipe[1])
        let pid: pid_t
        switch spawned {
        case .failure(let failure):
            close(stdoutPipe[0]); close(stderrPipe[0])
            return .failure(failure)
        case .success(let child):
            pid = child
        }
        processGroups.insert(pid)
        defer { processGroups.remove(pid) }

        let collected = collect(pid: pid, stdout: stdoutPipe[0], stderr: stderrPipe[0])
        close(stdoutPipe[0])
        close(stderrPipe[0])
        let status = reap(pid)

        if let problem = collected.problem {
            return .failure(CommandFailure(problem, exitStatus: status.exitCode, stderr: collected.stderr))
        }
        if let signal = status.signal {
            return .failure(CommandFailure("barman was killed by signal \(signal)", stderr: collected.stderr))
        }
        return .success(CommandOutput(stdout: collected.stdout, stderr: collected.stderr, exitStatus: status.exitCode ?? -1))
    }

    private func spawn(_ argv: [String], stdout: Int32, stderr: Int32) -> Result<pid_t, CommandFailure> {
        let path: String
        switch ExecutableLookup.resolve(argv[0], searchPath: ExecutableLookup.currentSearchPath()) {
        case .success(let found): path = found
        case .failure(let failure): return .failure(failure)
        }
        var actions = posix_spawn_file_actions_t()
        guard posix_spawn_file_actions_init(&actions) == 0 else { return .failure(CommandFailure("cannot prepare to run barman: \(errnoText())")) }
        defer { posix_spawn_file_actions_destroy(&actions) }
        var attributes = posix_spawnattr_t()
        guard posix_spawnattr_init(&attributes) == 0 else { return .failure(CommandFailure("cannot prepare to run barman: \(errnoText())")) }
        defer { posix_spawnattr_destroy(&attributes) }

        var results: [Int32] = [
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0),
            posix_spawn_file_actions_adddup2(&actions, stdout, 1),
            posix_spawn_file_actions_adddup2(&actions, stderr, 2),
            cgs_spawn_file_actions_addclosefrom(&actions, 3),
            // Own process group, so a timeout can stop barman and its children together.
            posix_spawnattr_setpgroup(&attributes, 0),
        ]
        // barman gets an empty signal mask and default dispositions (the exporter ignores SIGPIPE).
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        results.append(posix_spawnattr_setsigmask(&attributes, &emptyMask))
        var defaults = Signals.signalSet()
        results.append(posix_spawnattr_setsigdefault(&attributes, &defaults))
        results.append(posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)))
        if let failed = results.first(where: { $0 != 0 }) {
            return .failure(CommandFailure("cannot prepare to run barman: \(String(cString: strerror(failed)))"))
        }

        var cArguments: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) }
        cArguments.append(nil)
        defer { for pointer in cArguments { free(pointer) } }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, path, &actions, &attributes, cArguments, environ)
        guard status == 0 else {
            var message = "cannot run '\(path)': \(String(cString: strerror(status)))"
            if status == ENOENT { message += "; install barman or set barman_command to its full path" }
            if status == EACCES { message += "; check that it is executable by this user" }
            return .failure(CommandFailure(message))
        }
        return .success(pid)
    }

    private struct Collected {
        var stdout: [UInt8] = []
        var stderr: [UInt8] = []
        var problem: String?
    }

    /// Reads both pipes until they close, the deadline passes, or stdout exceeds its cap.
    private func collect(pid: pid_t, stdout: Int32, stderr: Int32) -> Collected {
        var collected = Collected()
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var open = [stdout, stderr]
        var chunk = [UInt8](repeating: 0, count: 65536)
        while !open.isEmpty {
            let remaining = deadline - clock.now
            if remaining <= .zero {
                collected.problem = "barman did not finish within command_timeout (\(timeout.components.seconds) s) and was terminated"
                terminate(pid)
                break
            }
            var fds = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let milliseconds = Int32(min(remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000 + 1, 1000))
            let ready = poll(&fds, nfds_t(fds.count), milliseconds)
            if ready < 0 {
                if errno == EINTR { continue }
                collected.problem = "cannot wait for barman's output: \(errnoText())"
                terminate(pid)
                break
            }
            for descriptor in fds where descriptor.revents != 0 {
                let count = chunk.withUnsafeMutableBytes { read(descriptor.fd, $0.baseAddress, $0.count) }
                if count > 0 {
                    if descriptor.fd == stdout {
                        collected.stdout.append(contentsOf: chunk[0..<count])
                    } else if collected.stderr.count < stderrLimit {
                        collected.stderr.append(contentsOf: chunk[0..<min(count, stderrLimit - collected.stderr.count)])
                    }
                } else if count == 0 || (errno != EINTR && errno != EAGAIN) {
                    open.removeAll { $0 == descriptor.fd }
                }
            }
            if collected.stdout.count > stdoutLimit {
                collected.problem = "barman printed more than \(stdoutLimit) bytes on stdout and was terminated"
                collected.stdout = []
                terminate(pid)
                break
            }
        }
        return collected
    }

    /// SIGTERM to the whole group, then SIGKILL if it is still there after the grace period.
    private func terminate(_ pid: pid_t) {
        kill(-pid, SIGTERM)
        let clock = ContinuousClock()
        let deadline = clock.now + killGracePeriod
        while clock.now < deadline {
            // Signal 0 probes whether any process of the group is left.
            if kill(-pid, 0) != 0 { return }
            usleep(20_000)
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                // The leader is gone; stragglers of its group still get the SIGKILL below.
                processGroups.markReaped(pid, status: status)
            }
        }
        kill(-pid, SIGKILL)
    }

    private func reap(_ pid: pid_t) -> (exitCode: Int32?, signal: Int32?) {
        var status: Int32 = 0
        if let early = processGroups.takeReaped(pid) {
            status = early
        } else {
            while waitpid(pid, &status, 0) < 0 {
                if errno != EINTR { return (nil, nil) }
            }
        }
        if cgs_wifexited(status) != 0 { return (cgs_wexitstatus(status), nil) }
        if cgs_wifsignaled(status) != 0 { return (nil, cgs_wtermsig(status)) }
        return (nil, nil)
    }

    private func errnoText() -> String { String(cString: strerror(errno)) }
}

/// Process groups of running barman commands, so shutdown can terminate them, plus the exit
/// status of leaders reaped early while their group was being terminated.
public final class ProcessGroups: Sendable {
    private let state = Mutex<(groups: Set<pid_t>, reaped: [pid_t: Int32])>(([], [:]))

    public init() {}

    /// Terminates every barman process group still running (on shutdown): SIGTERM, then
    /// SIGKILL for groups still there after `grace`.
    public func terminateAll(grace: Duration = .seconds(2)) {
        let groups = all()
        guard !groups.isEmpty else { return }
        for group in groups { kill(-group, SIGTERM) }
        let clock = ContinuousClock()
        let deadline = clock.now + grace
        while groups.contains(where: { kill(-$0, 0) == 0 }), clock.now < deadline {
            usleep(20_000)
        }
        for group in groups where kill(-group, 0) == 0 { kill(-group, SIGKILL) }
    }

    func insert(_ pid: pid_t) { state.withLock { _ = $0.groups.insert(pid) } }
    func remove(_ pid: pid_t) { state.withLock { _ = $0.groups.remove(pid) } }
    func all() -> [pid_t] { state.withLock { Array($0.groups) } }
    func markReaped(_ pid: pid_t, status: Int32) { state.withLock { $0.reaped[pid] = status } }
    func takeReaped(_ pid: pid_t) -> Int32? { state.withLock { $0.reaped.removeValue(forKey: pid) } }
}
