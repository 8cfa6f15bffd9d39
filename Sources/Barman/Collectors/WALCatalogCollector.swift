import Synchronization
import Platform
import Exposition
import Configuration

/// barman's WAL catalog file of each server (`xlog.db`), read at every refresh from where
/// `show-servers` last said it is: when the newest WAL segment reached barman's archive, how
/// many files and bytes the archive holds, how far it is behind PostgreSQL, and whether any
/// segment is missing since the oldest backup began.
///
/// A file, no barman process; only what barman appended since the last refresh is read. A
/// catalog that cannot be read keeps its last values (and is logged once per new reason): the
/// age then grows, so a WAL alert fires rather than staying silent.
public final class WALCatalogCollector: Collector {
    public static let answer = AnswerKey<[ServerName: Double]>("wal-catalog")
    public static let archiveAnswer = AnswerKey<[ServerName: WALArchive]>("wal-archive")

    /// Why a server's catalog could not be read, while it cannot (logged when it changes).
    private let problems = Mutex<[ServerName: String]>([:])
    /// Each server's catalog as read so far.
    private let readers = Mutex<[ServerName: WALCatalog.Reader]>([:])

    public init() {}

    public var name: String { "wal-catalog" }
    /// At every refresh from the last location show-servers gave, at once: a show-servers that
    /// hangs (an unreachable PostgreSQL) never holds the catalog up. Only before its first
    /// answer is it waited for, in the same refresh, to know where the catalogs are. After the
    /// oldest backups' first WAL when that is asked in the same refresh.
    public var schedule: Schedule { Schedule(.everyRefresh, after: ["backup-begin-wal"], afterFirstAnswerOf: ["show-servers"]) }
    public var metrics: [MetricDefinition] {
        [Metric.lastArchivedWALTimestamp, Metric.walArchiveFiles, Metric.walArchiveSize, Metric.walArchiveLag, Metric.walMissingSegments]
    }

    public func collect(_ context: CollectContext) async {
        let servers = context.snapshot.servers ?? [:]
        let locations = servers.compactMapValues(\.walCatalog)
        readers.withLock { $0 = $0.filter { locations[$0.key] != nil } }
        guard !locations.isEmpty else { return }
        let files = context.files
        let beginWALs = context.snapshot.oldestBackupBeginWAL
        // File reads block: off Swift's cooperative pool, on the file worker.
        let results = await context.blocking { [self] in
            locations.map { server, location -> (ServerName, Result<WALArchive, WALCatalogCollector.CatalogProblem>) in
                let segmentSize = servers[server]?.segmentSize ?? WALCatalog.defaultSegmentSize
                var reader = readers.withLock { $0[server] }.flatMap { $0.scan.segmentSize == segmentSize ? $0 : nil }
                    ?? WALCatalog.Reader(segmentSize: segmentSize)
                let outcome = Self.read(&reader, location, files: files)
                readers.withLock { $0[server] = reader }
                return (server, outcome.map { WALArchive(reader.scan, beginWAL: beginWALs[server]?.beginWAL ?? nil) })
            }
        }
        var read: [ServerName: WALArchive] = [:]
        var unreadable: Set<ServerName> = []
        for (server, result) in results {
            switch result {
            case .success(let archive):
                if problems.withLock({ $0.removeValue(forKey: server) }) != nil {
                    context.logger.info("the WAL catalog is readable again", ["server": server.text])
                }
                read[server] = archive
            case .failure(let problem):
                unreadable.insert(server)
                let isNew = problems.withLock { problems in
                    defer { problems[server] = problem.description }
                    return problems[server] != problem.description
                }
                if isNew {
                    context.logger.error("cannot read the WAL catalog; its metrics keep their last values (\(problem.advice))",
                                         ["server": server.text, "error": problem.description])
                }
            }
        }
        let (fresh, kept) = (read, unreadable)
        await context.publish { snapshot in
            var times = snapshot.lastArchivedWAL.filter { kept.contains($0.key) }
            var archives = snapshot.walArchives.filter { kept.contains($0.key) }
            for (server, archive) in fresh {
                times[server] = archive.newestArchiveTime
                archives[server] = archive
            }
            snapshot.lastArchivedWAL = times
            snapshot.walArchives = archives
        }
    }

