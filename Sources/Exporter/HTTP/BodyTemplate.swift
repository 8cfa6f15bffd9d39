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
///
/// While scrapers ask only for gzip, the fixed parts are kept only compressed (a tenth of the
/// text's size); a scrape that then asks for plain text inflates them back once.
final class BodyTemplate: Sendable {
    private enum Part: Sendable {
        /// Families that depend only on the snapshot: the index of their text in `fixed`.
        case fixed(Int)
        /// An age family: the scrape time minus each sample of its timestamp family.
        case ages(MetricDefinition, of: [Sample])
        /// A family of the process' own figures.
        case process(MetricDefinition)
    }

    /// A family's text is kept in pieces of about this size, each made as it is rendered: the
    /// largest family (a sample per backup) is never also one array copied into its piece.
    static let pieceBytes = 64 * 1024

    /// Plain bodies up to this size are sent as one buffer, larger ones as the template's pieces.
    static let largestCopiedBody = 256 * 1024

    let generation: UInt64
    let format: ExpositionFormat
    private let snapshotVersion: String
    private let parts: [Part]
    /// The fixed parts' text and/or their compressed segment (compressed at the first gzip asked
    /// for); at least one of the two is there for each.
    private let fixed: Mutex<[FixedPart]>

    private struct FixedPart: Sendable {
        var text: SharedBytes?
        var compressed: Gzip.Segment?
        /// The pieces of `text` by family, for the next snapshot's template to take those that
        /// have not changed; let go with `text`, and empty once text was inflated again.
        var families: [String: SharedBytes] = [:]
    }

    /// `previous`, the template of an earlier snapshot in the same format: a family whose text
    /// is unchanged is that template's text, not a copy (a refresh publishes a snapshot per
    /// collector, each of which changes a few families of a body of up to 10 MB).
    init(snapshot: MetricsSnapshot, generation: UInt64, format: ExpositionFormat, previous: BodyTemplate? = nil) {
        self.generation = generation
        self.format = format
        snapshotVersion = snapshot.version
        let earlierTexts = previous?.format == format ? previous?.familyTexts() ?? [:] : [:]
        let ageSources = Set(Metric.all.compactMap { definition -> String? in
            if case .ageOf(let timestamps)? = definition.perScrape { return timestamps }
            return nil
        })
        // A family at a time (`forEachFamily`), its samples let go once it is text: a template
        // never holds every sample at once, nor the samples and all the text (at 1,000 servers x
        // 60 backups, 16 MB of samples and 9.8 MB of text). What the age families are computed
        // from is kept as samples.
        var definitions: [MetricDefinition] = []
        var texts: [String: SharedBytes] = [:]
        var timestampsByName: [String: [Sample]] = [:]
        MetricsBuilder.forEachFamily(snapshot, now: 0) { family in
            let name = family.definition.name
            definitions.append(family.definition)
            if ageSources.contains(name) { timestampsByName[name] = family.samples }
            guard family.definition.perScrape == nil else { return }
            var pieces: [SharedBytes] = []
            TextRenderer.render(family, format: format, pieceBytes: Self.pieceBytes) { pieces.append(SharedBytes($0)) }
            let text = pieces.count == 1 ? pieces[0] : SharedBytes(joining: pieces)
            if let earlier = earlierTexts[name], earlier.hasSameBytes(as: text) {
                texts[name] = earlier
            } else {
                texts[name] = text
            }
        }
        // Every family a body can have, in the order a full render prints them.
        for definition in Metric.all where definition.perScrape == .processStatistics { definitions.append(definition) }
        definitions.sort { $0.name < $1.name }
        var parts: [Part] = []
        var fixed: [FixedPart] = []
        func appendFixed(_ part: FixedPart) {
            parts.append(.fixed(fixed.count))
            fixed.append(part)
        }
        // A run of fixed families is kept as one text in pieces, a family each.
        var run: [(name: String, text: SharedBytes)] = []
        func closeRun() {
            if !run.isEmpty {
                appendFixed(FixedPart(text: SharedBytes(joining: run.map(\.text)), families: Dictionary(run, uniquingKeysWith: { first, _ in first })))
            }
            run = []
        }
        for definition in definitions {
            switch definition.perScrape {
            case nil:
                if let text = texts[definition.name] { run.append((definition.name, text)) }
            case .ageOf(let timestamps)?:
                closeRun()
                parts.append(.ages(definition, of: timestampsByName[timestamps] ?? []))
            case .processStatistics?:
                closeRun()
                parts.append(.process(definition))
            }
        }
        closeRun()
        if format == .openMetrics { appendFixed(FixedPart(text: SharedBytes(TextRenderer.terminator))) }
        self.parts = parts
        self.fixed = Mutex(fixed)
    }

