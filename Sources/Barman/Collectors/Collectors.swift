import Platform
import Exposition
import Configuration

/// Every collector, one line each: the refresher runs them and a response is what they emit.
public enum Collectors {
    /// New instances: a reload that changes the barman source starts again from fresh ones.
    public static func all() -> [any Collector] {
        [
            ListBackupsCollector(),
            BackupDetailsCollector(),
            BackupBeginWALCollector(),
            ChecksCollector(),
            ReplicationStatusCollector(),
            ShowServersCollector(),
            RunningProcessesCollector(),
            WALCatalogCollector(),
            WALDirectoriesCollector(),
            VersionCollector(),
            ExporterHealthCollector(),
            ProcessCollector(),
        ]
    }
}

/// The metrics the exporter serves. Each is defined, and computed, in the file of the collector
/// that emits it (`Collectors/`); docs/metrics.md says which barman field it comes from.
public enum Metric {
    /// Every family the collectors declare (docs/metrics.md is checked against this list).
    public static let all: [MetricDefinition] = Collectors.all().flatMap(\.metrics)
}