    /// Reads what was appended to a catalog, or says why it cannot be used: unreadable, or with
    /// lines but none usable (random bytes, one huge line, times barman does not write).
    static func read(_ reader: inout WALCatalog.Reader, _ location: WALCatalogLocation, files: any BarmanFiles) -> Result<Void, CatalogProblem> {
        do {
            try reader.update(location, files: files)
            if let problem = reader.scan.problem { return .failure(CatalogProblem(description: problem, advice: "barman writes it; check what else does")) }
            return .success(())
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
        for (name, archive) in snapshot.walArchives {
            let server = [name.text]
            families.add(Metric.walArchiveFiles, server, Double(archive.files))
            families.add(Metric.walArchiveSize, server, archive.sizeBytes)
            families.add(Metric.walMissingSegments, server, archive.missingSegments.map { Double($0) })
            // PostgreSQL's position (replication-status) minus the end of the newest segment
            // barman holds; read at different moments, so never below 0.
            if let newestEnd = archive.newestSegmentEnd, let current = snapshot.serverLSN[name] {
                families.add(Metric.walArchiveLag, server, Double(current > newestEnd ? current - newestEnd : 0))
            }
        }
    }
}

/// What a server's WAL catalog says about its archive.
public struct WALArchive: Sendable, Equatable {
    public var newestArchiveTime: Double?
    public var files: Int
    public var sizeBytes: Double
    /// The LSN just past the newest segment archived.
    public var newestSegmentEnd: UInt64?
    /// Segments missing since the oldest DONE backup's first WAL; nil while that is not known
    /// or the catalog lists no segment.
    public var missingSegments: UInt64?

    public init(newestArchiveTime: Double? = nil, files: Int = 0, sizeBytes: Double = 0, newestSegmentEnd: UInt64? = nil, missingSegments: UInt64? = nil) {
        self.newestArchiveTime = newestArchiveTime
        self.files = files
        self.sizeBytes = sizeBytes
        self.newestSegmentEnd = newestSegmentEnd
        self.missingSegments = missingSegments
    }

    init(_ scan: WALCatalog.Scan, beginWAL: String?) {
        let newest = scan.segments.newest
        var missing: UInt64?
        if let beginWAL, !scan.segments.isEmpty, let begin = WALPosition.segment(beginWAL.utf8, segmentSize: scan.segmentSize) {
            missing = scan.segments.missing(from: begin)
        }
        self.init(newestArchiveTime: scan.newest, files: scan.files, sizeBytes: scan.sizeBytes,
                  newestSegmentEnd: newest.map { WALPosition.end(ofSegment: $0.number, segmentSize: scan.segmentSize) },
                  missingSegments: missing)
    }
}

extension MetricsSnapshot {
    /// Server -> Unix time its newest WAL segment was archived (its WAL catalog).
    public var lastArchivedWAL: [ServerName: Double] {
        get { self[WALCatalogCollector.answer] ?? [:] }
        set { self[WALCatalogCollector.answer] = newValue }
    }

