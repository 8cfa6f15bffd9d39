import Synchronization
import Platform
import Exposition
import Configuration
import Barman

/// The rendered `/metrics` bodies, per format and encoding, and each snapshot's `BodyTemplate`.
///
/// Ages are computed in whole seconds of the scrape time, so a body is exact for every scrape in
/// the same second of the same snapshot. In the daemon the `Renderer` (through `prepare`) makes
/// a new snapshot's template once snapshots settle (`settleTime`), for the formats asked for in
/// the last `demandWindow` seconds, and each second's body ahead while scrapes come steadily
/// (`busyWindow`): a scrape then costs a lock and a reference copy. Otherwise (an occasional
/// scraper) a scrape's body is made when it comes, from the newest template: only the families
/// that depend on its second are rendered. A scrape makes a whole template only when there is
/// none yet, or without a renderer (`--once`, tests).
public final class ExpositionCache: Sendable {
    /// A second's body in one format: plain, gzip, or both, as scrapers asked for them.
    public struct Body: Sendable {
        public let generation: UInt64
        public let second: Double
        public let plain: SharedBytes?
        public let gzip: SharedBytes?

        func bytes(gzip wantsGzip: Bool) -> SharedBytes? { wantsGzip ? gzip : plain }

        /// This body with what `other` (of the same second and snapshot) has and it lacks.
        func merged(with other: Body?) -> Body {
            guard let other, other.generation == generation, other.second == second else { return self }
            return Body(generation: generation, second: second, plain: plain ?? other.plain, gzip: gzip ?? other.gzip)
        }
    }

    /// What scrapers asked for: a new snapshot's template is made ahead while a format was asked
    /// for within this many seconds (a Prometheus scraping once a minute keeps it so)...
    static let demandWindow: Double = 65
    /// ...and each second's body while it was asked for within this many: under a steady load
    /// every second is served from a body made ahead, while a scrape every 15 s costs 4 small
    /// per-second renders a minute, not 60.
    static let busyWindow: Double = 2
    /// A new snapshot's template is made ahead once no newer one has come for this long: a
    /// refresh publishes a snapshot per collector, several within a second or two, and each
    /// template is a whole render (about 50 ms at 200 servers x 60 backups; four a refresh
    /// were most of the exporter's CPU under a Prometheus scraping every 15 s)...
    static let settleTime: Double = 0.5
    /// ...and at the latest this long after the renderer first found it outdated. Meanwhile a
    /// scrape is served from the previous snapshot's template (its ages of this second), so no
    /// scrape waits for a whole render, and none gets data older than this plus the time the
    /// renderer takes to make a template.
    static let settleLimit: Double = 3

    private struct State {
        /// Per format: the bodies of the two newest seconds (this one and, rendered ahead, the
        /// next; or the previous one and this one).
        var bodies: [ExpositionFormat: [Body]] = [:]
        /// Per format: when a scrape last asked for it plain, and gzipped.
        var demand: [ExpositionFormat: (plainAsked: Double?, gzipAsked: Double?)] = [:]
        /// The newest snapshot the renderer has seen, and when it first saw it.
        var seen: (generation: UInt64, at: Double)?
        /// Per format: since when the renderer has held back an outdated template (`settleTime`).
        var templateHeldBackSince: [ExpositionFormat: Double] = [:]
    }

    private let state = Mutex(State())
    private let renderCount = Atomic<Int>(0)
    private let templateCount = Atomic<Int>(0)
    /// Per format, the newest snapshot's template.
    private let templates = Mutex<[ExpositionFormat: BodyTemplate]>([:])
    /// Held while a template is made (`template`).
    private let templateMaking = Mutex<Void>(())
    /// Whether a renderer is preparing bodies ahead now; then a scrape that finds the body of
    /// its second for the previous snapshot serves it while the new one is being rendered.
    private let rendererRunning = Atomic<Bool>(false)

    public init() {}

    /// Marks the renderer running for the duration of `body` (`Renderer`).
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

