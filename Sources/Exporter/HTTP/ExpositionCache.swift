import Synchronization
import Platform
import Exposition
import Configuration
import Barman

/// The rendered `/metrics` bodies, per format, with their gzip made once.
///
/// Ages are computed in whole seconds of the scrape time, so a body is exact for every scrape in
/// the same second of the same snapshot. In the daemon a renderer (`prepare`, driven by the
/// thread `ExporterService.startRenderer` starts) renders each second's body before the second starts, for
/// the formats scrapers asked for in the last `demandWindow` seconds, and a new snapshot's body as
/// soon as it is published: a scrape then costs a lock and a reference copy, never a render.
/// Without the renderer (tests, or a format nobody asked for lately) a scrape renders the body
/// itself, once per second and snapshot.
public final class ExpositionCache: Sendable {
    public struct Body: Sendable {
        public let generation: UInt64
        public let second: Double
        public let plain: SharedBytes
        public let gzip: SharedBytes?

        func withGzip(_ gzip: SharedBytes) -> Body {
            Body(generation: generation, second: second, plain: plain, gzip: gzip)
        }
    }

    /// What scrapers asked for: a format is rendered ahead while one was asked for within this
    /// many seconds (a Prometheus scraping once a minute keeps it so).
    static let demandWindow: Double = 65

    private struct State {
        /// Per format: the bodies of the two newest seconds (this one and, rendered ahead, the
        /// next; or the previous one and this one).
        var bodies: [ExpositionFormat: [Body]] = [:]
        /// Per format: when a scrape last asked for it, and when one last asked for gzip.
        var demand: [ExpositionFormat: (asked: Double, gzipAsked: Double?)] = [:]
    }

    private let state = Mutex(State())
    private let renderCount = Atomic<Int>(0)
    private let templateCount = Atomic<Int>(0)
    /// Per format, the newest snapshot's template.
    private let templates = Mutex<[ExpositionFormat: BodyTemplate]>([:])
    /// Whether a renderer is preparing bodies ahead now; then a scrape that finds the body of
    /// its second for the previous snapshot serves it while the new one is being rendered.
    private let rendererRunning = Atomic<Bool>(false)

    public init() {}

    /// Marks the renderer running for the duration of `body` (`ExporterService.startRenderer`).
    func withRenderer<T>(_ body: () throws -> T) rethrows -> T {
        rendererRunning.store(true, ordering: .relaxed)
        defer { rendererRunning.store(false, ordering: .relaxed) }
        return try body()
    }

    /// How many bodies have been rendered so far (each one leaves the previous one as garbage).
    public var renders: Int { renderCount.load(ordering: .relaxed) }

    /// Drops bodies rendered for a second before `second`: they can never be served again (ages
    /// have moved on), and the large ones would otherwise sit in memory until the next scrape.
    /// True when something was dropped.
    @discardableResult
    public func dropExpired(before second: Double) -> Bool {
        state.withLock { state in
            var dropped = false
            for (format, bodies) in state.bodies {
                let kept = bodies.filter { $0.second >= second }
                if kept.count != bodies.count {
                    dropped = true
                    state.bodies[format] = kept.isEmpty ? nil : kept
                }
            }
            return dropped
        }
    }

    /// Whether a scrape at `second` finds its body without rendering (the renderer prepared it,
    /// or an earlier scrape of this second rendered it). A gzip asked for and not made yet
    /// counts as a render.
    public func hasBody(for format: ExpositionFormat, gzip wantsGzip: Bool, store: SnapshotStore, second: Double) -> Bool {
        let generation = store.versioned.generation
        let running = rendererRunning.load(ordering: .relaxed)
        return state.withLock { state in
            let bodies = state.bodies[format] ?? []
            let found = bodies.first { $0.generation == generation && $0.second == second }
                ?? (running ? bodies.filter { $0.second == second }.max { $0.generation < $1.generation } : nil)
                ?? (running ? bodies.first { $0.second == second - 1 && $0.generation == generation } : nil)
            guard let found else { return false }
            return !wantsGzip || found.gzip != nil
        }
    }

