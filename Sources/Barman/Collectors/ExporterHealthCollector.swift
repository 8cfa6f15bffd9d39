import Platform
import Exposition
import Configuration

/// The exporter's own metrics: its version, how each barman command fared, how long the last
/// refresh took. Emits only; the refresher records what it reads.
public struct ExporterHealthCollector: Collector {
    public init() {}

    public var name: String { "exporter" }

    public var metrics: [MetricDefinition] {
        [Metric.metricsUpdate, Metric.buildInfo, Metric.commandSuccess, Metric.commandLastSuccess, Metric.commandDuration,
         Metric.commandRuns, Metric.commandFailures]
    }

    public func emit(_ snapshot: MetricsSnapshot, _ scrape: Scrape, into families: inout FamilyBuilder) {
        families.add(Metric.metricsUpdate, [], snapshot.lastRefreshMilliseconds)
        families.add(Metric.buildInfo, [snapshot.version], 1)
        for (command, health) in snapshot.health {
            let label = [command]
            families.add(Metric.commandSuccess, label, health.lastRunSucceeded ? 1 : 0)
            families.add(Metric.commandLastSuccess, label, health.lastSuccessUnixTime)
            families.add(Metric.commandDuration, label, health.lastRunDurationSeconds)
            families.add(Metric.commandRuns, label, Double(health.runs))
            families.add(Metric.commandFailures, label, Double(health.failures))
        }
    }
}

extension Metric {
    public static let metricsUpdate = MetricDefinition(
        "barman_metrics_update", .gauge,
        "Outputs the time(in ms) it took update all metrics exporter by this exporter")
    public static let buildInfo = MetricDefinition(
        "barman_exporter_build_info", .gauge,
        "A metric with a constant '1' value labeled by the version of prometheus-barman-exporter.", labels: ["version"])
    public static let commandSuccess = MetricDefinition(
        "barman_exporter_command_success", .gauge,
        "Whether the last run of this barman command gave usable output (1) or failed (0); on failure the last good data is still served.",
        labels: ["command"])
    public static let commandLastSuccess = MetricDefinition(
        "barman_exporter_command_last_success_timestamp_seconds", .gauge,
        "Unix time of the last run of this barman command that gave usable output.", labels: ["command"])
    public static let commandDuration = MetricDefinition(
        "barman_exporter_command_duration_seconds", .gauge,
        "Wall time of the last run of this barman command in seconds.", labels: ["command"])
    public static let commandRuns = MetricDefinition(
        "barman_exporter_command_runs_total", .counter,
        "Runs of this barman command since the exporter started.", labels: ["command"])
    public static let commandFailures = MetricDefinition(
        "barman_exporter_command_failures_total", .counter,
        "Runs of this barman command that failed (error exit, timeout, invalid output) since the exporter started.",
        labels: ["command"])

}
