import Platform
import Exposition
import Configuration

/// Builds a response's metric families from a snapshot: what every collector emits. Pure: the
/// time of the scrape (and the process' own figures, for the daemon) are passed in, so ages are
/// right at the moment of each scrape and tests need no clock.
public enum MetricsBuilder {
    /// The collectors whose families a response holds; made once, emission keeps no state.
    static let collectors = Collectors.all()

    public static func families(_ snapshot: MetricsSnapshot, now: Double, process: ProcessStatistics? = nil) -> [MetricFamily] {
        build(snapshot, Scrape(now: now, process: process)).build()
    }

    /// The families, and those a collector emitted without declaring them in its `metrics`.
    static func build(_ snapshot: MetricsSnapshot, _ scrape: Scrape) -> FamilyBuilder {
        var families = FamilyBuilder()
        for collector in collectors {
            families.declared = Set(collector.metrics.map(\.name))
            collector.emit(snapshot, scrape, into: &families)
        }
        return families
    }
}
