import Synchronization

/// The rendered `/metrics` body of the current snapshot and second, per format, with its gzip
/// made once when first asked for. Ages are computed in whole seconds of the scrape time, so a
/// body is exact for every scrape in the same second of the same snapshot: scrapes in between
/// cost a lock and a reference copy instead of a render.
public final class ExpositionCache: Sendable {
    public struct Body: Sendable {
        public let generation: UInt64
        public let second: Double
        public let plain: SharedBytes
        public let gzip: SharedBytes?
    }

    private let bodies = Mutex<[ExpositionFormat: Body]>([:])

    public init() {}

    public func body(for format: ExpositionFormat, gzip wantsGzip: Bool, store: SnapshotStore, second: Double) -> (bytes: SharedBytes, gzipped: Bool) {
        let (snapshot, generation) = store.versioned
        var body = bodies.withLock { $0[format] }
        if body == nil || body?.generation != generation || body?.second != second {
            let families = MetricsBuilder.families(snapshot, now: second)
            body = Body(generation: generation, second: second, plain: SharedBytes(TextRenderer.render(families, format: format)), gzip: nil)
        }
        guard var current = body else { return (SharedBytes([]), false) }
        if wantsGzip, current.gzip == nil, let compressed = Gzip.compress(current.plain.bytes) {
            current = Body(generation: current.generation, second: current.second, plain: current.plain, gzip: SharedBytes(compressed))
        }
        let stored = current
        bodies.withLock { cache in
            // Keep the newest; a slower scrape must not put back an older body.
            if let existing = cache[format], existing.generation > stored.generation || existing.second > stored.second { return }
            cache[format] = stored
        }
        if wantsGzip, let gzip = current.gzip { return (gzip, true) }
        return (current.plain, false)
    }
}

/// An immutable byte buffer shared between the cache and responses without copying.
public final class SharedBytes: Sendable {
    public let bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
}
