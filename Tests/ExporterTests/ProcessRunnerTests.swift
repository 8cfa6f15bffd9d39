@testable import Barman
@testable import Configuration
@testable import Exporter
@testable import Exposition
@testable import Platform
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The runner against real child processes (small shell scripts standing in for barman).
@Suite("Running barman")
struct ProcessRunnerTests {
    /// Writes `body` as an executable script and returns a runner for it and the script's
    /// directory, which the caller removes.
    func runner(_ body: String, timeout: Duration = .seconds(20)) throws -> (ProcessBarmanRunner, String) {
        let directory = try TestSupport.temporaryDirectory()
        let path = directory + "/barman"
        try TestSupport.write("#!/bin/sh\n" + body + "\n", to: path, mode: 0o755)
        var runner = ProcessBarmanRunner(executable: path, configFile: nil, timeout: timeout)
        runner.killGracePeriod = .milliseconds(500)
        return (runner, directory)
    }

    /// Whether the process whose pid is in `pidFile` still runs. A zombie counts as gone: an
    /// orphaned grandchild is reaped by PID 1, which may take its time in a container.
    func isAlive(_ pidFile: String) throws -> Bool {
        let text = String(decoding: try FileReader.readAll(path: pidFile, limit: 100), as: UTF8.self).trimmingTrailingWhitespace()
        let pid = try #require(pid_t(text))
        guard let stat = try? FileReader.readAll(path: "/proc/\(pid)/stat", limit: 4096) else { return false }
        // Field 3, after the parenthesised command name, is the state.
        guard let close = stat.lastIndex(of: UInt8(ascii: ")")), close + 2 < stat.count else { return false }
        return stat[close + 2] != UInt8(ascii: "Z")
    }

