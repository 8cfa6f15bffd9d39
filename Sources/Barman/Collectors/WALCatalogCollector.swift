import Synchronization
import Platform
import Exposition
import Configuration

/// barman's WAL catalog file of each server (`xlog.db`), read at every refresh from where
/// `show-servers` last said it is: when the newest WAL segment reached barman's archive.
///
/// A file, no barman process. A catalog that cannot be read keeps its last value (and is
/// logged once per new reason): the age then grows, so a WAL alert fires rather than staying silent.
public final class WALCatalogCollector: Collector {
    public static let answer = AnswerKey<[ServerName: Double]>("wal-catalog")

    /// Why a server's catalog could not be read, while it cannot (logged when it changes).
    private let problems = Mutex<[ServerName: String]>([:])

    public init() {}

    public var name: String { "wal-catalog" }
    /// At every refresh from the last location show-servers gave, at once: a show-servers that
    /// hangs (an unreachable PostgreSQL) never holds the catalog up. Only before its first
    /// answer is it waited for, in the same refresh, to know where the catalogs are.
    public var schedule: Schedule { Schedule(.everyRefresh, afterFirstAnswerOf: ["show-servers"]) }
    public var metrics: [MetricDefinition] { [Metric.lastArchivedWALTimestamp] }

    public func collect(_ context: CollectContext) async {
        let locations = (context.snapshot.servers ?? [:]).compactMapValues(\.walCatalog)
        guard !locations.isEmpty else { return }
        let files = context.files
        var times: [ServerName: Double] = [:]
        var unreadable: Set<ServerName> = []
        for (server, location) in locations {
            switch Self.newestArchiveTime(location, files: files) {
            case .success(let time):
                if problems.withLock({ $0.removeValue(forKey: server) }) != nil {
                    context.logger.info("the WAL catalog is readable again", ["server": server.text])
                }
                if let time { times[server] = time }
            case .failure(let problem):
                unreadable.insert(server)
                let isNew = problems.withLock { problems in
                    defer { problems[server] = problem.description }
                    return problems[server] != problem.description
                }
                if isNew {
                    context.logger.error("cannot read the WAL catalog; barman_last_archived_wal_timestamp_seconds keeps its last value (\(problem.advice))",
                                         ["server": server.text, "error": problem.description])
                }
            }
        }
        let (read, kept) = (times, unreadable)
        await context.publish { snapshot in
            var values = snapshot.lastArchivedWAL.filter { kept.contains($0.key) }
            values.merge(read) { _, new in new }
            snapshot.lastArchivedWAL = values
        }
    }

    /// The newest archive time of a catalog, or why it cannot be used: unreadable, or with lines
    /// but none usable (random bytes, one huge line, times barman does not write).
    static func newestArchiveTime(_ location: WALCatalogLocation, files: any BarmanFiles) -> Result<Double?, CatalogProblem> {
        do {
            let scan = try WALCatalog.scan(location, files: files)
            if let problem = scan.problem { return .failure(CatalogProblem(description: problem, advice: "barman writes it; check what else does")) }
            return .success(scan.newest)
        } catch {
            return .failure(CatalogProblem(description: error.description, advice: advice(for: error)))
        }
    }

    struct CatalogProblem: Error, Sendable, CustomStringConvertible {
        var description: String
        var advice: String
    }

    /// What to do about a catalog that cannot be read, by the reason.
    static func advice(for error: SystemError) -> String {
        if error.isPermissionDenied { return "run the exporter as barman's user, or give it read access to barman's home" }
        if error.isOutOfDescriptors { return "the exporter has no file descriptor left: raise LimitNOFILE (systemd) or ulimit -n" }
        return "check that barman's home is mounted and readable"
    }

    public func emit(_ snapshot: MetricsSnapshot, _ scrape: Scrape, into families: inout FamilyBuilder) {
        for (name, time) in snapshot.lastArchivedWAL {
            families.add(Metric.lastArchivedWALTimestamp, [name.text], time)
        }
    }
}

extension MetricsSnapshot {
    /// Server -> Unix time its newest WAL segment was archived (its WAL catalog).
    public var lastArchivedWAL: [ServerName: Double] {
        get { self[WALCatalogCollector.answer] ?? [:] }
        set { self[WALCatalogCollector.answer] = newValue }
    }
}

extension Metric {
    public static let lastArchivedWALTimestamp = MetricDefinition(
        "barman_last_archived_wal_timestamp_seconds", .gauge,
        "Unix time the newest WAL segment in barman's WAL catalog (xlog.db) of the server was archived by barman.", labels: ["server"])

}

