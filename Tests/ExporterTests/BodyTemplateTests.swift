@testable import Barman
@testable import Exporter
@testable import Exposition
@testable import Platform
import Testing
import Synchronization

/// The body served is the one rendered per snapshot with the per-second families filled in; it
/// must be byte for byte what a full render at that second gives.
@Suite("Body templates")
struct BodyTemplateTests {
    /// A random snapshot: servers with random backups (DONE, FAILED, running), checks, clients.
    static func randomSnapshot(_ generator: inout some RandomNumberGenerator) -> MetricsSnapshot {
        var snapshot = MetricsSnapshot(version: "1.2.3")
        var listing: [ServerName: [BackupSummary]] = [:]
        var checks: [ServerName: [CheckResult]] = [:]
        for index in 0..<Int.random(in: 0...12, using: &generator) {
            let server = ServerName("pg-\(index)")
            listing[server] = (0..<Int.random(in: 0...6, using: &generator)).map { number in
                let status = ["DONE", "DONE", "FAILED", "STARTED"].randomElement(using: &generator) ?? "DONE"
                return BackupSummary(id: "2026112\(number)T0\(number)0000", status: status,
                                     endTime: status == "DONE" ? 1_795_000_000 - Int64(number) * 86_400 : nil,
                                     sizeBytes: status == "DONE" ? Double(Int.random(in: 1...1 << 40, using: &generator)) : nil,
                                     walSizeBytes: status == "DONE" ? Double(Int.random(in: 0...1 << 30, using: &generator)) : nil,
                                     backupType: Bool.random(using: &generator) ? "full" : "incremental", retentionStatus: "-")
            }
            checks[server] = ["postgresql", "wal_level", "backup_maximum_age"].map { CheckResult(name: $0, ok: Bool.random(using: &generator)) }
        }
        snapshot.backups = listing
        snapshot.checks = checks
        snapshot.lastRefreshMilliseconds = Double(Int.random(in: 1...9_999, using: &generator))
        snapshot.health["list-backups"] = CommandHealth()
        return snapshot
    }

    @Test(arguments: [ExpositionFormat.text, .openMetrics])
    func theBodyIsAFullRenderOfItsSecond(format: ExpositionFormat) throws {
        var generator = SystemRandomNumberGenerator()
        let process = ProcessStatistics(cpuSeconds: 1.5, residentBytes: 12_345_678, virtualBytes: 98_765_432, openFileDescriptors: 12,
                                        maxFileDescriptors: 1024, startTimeSeconds: 1_795_000_000)
        var previous: BodyTemplate?
        for round in 0..<40 {
            let snapshot = Self.randomSnapshot(&generator)
            // Every other template is made from the one before: what it takes from it must not
            // change a byte.
            let template = BodyTemplate(snapshot: snapshot, generation: UInt64(round), format: format, previous: round % 2 == 0 ? previous : nil)
            previous = template
            for _ in 0..<3 {
                let second = Double(Int.random(in: 1_795_000_000...1_796_000_000, using: &generator))
                let figures: ProcessStatistics? = Bool.random(using: &generator) ? process : nil
                let full = TextRenderer.render(MetricsBuilder.families(snapshot, now: second, process: figures), format: format)
                let body = template.body(now: second, process: figures, gzip: true)
                #expect(body.plain?.bytes == full, "round \(round), second \(second)")
                let gzip = try #require(body.gzip)
                #expect(Gzip.decompress(gzip.bytes) == full, "gzip, round \(round)")
            }
        }
    }

