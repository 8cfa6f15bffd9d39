@testable import Barman
@testable import Configuration
@testable import Exporter
@testable import Exposition
@testable import Platform
import Testing

@Suite("Content negotiation, OpenMetrics and gzip")
struct NegotiationTests {
    static let prometheus2Accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    static let prometheus3Accept = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1"

    @Test func formatChoice() {
        #expect(ContentNegotiation.format(accept: Self.prometheus2Accept) == .openMetrics)
        #expect(ContentNegotiation.format(accept: Self.prometheus3Accept) == .openMetrics)
        #expect(ContentNegotiation.format(accept: nil) == .text)
        #expect(ContentNegotiation.format(accept: "*/*") == .text)  // curl
        #expect(ContentNegotiation.format(accept: "text/plain;version=0.0.4") == .text)
        #expect(ContentNegotiation.format(accept: "application/openmetrics-text;version=0.0.1") == .text)
        #expect(ContentNegotiation.format(accept: "application/openmetrics-text; version=\"1.0.0\"; q=0.9, text/plain") == .text)
        #expect(ContentNegotiation.format(accept: "application/openmetrics-text;q=0") == .text)
        #expect(ContentNegotiation.format(accept: "Application/OpenMetrics-Text") == .openMetrics)
    }

    @Test func gzipChoice() {
        #expect(ContentNegotiation.acceptsGzip("gzip"))
        #expect(ContentNegotiation.acceptsGzip("deflate, gzip;q=0.5"))
        #expect(!ContentNegotiation.acceptsGzip("gzip;q=0"))
        #expect(!ContentNegotiation.acceptsGzip("identity"))
        #expect(!ContentNegotiation.acceptsGzip(nil))
    }

    @Test func openMetricsExposition() {
        var snapshot = MetricsSnapshot(version: "1")
        snapshot.backups = ["s\"x": []]
        snapshot.health["check"] = CommandHealth()
        let families = MetricsBuilder.families(snapshot, now: 0)
        let text = String(decoding: TextRenderer.render(families, format: .openMetrics), as: UTF8.self)
        #expect(text.hasSuffix("\n# EOF\n"))
        // Counters: the family drops `_total`, the sample keeps it; TYPE comes before HELP.
        #expect(text.contains("# TYPE barman_exporter_command_runs counter\n# HELP barman_exporter_command_runs Runs of this barman command since the exporter started.\nbarman_exporter_command_runs_total{command=\"check\"} 0\n"))
        // Gauges keep their name, `_total` or not.
        #expect(text.contains("# TYPE barman_backups_total gauge\n"))
        #expect(text.contains("barman_backups_total{server=\"s\\\"x\"} 0\n"))
        // HELP escapes quotes in OpenMetrics (not in 0.0.4).
        #expect(text.contains("# HELP barman_exporter_build_info A metric with a constant '1' value"))
        let plain = String(decoding: TextRenderer.render(families, format: .text), as: UTF8.self)
        #expect(!plain.contains("# EOF"))
        #expect(plain.contains("# TYPE barman_exporter_command_runs_total counter\n"))
    }

    @Test func gzipIsAValidSmallerGzipMember() throws {
        let body = Array(String(repeating: "barman_up{check=\"wal_level\",server=\"pg\"} 1\n", count: 1000).utf8)
        let compressed = try #require(Gzip.compress(body))
        #expect(compressed.prefix(3) == [0x1F, 0x8B, 0x08])
        #expect(compressed.count < body.count / 10)
        // The trailer holds the input size (mod 2^32), little-endian.
        let size = compressed.suffix(4).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        #expect(size == body.count)
    }

    @Test func aBodyIsReusedWithinItsSecondAndDroppedAfter() {
        let store = SnapshotStore(MetricsSnapshot(version: "1"))
        let cache = ExpositionCache()
        let first = cache.body(for: .text, gzip: false, store: store, second: 100).bytes
        #expect(cache.body(for: .text, gzip: false, store: store, second: 100).bytes === first)
        #expect(cache.body(for: .text, gzip: false, store: store, second: 101).bytes !== first)  // ages moved on
        let current = cache.body(for: .text, gzip: false, store: store, second: 101).bytes
        cache.dropExpired(before: 101)
        #expect(cache.body(for: .text, gzip: false, store: store, second: 101).bytes === current)
        cache.dropExpired(before: 102)
        #expect(cache.body(for: .text, gzip: false, store: store, second: 101).bytes !== current)
        store.update { $0.lastRefreshMilliseconds = 1 }  // a new snapshot: rendered again
        let fresh = cache.body(for: .text, gzip: false, store: store, second: 101).bytes
        #expect(String(decoding: fresh.bytes, as: UTF8.self).contains("barman_metrics_update 1\n"))
    }

