/// Picks the runner for the configured integration.
public enum BarmanRunners {
    public static func make(_ config: Config, processGroups: ProcessGroups) -> any BarmanRunner {
        switch config.integrationType {
        case .mock:
            return MockBarman()
        case .shell:
            return ProcessBarmanRunner(
                executable: config.barmanCommand,
                configFile: config.barmanConfigFile,
                timeout: .seconds(config.commandTimeout),
                processGroups: processGroups)
        }
    }
}