    /// A second's plain body is the template's fixed text itself with that second's families
    /// between, not a copy: at 1,000 servers x 60 backups a copy was 9.8 MB a second, two
    /// seconds of them resident under a steady load.
    /// A small body is one buffer: libmicrohttpd sends it with its headers in one write.
    @Test func plainBodiesShareTheTemplatesText() throws {
        let template = BodyTemplate(snapshot: Self.largeSnapshot(servers: 300, backups: 30), generation: 1, format: .text)
        let first = try #require(template.body(now: 1_795_000_000, process: nil, gzip: false).plain)
        let second = try #require(template.body(now: 1_795_000_001, process: nil, gzip: false).plain)
        #expect(first.count > BodyTemplate.largestCopiedBody)
        let shared = Set(first.chunks.compactMap(\.baseAddress)).intersection(second.chunks.compactMap(\.baseAddress))
        let sharedBytes = first.chunks.filter { chunk in chunk.baseAddress.map(shared.contains) ?? false }.reduce(0) { $0 + $1.count }
        #expect(sharedBytes == template.fixedTextBytes && sharedBytes > 0)

        var generator = SystemRandomNumberGenerator()
        let small = BodyTemplate(snapshot: Self.randomSnapshot(&generator), generation: 1, format: .text)
        let body = try #require(small.body(now: 1_795_000_000, process: nil, gzip: false).plain)
        #expect(body.chunks.count == 1 && body.count <= BodyTemplate.largestCopiedBody)
    }

    /// `servers` servers of `backups` DONE backups each: a body of about 60 bytes a backup.
    static func largeSnapshot(servers: Int, backups: Int) -> MetricsSnapshot {
        var snapshot = MetricsSnapshot(version: "1.2.3")
        snapshot.backups = Dictionary(uniqueKeysWithValues: (0..<servers).map { index in
            (ServerName("pg-\(index)"), (0..<backups).map { number in
                BackupSummary(id: "20261124T\(100000 + number)", status: "DONE", endTime: 1_795_000_000 - Int64(number) * 86_400, sizeBytes: 5e10, walSizeBytes: 3e7)
            })
        })
        return snapshot
    }

    /// The mock's body, with every kind of family: the same check on real decoded data.
    @Test func theMockBodyIsAFullRender() async throws {
        let store = SnapshotStore(MetricsSnapshot(version: "test"))
        let refresher = Refresher(runner: MockBarman(), settings: RefreshSettings(cacheTTL: .zero, checksCacheTTL: .zero, refreshInterval: .seconds(60)),
                                  store: store, logger: Logger(level: .error))
        await refresher.refreshCycle()
        let process = try #require(ProcessStatistics.current())
        for format in [ExpositionFormat.text, .openMetrics] {
            let template = BodyTemplate(snapshot: store.snapshot, generation: 1, format: format)
            let full = TextRenderer.render(MetricsBuilder.families(store.snapshot, now: 1_795_580_000, process: process), format: format)
            let body = template.body(now: 1_795_580_000, process: process, gzip: true)
            #expect(body.plain?.bytes == full)
            #expect(body.gzip.flatMap { Gzip.decompress($0.bytes) } == full)
        }
    }
}

extension BodyTemplateTests {
    /// A snapshot is rendered whole once; each further second renders only its per-second
    /// families (before, every second was a whole render).
    @Test func aSnapshotIsRenderedWholeOnce() {
        var generator = SystemRandomNumberGenerator()
        let store = SnapshotStore(Self.randomSnapshot(&generator))
        let cache = ExpositionCache()
        for second in 100...104 {
            _ = cache.body(for: .text, gzip: true, store: store, second: Double(second))
        }
        #expect(cache.renders == 5)
        #expect(cache.templatesMade == 1)
        store.update { $0.lastRefreshMilliseconds = 1 }
        _ = cache.body(for: .text, gzip: true, store: store, second: 105)
        #expect(cache.templatesMade == 2)
    }
}

