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
    private let renderCount = Atomic<Int>(0)

    public init() {}

    /// How many bodies have been rendered so far (each one leaves the previous one as garbage).
    public var renders: Int { renderCount.load(ordering: .relaxed) }

    /// Drops bodies rendered for a second before `second`: they can never be served again (ages
    /// have moved on), and the large ones would otherwise sit in memory until the next scrape.
    /// True when something was dropped.
    @discardableResult
    public func dropExpired(before second: Double) -> Bool {
        bodies.withLock { cache in
            let before = cache.count
            cache = cache.filter { $0.value.second >= second }
            return cache.count != before
        }
    }

    public func body(for format: ExpositionFormat, gzip wantsGzip: Bool, store: SnapshotStore, second: Double) -> (bytes: SharedBytes, gzipped: Bool) {
        let (snapshot, generation) = store.versioned
        var body = bodies.withLock { $0[format] }
        if body == nil || body?.generation != generation || body?.second != second {
            let families = MetricsBuilder.families(snapshot, now: second)
            body = Body(generation: generation, second: second, plain: SharedBytes(TextRenderer.render(families, format: format)), gzip: nil)
            renderCount.add(1, ordering: .relaxed)
        }
        guard var current = body else { return (SharedBytes([]), false) }
        if wantsGzip, current.gzip == nil, let compressed = current.plain.withUnsafeBytes({ Gzip.compress($0) }) {
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