    /// Only the encodings scrapers asked for are rendered ahead: a Prometheus asking for gzip
    /// costs no plain body each second (2 MB at 200 servers x 60 backups).
    @Test func onlyTheEncodingsAskedForAreRenderedAhead() {
        let store = SnapshotStore(MetricsSnapshot(version: "1"))
        let cache = ExpositionCache()
        _ = cache.body(for: .text, gzip: true, store: store, second: 99)
        #expect(cache.prepare(store: store, second: 100, now: 99.9))
        #expect(!cache.hasBody(for: .text, gzip: false, store: store, second: 100))
        #expect(cache.hasBody(for: .text, gzip: true, store: store, second: 100))
    }

    /// A scraper that comes every 15 s costs no body each second in between: only a new
    /// snapshot's whole render is made ahead, and its scrape renders the per-second families.
    @Test func anOccasionalScraperCostsNoBodyASecond() {
        let store = SnapshotStore(MetricsSnapshot(version: "1"))
        let cache = ExpositionCache()
        _ = cache.body(for: .text, gzip: true, store: store, second: 100)
        let renders = cache.renders
        #expect(!cache.prepare(store: store, second: 111, now: 110.9))
        #expect(cache.renders == renders && cache.templatesMade == 1)
        store.update { $0.lastRefreshMilliseconds = 3 }
        // Made once the snapshot has settled (no newer one for `settleTime`).
        #expect(!cache.prepare(store: store, second: 112, now: 111.9))
        #expect(cache.prepare(store: store, second: 113, now: 112.5))
        #expect(cache.renders == renders && cache.templatesMade == 2)
        _ = cache.body(for: .text, gzip: true, store: store, second: 115)
        #expect(cache.renders == renders + 1 && cache.templatesMade == 2)
    }

    /// A refresh publishes a snapshot per collector within a second or two: for a scraper that
    /// comes now and then, one whole render once they settle, not one per snapshot (four a
    /// refresh were most of the exporter's CPU under a Prometheus scraping every 15 s).
    /// Meanwhile a scrape gets the previous snapshot's body of its second, rendering only the
    /// per-second families, never a whole render.
    @Test func snapshotsInABurstMakeOneTemplate() throws {
        let store = SnapshotStore(MetricsSnapshot(version: "1"))
        let cache = ExpositionCache()
        store.update { $0.lastRefreshMilliseconds = 0 }
        try cache.withRenderer {
            _ = cache.body(for: .text, gzip: true, store: store, second: 100)
            #expect(cache.templatesMade == 1)
            for (index, now) in [110.0, 110.2, 110.4, 110.6, 110.8].enumerated() {
                store.update { $0.lastRefreshMilliseconds = Double(index + 1) }
                #expect(!cache.prepare(store: store, second: now.rounded(.down) + 1, now: now), "update \(index)")
            }
            #expect(cache.templatesMade == 1)
            let held = try #require(Gzip.decompress(cache.body(for: .text, gzip: true, store: store, second: 111).bytes.bytes))
            #expect(String(decoding: held, as: UTF8.self).contains("barman_metrics_update 0\n"))
            #expect(cache.templatesMade == 1)
            #expect(cache.prepare(store: store, second: 112, now: 111.4))
            #expect(cache.templatesMade == 2)
            let fresh = try #require(Gzip.decompress(cache.body(for: .text, gzip: true, store: store, second: 112).bytes.bytes))
            #expect(String(decoding: fresh, as: UTF8.self).contains("barman_metrics_update 5\n"))
            #expect(cache.templatesMade == 2)
        }
    }