extension BodyTemplateTests {
    /// Compressed and stored pieces, of any size, join into one gzip member of their content.
    @Test func gzipPiecesJoinIntoOneMember() throws {
        var generator = SystemRandomNumberGenerator()
        let pieces: [[UInt8]] = [0, 1, 70_000, 140_000, 12].map { count in (0..<count).map { _ in UInt8.random(in: 0x20...0x7E, using: &generator) } }
        var segments: [Gzip.Segment] = []
        for (index, piece) in pieces.enumerated() {
            segments.append(index % 2 == 0 ? try #require(Gzip.segment(piece)) : Gzip.storedSegment(piece))
        }
        #expect(Gzip.decompress(Gzip.join(segments)) == pieces.flatMap { $0 })
        #expect(Gzip.decompress(Gzip.join([])) == [])
    }
}

extension BodyTemplateTests {
    /// While only gzip is asked for, the fixed text is kept only compressed; a scrape asking
    /// for plain text later still gets the full render of its second, text and gzip.
    @Test(arguments: [ExpositionFormat.text, .openMetrics])
    func aGzipOnlyTemplateKeepsNoTextAndServesPlainLater(format: ExpositionFormat) throws {
        var generator = SystemRandomNumberGenerator()
        for round in 0..<20 {
            let snapshot = Self.randomSnapshot(&generator)
            let template = BodyTemplate(snapshot: snapshot, generation: UInt64(round), format: format)
            let textBytes = template.fixedTextBytes
            template.prepare(plain: false, gzip: true)
            #expect(template.fixedTextBytes == 0, "round \(round): \(textBytes) bytes of text were kept")
            let second = Double(1_795_000_000 + round)
            let full = TextRenderer.render(MetricsBuilder.families(snapshot, now: second), format: format)
            let gzipOnly = template.body(now: second, process: nil, plain: false, gzip: true)
            #expect(gzipOnly.plain == nil)
            let gzipped = try #require(gzipOnly.gzip)
            #expect(Gzip.decompress(gzipped.bytes) == full, "round \(round)")
            let both = template.body(now: second, process: nil, plain: true, gzip: true)
            #expect(both.plain?.bytes == full, "round \(round)")
            #expect(template.fixedTextBytes == textBytes)
            // Asked for both: nothing is let go.
            template.prepare(plain: true, gzip: true)
            #expect(template.fixedTextBytes == textBytes)
        }
    }

    /// A segment gives its content back, whatever its size (zlib's output comes in chunks).
    @Test func aSegmentInflatesToItsContent() throws {
        var generator = SystemRandomNumberGenerator()
        for count in [0, 1, 65_535, 65_536, 200_000] {
            let text: [UInt8] = (0..<count).map { _ in UInt8.random(in: 0x20...0x7E, using: &generator) }
            let segment = try #require(Gzip.segment(text))
            #expect(Gzip.content(of: segment) == text, "\(count) bytes")
            #expect(Gzip.content(of: Gzip.storedSegment(text)) == text, "\(count) bytes stored")
            // Straight into a buffer of exactly its length, and only of that length.
            var exact = [UInt8](repeating: 0, count: count)
            #expect(exact.withUnsafeMutableBytes { Gzip.content(of: segment, into: $0) } && exact == text, "\(count) bytes into a buffer")
            var longer = [UInt8](repeating: 0, count: count + 1)
            #expect(!longer.withUnsafeMutableBytes { Gzip.content(of: segment, into: $0) }, "\(count) bytes into a longer buffer")
            if count > 0 {
                var shorter = [UInt8](repeating: 0, count: count - 1)
                #expect(!shorter.withUnsafeMutableBytes { Gzip.content(of: segment, into: $0) }, "\(count) bytes into a shorter buffer")
            }
        }
    }

    /// Pieces deflated as one stream make the segment of their joined content: a template's
    /// run of families is compressed without first being copied into one buffer.
    @Test func piecesMakeTheSegmentOfTheirContent() throws {
        var generator = SystemRandomNumberGenerator()
        let pieces: [[UInt8]] = [0, 5, 100_000, 0, 70_000, 1].map { count in (0..<count).map { _ in UInt8.random(in: 0x20...0x7E, using: &generator) } }
        let whole = pieces.flatMap { $0 }
        let shared = pieces.map(SharedBytes.init)
        let segment = try #require(Gzip.segment(pieces: SharedBytes(joining: shared).chunks))
        let joined = try #require(Gzip.segment(whole))
        #expect(segment.length == whole.count && segment.crc == joined.crc)
        #expect(Gzip.content(of: segment) == whole)
        #expect(Gzip.decompress(Gzip.join([segment, Gzip.storedSegment([0x41])])) == whole + [0x41])
        let empty = try #require(Gzip.segment(pieces: []))
        #expect(empty.length == 0 && Gzip.decompress(Gzip.join([empty])) == [])
    }
}


extension BodyTemplateTests {
    /// A template made by a scrape, not ahead by the renderer, also keeps its text only
    /// compressed while only gzip is asked for (it used to keep about 2 MB at 200 x 60), and
    /// keeps it again once a scraper asks for plain text.
    @Test func aScrapeMadeTemplateLetsGoOfItsTextWhileOnlyGzipIsAsked() throws {
        var generator = SystemRandomNumberGenerator()
        let snapshot = Self.randomSnapshot(&generator)
        let store = SnapshotStore(snapshot)
        let cache = ExpositionCache()
        let first = cache.body(for: .text, gzip: true, store: store, second: 100)
        #expect(first.gzipped)
        #expect(cache.templateTextBytes(for: .text) == 0)
        _ = cache.body(for: .text, gzip: true, store: store, second: 101)
        #expect(cache.templateTextBytes(for: .text) == 0)
        let plain = cache.body(for: .text, gzip: false, store: store, second: 102)
        // The body has the process' own figures of its render; the rest is the full render.
        let withoutProcess = String(decoding: plain.bytes.bytes, as: UTF8.self).split(separator: "\n").filter { !$0.contains("process_") }
        let full = String(decoding: TextRenderer.render(MetricsBuilder.families(store.snapshot, now: 102), format: .text), as: UTF8.self)
        #expect(withoutProcess == full.split(separator: "\n"))
        let kept = try #require(cache.templateTextBytes(for: .text))
        #expect(kept > 0)
        // Both asked for within the demand window: the text stays.
        _ = cache.body(for: .text, gzip: true, store: store, second: 103)
        #expect(cache.templateTextBytes(for: .text) == kept)
    }

