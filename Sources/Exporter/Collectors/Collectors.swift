/// Every collector, one line each: the refresher runs them and a response is what they emit.
public enum Collectors {
    /// New instances: a reload that changes the barman source starts again from fresh ones.
    public static func all() -> [any Collector] {
        [
            ListBackupsCollector(),
            BackupDetailsCollector(),
            ChecksCollector(),
            ReplicationStatusCollector(),
            ShowServersCollector(),
            WALCatalogCollector(),
            VersionCollector(),
            ExporterHealthCollector(),
            ProcessCollector(),
        ]
    }
}
