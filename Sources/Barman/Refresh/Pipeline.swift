import Platform
import Exposition
import Configuration

/// barman -> refresher -> snapshot store: the one place the data path is built, for the daemon
/// and for `--once` alike.
public struct Pipeline: Sendable {
    /// The current snapshot, read by every scrape.
    public let store: SnapshotStore
    public let refresher: Refresher
    /// barman processes of every runner this pipeline made, across reloads, so shutdown can
    /// terminate them.
    public let processGroups: ProcessGroups
    /// Memory for barman's output, shared by every runner this pipeline made.
    public let outputBudget: OutputBudget

    public init(config: Config, logger: Logger) {
        processGroups = ProcessGroups()
        outputBudget = OutputBudget()
        store = SnapshotStore(MetricsSnapshot(version: BuildInfo.version))
        refresher = Refresher(runner: Self.runner(for: config, processGroups: processGroups, outputBudget: outputBudget), settings: RefreshSettings(config),
                              store: store, logger: logger)
    }

    /// Where barman's JSON comes from for `config`'s integration.
    public static func runner(for config: Config, processGroups: ProcessGroups, outputBudget: OutputBudget) -> any BarmanRunner {
        switch config.integrationType {
        case .mock:
            return MockBarman()
        case .shell:
            return ProcessBarmanRunner(
                executable: config.barmanCommand,
                configFile: config.barmanConfigFile,
                timeout: .seconds(config.commandTimeout),
                processGroups: processGroups,
                outputBudget: outputBudget)
        }
    }

    /// Applies a reloaded config to the refresher; cached answers are dropped when the source
    /// of barman's JSON changed.
    public func reconfigure(from old: Config, to new: Config) async {
        // Another server selection is treated as another source: answers about servers now left
        // out must not be served until their sources answer again.
        let sourceChanged = new.integrationType != old.integrationType || new.barmanCommand != old.barmanCommand
            || new.barmanConfigFile != old.barmanConfigFile || new.serverSelection != old.serverSelection
        await refresher.reconfigure(runner: Self.runner(for: new, processGroups: processGroups, outputBudget: outputBudget), settings: RefreshSettings(new),
                                    sourceChanged: sourceChanged)
    }
}