    /// What zlib wrote is kept in an array of its own size, not in the buffer deflateBound sized
    /// (about the size of the input: a segment kept for a snapshot's life held it all).
    @Test func compressedBytesAreKeptAtTheirOwnSize() throws {
        let text: [UInt8] = (0..<1_000_000).map { UInt8(ascii: "a") + UInt8($0 % 7) }
        let segment = try #require(Gzip.segment(text))
        #expect(segment.deflated.capacity < segment.deflated.count + 4096, "\(segment.deflated.capacity) for \(segment.deflated.count)")
        #expect(Gzip.content(of: segment) == text)
        let member = try #require(Gzip.compress(text))
        #expect(member.capacity < member.count + 4096, "\(member.capacity) for \(member.count)")
        #expect(Gzip.decompress(member) == text)
    }
}

extension BodyTemplateTests {
    /// Scrapes of one snapshot arriving at once make its template once: templates are made one
    /// at a time, and one that waited takes the one just made (two made at once held two
    /// snapshots' samples: 32 MB at 1,000 servers x 60 backups).
    @Test func simultaneousScrapesMakeOneTemplate() throws {
        // Large enough that a template takes a while to make (tens of ms in a debug build).
        let store = SnapshotStore(Self.largeSnapshot(servers: 300, backups: 30))
        let cache = ExpositionCache()
        let finished = Atomic<Int>(0)
        for thread in 0..<8 {
            try DetachedThread.start {
                _ = cache.body(for: .text, gzip: thread % 2 == 0, store: store, second: Double(100 + thread))
                finished.add(1, ordering: .releasing)
            }
        }
        #expect(Deadline.poll(every: .milliseconds(5), for: .seconds(30)) { finished.load(ordering: .acquiring) == 8 })
        #expect(cache.templatesMade == 1)
    }
}

extension BodyTemplateTests {
    /// A new snapshot's template takes the previous template's text of every family that did
    /// not change, rather than holding a copy: a refresh publishes a snapshot per collector, and
    /// at 1,000 servers x 60 backups the unchanged backup families are most of a 9.8 MB body.
    @Test(arguments: [ExpositionFormat.text, .openMetrics])
    func aNewTemplateSharesTheTextOfUnchangedFamilies(format: ExpositionFormat) throws {
        let before = Self.largeSnapshot(servers: 300, backups: 30)
        var after = before
        after.checks = [ServerName("pg-1"): [CheckResult(name: "postgresql", ok: false)]]
        let previous = BodyTemplate(snapshot: before, generation: 1, format: format)
        let template = BodyTemplate(snapshot: after, generation: 2, format: format, previous: previous)
        let second = 1_795_000_000.0
        let old = try #require(previous.body(now: second, process: nil, gzip: false).plain)
        let new = try #require(template.body(now: second, process: nil, gzip: false).plain)
        #expect(new.bytes == TextRenderer.render(MetricsBuilder.families(after, now: second), format: format))
        let oldAddresses = Set(old.chunks.compactMap(\.baseAddress))
        let shared = new.chunks.filter { $0.baseAddress.map(oldAddresses.contains) ?? false }.reduce(0) { $0 + $1.count }
        // Everything but the new `barman_up` family (and the per-second ones) is the old text.
        let upFamily = TextRenderer.render(MetricsBuilder.families(after, now: second).filter { $0.definition == Metric.up }, format: format, terminated: false)
        let perSecond = new.count - template.fixedTextBytes
        #expect(shared == new.count - upFamily.count - perSecond - (format == .openMetrics ? TextRenderer.terminator.count : 0))
        #expect(shared > 1_000_000)

        // A template whose text was let go (only gzip asked for) has nothing to give: the next
        // one renders its own, the same bytes.
        previous.prepare(plain: false, gzip: true)
        let unshared = BodyTemplate(snapshot: after, generation: 3, format: format, previous: previous)
        let body = try #require(unshared.body(now: second, process: nil, gzip: false).plain)
        #expect(body.bytes == new.bytes)
        #expect(body.chunks.allSatisfy { !($0.baseAddress.map(oldAddresses.contains) ?? false) })
    }

