/// The two exposition formats served.
public enum ExpositionFormat: Sendable, Hashable {
    /// Prometheus text format 0.0.4, understood by every scraper.
    case text
    /// OpenMetrics 1.0.0, for scrapers that ask for it (Prometheus does).
    case openMetrics

    public var contentType: String {
        switch self {
        case .text: return "text/plain; version=0.0.4; charset=utf-8"
        case .openMetrics: return "application/openmetrics-text; version=1.0.0; charset=utf-8"
        }
    }
}

/// Renders metric families in the Prometheus text format 0.0.4 or OpenMetrics 1.0.0.
///
/// Escaping follows each format: label values escape `\`, `"` and newline in both; HELP escapes
/// `\` and newline in 0.0.4, and `"` too in OpenMetrics. OpenMetrics names a counter family
/// without its `_total` suffix, puts TYPE before HELP, and ends with `# EOF`. Values use the
/// shortest representation that parses back to the same double.
public enum TextRenderer {
    /// The body of `families`; `terminated: false` leaves out OpenMetrics' `# EOF` (a part of a
    /// body that others follow).
    public static func render(_ families: [MetricFamily], format: ExpositionFormat = .text, terminated: Bool = true) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(families.reduce(0) { $0 + 160 + $1.samples.count * 64 })
        for family in families {
            appendMetadata(of: family.definition, format: format, to: &out)
            for sample in family.samples { appendSample(sample, of: family.definition, to: &out) }
        }
        if format == .openMetrics && terminated { out.append(contentsOf: terminator) }
        return out
    }

    /// One family's text (no `# EOF`) in pieces of about `pieceBytes` each, handed to `piece`
    /// as they are made: a family of tens of thousands of samples is never one array that its
    /// keeper then copies.
    public static func render(_ family: MetricFamily, format: ExpositionFormat, pieceBytes: Int, _ piece: ([UInt8]) -> Void) {
        var out: [UInt8] = []
        out.reserveCapacity(min(pieceBytes + 512, 160 + family.samples.count * 64))
        appendMetadata(of: family.definition, format: format, to: &out)
        for sample in family.samples {
            appendSample(sample, of: family.definition, to: &out)
            if out.count >= pieceBytes {
                piece(out)
                out.removeAll(keepingCapacity: true)
            }
        }
        if !out.isEmpty { piece(out) }
    }

    private static func appendMetadata(of definition: MetricDefinition, format: ExpositionFormat, to out: inout [UInt8]) {
        switch format {
        case .text:
            appendMetadata("HELP", definition.name, to: &out)
            appendEscaped(definition.help, escapeQuotes: false, to: &out)
            out.append(0x0A)
            appendMetadata("TYPE", definition.name, to: &out)
            out.append(contentsOf: definition.type.rawValue.utf8)
            out.append(0x0A)
        case .openMetrics:
            var familyName = Substring(definition.name)
            if definition.type == .counter, familyName.hasSuffix("_total") { familyName = familyName.dropLast(6) }
            appendMetadata("TYPE", String(familyName), to: &out)
            out.append(contentsOf: definition.type.rawValue.utf8)
            out.append(0x0A)
            appendMetadata("HELP", String(familyName), to: &out)
            appendEscaped(definition.help, escapeQuotes: true, to: &out)
            out.append(0x0A)
        }
    }

    private static func appendSample(_ sample: Sample, of definition: MetricDefinition, to out: inout [UInt8]) {
        out.append(contentsOf: definition.name.utf8)
        appendLabels(definition.labels, sample.labelValues, to: &out)
        out.append(0x20)
        out.append(contentsOf: formatValue(sample.value).utf8)
        out.append(0x0A)
    }

    /// What ends an OpenMetrics body.
    public static let terminator = Array("# EOF\n".utf8)

    private static func appendMetadata(_ keyword: String, _ name: String, to out: inout [UInt8]) {
        out.append(contentsOf: "# ".utf8)
        out.append(contentsOf: keyword.utf8)
        out.append(0x20)
        out.append(contentsOf: name.utf8)
        out.append(0x20)
    }

    static func appendLabels(_ names: [String], _ values: [String], to out: inout [UInt8]) {
        guard !names.isEmpty else { return }
        out.append(UInt8(ascii: "{"))
        for (index, name) in names.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            out.append(contentsOf: name.utf8)
            out.append(contentsOf: "=\"".utf8)
            appendEscaped(index < values.count ? values[index] : "", escapeQuotes: true, to: &out)
            out.append(UInt8(ascii: "\""))
        }
        out.append(UInt8(ascii: "}"))
    }

    static func appendEscaped(_ text: String, escapeQuotes: Bool, to out: inout [UInt8]) {
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\\"): out.append(contentsOf: [0x5C, 0x5C])
            case UInt8(ascii: "\n"): out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case UInt8(ascii: "\"") where escapeQuotes: out.append(contentsOf: [0x5C, 0x22])
            default: out.append(byte)
            }
        }
    }

    /// `1`, `0.5`, `1e+16`, `NaN`, `+Inf`: integers without a fraction, everything else as the
    /// shortest string that round-trips (Swift's `description`), with Prometheus' spellings of
    /// the special values.
    public static func formatValue(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value < 0 ? "-Inf" : "+Inf" }
        if value == value.rounded(.towardZero), abs(value) < 1e15 {
            return String(Int64(value))
        }
        return value.description
    }
}