    /// The body a scrape at `second` may be served without rendering: the one of this second
    /// and snapshot; with a renderer running, while it is late for this second, the previous
    /// second's of this snapshot (ages a second behind), and while it renders a snapshot
    /// published a moment ago, the one of this second for an older snapshot. In that order: a
    /// snapshot published just before a second starts, after the renderer made that second's
    /// body ahead, would otherwise have its previous second's body served and then the older
    /// snapshot's, data going back in time between two scrapes.
    private static func ready(_ bodies: [Body], generation: UInt64, second: Double, gzip: Bool, rendererRunning: Bool) -> Body? {
        let usable = bodies.filter { $0.bytes(gzip: gzip) != nil }
        if let exact = usable.first(where: { $0.generation == generation && $0.second == second }) { return exact }
        guard rendererRunning else { return nil }
        // The renderer is late (a busy host): ages one second behind rather than a render
        // while the scraper waits.
        if let previous = usable.first(where: { $0.second == second - 1 && $0.generation == generation }) { return previous }
        return usable.filter { $0.second == second }.max { $0.generation < $1.generation }
    }

    /// Whether a scrape at `second` finds its body without rendering.
    public func hasBody(for format: ExpositionFormat, gzip wantsGzip: Bool, store: SnapshotStore, second: Double) -> Bool {
        let generation = store.versioned.generation
        let running = rendererRunning.load(ordering: .relaxed)
        return state.withLock { state in
            Self.ready(state.bodies[format] ?? [], generation: generation, second: second, gzip: wantsGzip, rendererRunning: running) != nil
        }
    }

    /// The body for a scrape at `second`: a ready one (`ready`), else rendered now.
    public func body(for format: ExpositionFormat, gzip wantsGzip: Bool, store: SnapshotStore, second: Double) -> (bytes: SharedBytes, gzipped: Bool) {
        let (snapshot, generation) = store.versioned
        let running = rendererRunning.load(ordering: .relaxed)
        let (found, exact) = state.withLock { state -> (Body?, Body?) in
            let demand = state.demand[format]
            state.demand[format] = wantsGzip ? (demand?.plainAsked, second) : (second, demand?.gzipAsked)
            let bodies = state.bodies[format] ?? []
            return (Self.ready(bodies, generation: generation, second: second, gzip: wantsGzip, rendererRunning: running),
                    bodies.first { $0.generation == generation && $0.second == second })
        }
        if let found, let bytes = found.bytes(gzip: wantsGzip) { return (bytes, wantsGzip) }
        // With a renderer, a scrape never makes a whole template while one exists: the renderer
        // makes the new snapshot's (`prepare`), and meanwhile the newest template gives this
        // second's body. A scrape that made it itself waited 3-4 s for it during a first refresh
        // at 1,000 servers (on the nice +10 render worker, a snapshot published every few ms and
        // the CPU busy with barman).
        let newest = running ? templates.withLock { $0[format] } : nil
        let body = render(newest ?? template(snapshot, generation: generation, format: format),
                          second: second, plain: !wantsGzip, gzip: wantsGzip).merged(with: exact)
        keep(body, format: format)
        if let bytes = body.bytes(gzip: wantsGzip) { return (bytes, wantsGzip) }
        // zlib failed: the body goes uncompressed.
        let plain = body.plain ?? render(template(snapshot, generation: generation, format: format), second: second, plain: true, gzip: false).plain
        return (plain ?? SharedBytes([]), false)
    }

