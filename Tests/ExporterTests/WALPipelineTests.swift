@testable import Barman
@testable import Exporter
@testable import Exposition
@testable import Platform
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The WAL pipeline: archive lag, slots, pending WAL, continuity, sizes and free space.
@Suite("WAL pipeline")
struct WALPipelineTests {
    // MARK: - Positions

    @Test func lsnsAndSegmentNames() {
        #expect(WALPosition.lsn("0/13000060") == 0x1300_0060)
        #expect(WALPosition.lsn("1A/B000000") == 0x1A_0B00_0000)
        for bad in ["", "0/", "/1", "0/1/2", "0x1/2", "123456789/0", "0/g", " 0/1"] { #expect(WALPosition.lsn(bad) == nil, "\(bad)") }
        let sixteen: UInt64 = 16 << 20
        #expect(WALPosition.segment("000000010000000000000013".utf8, segmentSize: sixteen) == .init(timeline: 1, number: 0x13))
        // 256 segments of 16 MiB per "log" (the middle 8 digits): 0x1_00 follows 0x0_FF.
        #expect(WALPosition.segment("0000000200000001000000FF".utf8, segmentSize: sixteen) == .init(timeline: 2, number: 0x1FF))
        #expect(WALPosition.segment("000000010000000100000000".utf8, segmentSize: sixteen)?.number == 0x100)
        // 64 MiB segments: 64 per log, so 0x40 is not a segment part.
        #expect(WALPosition.segment("000000010000000100000003".utf8, segmentSize: 64 << 20)?.number == 67)
        #expect(WALPosition.segment("000000010000000000000040".utf8, segmentSize: 64 << 20) == nil)
        #expect(WALPosition.segment("000000000000000000000001".utf8, segmentSize: sixteen) == nil)  // timeline 0
        #expect(WALPosition.segment("00000001000000000000001G".utf8, segmentSize: sixteen) == nil)
        #expect(WALPosition.end(ofSegment: 0x12, segmentSize: sixteen) == 0x1300_0000)
    }

    // MARK: - show-servers

    @Test(arguments: ["3.4.0", "3.19.1"])
    func slotsAndThresholdsFromRealShowServers(version: String) throws {
        let servers = try BarmanDecoding.serverInfo(try TestSupport.fixture("e2e/\(version)", "show-servers-all"))
        let suffix = version == "3.4.0" ? "debian" : "pypi"
        let a = try #require(servers["pg-a"])
        #expect(a.replicationSlot == ReplicationSlot(name: "pg_a_\(suffix)", active: true, restartLSN: version == "3.4.0" ? 0x0F00_0000 : 0x1C00_0000))
        #expect(a.segmentSize == 16 << 20)
        #expect(a.lastBackupMaximumAge == nil && a.lastWALMaximumAge == nil)  // "None" and null
        #expect(a.directories.streamingWALs?.hasSuffix("/pg-a/streaming") == true)
        #expect(a.directories.incomingWALs?.hasSuffix("/pg-a/incoming") == true)
        #expect(a.directories.errors?.hasSuffix("/pg-a/errors") == true)
        #expect(a.directories.basebackups?.hasSuffix("/pg-a/base") == true)
        #expect(a.refused.isEmpty)
    }

    @Test func replicationSlotsAreParsedStrictly() {
        #expect(BarmanDecoding.replicationSlot("Record(slot_name='barman', active=False, restart_lsn=None)")
                == ReplicationSlot(name: "barman", active: false, restartLSN: nil))
        for bad in ["barman", "Record(slot_name='barman', active=True)", "Record(slot_name='barman', active=yes, restart_lsn='0/1')",
                    "Record(active=True, slot_name='barman', restart_lsn='0/1')", "Record(slot_name='b', active=True, restart_lsn='0/1', x=1)",
                    "Record(slot_name='barman', active=True, restart_lsn='zz')", "Record(slot_name=barman, active=True, restart_lsn='0/1')",
                    "Record(slot_name='', active=True, restart_lsn='0/1')"] {
            #expect(BarmanDecoding.replicationSlot(bad) == nil, "\(bad)")
        }
        // Refused values are left out and reported, the rest of the server is kept.
        let info = BarmanDecoding.serverInfo(server: "pg", ["active": .bool(true), "replication_slot": .string("Record(nonsense)"),
                                                            "last_wal_maximum_age": .string("soon"), "xlog_segment_size": .integer(1000)])
        #expect(info.active == true && info.replicationSlot == nil && info.lastWALMaximumAge == nil && info.segmentSize == nil)
        #expect(info.refused.count == 3)
    }