    /// Snapshots that never settle still get their template within `settleLimit`; a scrape
    /// while the renderer is late is served from the newest template, and never makes a whole
    /// template itself (at 1,000 servers, a scrape waited 3-4 s for one).
    @Test func snapshotsThatNeverSettleAreRenderedWithinTheLimit() throws {
        let store = SnapshotStore(MetricsSnapshot(version: "1"))
        let cache = ExpositionCache()
        try cache.withRenderer {
            _ = cache.body(for: .text, gzip: true, store: store, second: 100)
            var made: Double?
            for step in 0..<20 {
                let now = 110 + Double(step) * 0.25
                store.update { $0.lastRefreshMilliseconds = Double(step + 1) }
                if cache.prepare(store: store, second: now.rounded(.down) + 1, now: now) { made = now; break }
            }
            let when = try #require(made)
            #expect(when >= 110 + ExpositionCache.settleLimit && when < 110 + ExpositionCache.settleLimit + 0.5)
        }
        let late = ExpositionCache()
        try late.withRenderer {
            _ = late.body(for: .text, gzip: true, store: store, second: 100)
            store.update { $0.lastRefreshMilliseconds = 42 }
            #expect(!late.prepare(store: store, second: 111, now: 110.9))
            // Past the limit, with the renderer late, the scrape still gets the previous
            // snapshot's body of its second rather than making the new template itself...
            let made = late.templatesMade
            let body = try #require(Gzip.decompress(late.body(for: .text, gzip: true, store: store, second: 114).bytes.bytes))
            #expect(!String(decoding: body, as: UTF8.self).contains("barman_metrics_update 42\n"))
            #expect(late.templatesMade == made)
            // ...and the renderer's next round makes it.
            #expect(late.prepare(store: store, second: 115, now: 114.5))
            let fresh = try #require(Gzip.decompress(late.body(for: .text, gzip: true, store: store, second: 115).bytes.bytes))
            #expect(String(decoding: fresh, as: UTF8.self).contains("barman_metrics_update 42\n"))
            // The next snapshot settles from scratch.
            store.update { $0.lastRefreshMilliseconds = 43 }
            // (Past the scrape's busy window, when the renderer would render each second.)
            #expect(!late.prepare(store: store, second: 118, now: 117.5))
            #expect(late.prepare(store: store, second: 119, now: 118.1))
        }
    }