/// Reads when the newest WAL file reached barman's archive, from barman's WAL catalog.
///
/// The catalog (`xlog.db`, `<server>-xlog.db` from barman 3.13) has one line per archived file,
/// `NAME<TAB>SIZE<TAB>TIME<TAB>COMPRESSION` (3.19 adds a fifth, encryption), appended by
/// `archive-wal` (run by `barman cron`) for streamed and `archive_command` WAL alike; TIME is the
/// file's modification time when
/// barman archived it (`WalFileInfo.from_file`). No barman command prints this: `status` and
/// `show-servers` print PostgreSQL's archiver statistics only with `archiver = on`, and
/// `show-backup` only the last WAL's name. Only the end of the file is read (a catalog gains a
/// line per 16 MiB of WAL and can hold millions), without barman's lock and never written.
public enum WALCatalog {
    /// Enough for about a thousand lines; more is read only when those name no WAL segment.
    static let initialTailBytes = 64 * 1024
    static let maximumTailBytes = 4 * 1024 * 1024

    /// What the end of a catalog says.
    public struct Scan: Sendable, Equatable {
        /// The largest archive time of a WAL segment line.
        public var newest: Double?
        /// Complete lines read, and those in barman's format (`NAME<TAB>SIZE<TAB>TIME...` with a
        /// segment, `.history` or `.backup` name and a plausible time).
        public var lines = 0
        public var wellFormed = 0
        /// A segment line whose time barman cannot have written (first one seen), if any.
        public var refusedTime: String?

        /// Why the catalog cannot be used although it has lines; nil when it can, or is empty.
        public var problem: String? {
            if newest == nil, let refusedTime { return "its segment lines have times barman does not write (\(refusedTime))" }
            if lines > 0 && wellFormed == 0 { return "none of its last \(lines) lines is in barman's catalog format (NAME, SIZE, TIME, COMPRESSION separated by tabs)" }
            return nil
        }
    }

    /// Unix time the newest WAL segment in the catalog was archived; nil when the catalog lists
    /// none (a new server) or does not exist yet (barman creates it on first use).
    public static func newestArchiveTime(_ location: WALCatalogLocation, files: any BarmanFiles) throws(SystemError) -> Double? {
        try scan(location, files: files).newest
    }

    /// The end of the catalog at `location` (its legacy name while the new one does not exist);
    /// an empty scan when neither exists.
    public static func scan(_ location: WALCatalogLocation, files: any BarmanFiles) throws(SystemError) -> Scan {
        do {
            return try scan(path: location.path, files: files)
        } catch where error.isNotFound {
            guard let legacy = location.legacyPath else { return Scan() }
            do {
                return try scan(path: legacy, files: files)
            } catch where error.isNotFound {
                return Scan()
            }
        }
    }

    private static func scan(path: String, files: any BarmanFiles) throws(SystemError) -> Scan {
        var tailBytes = initialTailBytes
        while true {
            let (bytes, wholeFile) = try files.readTail(path: path, maxBytes: tailBytes)
            let found = scan(bytes, startsAtLineBoundary: wholeFile)
            if found.newest != nil || wholeFile || tailBytes >= maximumTailBytes { return found }
            tailBytes *= 4
        }
    }

    /// The largest TIME of the complete lines in `bytes` that name a WAL segment (24 hex
    /// digits; `.history` and `.backup` files are not WAL arrival). A first line that may be
    /// cut is skipped, and so is a last line without its newline (being written now).
    public static func newestArchiveTime(in bytes: [UInt8], startsAtLineBoundary: Bool) -> Double? {
        scan(bytes, startsAtLineBoundary: startsAtLineBoundary).newest
    }

    public static func scan(_ bytes: [UInt8], startsAtLineBoundary: Bool) -> Scan {
        var result = Scan()
        var lineStart = 0
        if !startsAtLineBoundary {
            guard let firstNewline = bytes.firstIndex(of: UInt8(ascii: "\n")) else { return result }
            lineStart = firstNewline + 1
        }
        var index = lineStart
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "\n") {
                read(bytes[lineStart..<index], into: &result)
                lineStart = index + 1
            }
            index += 1
        }
        return result
    }

    private static func read(_ line: ArraySlice<UInt8>, into result: inout Scan) {
        result.lines += 1
        let fields = line.split(separator: UInt8(ascii: "\t"), maxSplits: 3, omittingEmptySubsequences: false)
        guard fields.count >= 3, let name = fields.first else { return }
        let isSegment = name.count == 24 && name.allSatisfy(isHexDigit)
        // The other names barman catalogs: `TTTTTTTT.history` and `<segment>.<offset>.backup`.
        let isHistory = name.count == 16 && name.prefix(8).allSatisfy(isHexDigit) && name.suffix(8).elementsEqual(".history".utf8)
        let isBackupLabel = name.count > 24 && name.prefix(24).allSatisfy(isHexDigit) && name.suffix(7).elementsEqual(".backup".utf8)
        guard isSegment || isHistory || isBackupLabel else { return }
        guard let time = BarmanTime.catalogTime(fields[2]) else {
            if isSegment, result.refusedTime == nil { result.refusedTime = String(decoding: fields[2].prefix(40), as: UTF8.self) }
            return
        }
        result.wellFormed += 1
        if isSegment { result.newest = max(result.newest ?? time, time) }
    }

    private static func isHexDigit(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66)
    }
}
