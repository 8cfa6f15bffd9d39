import Synchronization
import Platform
import Exposition
import Configuration

/// barman's directories of each server, read at every refresh from where `show-servers` last
/// said they are: WAL that reached barman but waits for `barman cron` (archive-wal) in
/// `incoming/` (archive_command) or `streaming/` (receive-wal), files barman refused in
/// `errors/`, and the free space of the file systems holding backups and the WAL archive.
///
/// Directory listings and statvfs, no barman process. A directory that cannot be read has no
/// series until it can (logged once per new reason): a count that stayed would lie.
public final class WALDirectoriesCollector: Collector {
    public static let answer = AnswerKey<[ServerName: ServerDirectoriesState]>("wal-directories")

    /// Why a directory could not be read, while it cannot (logged when it changes).
    private let problems = Mutex<[String: String]>([:])

    public init() {}

    public var name: String { "wal-directories" }
    public var schedule: Schedule { Schedule(.everyRefresh, afterFirstAnswerOf: ["show-servers"]) }
    public var metrics: [MetricDefinition] {
        [Metric.walPendingFiles, Metric.walPendingOldest, Metric.walErrorFiles, Metric.fileSystemAvailable, Metric.fileSystemSize]
    }

    public func collect(_ context: CollectContext) async {
        let servers = (context.snapshot.servers ?? [:]).mapValues(\.directories)
        guard !servers.isEmpty else { return }
        let files = context.files
        // Directory reads and statvfs block: off Swift's cooperative pool, on the file worker.
        let (states, failures) = await context.blocking {
            var states: [ServerName: ServerDirectoriesState] = [:]
            var failures: [String: String] = [:]
            for (server, directories) in servers {
                states[server] = Self.read(directories, files: files) { path, error in failures[path] = error.description }
            }
            return (states, failures)
        }
        let changed = problems.withLock { problems in
            defer { problems = failures }
            return (failures.filter { problems[$0.key] != $0.value }, problems.keys.filter { failures[$0] == nil })
        }
        for (path, error) in changed.0.sorted(by: { $0.key < $1.key }) {
            context.logger.error("cannot read a barman directory; its metrics are left out until it can be read (run the exporter as barman's user)",
                                 ["path": path, "error": error])
        }
        for path in changed.1.sorted() { context.logger.info("the barman directory is readable again", ["path": path]) }
        await context.publish { $0.walDirectories = states }
    }

    /// What one server's directories hold now; `failed` hears of each that cannot be read.
    static func read(_ directories: ServerDirectories, files: any BarmanFiles, failed: (String, SystemError) -> Void) -> ServerDirectoriesState {
        var state = ServerDirectoriesState()
        for (label, path) in [("incoming", directories.incomingWALs), ("streaming", directories.streamingWALs)] {
            guard let path else { continue }
            do {
                var count = 0
                var oldest: Double?
                try files.visitDirectory(path: path) { name, modificationTime in
                    guard isFinishedWALFile(name), let time = modificationTime() else { return }
                    count += 1
                    oldest = min(oldest ?? time, time)
                }
                state.pending[label] = count
                if let oldest { state.oldestPending = min(state.oldestPending ?? oldest, oldest) }
            } catch where error.isNotFound {
                // barman makes its directories on first use: none yet, so nothing waits there.
                state.pending[label] = 0
            } catch {
                failed(path, error)
            }
        }
        if let path = directories.errors {
            do {
                var count = 0
                try files.visitDirectory(path: path) { _, modificationTime in
                    if modificationTime() != nil { count += 1 }
                }
                state.errorFiles = count
            } catch where error.isNotFound {
                state.errorFiles = 0
            } catch {
                failed(path, error)
            }
        }
        for (label, path) in [("backups", directories.basebackups), ("wals", directories.wals)] {
            guard let path else { continue }
            do {
                state.space[label] = try files.fileSystemSpace(path: path)
            } catch where error.isNotFound {
                continue  // not made by barman yet: no series until it is
            } catch {
                failed(path, error)
            }
        }
        return state
    }