    /// A scrape that follows one served a new snapshot does not get an older one's: a snapshot
    /// published just before a second starts, after the renderer made that second's body ahead
    /// from the snapshot before, left that older body to be served in the new second until the
    /// renderer caught up.
    @Test func dataNeverGoesBackBetweenScrapes() throws {
        let store = SnapshotStore(MetricsSnapshot(version: "1"))
        let cache = ExpositionCache()
        store.update { $0.lastRefreshMilliseconds = 1 }
        func refresh(served body: (bytes: SharedBytes, gzipped: Bool)) throws -> String? {
            let text = String(decoding: try #require(Gzip.decompress(body.bytes.bytes)), as: UTF8.self)
            return text.split(separator: "\n").first { $0.hasPrefix("barman_metrics_update ") }.map(String.init)
        }
        try cache.withRenderer {
            _ = cache.body(for: .text, gzip: true, store: store, second: 110)  // a steady scraper
            #expect(cache.prepare(store: store, second: 111, now: 110.99))  // second 111, made ahead
            store.update { $0.lastRefreshMilliseconds = 2 }
            #expect(cache.prepare(store: store, second: 110, now: 110.995))  // the new snapshot's 110
            let served = try refresh(served: cache.body(for: .text, gzip: true, store: store, second: 110))
            #expect(served == "barman_metrics_update 2")
            // Second 111 starts before the renderer has made the new snapshot's body of it.
            let next = try refresh(served: cache.body(for: .text, gzip: true, store: store, second: 111))
            #expect(next == "barman_metrics_update 2")
        }
    }

    /// A format nobody asks for any more lets go of its template once the snapshot moves on.
    @Test func aTemplateNobodyAsksForIsDropped() {
        let store = SnapshotStore(MetricsSnapshot(version: "1"))
        let cache = ExpositionCache()
        _ = cache.body(for: .text, gzip: false, store: store, second: 100)
        #expect((cache.templateTextBytes(for: .text) ?? 0) > 0)
        #expect(!cache.prepare(store: store, second: 131, now: 130.5))
        #expect(cache.templateTextBytes(for: .text) != nil)  // the same snapshot: kept
        store.update { $0.lastRefreshMilliseconds = 1 }
        #expect(!cache.prepare(store: store, second: 201, now: 200.5))
        #expect(cache.templateTextBytes(for: .text) == nil)
    }

    /// With the renderer, a scrape finds its second's body ready: it renders nothing itself.
    @Test func theRendererPreparesEachSecondSoScrapesDoNotRender() throws {
        let store = SnapshotStore(MetricsSnapshot(version: "1"))
        let cache = ExpositionCache()
        try cache.withRenderer { try rendererPreparesEachSecond(store, cache) }
    }

    func rendererPreparesEachSecond(_ store: SnapshotStore, _ cache: ExpositionCache) throws {
        #expect(!cache.prepare(store: store, second: 100, now: 99.5))  // nobody asked yet
        _ = cache.body(for: .text, gzip: true, store: store, second: 99)  // the first scrapes render
        _ = cache.body(for: .text, gzip: false, store: store, second: 99)  // plain is asked for too
        let renders = cache.renders
        #expect(cache.prepare(store: store, second: 100, now: 99.9))  // the next second, gzip too
        #expect(!cache.prepare(store: store, second: 100, now: 99.95))  // already there
        let ahead = cache.body(for: .text, gzip: true, store: store, second: 100)
        #expect(ahead.gzipped && cache.renders == renders + 1)
        let plain = cache.body(for: .text, gzip: false, store: store, second: 100).bytes
        #expect(cache.renders == renders + 1)

        // A new snapshot: until the renderer has rendered it (within 50 ms), this second's body
        // of the previous one is served, never a render during the scrape.
        store.update { $0.lastRefreshMilliseconds = 7 }
        #expect(cache.body(for: .text, gzip: false, store: store, second: 100).bytes === plain)
        #expect(cache.renders == renders + 1)
        #expect(cache.prepare(store: store, second: 100, now: 100.01))
        let fresh = cache.body(for: .text, gzip: false, store: store, second: 100).bytes
        #expect(String(decoding: fresh.bytes, as: UTF8.self).contains("barman_metrics_update 7\n"))

        // The renderer is late for second 101: the body of 100 is served, not a render.
        let renders100 = cache.renders
        #expect(cache.body(for: .text, gzip: false, store: store, second: 101).bytes === fresh)
        #expect(cache.renders == renders100)
        // Two seconds late: rendered for the scrape.
        #expect(cache.body(for: .text, gzip: false, store: store, second: 102).bytes !== fresh)

        // A format nobody asked for in the last 65 s is not rendered ahead any more.
        #expect(!cache.prepare(store: store, second: 170, now: 169.9))
    }

    @Test func servedFormatsAndEncodings() async throws {
        var config = Config()
        config.integrationType = .mock
        config.port = 0
        let exporter = try ExporterService(config: config, configPath: "/nonexistent", logger: Logger(level: .error))
        defer { exporter.stop() }
        await exporter.refresher.refreshCycle()
        let connection = try RawHTTPConnection(port: exporter.port)
        let plain = try connection.request("GET", "/metrics")
        let openMetrics = try connection.request("GET", "/metrics", headers: ["Accept: " + Self.prometheus2Accept, "Accept-Encoding: gzip"])
        #expect(openMetrics.headers["content-type"] == "application/openmetrics-text; version=1.0.0; charset=utf-8")
        #expect(openMetrics.headers["content-encoding"] == "gzip")
        #expect(openMetrics.headers["vary"] == "Accept, Accept-Encoding")
        #expect(openMetrics.body.prefix(2) == [0x1F, 0x8B])
        #expect(openMetrics.body.count < plain.body.count / 3)
        let gzippedText = try connection.request("GET", "/metrics", headers: ["Accept-Encoding: gzip, deflate"])
        #expect(gzippedText.headers["content-type"] == ExpositionFormat.text.contentType)
        #expect(gzippedText.headers["content-encoding"] == "gzip")
        #expect(plain.headers["content-encoding"] == nil)
    }
}