    /// Server -> what its WAL catalog says about its archive.
    public var walArchives: [ServerName: WALArchive] {
        get { self[WALCatalogCollector.archiveAnswer] ?? [:] }
        set { self[WALCatalogCollector.archiveAnswer] = newValue }
    }
}

extension Metric {
    public static let lastArchivedWALTimestamp = MetricDefinition(
        "barman_last_archived_wal_timestamp_seconds", .gauge,
        "Unix time the newest WAL segment in barman's WAL catalog (xlog.db) of the server was archived by barman.", labels: ["server"])
    public static let walArchiveFiles = MetricDefinition(
        "barman_wal_archive_files", .gauge,
        "Files in barman's WAL archive of the server: WAL segments, history and backup-label files listed in its WAL catalog (xlog.db).",
        labels: ["server"])
    public static let walArchiveSize = MetricDefinition(
        "barman_wal_archive_size_bytes", .gauge,
        "Bytes of barman's WAL archive of the server as stored (compressed, if so): the sum of the sizes in its WAL catalog (xlog.db).",
        labels: ["server"])
    public static let walArchiveLag = MetricDefinition(
        "barman_wal_archive_lag_bytes", .gauge,
        "Bytes of WAL PostgreSQL has written that barman's archive does not hold yet: server_lsn (replication-status) minus the end of the newest segment in the WAL catalog.",
        labels: ["server"])
    public static let walMissingSegments = MetricDefinition(
        "barman_wal_missing_segments", .gauge,
        "WAL segments missing from barman's WAL catalog between the oldest DONE backup's begin_wal and the newest segment, following timeline switches; recovery cannot pass a missing segment.",
        labels: ["server"])
}

/// Reads barman's WAL catalog: when the newest WAL file reached barman's archive, how many
/// files and bytes the archive holds, and which segments it holds.
///
/// The catalog (`xlog.db`, `<server>-xlog.db` from barman 3.13) has one line per archived file,
/// `NAME<TAB>SIZE<TAB>TIME<TAB>COMPRESSION` (3.19 adds a fifth, encryption), appended by
/// `archive-wal` (run by `barman cron`) for streamed and `archive_command` WAL alike; SIZE is the
/// file's size in the archive (compressed), TIME its modification time when barman archived it
/// (`WalFileInfo.from_file`). No barman command prints this: `status` and `show-servers` print
/// PostgreSQL's archiver statistics only with `archiver = on`, and `show-backup` only the last
/// WAL's name. A catalog can hold millions of lines: `Reader` reads each byte once (only what was
/// appended since the last refresh), and again only when barman rewrites the file (retention,
/// `rebuild-xlogdb`). It is read without barman's lock and never written.
public enum WALCatalog {
    /// Read at most this much at once.
    static let chunkBytes = 4 * 1024 * 1024

    /// What the catalog's lines say, added up line by line.
    public struct Scan: Sendable, Equatable {
        /// The largest archive time of a WAL segment line.
        public var newest: Double?
        /// Complete lines read, and those in barman's format (`NAME<TAB>SIZE<TAB>TIME...` with a
        /// segment, `.history` or `.backup` name and a plausible time).
        public var lines = 0
        public var wellFormed = 0
        /// A segment line whose time barman cannot have written (first one seen), if any.
        public var refusedTime: String?
        /// Files listed in barman's format and the sum of their SIZE: the archive's content.
        public var files = 0
        public var sizeBytes: Double = 0
        /// Every WAL segment listed, by timeline.
        public var segments = SegmentSet()
        /// With segments of this size (PostgreSQL's wal_segment_size).
        public var segmentSize: UInt64 = WALCatalog.defaultSegmentSize

        /// Why the catalog cannot be used although it has lines; nil when it can, or is empty.
        public var problem: String? {
            if newest == nil, let refusedTime { return "its segment lines have times barman does not write (\(refusedTime))" }
            if lines > 0 && wellFormed == 0 { return "none of its \(lines) lines is in barman's catalog format (NAME, SIZE, TIME, COMPRESSION separated by tabs)" }
            return nil
        }
    }

    public static let defaultSegmentSize: UInt64 = 16 * 1024 * 1024

    /// Unix time the newest WAL segment in the catalog was archived; nil when the catalog lists
    /// none (a new server) or does not exist yet (barman creates it on first use).
    public static func newestArchiveTime(_ location: WALCatalogLocation, files: any BarmanFiles) throws(SystemError) -> Double? {
        var reader = Reader()
        try reader.update(location, files: files)
        return reader.scan.newest
    }

    /// A catalog read as it grows: each refresh reads only the bytes appended since the last
    /// (complete lines; a line being written is read once it ends), the whole file again only
    /// when it is replaced or shrinks.
    public struct Reader: Sendable {
        public private(set) var scan = Scan()
        private var path: String?
        private var identity: FileIdentity?
        /// Bytes of the file read into `scan`: up to the end of its last complete line.
        private var offset = 0

        public init(segmentSize: UInt64 = WALCatalog.defaultSegmentSize) {
            scan.segmentSize = segmentSize
        }

        /// Reads what was appended to the catalog at `location` (its legacy name while the new
        /// one does not exist); a catalog that does not exist is an empty one.
        public mutating func update(_ location: WALCatalogLocation, files: any BarmanFiles) throws(SystemError) {
            do {
                try update(path: location.path, files: files)
            } catch where error.isNotFound {
                guard let legacy = location.legacyPath else { return reset(path: nil) }
                do {
                    try update(path: legacy, files: files)
                } catch where error.isNotFound {
                    reset(path: nil)
                }
            }
        }

