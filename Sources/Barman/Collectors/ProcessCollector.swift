import Platform
import Exposition
import Configuration

/// The exporter's process (`process_*`), with the names, types and HELP texts of every
/// Prometheus client library; read from /proc at each render, so absent from `--once`.
public struct ProcessCollector: Collector {
    public init() {}

    public var name: String { "process" }

    public var metrics: [MetricDefinition] {
        [Metric.processCPU, Metric.processResidentMemory, Metric.processVirtualMemory, Metric.processOpenFDs, Metric.processMaxFDs,
         Metric.processStartTime]
    }

    public func emit(_ snapshot: MetricsSnapshot, _ scrape: Scrape, into families: inout FamilyBuilder) {
        guard let process = scrape.process else { return }
        families.add(Metric.processCPU, [], process.cpuSeconds)
        families.add(Metric.processResidentMemory, [], process.residentBytes)
        families.add(Metric.processVirtualMemory, [], process.virtualBytes)
        families.add(Metric.processOpenFDs, [], process.openFileDescriptors)
        families.add(Metric.processMaxFDs, [], process.maxFileDescriptors)
        families.add(Metric.processStartTime, [], process.startTimeSeconds)
    }
}

extension Metric {
    public static let processCPU = MetricDefinition(
        "process_cpu_seconds_total", .counter, "Total user and system CPU time spent in seconds.", perScrape: .processStatistics)
    public static let processResidentMemory = MetricDefinition(
        "process_resident_memory_bytes", .gauge, "Resident memory size in bytes.", perScrape: .processStatistics)
    public static let processVirtualMemory = MetricDefinition(
        "process_virtual_memory_bytes", .gauge, "Virtual memory size in bytes.", perScrape: .processStatistics)
    public static let processOpenFDs = MetricDefinition(
        "process_open_fds", .gauge, "Number of open file descriptors.", perScrape: .processStatistics)
    public static let processMaxFDs = MetricDefinition(
        "process_max_fds", .gauge, "Maximum number of open file descriptors.", perScrape: .processStatistics)
    public static let processStartTime = MetricDefinition(
        "process_start_time_seconds", .gauge, "Start time of the process since unix epoch in seconds.", perScrape: .processStatistics)

}