    /// The hand-written ", " split behaves as the standard library's string-separator split.
    @Test func splitAtCommaSpaceAsTheStandardLibrary() {
        for text in ["a, b", "a,b", "a, ", ", ", "a,", ",", "", "a, , b", "a,  b", " (x), y"] {
            #expect(BarmanDecoding.splitAtCommaSpace(Substring(text)) == text.split(separator: ", ", omittingEmptySubsequences: false), "\(text)")
        }
        #expect(BarmanDecoding.firstIndex(of: " ", followedBy: "(", in: "7 days (x)").map { $0.utf16Offset(in: "7 days (x)") } == 6)
        #expect(BarmanDecoding.firstIndex(of: " ", followedBy: "(", in: "7 days ") == nil)
    }

    @Test func maximumAgesAsBarmanPrintsThem() {
        let day = 86_400.0
        #expect(BarmanDecoding.maximumAge("7 days (WARNING! latest backup is No available backups old)") == 7 * day)
        #expect(BarmanDecoding.maximumAge("1 day (latest backup: 3 hours, 2 minutes )") == day)
        #expect(BarmanDecoding.maximumAge("1 day, 6 hours") == day + 6 * 3600)
        #expect(BarmanDecoding.maximumAge("6:00:00") == 21_600.0)
        #expect(BarmanDecoding.maximumAge("2 days, 6:30:00") == 2 * day + 6.5 * 3600)
        #expect(BarmanDecoding.maximumAge("1 WEEKS") == 7 * day)
        #expect(BarmanDecoding.maximumAge("2 MONTHS") == 62 * day)  // barman: a month is 31 days
        for bad in ["", "soon", "7", "7 fortnights", "-1 days", "25:61:00", "1 day,, 2 hours"] {
            #expect(BarmanDecoding.maximumAge(bad) == nil, "\(bad)")
        }
    }

    // MARK: - Continuity

    func segments(_ names: [(UInt32, UInt64)]) -> SegmentSet {
        var set = SegmentSet()
        for (timeline, number) in names { set.insert(.init(timeline: timeline, number: number)) }
        return set
    }

    @Test func missingSegmentsFollowTimelines() {
        let begin = WALPosition.Segment(timeline: 1, number: 10)
        #expect(segments((10...20).map { (1, $0) }).missing(from: begin) == 0)
        // Segments before the oldest backup do not matter; a hole after it does.
        #expect(segments((5...20).filter { $0 != 7 }.map { (1, $0) }).missing(from: begin) == 0)
        #expect(segments((10...20).filter { $0 != 13 && $0 != 14 }.map { (1, $0) }).missing(from: begin) == 2)
        // The oldest backup's first segment is gone.
        #expect(segments((11...20).map { (1, $0) }).missing(from: begin) == 1)
        // A promotion in segment 15: timeline 2 starts with 15 (timeline 1's 15 is partial).
        #expect(segments((10...15).map { (1, $0) } + (15...20).map { (2, $0) }).missing(from: begin) == 0)
        // ... and timeline 2 missing its first two segments, then one more later.
        #expect(segments((10...15).map { (1, $0) } + (18...25).filter { $0 != 21 }.map { (2, $0) }).missing(from: begin) == 3)
        // An abandoned timeline 2 (ended before 1 went on) then timeline 3 from timeline 1: nothing missing.
        #expect(segments((10...30).map { (1, $0) } + (12...14).map { (2, $0) } + (30...35).map { (3, $0) }).missing(from: begin) == 0)
        // Nothing at or after the begin: its first segment is missing.
        #expect(segments([(1, 3), (1, 4)]).missing(from: begin) == 1)
    }

