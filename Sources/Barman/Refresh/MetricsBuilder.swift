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

    /// The same families (without a process), one at a time and a collector's at a time, each
    /// let go once `body` returns: what a template renders from, so it never holds every
    /// collector's samples at once (at 1,000 servers x 60 backups, about 16 MB of them). The
    /// order is not the body's; each family comes whole from one collector (every family is
    /// declared by the collector that emits it, and declared once).
    public static func forEachFamily(_ snapshot: MetricsSnapshot, now: Double, _ body: (MetricFamily) -> Void) {
        let scrape = Scrape(now: now, process: nil)
        for collector in collectors {
            var builder = FamilyBuilder()
            builder.declared = Set(collector.metrics.map(\.name))
            collector.emit(snapshot, scrape, into: &builder)
            var families = builder.build()
            builder = FamilyBuilder()  // its unsorted samples go now, not after the last family
            for index in families.indices {
                body(families[index])
                families[index].samples = []
            }
        }
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
