import Synchronization
import Barman
import Exposition
import Platform

/// A snapshot's body in one format, rendered once with the families that depend on the second
/// of the scrape left open: ages (`barman_last_backup`, `barman_first_backup`) and the process'
/// figures. Each second only those are rendered (a few hundred samples against tens of
/// thousands) and joined with the rest; for gzip, the rest is compressed once too, the open
/// parts are added as stored deflate blocks, and the pieces are joined into one gzip member. The bytes are those of a full render for that
/// second (`TextRenderer.render(MetricsBuilder.families(...))`; a test compares them).
final class BodyTemplate: Sendable {
    private enum Part: Sendable {
        /// Families that depend only on the snapshot, rendered.
        case fixed([UInt8])
        /// An age family: the scrape time minus each sample of its timestamp family.
        case ages(MetricDefinition, of: [Sample])
        /// A family of the process' own figures.
        case process(MetricDefinition)
    }

    let generation: UInt64
    let format: ExpositionFormat
    private let snapshotVersion: String
    private let parts: [Part]
    /// The fixed parts compressed, made at the first gzip asked for (index: part's position).
    private let compressedParts = Mutex<[Int: Gzip.Segment]?>(nil)

    init(snapshot: MetricsSnapshot, generation: UInt64, format: ExpositionFormat) {
        self.generation = generation
        self.format = format
        snapshotVersion = snapshot.version
        // Without a process, and at any second: the per-scrape families are filled in later.
        let families = MetricsBuilder.families(snapshot, now: 0)
        let byName = Dictionary(families.map { ($0.definition.name, $0) }) { first, _ in first }
        // Every family a body can have, in the order a full render prints them.
        var definitions = families.map(\.definition)
        for definition in Metric.all where definition.perScrape == .processStatistics { definitions.append(definition) }
        definitions.sort { $0.name < $1.name }
        var parts: [Part] = []
        var run: [MetricFamily] = []
        func closeRun() {
            if !run.isEmpty { parts.append(.fixed(TextRenderer.render(run, format: format, terminated: false))) }
            run = []
        }
        for definition in definitions {
            switch definition.perScrape {
            case nil:
                if let family = byName[definition.name] { run.append(family) }
            case .ageOf(let timestamps)?:
                closeRun()
                parts.append(.ages(definition, of: byName[timestamps]?.samples ?? []))
            case .processStatistics?:
                closeRun()
                parts.append(.process(definition))
            }
        }
        closeRun()
        if format == .openMetrics { parts.append(.fixed(TextRenderer.terminator)) }
        self.parts = parts
    }

    /// The body at `now` (whole seconds), with `process` figures: plain and/or gzipped, as
    /// asked. A gzip that zlib fails to make is nil.
    func body(now: Double, process: ProcessStatistics?, plain wantsPlain: Bool = true, gzip wantsGzip: Bool) -> (plain: [UInt8]?, gzip: [UInt8]?) {
        let processFamilies = process.map { figures in
            Dictionary(MetricsBuilder.families(MetricsSnapshot(version: snapshotVersion), now: now, process: figures)
                .filter { $0.definition.perScrape == .processStatistics }
                .map { ($0.definition.name, $0) }) { first, _ in first }
        } ?? [:]
        // The open parts of this second, rendered; nil for a fixed part, taken as it is.
        let rendered: [[UInt8]?] = parts.map { part in
            switch part {
            case .fixed:
                return nil
            case .ages(let definition, let timestamps):
                let family = MetricFamily(definition: definition, samples: timestamps.map { Sample($0.labelValues, now - $0.value) })
                return family.samples.isEmpty ? [] : TextRenderer.render([family], format: format, terminated: false)
            case .process(let definition):
                return processFamilies[definition.name].map { TextRenderer.render([$0], format: format, terminated: false) } ?? []
            }
        }
        func plain() -> [UInt8] {
            var plain: [UInt8] = []
            plain.reserveCapacity(parts.reduce(0) { if case .fixed(let bytes) = $1 { $0 + bytes.count } else { $0 + 256 } })
            for (index, part) in parts.enumerated() {
                if case .fixed(let bytes) = part { plain.append(contentsOf: bytes) } else if let bytes = rendered[index] { plain.append(contentsOf: bytes) }
            }
            return plain
        }
        func gzip() -> [UInt8]? {
            guard let fixed = compressedFixedParts() else { return Gzip.compress(plain()) }
            var segments: [Gzip.Segment] = []
            for (index, part) in parts.enumerated() {
                if case .fixed = part {
                    if let segment = fixed[index] { segments.append(segment) }
                } else if let bytes = rendered[index], !bytes.isEmpty {
                    // A few kB that change every second: stored, not compressed (the body grows
                    // by that much, and a second costs no deflate).
                    segments.append(Gzip.storedSegment(bytes))
                }
            }
            return Gzip.join(segments)
        }
        return (wantsPlain ? plain() : nil, wantsGzip ? gzip() : nil)
    }

    /// Makes ahead what the first body will need (the compressed fixed parts, for gzip).
    func prepare(gzip: Bool) {
        if gzip { _ = compressedFixedParts() }
    }

    /// The fixed parts compressed, once per template; nil if zlib failed.
    private func compressedFixedParts() -> [Int: Gzip.Segment]? {
        compressedParts.withLock { compressed in
            if let compressed { return compressed }
            var made: [Int: Gzip.Segment] = [:]
            for (index, part) in parts.enumerated() {
                guard case .fixed(let bytes) = part, !bytes.isEmpty else { continue }
                guard let segment = Gzip.segment(bytes) else { return nil }
                made[index] = segment
            }
            compressed = made
            return made
        }
    }
}