    /// A WAL file barman's archive-wal takes: a segment (24 hex digits), a timeline history
    /// file (`TTTTTTTT.history`) or a backup label (`<segment>.<offset>.backup`); not the
    /// segment receive-wal is writing (`.partial`) nor temporary files.
    static func isFinishedWALFile(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        func hex(_ slice: ArraySlice<UInt8>) -> Bool { slice.allSatisfy { (0x30...0x39).contains($0) || (0x41...0x46).contains($0) } }
        if bytes.count == 24 { return hex(bytes[...]) }
        if bytes.count == 16 { return hex(bytes[0..<8]) && bytes[8...].elementsEqual(".history".utf8) }
        if bytes.count == 40 { return hex(bytes[0..<24]) && bytes[24] == UInt8(ascii: ".") && hex(bytes[25..<33]) && bytes[33...].elementsEqual(".backup".utf8) }
        return false
    }

    public func emit(_ snapshot: MetricsSnapshot, _ scrape: Scrape, into families: inout FamilyBuilder) {
        for (name, state) in snapshot.walDirectories {
            let server = name.text
            for (directory, count) in state.pending { families.add(Metric.walPendingFiles, [directory, server], Double(count)) }
            families.add(Metric.walPendingOldest, [server], state.oldestPending)
            families.add(Metric.walErrorFiles, [server], state.errorFiles.map { Double($0) })
            for (directory, space) in state.space {
                families.add(Metric.fileSystemAvailable, [directory, server], Double(space.availableBytes))
                families.add(Metric.fileSystemSize, [directory, server], Double(space.sizeBytes))
            }
        }
    }
}

/// What a server's directories held at the last refresh; a directory that could not be read
/// has no entry.
public struct ServerDirectoriesState: Sendable, Equatable {
    /// `incoming` / `streaming` -> finished WAL files waiting there.
    public var pending: [String: Int] = [:]
    /// The oldest modification time of those files.
    public var oldestPending: Double?
    public var errorFiles: Int?
    /// `backups` / `wals` -> the space of the file system holding that directory.
    public var space: [String: (availableBytes: UInt64, sizeBytes: UInt64)] = [:]

    public init() {}

    public static func == (left: Self, right: Self) -> Bool {
        left.pending == right.pending && left.oldestPending == right.oldestPending && left.errorFiles == right.errorFiles
            && left.space.mapValues { [$0.availableBytes, $0.sizeBytes] } == right.space.mapValues { [$0.availableBytes, $0.sizeBytes] }
    }
}

extension MetricsSnapshot {
    /// Server -> what its WAL inboxes, error directory and file systems held at the last refresh.
    public var walDirectories: [ServerName: ServerDirectoriesState] {
        get { self[WALDirectoriesCollector.answer] ?? [:] }
        set { self[WALDirectoriesCollector.answer] = newValue }
    }
}

extension Metric {
    public static let walPendingFiles = MetricDefinition(
        "barman_wal_pending_files", .gauge,
        "Finished WAL files (segments, history and backup-label files) waiting in the server's incoming or streaming directory for barman cron (archive-wal) to archive them.",
        labels: ["directory", "server"])
    public static let walPendingOldest = MetricDefinition(
        "barman_wal_pending_oldest_timestamp_seconds", .gauge,
        "Unix modification time of the oldest WAL file waiting in the server's incoming or streaming directory (absent when none waits).",
        labels: ["server"])
    public static let walErrorFiles = MetricDefinition(
        "barman_wal_error_files", .gauge,
        "Files in the server's errors directory: WAL files barman refused to archive (duplicates, unexpected files).",
        labels: ["server"])
    public static let fileSystemAvailable = MetricDefinition(
        "barman_filesystem_avail_bytes", .gauge,
        "Bytes available to unprivileged users on the file system holding the server's backups (basebackups_directory) or WAL archive (wals_directory), from statvfs.",
        labels: ["directory", "server"])
    public static let fileSystemSize = MetricDefinition(
        "barman_filesystem_size_bytes", .gauge,
        "Size in bytes of the file system holding the server's backups (basebackups_directory) or WAL archive (wals_directory), from statvfs.",
        labels: ["directory", "server"])
}
