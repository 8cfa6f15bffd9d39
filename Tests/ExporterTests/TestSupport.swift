@testable import Barman
@testable import Configuration
@testable import Exporter
@testable import Exposition
@testable import Platform
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Paths and fixtures shared by the tests.
enum TestSupport {
    static let packageRoot: String = {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)  // Tests/ExporterTests/TestSupport.swift
        return parts.joined(separator: "/")
    }()

    static func read(_ relativePath: String) throws -> [UInt8] {
        try FileReader.readAll(path: packageRoot + "/" + relativePath, limit: 64 << 20)
    }

    static func text(_ relativePath: String) throws -> String {
        String(decoding: try read(relativePath), as: UTF8.self)
    }

    /// A captured barman run: `Fixtures/VERSION/NAME.stdout` plus its exit status from `.rc`.
    static func fixture(_ version: String, _ name: String) throws -> CommandOutput {
        let base = "Tests/ExporterTests/Fixtures/\(version)/\(name)"
        let rcText = try text(base + ".rc").trimmingTrailingWhitespace()
        let rc = try #require(Int32(rcText))
        return CommandOutput(stdout: try read(base + ".stdout"), stderr: try read(base + ".stderr"), exitStatus: rc)
    }

    static func temporaryDirectory() throws -> String {
        var template = Array("/tmp/barman-exporter-test-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer in buffer.baseAddress.flatMap { mkdtemp($0) } }
        let path = try #require(made.map { String(cString: $0) })
        return path
    }

    /// Waits until `condition` holds, checking every 10 ms; fails the test (instead of hanging
    /// it) when that takes longer than `timeout`.
    static func waitUntil(_ what: String, timeout: Duration = .seconds(30), _ condition: () async -> Bool) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while !(await condition()) {
            guard clock.now < deadline else {
                Issue.record("timed out waiting until \(what)")
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Removes `path` and everything below it (what `temporaryDirectory` made).
    static func removeTree(_ path: String) {
        for entry in entries(in: path) where entry.name != "." && entry.name != ".." {
            let child = path + "/" + entry.name
            if entry.type == UInt8(DT_DIR) { removeTree(child) } else { unlink(child) }
        }
        rmdir(path)
    }

    static func write(_ text: String, to path: String, mode: mode_t = 0o644) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        try #require(fd >= 0)
        defer { close(fd) }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        try #require(written == bytes.count)
    }

    /// Renders what a scrape at `now` would return for `snapshot`.
    static func exposition(_ snapshot: MetricsSnapshot, now: Double) -> String {
        String(decoding: TextRenderer.render(MetricsBuilder.families(snapshot, now: now)), as: UTF8.self)
    }
}

extension TestSupport {
    /// Paths of the regular files directly in `relativeDirectory` (none if it does not exist).
    static func files(in relativeDirectory: String) -> [String] {
        entries(in: packageRoot + "/" + relativeDirectory).filter { $0.type == UInt8(DT_REG) }.map { relativeDirectory + "/" + $0.name }.sorted()
    }

    /// Names of everything directly in `directory` (an absolute path), sorted.
    static func names(in directory: String) -> [String] {
        entries(in: directory).map(\.name).filter { $0 != "." && $0 != ".." }.sorted()
    }

    private static func entries(in directory: String) -> [(name: String, type: UInt8)] {
        guard let handle = opendir(directory) else { return [] }
        defer { closedir(handle) }
        var entries: [(name: String, type: UInt8)] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            entries.append((name, entry.pointee.d_type))
        }
        return entries
    }
}

/// Runs blocking work (socket I/O) on its own thread instead of the cooperative pool.
func onThread(_ body: @escaping @Sendable () -> Void) async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        do {
            try DetachedThread.start {
                body()
                continuation.resume()
            }
        } catch {
            continuation.resume()
        }
    }
}

/// A file that log lines go to, read back by the test; removed with its directory when done.
final class LogCapture {
    let directory: String
    let path: String
    let fileDescriptor: Int32

    init() throws {
        directory = try TestSupport.temporaryDirectory()
        path = directory + "/log"
        fileDescriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        try #require(fileDescriptor >= 0)
    }

    deinit {
        close(fileDescriptor)
        TestSupport.removeTree(directory)
    }

    func logger(_ level: LogLevel = .debug) -> Logger {
        Logger(level: level, fileDescriptor: fileDescriptor, journal: false)
    }

    var text: String {
        get throws { String(decoding: try FileReader.readAll(path: path, limit: 1 << 20), as: UTF8.self) }
    }
}

extension HTTPResponse {
    /// The payload's bytes, for assertions.
    var body: [UInt8] { payload.bytes }
}