        private mutating func reset(path: String?) {
            self = Reader(segmentSize: scan.segmentSize)
            self.path = path
        }

        private mutating func update(path: String, files: any BarmanFiles) throws(SystemError) {
            if path != self.path { reset(path: path) }
            while true {
                let (bytes, size, identity) = try files.read(path: path, from: offset, maxBytes: chunkBytes)
                if identity != self.identity || size < offset {
                    // Another file (barman rewrote it) or a shorter one: read it again from the start.
                    let wasRead = self.identity != nil
                    reset(path: path)
                    self.identity = identity
                    if wasRead { continue }
                }
                guard !bytes.isEmpty else { return }
                var consumed = 0
                if let lastNewline = bytes.lastIndex(of: UInt8(ascii: "\n")) {
                    WALCatalog.read(bytes[..<(lastNewline + 1)], into: &scan)
                    consumed = lastNewline + 1
                } else if bytes.count == chunkBytes {
                    // 4 MiB without a newline: no catalog line; counted as one line, skipped.
                    scan.lines += 1
                    consumed = bytes.count
                }
                offset += consumed
                // A chunk shorter than asked for reached the end: what is left of it is the line
                // barman is writing, read again once it ends.
                if consumed == 0 || offset >= size || bytes.count < chunkBytes { return }
            }
        }
    }

    /// The lines of `bytes`, added up. A first line that may be cut (`startsAtLineBoundary`
    /// false) is skipped, and so is a last line without its newline (being written now).
    public static func scan(_ bytes: [UInt8], startsAtLineBoundary: Bool, segmentSize: UInt64 = defaultSegmentSize) -> Scan {
        var result = Scan()
        result.segmentSize = segmentSize
        var start = 0
        if !startsAtLineBoundary {
            guard let firstNewline = bytes.firstIndex(of: UInt8(ascii: "\n")) else { return result }
            start = firstNewline + 1
        }
        guard let lastNewline = bytes.lastIndex(of: UInt8(ascii: "\n")), lastNewline >= start else { return result }
        read(bytes[start...lastNewline], into: &result)
        return result
    }

    /// The largest TIME of the complete lines in `bytes` that name a WAL segment.
    public static func newestArchiveTime(in bytes: [UInt8], startsAtLineBoundary: Bool) -> Double? {
        scan(bytes, startsAtLineBoundary: startsAtLineBoundary).newest
    }

    /// Complete lines, each ending with a newline.
    private static func read(_ lines: ArraySlice<UInt8>, into result: inout Scan) {
        var lineStart = lines.startIndex
        var index = lineStart
        while index < lines.endIndex {
            if lines[index] == UInt8(ascii: "\n") {
                read(line: lines[lineStart..<index], into: &result)
                lineStart = index + 1
            }
            index += 1
        }
    }

    private static func read(line: ArraySlice<UInt8>, into result: inout Scan) {
        result.lines += 1
        let fields = line.split(separator: UInt8(ascii: "\t"), maxSplits: 3, omittingEmptySubsequences: false)
        guard fields.count >= 3, let name = fields.first else { return }
        let segment = WALPosition.segment(name, segmentSize: result.segmentSize)
        // The other names barman catalogs: `TTTTTTTT.history` and `<segment>.<offset>.backup`.
        let isHistory = name.count == 16 && name.prefix(8).allSatisfy(isHexDigit) && name.suffix(8).elementsEqual(".history".utf8)
        let isBackupLabel = name.count > 24 && name.prefix(24).allSatisfy(isHexDigit) && name.suffix(7).elementsEqual(".backup".utf8)
        guard segment != nil || isHistory || isBackupLabel else { return }
        guard let time = BarmanTime.catalogTime(fields[2]) else {
            if segment != nil, result.refusedTime == nil { result.refusedTime = String(decoding: fields[2].prefix(40), as: UTF8.self) }
            return
        }
        guard let size = wholeNumber(fields[1]) else { return }
        result.wellFormed += 1
        result.files += 1
        result.sizeBytes += Double(size)
        if let segment {
            result.newest = max(result.newest ?? time, time)
            result.segments.insert(segment)
        }
    }