    /// The counts as served: a UInt64 must become its value, not its bit pattern (which turned
    /// 1 missing segment into 5e-324).
    @Test func archiveFiguresAreServedAsTheirValues() {
        var snapshot = MetricsSnapshot(version: "test")
        snapshot.walArchives = [ServerName("pg"): WALArchive(newestArchiveTime: 1_795_544_000, files: 12, sizeBytes: 201_326_592,
                                                             newestSegmentEnd: 0x1300_0000, missingSegments: 3)]
        snapshot.serverLSN = [ServerName("pg"): 0x1300_0060]
        let text = TestSupport.exposition(snapshot, now: 1_795_600_000)
        #expect(text.contains("barman_wal_missing_segments{server=\"pg\"} 3\n"), "\(text)")
        #expect(text.contains("barman_wal_archive_files{server=\"pg\"} 12\n"))
        #expect(text.contains("barman_wal_archive_size_bytes{server=\"pg\"} 201326592\n"))
        #expect(text.contains("barman_wal_archive_lag_bytes{server=\"pg\"} 96\n"))
    }

    /// While receive-wal streams on the slot, PostgreSQL keeps WAL from the flush position the
    /// client reported (replication-status, every refresh), not from the restart_lsn show-servers
    /// printed up to servers_cache_ttl ago; with no client the cached restart_lsn is exact, and
    /// the slot is unused whatever show-servers said then.
    @Test func slotStateFollowsTheStreamingClient() {
        let pg = ServerName("pg")
        var snapshot = MetricsSnapshot(version: "test")
        var info = ServerInfo(active: true)
        info.replicationSlot = ReplicationSlot(name: "barman", active: true, restartLSN: 0x1000_0000)
        snapshot.servers = [pg: info]
        func served(_ metric: String) -> String? {
            TestSupport.exposition(snapshot, now: 1_795_600_000).split(separator: "\n")
                .first { $0.hasPrefix(metric + "{server=\"pg\",slot=\"barman\"} ") }.map { String($0.split(separator: " ")[1]) }
        }
        // Until replication-status answers: show-servers' view.
        #expect(served("barman_replication_slot_active") == "1")
        #expect(served("barman_replication_slot_retained_bytes") == nil)
        // Three segments streamed since show-servers ran: the slot followed the client.
        snapshot.serverLSN = [pg: 0x1300_0060]
        snapshot.replication = [pg: [StreamingClient(applicationName: "other", slot: "", flushLagBytes: 50_000_000),
                                     StreamingClient(applicationName: "barman_receive_wal", slot: "barman", flushLagBytes: 96)]]
        #expect(served("barman_replication_slot_retained_bytes") == "96")
        #expect(served("barman_replication_slot_active") == "1")
        // receive-wal stopped: nobody moves the slot, PostgreSQL keeps everything since restart_lsn.
        snapshot.replication = [pg: [StreamingClient(applicationName: "other", slot: "", flushLagBytes: 50_000_000)]]
        #expect(served("barman_replication_slot_retained_bytes") == "50331744")
        #expect(served("barman_replication_slot_active") == "0")
        // ... and started again before show-servers ran again (it still says inactive).
        info.replicationSlot?.active = false
        snapshot.servers = [pg: info]
        snapshot.replication = [pg: [StreamingClient(applicationName: "barman_receive_wal", slot: "barman", flushLagBytes: 0)]]
        #expect(served("barman_replication_slot_active") == "1")
        #expect(served("barman_replication_slot_retained_bytes") == "0")
    }

    /// A server show-servers no longer lists loses its WAL archive and directory series.
    @Test func aVanishedServerLosesItsWALSeries() async throws {
        let barman = ScriptedBarman()
        try barman.answerFromFixtures("3.4.0")
        // barman lists no server any more: the file collectors have nothing to read, so only
        // show-servers' answer can drop what they published.
        barman.answer("show-servers", "{}")
        let store = SnapshotStore(MetricsSnapshot(version: "test"))
        let refresher = Refresher(runner: barman, files: MockBarman(), settings: RefreshSettings(cacheTTL: .zero, checksCacheTTL: .zero, serversCacheTTL: .zero,
                                                                                                  refreshInterval: .seconds(60)),
                                  store: store, logger: Logger(level: .error))
        store.update {
            $0.walArchives = [ServerName("gone"): WALArchive(files: 1)]
            $0.walDirectories = [ServerName("gone"): ServerDirectoriesState()]
        }
        await refresher.refreshCycle()
        #expect(store.snapshot.servers?[ServerName("gone")] == nil)
        #expect(store.snapshot.walArchives[ServerName("gone")] == nil)
        #expect(store.snapshot.walDirectories[ServerName("gone")] == nil)
    }