    /// Families one at a time are exactly a full build's families.
    @Test func familiesOneAtATimeAreTheFullBuild() throws {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20 {
            let snapshot = Self.randomSnapshot(&generator)
            var oneAtATime: [MetricFamily] = []
            MetricsBuilder.forEachFamily(snapshot, now: 1_795_000_000) { oneAtATime.append($0) }
            let full = MetricsBuilder.families(snapshot, now: 1_795_000_000)
            #expect(oneAtATime.sorted { $0.definition.name < $1.definition.name } == full)
        }
    }
}

extension BodyTemplateTests {
    /// A family rendered in pieces is its whole render, cut anywhere.
    @Test(arguments: [ExpositionFormat.text, .openMetrics])
    func aFamilyInPiecesIsItsWholeRender(format: ExpositionFormat) throws {
        let families = MetricsBuilder.families(Self.largeSnapshot(servers: 40, backups: 30), now: 1_795_000_000)
        for family in families {
            for pieceBytes in [1, 100, 4096, 1 << 20] {
                var pieces: [[UInt8]] = []
                TextRenderer.render(family, format: format, pieceBytes: pieceBytes) { pieces.append($0) }
                #expect(pieces.flatMap { $0 } == TextRenderer.render([family], format: format, terminated: false), "\(family.definition.name), \(pieceBytes)")
                #expect(pieces.allSatisfy { !$0.isEmpty })
                #expect(pieces.dropLast().allSatisfy { $0.count >= pieceBytes })
            }
        }
    }

    /// Two texts compare by their bytes, however each is cut into chunks.
    @Test func textsCompareByTheirBytesWhateverTheirChunks() {
        var generator = SystemRandomNumberGenerator()
        let bytes: [UInt8] = (0..<5_000).map { _ in UInt8.random(in: 0...255, using: &generator) }
        func cut(_ bytes: [UInt8], at cuts: [Int]) -> SharedBytes {
            let bounds = [0] + cuts.sorted() + [bytes.count]
            return SharedBytes(joining: zip(bounds, bounds.dropFirst()).map { SharedBytes(Array(bytes[$0..<$1])) })
        }
        for _ in 0..<50 {
            let one = cut(bytes, at: (0..<Int.random(in: 0...6, using: &generator)).map { _ in Int.random(in: 0...bytes.count, using: &generator) })
            let other = cut(bytes, at: (0..<Int.random(in: 0...6, using: &generator)).map { _ in Int.random(in: 0...bytes.count, using: &generator) })
            #expect(one.hasSameBytes(as: other) && other.hasSameBytes(as: one))
            var changed = bytes
            let position = Int.random(in: 0..<bytes.count, using: &generator)
            changed[position] &+= 1
            #expect(!one.hasSameBytes(as: cut(changed, at: [position, Int.random(in: 0...bytes.count, using: &generator)])))
            #expect(!one.hasSameBytes(as: SharedBytes(Array(bytes.dropLast()))))
        }
        #expect(SharedBytes([]).hasSameBytes(as: SharedBytes(joining: [])))
    }
}