    /// A file size: 1 to 15 decimal digits.
    private static func wholeNumber(_ digits: ArraySlice<UInt8>) -> UInt64? {
        guard !digits.isEmpty, digits.count <= 15 else { return nil }
        var value: UInt64 = 0
        for byte in digits {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + UInt64(byte - UInt8(ascii: "0"))
        }
        return value
    }

    private static func isHexDigit(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66)
    }
}

/// The WAL segments of an archive, per timeline as sorted runs of consecutive numbers: a
/// catalog appended in order is one run per timeline, whatever its length.
public struct SegmentSet: Sendable, Equatable {
    private var runs: [UInt32: [ClosedRange<UInt64>]] = [:]

    public init() {}

    public var isEmpty: Bool { runs.isEmpty }

    /// The newest segment: the largest number, on the newest timeline that has it.
    public var newest: WALPosition.Segment? {
        var best: WALPosition.Segment?
        for (timeline, ranges) in runs {
            guard let last = ranges.last?.upperBound else { continue }
            if best.map({ last > $0.number || (last == $0.number && timeline > $0.timeline) }) ?? true {
                best = WALPosition.Segment(timeline: timeline, number: last)
            }
        }
        return best
    }

    public mutating func insert(_ segment: WALPosition.Segment) {
        var ranges = runs[segment.timeline] ?? []
        defer { runs[segment.timeline] = ranges }
        let number = segment.number
        // Appended in order: almost always extends the last run.
        if let last = ranges.last {
            if last.contains(number) { return }
            if number == last.upperBound + 1 {
                ranges[ranges.count - 1] = last.lowerBound...number
                return
            }
            if number > last.upperBound + 1 {
                ranges.append(number...number)
                return
            }
        } else {
            ranges.append(number...number)
            return
        }
        // Out of order: the first run that ends at or after it.
        var low = 0, high = ranges.count
        while low < high {
            let middle = (low + high) / 2
            if ranges[middle].upperBound < number { low = middle + 1 } else { high = middle }
        }
        if ranges[low].contains(number) { return }
        let joinsNext = ranges[low].lowerBound == number + 1
        let joinsPrevious = low > 0 && ranges[low - 1].upperBound + 1 == number
        switch (joinsPrevious, joinsNext) {
        case (true, true):
            ranges[low - 1] = ranges[low - 1].lowerBound...ranges[low].upperBound
            ranges.remove(at: low)
        case (true, false): ranges[low - 1] = ranges[low - 1].lowerBound...number
        case (false, true): ranges[low] = number...ranges[low].upperBound
        case (false, false): ranges.insert(number...number, at: low)
        }
    }

    /// Segments missing from `begin` (the oldest backup's first WAL) to the newest segment,
    /// following timeline switches: on each timeline from `begin`'s on, the segments from where
    /// the previous one ended (a new timeline starts inside its parent's last segment, so it
    /// may repeat that number) to its newest one. A timeline whose segments all end before that
    /// point (an abandoned branch) adds nothing.
    public func missing(from begin: WALPosition.Segment) -> UInt64 {
        var missing: UInt64 = 0
        var next = begin.number  // the first segment number not yet accounted for
        var first = true
        for timeline in runs.keys.sorted() where timeline >= begin.timeline {
            guard let ranges = runs[timeline], let last = ranges.last?.upperBound else { continue }
            // From the segment before `next` on a later timeline: the switch segment.
            let from = first || next == 0 ? next : next - 1
            guard last >= from else { continue }
            // The segments of this timeline from `from` on.
            var present: UInt64 = 0
            var start: UInt64?
            for range in ranges where range.upperBound >= from {
                let low = max(range.lowerBound, from)
                if start == nil { start = low }
                present += range.upperBound - low + 1
            }
            guard let start else { continue }
            // A gap before this timeline's first segment, then the holes inside it.
            if start > next { missing += start - next }
            missing += (last - start + 1) - present
            next = last + 1
            first = false
        }
        // Nothing at or after `begin` at all: the backup's first segment is missing.
        return first ? 1 : missing
    }
}