    /// The body for a scrape at `second`: the one rendered for this second and the current
    /// snapshot. With a renderer running, while it renders a snapshot published a moment ago,
    /// the one of this second for the previous snapshot, and while it is late for this second,
    /// the previous second's. Otherwise rendered now.
    public func body(for format: ExpositionFormat, gzip wantsGzip: Bool, store: SnapshotStore, second: Double) -> (bytes: SharedBytes, gzipped: Bool) {
        let (snapshot, generation) = store.versioned
        let found = state.withLock { state -> Body? in
            state.demand[format] = (second, wantsGzip ? second : state.demand[format]?.gzipAsked)
            let bodies = state.bodies[format] ?? []
            if let exact = bodies.first(where: { $0.generation == generation && $0.second == second }) { return exact }
            guard rendererRunning.load(ordering: .relaxed) else { return nil }
            if let sameSecond = bodies.filter({ $0.second == second }).max(by: { $0.generation < $1.generation }) { return sameSecond }
            // The renderer is late (a busy host): the previous second's body of this snapshot,
            // ages one second behind, rather than a render while the scraper waits.
            return bodies.first { $0.second == second - 1 && $0.generation == generation }
        }
        var body = found ?? render(snapshot, generation: generation, format: format, second: second, gzip: wantsGzip)
        if wantsGzip, body.gzip == nil, let compressed = body.plain.withUnsafeBytes({ Gzip.compress($0) }) {
            body = body.withGzip(SharedBytes(compressed))
        }
        if found == nil || (wantsGzip && found?.gzip == nil) { keep(body, format: format) }
        if wantsGzip, let gzip = body.gzip { return (gzip, true) }
        return (body.plain, false)
    }

    /// For the renderer: the bodies of the current snapshot for `second`, for every format asked
    /// for lately (with gzip when that was asked), unless already there. True when it rendered.
    public func prepare(store: SnapshotStore, second: Double, now: Double) -> Bool {
        let (snapshot, generation) = store.versioned
        let wanted = state.withLock { state in
            state.demand.compactMap { format, demand -> (format: ExpositionFormat, gzip: Bool, rendered: Body?)? in
                guard now - demand.asked < Self.demandWindow else { return nil }
                let gzip = demand.gzipAsked.map { now - $0 < Self.demandWindow } ?? false
                let rendered = state.bodies[format]?.first { $0.generation == generation && $0.second == second }
                if let rendered, !gzip || rendered.gzip != nil { return nil }
                return (format, gzip, rendered)
            }
        }
        for (format, gzip, rendered) in wanted {
            var body = rendered ?? render(snapshot, generation: generation, format: format, second: second, gzip: gzip)
            if gzip, body.gzip == nil, let compressed = body.plain.withUnsafeBytes({ Gzip.compress($0) }) {
                body = body.withGzip(SharedBytes(compressed))
            }
            keep(body, format: format)
        }
        return !wanted.isEmpty
    }

    /// The body of `second`: from the snapshot's template (rendered and compressed once per
    /// snapshot), with the per-second families filled in.
    private func render(_ snapshot: MetricsSnapshot, generation: UInt64, format: ExpositionFormat, second: Double, gzip: Bool) -> Body {
        // The process figures of this render: at most a second old when served.
        let body = template(snapshot, generation: generation, format: format).body(now: second, process: ProcessStatistics.current(), gzip: gzip)
        renderCount.add(1, ordering: .relaxed)
        return Body(generation: generation, second: second, plain: SharedBytes(body.plain), gzip: body.gzip.map(SharedBytes.init))
    }

    /// The template of `generation` in `format`, made once (only the newest is kept).
    private func template(_ snapshot: MetricsSnapshot, generation: UInt64, format: ExpositionFormat) -> BodyTemplate {
        if let existing = templates.withLock({ $0[format] }), existing.generation == generation { return existing }
        let made = BodyTemplate(snapshot: snapshot, generation: generation, format: format)
        templateCount.add(1, ordering: .relaxed)
        return templates.withLock { templates in
            if let existing = templates[format], existing.generation >= generation { return existing }
            templates[format] = made
            return made
        }
    }

    /// How many templates (full renders of a snapshot) have been made.
    public var templatesMade: Int { templateCount.load(ordering: .relaxed) }

    /// Keeps `body` as the one of its second, unless a newer snapshot's is there already (a
    /// slower scrape must not put back an older body); only the two newest seconds are kept.
    private func keep(_ body: Body, format: ExpositionFormat) {
        state.withLock { state in
            var bodies = state.bodies[format] ?? []
            if let existing = bodies.first(where: { $0.second == body.second }), existing.generation > body.generation { return }
            bodies.removeAll { $0.second == body.second }
            bodies.append(body)
            bodies.sort { $0.second < $1.second }
            state.bodies[format] = Array(bodies.suffix(2))
        }
    }
}

/// An immutable byte buffer with a stable address, shared by the cache and every response that
/// sends it: libmicrohttpd sends straight from it (no copy per request) and releases its
/// reference when the response is done.
public final class SharedBytes: @unchecked Sendable {
    // @unchecked: the memory is written once in init and only read afterwards.
    let buffer: UnsafeMutableRawBufferPointer

    public init(_ bytes: [UInt8]) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 1)
        bytes.withUnsafeBytes { source in
            if let base = source.baseAddress, let target = buffer.baseAddress { target.copyMemory(from: base, byteCount: source.count) }
        }
        self.buffer = buffer
        count = bytes.count
    }

    deinit { buffer.deallocate() }

    public let count: Int

    public var bytes: [UInt8] { Array(UnsafeRawBufferPointer(rebasing: buffer[0..<count])) }

    public func withUnsafeBytes<T>(_ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        try body(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
    }
}