    @Test func capturesStdoutStderrAndExitStatus() async throws {
        let (runner, directory) = try runner(#"echo '{"pg": []}'; echo 'a warning' >&2; exit 3"#)
        defer { TestSupport.removeTree(directory) }
        let output = try await runner.run(ListBackupsCollector.command)
        #expect(output == CommandOutput(stdout: Array("{\"pg\": []}\n".utf8), stderr: Array("a warning\n".utf8), exitStatus: 3))
    }

    @Test func argumentsArePassedVerbatimWithoutAShell() async throws {
        let (runner, directory) = try runner(#"for a in "$@"; do printf '%s\n' "$a"; done"#)
        defer { TestSupport.removeTree(directory) }
        let server = "a b;$(touch /tmp/pwned)'\"\n`x`"
        let output = try await runner.run(BackupDetailsCollector.command(server: server, backupID: "20261124T182524"))
        #expect(String(decoding: output.stdout, as: UTF8.self) == "-f\njson\nshow-backup\n\(server)\n20261124T182524\n")
        var withConfig = runner
        withConfig.configFile = "/etc/barman conf"
        #expect(withConfig.argv(for: ChecksCollector.command) == [runner.executable, "-c", "/etc/barman conf", "-f", "json", "check", "all"])
    }

    @Test func environmentIsPassedThrough() async throws {
        setenv("BARMAN_EXPORTER_TEST_MARKER", "passed through", 1)
        let (runner, directory) = try runner(#"printf '%s' "$BARMAN_EXPORTER_TEST_MARKER""#)
        defer { TestSupport.removeTree(directory) }
        let output = try await runner.run(ChecksCollector.command)
        #expect(String(decoding: output.stdout, as: UTF8.self) == "passed through")
    }

    @Test func noDescriptorLeaksIntoBarman() async throws {
        // Open some descriptors (a listening socket among them) that must not be inherited.
        let listener = try ListenSocket(address: "127.0.0.1", port: 0)
        defer { listener.close() }
        let (runner, directory) = try runner("exec ls /proc/self/fd")
        defer { TestSupport.removeTree(directory) }
        let output = try await runner.run(ChecksCollector.command)
        // 0-2 are stdin/out/err, 3 is the directory ls itself is reading.
        #expect(String(decoding: output.stdout, as: UTF8.self).split(separator: "\n") == ["0", "1", "2", "3"])
    }

    @Test func stdinIsEmpty() async throws {
        let (runner, directory) = try runner("cat; echo done")
        defer { TestSupport.removeTree(directory) }
        let output = try await runner.run(ChecksCollector.command)
        #expect(String(decoding: output.stdout, as: UTF8.self) == "done\n")
    }

    /// Runs `check` and expects it to be stopped at the runner's 2 s timeout.
    func expectTimeout(_ runner: ProcessBarmanRunner) async {
        let result = await outcome(runner, ChecksCollector.command)
        guard case .failure(let failure) = result else {
            Issue.record("expected a timeout, got \(result)")
            return
        }
        #expect(failure.message == "barman did not finish within command_timeout (2 s) and was terminated")
    }

    // The timeout tests give the script 2 s: it writes its pid files first thing, and on a
    // loaded 2-core CI machine a shell can take a while to start.
    @Test func timeoutTerminatesTheWholeProcessGroup() async throws {
        let (runner, directory) = try runner("echo $$ > \"$(dirname \"$0\")/barman.pid\"; sleep 60 & echo $! > \"$(dirname \"$0\")/child.pid\"; wait", timeout: .seconds(2))
        defer { TestSupport.removeTree(directory) }
        await expectTimeout(runner)
        // Both barman and the child it started are gone, and barman was reaped (not a zombie).
        #expect(try !isAlive(directory + "/barman.pid"))
        #expect(try !isAlive(directory + "/child.pid"))
    }

    @Test func sigtermIgnoredMeansSigkill() async throws {
        let (runner, directory) = try runner("trap '' TERM; echo $$ > \"$(dirname \"$0\")/barman.pid\"; while :; do sleep 0.05; done", timeout: .seconds(2))
        defer { TestSupport.removeTree(directory) }
        await expectTimeout(runner)
        #expect(try !isAlive(directory + "/barman.pid"))
    }

    @Test func outputOverTheCapIsAnError() async throws {
        var (runner, directory) = try runner("yes '{\"pg\": []}'")
        defer { TestSupport.removeTree(directory) }
        runner.stdoutLimit = 1 << 20
        let result = await outcome(runner, ListBackupsCollector.command)
        guard case .failure(let failure) = result else {
            Issue.record("expected an error, got a result")
            return
        }
        #expect(failure.message == "barman printed more than 1048576 bytes on stdout and was terminated")
    }

    /// A program open for writing for a moment (a package upgrade replacing it, or a descriptor
    /// another child held until its exec; seen as a flake when tests ran in parallel) runs once
    /// it is closed, instead of failing with "Text file busy"; one that stays open fails with it.
    @Test func aProgramBusyForAMomentStillRuns() async throws {
        let (runner, directory) = try runner("echo '{}'")
        defer { TestSupport.removeTree(directory) }
        let writer = open(directory + "/barman", O_WRONLY | O_CLOEXEC)
        try #require(writer >= 0)
        try DetachedThread.start {
            Deadline.sleep(.milliseconds(60))
            close(writer)
        }
        let output = try await runner.run(ListBackupsCollector.command)
        #expect(output.stdout == Array("{}\n".utf8))

        let held = open(directory + "/barman", O_WRONLY | O_CLOEXEC)
        try #require(held >= 0)
        defer { close(held) }
        let result = await outcome(runner, ListBackupsCollector.command)
        guard case .failure(let failure) = result else {
            Issue.record("expected an error, got a result")
            return
        }
        #expect(failure.message.contains("Text file busy"))
    }

    @Test func largeStderrDoesNotBlockAndIsCapped() async throws {
        let (runner, directory) = try runner("head -c 5000000 /dev/zero | tr '\\0' x >&2; echo '{}'")
        defer { TestSupport.removeTree(directory) }
        let output = try await runner.run(ListBackupsCollector.command)
        #expect(output.stdout == Array("{}\n".utf8))
        #expect(output.stderr.count == runner.stderrLimit)
    }

    @Test func missingExecutable() async {
        let runner = ProcessBarmanRunner(executable: "/nonexistent/barman", configFile: nil, timeout: .seconds(5))
        let result = await outcome(runner, ChecksCollector.command)
        #expect(result == .failure(CommandFailure("cannot run '/nonexistent/barman': No such file or directory; install barman or set barman_command to its full path")))
        let inPath = ProcessBarmanRunner(executable: "barman-does-not-exist", configFile: nil, timeout: .seconds(5))
        let searchPath = ExecutableLookup.currentSearchPath() ?? ExecutableLookup.defaultSearchPath
        #expect(await outcome(inPath, ChecksCollector.command) == .failure(CommandFailure("cannot run 'barman-does-not-exist': not found in PATH (\(searchPath)); install barman or set barman_command to its full path")))
    }

    /// The search is the shell's: first executable regular file wins; directories, missing
    /// directories and files without an execute bit are passed over, and named when nothing else is found.
    @Test func executableIsSearchedInPathLikeAShell() throws {
        let notExecutable = try TestSupport.temporaryDirectory()
        defer { TestSupport.removeTree(notExecutable) }
        try TestSupport.write("#!/bin/sh\n", to: notExecutable + "/barman", mode: 0o644)
        let executable = try TestSupport.temporaryDirectory()
        defer { TestSupport.removeTree(executable) }
        try TestSupport.write("#!/bin/sh\n", to: executable + "/barman", mode: 0o755)
        let directoryNamedBarman = try TestSupport.temporaryDirectory()
        defer { TestSupport.removeTree(directoryNamedBarman) }
        #expect(mkdir(directoryNamedBarman + "/barman", 0o755) == 0)

        let searchPath = "/nonexistent:\(directoryNamedBarman):\(notExecutable):\(executable)"
        #expect(resolved("barman", searchPath: searchPath) == .success(executable + "/barman"))
        #expect(resolved("barman", searchPath: "/nonexistent:\(notExecutable)") == .failure(ChildProcessFailure("cannot run 'barman': \(notExecutable)/barman is not executable by this user; fix its permissions or set barman_command to the right path")))
        #expect(resolved("barman", searchPath: "/nonexistent:\(directoryNamedBarman)") == .failure(ChildProcessFailure("cannot run 'barman': not found in PATH (/nonexistent:\(directoryNamedBarman)); install barman or set barman_command to its full path")))
        #expect(resolved("./barman", searchPath: searchPath) == .success("./barman"))
    }

    @Test func notExecutable() async throws {
        let directory = try TestSupport.temporaryDirectory()
        defer { TestSupport.removeTree(directory) }
        try TestSupport.write("#!/bin/sh\necho hi\n", to: directory + "/barman", mode: 0o644)
        let runner = ProcessBarmanRunner(executable: directory + "/barman", configFile: nil, timeout: .seconds(5))
        #expect(await outcome(runner, ChecksCollector.command) == .failure(CommandFailure("cannot run '\(directory)/barman': Permission denied; check that it is executable by this user")))
    }

    @Test func killedBySignalIsAFailure() async throws {
        let (runner, directory) = try runner("echo '{}'; kill -KILL $$")
        defer { TestSupport.removeTree(directory) }
        #expect(await outcome(runner, ChecksCollector.command) == .failure(CommandFailure("barman was killed by signal 9")))
    }

    /// Once shutdown has begun, no barman is started any more: the decision and the record of a
    /// started group are made under one lock, so shutdown never misses a group.
    @Test func nothingStartsAfterShutdownBegan() async throws {
        let (runner, directory) = try runner("touch \"$(dirname \"$0\")/started\"; echo '{}'")
        defer { TestSupport.removeTree(directory) }
        runner.processGroups.terminateAll()
        guard case .failure(let failure) = await outcome(runner, ChecksCollector.command) else {
            Issue.record("expected a cancellation")
            return
        }
        #expect(failure.reason == .cancelled)
        #expect(failure.message == "not started: the exporter is stopping")
        #expect(access(directory + "/started", F_OK) != 0)
    }

    /// A command that shutdown kills is not a failure of barman: no error line, not counted.
    @Test func commandsStoppedByShutdownAreNotFailures() async throws {
        let (runner, directory) = try runner("touch \"$(dirname \"$0\")/started\"; exec sleep 60")
        defer { TestSupport.removeTree(directory) }
        let capture = try LogCapture()
        let store = SnapshotStore(MetricsSnapshot(version: "test"))
        let refresher = Refresher(runner: runner, settings: RefreshSettings(cacheTTL: .zero, checksCacheTTL: .zero, refreshInterval: .seconds(60)),
                                  store: store, logger: capture.logger())
        let cycle = Task { await refresher.refreshCycle() }
        try await TestSupport.waitUntil("barman started") { access(directory + "/started", F_OK) == 0 }
        runner.processGroups.terminateAll(grace: .milliseconds(500))
        await cycle.value
        let log = try capture.text
        #expect(!log.contains("level=error"), "\(log)")
        #expect(log.contains("barman command cancelled"))
        #expect(store.snapshot.health.values.allSatisfy { $0.failures == 0 })
    }

    /// barman printed its answer and exited, but a daemonized grandchild (ssh ControlPersist)
    /// keeps the pipes open: the answer is used once barman is reaped and a short grace passed,
    /// instead of waiting for command_timeout and discarding it.
    @Test func aGrandchildHoldingThePipesDoesNotHideTheAnswer() async throws {
        let (configured, directory) = try runner(#"echo '{"pg": []}'; setsid sh -c 'echo $$ > "$(dirname "$0")/grandchild.pid"; exec sleep 30' "$0" &"#,
                                                 timeout: .seconds(10))
        defer { TestSupport.removeTree(directory) }
        defer {
            if let text = try? FileReader.readAll(path: directory + "/grandchild.pid", limit: 100),
               let pid = pid_t(String(decoding: text, as: UTF8.self).trimmingTrailingWhitespace()) {
                kill(pid, SIGKILL)
            }
        }
        var runner = configured
        runner.pipeGracePeriod = .milliseconds(300)
        let output = try await runner.run(ListBackupsCollector.command)
        #expect(String(decoding: output.stdout, as: UTF8.self) == "{\"pg\": []}\n")
        #expect(output.exitStatus == 0)
    }

    /// Output of all commands together stays within the shared budget; a command that would
    /// go over it fails clearly, and what a finished command held is given back.
    @Test func outputBeyondTheSharedBudgetFails() async throws {
        let (configured, directory) = try runner("head -c \"$(cat \"$(dirname \"$0\")/size\")\" /dev/zero | tr '\\0' ' '; echo '{}'")
        defer { TestSupport.removeTree(directory) }
        var runner = configured
        runner.outputBudget = OutputBudget(limit: 1 << 20)
        try TestSupport.write("300000", to: directory + "/size")
        for _ in 0..<3 {  // each run gives its memory back
            #expect(try await runner.run(ChecksCollector.command).stdout.count == 300_003)
        }
        try TestSupport.write("2000000", to: directory + "/size")
        guard case .failure(let failure) = await outcome(runner, ChecksCollector.command) else {
            Issue.record("expected a failure")
            return
        }
        #expect(failure.message == "barman's output would take the exporter over its 1 MiB limit for barman output held at once and was terminated")
    }

    /// Names come from barman's own output: one starting with "-" must reach barman as a name,
    /// not an option, and one with NUL is refused rather than cut short.
    @Test func hostileNamesReachBarmanAsNamesOrNotAtAll() async throws {
        let (runner, directory) = try runner(#"for a in "$@"; do printf '%s\n' "$a"; done"#)
        defer { TestSupport.removeTree(directory) }
        let dashed = try await runner.run(BackupDetailsCollector.command(server: "-h", backupID: "--config=/tmp/x"))
        #expect(String(decoding: dashed.stdout, as: UTF8.self) == "-f\njson\nshow-backup\n--\n-h\n--config=/tmp/x\n")
        let plain = try await runner.run(BackupDetailsCollector.command(server: "pg", backupID: "20261124T182524"))
        #expect(String(decoding: plain.stdout, as: UTF8.self) == "-f\njson\nshow-backup\npg\n20261124T182524\n")
        guard case .failure(let failure) = await outcome(runner, BackupDetailsCollector.command(server: "pg\u{0}x", backupID: "1")) else {
            Issue.record("expected a refusal")
            return
        }
        #expect(failure.message == #"not run: the argument "pg\u{0}x" contains a NUL byte, which cannot be passed to a program"#)
    }
}

/// A run's outcome as a value, so tests can compare whole outcomes.
func outcome(_ runner: some BarmanRunner, _ command: BarmanCommand) async -> Result<CommandOutput, CommandFailure> {
    do {
        return .success(try await runner.run(command))
    } catch {
        return .failure(error)
    }
}

private func resolved(_ name: String, searchPath: String?) -> Result<String, ChildProcessFailure> {
    Result { () throws(ChildProcessFailure) in try ExecutableLookup.resolve(name, searchPath: searchPath) }
}