    /// The body at `now` (whole seconds), with `process` figures: plain and/or gzipped, as
    /// asked. A gzip that zlib fails to make is nil. The plain body is the fixed parts' text
    /// itself with this second's families between, not a copy.
    func body(now: Double, process: ProcessStatistics?, plain wantsPlain: Bool = true, gzip wantsGzip: Bool) -> (plain: SharedBytes?, gzip: SharedBytes?) {
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
        func plain() -> SharedBytes? {
            guard let texts = fixedTexts() else { return nil }
            let pieces = SharedBytes(joining: parts.indices.compactMap { index in
                if case .fixed(let position) = parts[index] { return texts[position] }
                return rendered[index].map(SharedBytes.init)
            })
            // A small body is made one buffer (once a second at most): libmicrohttpd then sends
            // headers and body in one write, where a vector of many small pieces costs a send
            // per request more (a few percent of the requests a second of the small dataset).
            return pieces.count <= Self.largestCopiedBody ? SharedBytes(pieces.bytes) : pieces
        }
        func gzip() -> SharedBytes? {
            guard let compressed = compressedFixedParts() else { return plain().flatMap { $0.withContiguousBytes { Gzip.compress($0) } }.map(SharedBytes.init) }
            var segments: [Gzip.Segment] = []
            for (index, part) in parts.enumerated() {
                if case .fixed(let position) = part {
                    if compressed[position].length > 0 { segments.append(compressed[position]) }
                } else if let bytes = rendered[index], !bytes.isEmpty {
                    // A few kB that change every second: stored, not compressed (the body grows
                    // by that much, and a second costs no deflate).
                    segments.append(Gzip.storedSegment(bytes))
                }
            }
            return SharedBytes(Gzip.join(segments))
        }
        return (wantsPlain ? plain() : nil, wantsGzip ? gzip() : nil)
    }

    /// Makes ahead what the next bodies will need: the compressed fixed parts when gzip is
    /// asked for; when plain text is not, the fixed parts' text is let go (the largest part of
    /// the exporter's memory under a Prometheus that asks for gzip, as Prometheus does).
    func prepare(plain: Bool, gzip: Bool) {
        guard gzip, compressedFixedParts() != nil, !plain else { return }
        fixed.withLock { fixed in
            for position in fixed.indices where fixed[position].compressed != nil {
                fixed[position].text = nil
                fixed[position].families = [:]
            }
        }
    }

    /// Bytes of fixed-part text held now (what `prepare` lets go when only gzip is asked for).
    var fixedTextBytes: Int {
        fixed.withLock { $0.reduce(0) { $0 + ($1.text?.count ?? 0) } }
    }

    /// The fixed families' text still held, by family name.
    private func familyTexts() -> [String: SharedBytes] {
        fixed.withLock { fixed in
            fixed.reduce(into: [:]) { texts, part in texts.merge(part.families) { first, _ in first } }
        }
    }

    /// Every fixed part's text (inflated again where only its compressed segment was kept, and
    /// kept from then on); nil if zlib failed.
    private func fixedTexts() -> [SharedBytes]? {
        fixed.withLock { fixed in
            var texts: [SharedBytes] = []
            texts.reserveCapacity(fixed.count)
            for position in fixed.indices {
                if let text = fixed[position].text { texts.append(text); continue }
                guard let segment = fixed[position].compressed,
                      let text = SharedBytes(count: segment.length, filling: { Gzip.content(of: segment, into: $0) }) else { return nil }
                fixed[position].text = text
                texts.append(text)
            }
            return texts
        }
    }

    /// Every fixed part compressed, once per template; nil if zlib failed.
    private func compressedFixedParts() -> [Gzip.Segment]? {
        fixed.withLock { fixed in
            var segments: [Gzip.Segment] = []
            segments.reserveCapacity(fixed.count)
            for position in fixed.indices {
                if let segment = fixed[position].compressed { segments.append(segment); continue }
                guard let text = fixed[position].text, let segment = Gzip.segment(pieces: text.chunks) else { return nil }
                fixed[position].compressed = segment
                segments.append(segment)
            }
            return segments
        }
    }
}
