/// Prometheus metric types the exporter uses.
public enum MetricType: String, Sendable {
    case gauge
    case counter
}

/// Everything that defines one metric family: the single source of truth for the builder, the
/// renderer and `docs/metrics.md` (a test checks the docs against this table).
public struct MetricDefinition: Sendable, Hashable {
    public var name: String
    public var type: MetricType
    /// HELP text; for the Go and Python exporters' metrics it is kept byte for byte, typos included, because
    /// dashboards and alert rules were written against it.
    public var help: String
    /// Label names, in the (alphabetical) order they are printed.
    public var labels: [String]
    /// How the family depends on the second of the scrape; nil: only on the snapshot. The
    /// exposition renders the rest once per snapshot and these per second.
    public var perScrape: PerScrape?

    public enum PerScrape: Sendable, Hashable {
        /// The scrape time minus each sample of the named family, same labels (an age).
        case ageOf(String)
        /// The process' own figures, read at each render.
        case processStatistics
    }

    package init(_ name: String, _ type: MetricType, _ help: String, labels: [String] = [], perScrape: PerScrape? = nil) {
        self.name = name
        self.type = type
        self.help = help
        self.labels = labels
        self.perScrape = perScrape
    }
}

/// One sample: label values in the order of the definition's `labels`, and the value.
public struct Sample: Sendable, Equatable {
    public var labelValues: [String]
    public var value: Double

    public init(_ labelValues: [String], _ value: Double) {
        self.labelValues = labelValues
        self.value = value
    }
}

/// A metric definition with its samples, ready to render.
public struct MetricFamily: Sendable, Equatable {
    public var definition: MetricDefinition
    public var samples: [Sample]

    public init(definition: MetricDefinition, samples: [Sample]) {
        self.definition = definition
        self.samples = samples
    }
}
