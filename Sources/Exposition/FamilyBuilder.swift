/// Collects the samples of every family; families are put in name order at the end.
public struct FamilyBuilder {
    // Keyed by name: hashing a short name per sample, not the whole definition with its HELP.
    private var families: [String: (definition: MetricDefinition, samples: [Sample])] = [:]
    /// The families the collector emitting now declared in its `metrics`.
    package var declared: Set<String> = []
    /// Families emitted by a collector that did not declare them (a test keeps this empty).
    private(set) var undeclared: Set<String> = []

    public init() {}

    /// A sample of `metric`; nothing when `value` is nil (barman did not say).
    public mutating func add(_ metric: MetricDefinition, _ labels: [String], _ value: Double?) {
        guard let value else { return }
        if !declared.contains(metric.name) { undeclared.insert(metric.name) }
        families[metric.name, default: (metric, [])].samples.append(Sample(labels, value))
    }

    public func build() -> [MetricFamily] {
        families.values
            .map { entry in MetricFamily(definition: entry.definition, samples: LabelOrder.sorted(entry.samples)) }
            .sorted { $0.definition.name < $1.definition.name }
    }
}