    @Test func segmentRunsStayMergedWhateverTheOrder() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<50 {
            let present = (0..<200).filter { _ in Int.random(in: 0..<10, using: &generator) > 0 }
            let set = segments(present.shuffled(using: &generator).map { (1, UInt64($0)) } + present.map { (1, UInt64($0)) })
            guard let first = present.first, let last = present.last else { continue }
            #expect(set.missing(from: .init(timeline: 1, number: UInt64(first))) == UInt64(last - first + 1 - present.count))
            #expect(set.newest == .init(timeline: 1, number: UInt64(last)))
        }
    }

    // MARK: - The catalog, read incrementally

    /// barman's files on this host, counting the bytes read.
    final class CountingFiles: BarmanFiles {
        let local = LocalBarmanFiles()
        let bytesRead = Atomic<Int>(0)

        func read(path: String, from offset: Int, maxBytes: Int) throws(SystemError) -> (bytes: [UInt8], size: Int, identity: FileIdentity) {
            let chunk = try local.read(path: path, from: offset, maxBytes: maxBytes)
            bytesRead.add(chunk.bytes.count, ordering: .relaxed)
            return chunk
        }

        func visitDirectory(path: String, _ body: (String, () -> Double?) -> Void) throws(SystemError) {
            try local.visitDirectory(path: path, body)
        }

        func fileSystemSpace(path: String) throws(SystemError) -> (availableBytes: UInt64, sizeBytes: UInt64) {
            try local.fileSystemSpace(path: path)
        }
    }

    /// A catalog line for segment `number` (16 MiB segments: 256 per "log").
    static func line(_ number: Int, time: Int = 1_795_544_000) -> String {
        func hex8(_ value: Int) -> String {
            let digits = String(value, radix: 16, uppercase: true)
            return String(repeating: "0", count: 8 - digits.count) + digits
        }
        return "\(hex8(1))\(hex8(number / 256))\(hex8(number % 256))\t16777216\t\(time + number).5\tNone\n"
    }

    @Test func theCatalogIsReadOnceAndThenOnlyWhatWasAppended() throws {
        let directory = try TestSupport.temporaryDirectory()
        defer { TestSupport.removeTree(directory) }
        let path = directory + "/xlog.db"
        let files = CountingFiles()
        let first = (1...1000).map { Self.line($0) }.joined()
        try TestSupport.write(first, to: path)
        var reader = WALCatalog.Reader()
        try reader.update(WALCatalogLocation(path: path), files: files)
        #expect(reader.scan.files == 1000 && reader.scan.sizeBytes == 1000 * 16_777_216)
        #expect(files.bytesRead.load(ordering: .relaxed) == first.utf8.count)

        // 10 more lines, the last one half written: only the new bytes are read, and the
        // half line is read again once complete.
        let appended = (1001...1010).map { Self.line($0) }.joined()
        let descriptor = open(path, O_WRONLY | O_APPEND)
        #expect(descriptor >= 0)
        defer { close(descriptor) }
        func append(_ text: String) {
            let bytes = Array(text.utf8)
            #expect(bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) } == bytes.count)
        }
        append(appended + String(Self.line(1011).prefix(10)))
        try reader.update(WALCatalogLocation(path: path), files: files)
        #expect(reader.scan.files == 1010)
        #expect(files.bytesRead.load(ordering: .relaxed) == first.utf8.count + appended.utf8.count + 10)
        append(String(Self.line(1011).dropFirst(10)))
        try reader.update(WALCatalogLocation(path: path), files: files)
        #expect(reader.scan.files == 1011)
        #expect(reader.scan.newest == Double(1_795_544_000 + 1011) + 0.5)
        #expect(reader.scan.segments.missing(from: .init(timeline: 1, number: 1)) == 0)

        // barman rewrites it (retention removed the first 500): read again from the start.
        try TestSupport.write((501...1011).map { Self.line($0) }.joined(), to: path + ".new")
        #expect(rename(path + ".new", path) == 0)
        try reader.update(WALCatalogLocation(path: path), files: files)
        #expect(reader.scan.files == 511)
        #expect(reader.scan.segments.missing(from: .init(timeline: 1, number: 501)) == 0)
        // Truncated in place (rebuild-xlogdb writes it anew): read again too.
        try TestSupport.write((900...1011).filter { $0 != 950 }.map { Self.line($0) }.joined(), to: path)
        try reader.update(WALCatalogLocation(path: path), files: files)
        #expect(reader.scan.files == 111)
        #expect(reader.scan.segments.missing(from: .init(timeline: 1, number: 900)) == 1)
    }

    // MARK: - Directories

    @Test func pendingWALCountsFinishedFilesOnly() throws {
        let root = try TestSupport.temporaryDirectory()
        defer { TestSupport.removeTree(root) }
        for name in ["incoming", "streaming", "errors", "base", "wals"] { #expect(mkdir(root + "/" + name, 0o755) == 0) }
        for name in ["000000010000000000000004", "000000010000000000000005", "000000010000000000000006.partial", ".tmp.000000010000000000000007",
                     "00000002.history", "000000010000000000000004.00000028.backup"] {
            try TestSupport.write("x", to: root + "/streaming/" + name)
        }
        #expect(mkdir(root + "/streaming/000000010000000000000008", 0o755) == 0)  // not a regular file
        try TestSupport.write("x", to: root + "/errors/000000010000000000000002.20261124T183000Z.duplicate")
        var times = [timespec(tv_sec: 1_795_000_100, tv_nsec: 0), timespec(tv_sec: 1_795_000_100, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, root + "/streaming/000000010000000000000005", &times, 0) == 0)
        let directories = ServerDirectories(incomingWALs: root + "/incoming", streamingWALs: root + "/streaming", errors: root + "/errors",
                                            basebackups: root + "/base", wals: root + "/wals")
        var failures: [String] = []
        let state = WALDirectoriesCollector.read(directories, files: LocalBarmanFiles()) { path, _ in failures.append(path) }
        #expect(failures.isEmpty)
        #expect(state.pending == ["incoming": 0, "streaming": 4])
        #expect(state.oldestPending == 1_795_000_100)
        #expect(state.errorFiles == 1)
        var expected = statvfs()
        #expect(statvfs(root, &expected) == 0)
        #expect(state.space["wals"]?.sizeBytes == UInt64(expected.f_blocks) * UInt64(expected.f_frsize))
        #expect(state.space.keys.sorted() == ["backups", "wals"])

        // A directory barman has not made yet: nothing waits there, nothing to report.
        let notYet = WALDirectoriesCollector.read(ServerDirectories(incomingWALs: root + "/gone", errors: root + "/gone", wals: root + "/gone"),
                                                  files: LocalBarmanFiles()) { path, _ in failures.append(path) }
        #expect(notYet.pending == ["incoming": 0] && notYet.errorFiles == 0 && notYet.space.isEmpty && failures.isEmpty)
        // One that cannot be read (a file where a directory should be) is reported and has no count.
        let broken = WALDirectoriesCollector.read(ServerDirectories(incomingWALs: root + "/errors/000000010000000000000002.20261124T183000Z.duplicate"),
                                                  files: LocalBarmanFiles()) { path, _ in failures.append(path) }
        #expect(broken.pending.isEmpty && failures.count == 1)
    }

    // MARK: - list-processes

    @Test func runningProcessesOnlyFromBarman314() throws {
        for (version, supported) in [("3.4.0", false), ("3.13.3", false), ("3.14.0", true), ("3.20.1", true), ("4.0", true), ("x", false), ("", false)] {
            #expect(RunningProcessesCollector.isSupported(version: version) == supported, "\(version)")
        }
        let output = CommandOutput(stdout: Array(#"{"pg": [{"pid": 526, "name": "receive-wal"}, {"pid": 4411, "name": "backup"}, {"pid": 4412, "name": "backup"}]}"#.utf8))
        #expect(try BarmanDecoding.processes(output, server: "pg") == ["receive-wal": 1, "backup": 2])
        #expect(try BarmanDecoding.processes(CommandOutput(stdout: Array(#"{"pg": []}"#.utf8)), server: "pg") == [:])
        for bad in [#"{"pg": [{"pid": 0, "name": "cron"}]}"#, #"{"pg": [{"name": "cron"}]}"#, #"{"pg": {}}"#, #"{"other": []}"#] {
            #expect(throws: DecodeFailure.self) { try BarmanDecoding.processes(CommandOutput(stdout: Array(bad.utf8)), server: "pg") }
        }
    }
}