    /// For the renderer: the current snapshot's template for every format asked for lately
    /// (compressed if gzip was), and the body of `second` in every format and encoding asked for
    /// in the last `busyWindow` seconds, unless already there. True when it rendered.
    public func prepare(store: SnapshotStore, second: Double, now: Double) -> Bool {
        let (snapshot, generation) = store.versioned
        let (wanted, settled) = state.withLock { state in
            if state.seen?.generation != generation { state.seen = (generation, now) }
            let settled = now - (state.seen?.at ?? now) >= Self.settleTime
            return (state.demand.compactMap { format, demand -> (format: ExpositionFormat, plain: Bool, gzip: Bool, busy: Bool, rendered: Body?)? in
                let rendered = state.bodies[format]?.first { $0.generation == generation && $0.second == second }
                func asked(_ time: Double?, within window: Double) -> Bool { time.map { now - $0 < window } ?? false }
                let plain = asked(demand.plainAsked, within: Self.demandWindow)
                let gzip = asked(demand.gzipAsked, within: Self.demandWindow)
                guard plain || gzip else { return nil }
                let busy = asked(max(demand.plainAsked ?? -1, demand.gzipAsked ?? -1), within: Self.busyWindow)
                return (format, plain, gzip, busy, rendered)
            }, settled)
        }
        // A format nobody asks for any more lets go of its template once the snapshot moved on
        // (it can never be served again; about 2 MB of text at 200 x 60 after a plain scrape).
        templates.withLock { templates in
            templates = templates.filter { format, template in template.generation == generation || wanted.contains { $0.format == format } }
        }
        var rendered = false
        for (format, plainAsked, gzipAsked, busy, existing) in wanted {
            if busy {
                let plain = plainAsked && existing?.plain == nil, gzip = gzipAsked && existing?.gzip == nil
                guard plain || gzip else { continue }
                keep(render(template(snapshot, generation: generation, format: format), second: second, plain: plain, gzip: gzip).merged(with: existing),
                     format: format)
                rendered = true
            } else if templates.withLock({ $0[format]?.generation }) != generation {
                // Scraped now and then: the snapshot's whole render is made ahead, once snapshots
                // have settled; the few per-second families are rendered when a scrape comes.
                let heldBackSince = state.withLock { state in
                    if state.templateHeldBackSince[format] == nil { state.templateHeldBackSince[format] = now }
                    return state.templateHeldBackSince[format] ?? now
                }
                guard settled || now - heldBackSince >= Self.settleLimit else { continue }
                template(snapshot, generation: generation, format: format).prepare(plain: plainAsked, gzip: gzipAsked)
                rendered = true
            }
        }
        return rendered
    }

    /// The body of `second`, plain and/or gzipped: from the snapshot's template (rendered and
    /// compressed once per snapshot), with the per-second families filled in.
    private func render(_ template: BodyTemplate, second: Double, plain: Bool, gzip: Bool) -> Body {
        // The process figures of this render: at most a second old when served.
        let body = template.body(now: second, process: ProcessStatistics.current(), plain: plain, gzip: gzip)
        // A template made by a scrape (or a busy second) rather than ahead by the renderer lets
        // go of its text too while only gzip is asked for: about 2 MB at 200 servers x 60.
        let demanded = demand(for: template.format, now: second)
        template.prepare(plain: demanded.plain, gzip: demanded.gzip)
        renderCount.add(1, ordering: .relaxed)
        return Body(generation: template.generation, second: second, plain: body.plain, gzip: body.gzip)
    }

    /// Whether `format` was asked for plain, and gzipped, within `demandWindow` of `now`.
    private func demand(for format: ExpositionFormat, now: Double) -> (plain: Bool, gzip: Bool) {
        let demand = state.withLock { $0.demand[format] }
        func asked(_ time: Double?) -> Bool { time.map { now - $0 < Self.demandWindow } ?? false }
        return (asked(demand?.plainAsked), asked(demand?.gzipAsked))
    }

    /// The template of `generation` in `format`, made once (only the newest is kept), one at a
    /// time: the renderer and a scrape's render making theirs at once held two snapshots'
    /// samples (16 MB each at 1,000 servers x 60 backups); the one that waited takes the
    /// other's when it is as new.
    private func template(_ snapshot: MetricsSnapshot, generation: UInt64, format: ExpositionFormat) -> BodyTemplate {
        if let existing = templates.withLock({ $0[format] }), existing.generation == generation { return existing }
        let kept = templateMaking.withLock { _ in
            let existing = templates.withLock { $0[format] }
            if let existing, existing.generation >= generation { return existing }
            let made = BodyTemplate(snapshot: snapshot, generation: generation, format: format, previous: existing)
            templateCount.add(1, ordering: .relaxed)
            templates.withLock { $0[format] = made }
            return made
        }
        // Made, by the renderer or a scrape: nothing is held back any more, and the next
        // snapshot settles from scratch.
        state.withLock { $0.templateHeldBackSince[format] = nil }
        return kept
    }

    /// Bytes of fixed-part text the newest template of `format` holds; nil without one.
    func templateTextBytes(for format: ExpositionFormat) -> Int? {
        templates.withLock { $0[format] }?.fixedTextBytes
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
