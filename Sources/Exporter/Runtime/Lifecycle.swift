#if canImport(Glibc)
import Glibc
#endif

/// Start-up, reload and shutdown: everything `main` does, here so tests can drive it.
public enum Lifecycle {
    /// Exit statuses: 0 success, 1 runtime failure (cannot bind...), 2 usage or config error.
    public static func main(arguments: [String]) async -> Int32 {
        switch CommandLineOptions.parse(arguments) {
        case .failure(let error):
            printError("prometheus-barman-exporter: \(error)")
            return 2
        case .success(.help):
            print(CommandLineOptions.usage)
            return 0
        case .success(.version):
            print("prometheus-barman-exporter \(BuildInfo.version)")
            return 0
        case .success(.checkConfig(let path)):
            switch ConfigLoader.load(path: path) {
            case .success(let (_, warnings)):
                for warning in warnings { printError("\(path): warning: \(warning)") }
                print("OK")
                return 0
            case .failure(let error):
                printError(error.description)
                return 2
            }
        case .success(.run(let path)):
            return await run(configPath: path)
        case .success(.once(let path, let output)):
            return await runOnce(configPath: path, output: output)
        }
    }

    /// `--once` / `--output`: one refresh of every source, the metrics written once. Exit status
    /// 1 when any barman command failed (the metrics, including the failure, are still written).
    static func runOnce(configPath: String, output: String?) async -> Int32 {
        guard let (config, logger) = loadForStart(configPath) else { return 2 }
        let store = SnapshotStore(MetricsSnapshot(version: BuildInfo.version))
        let processGroups = ProcessGroups()
        let refresher = Refresher(runner: BarmanRunners.make(config, processGroups: processGroups), settings: RefreshSettings(config), store: store, logger: logger)
        await refresher.refreshCycle()
        let snapshot = store.snapshot
        let body = TextRenderer.render(MetricsBuilder.families(snapshot, now: WallClock.nowSeconds().rounded(.down)))
        if let output {
            if case .failure(let error) = AtomicFile.write(body, to: output) {
                logger.error("cannot write the metrics file", ["error": error.description])
                return 1
            }
        } else if FileWriter.writeAll(1, body) != nil {
            return 1
        }
        return snapshot.health.values.allSatisfy(\.lastRunSucceeded) ? 0 : 1
    }

    /// The config and a logger at its level, with its warnings logged; nil (problems printed)
    /// when the file is invalid.
    static func loadForStart(_ configPath: String) -> (Config, Logger)? {
        switch ConfigLoader.load(path: configPath) {
        case .success(let (config, warnings)):
            let logger = Logger(level: config.logLevel)
            for warning in warnings { logger.warn(warning, ["file": configPath]) }
            return (config, logger)
        case .failure(let error):
            printError(error.description)
            return nil
        }
    }

    static func run(configPath: String) async -> Int32 {
        guard let (config, logger) = loadForStart(configPath) else { return 2 }
        let signals: AsyncStream<Int32>
        let exporter: Exporter
        do {
            signals = try Signals.stream()
            exporter = try Exporter(config: config, configPath: configPath, logger: logger)
        } catch {
            logger.error("cannot start", ["error": error.description])
            return 1
        }
        let refreshing = Task { await exporter.refresher.runForever() }
        let sweeping = Task { await exporter.dropExpiredBodiesForever() }
        SystemdNotifier.notify("READY=1")
        for await signal in signals {
            switch signal {
            case SIGHUP, SIGUSR1:
                SystemdNotifier.notify("RELOADING=1")
                await exporter.reload(reason: Signals.name(signal))
                SystemdNotifier.notify("READY=1")
            default:
                logger.info("stopping", ["signal": Signals.name(signal)])
                SystemdNotifier.notify("STOPPING=1")
                refreshing.cancel()
                sweeping.cancel()
                exporter.stop()
                return 0
            }
        }
        return 0
    }

    static func printError(_ message: String) {
        FileWriter.writeAll(2, Array((message + "\n").utf8))
    }
}

/// The running exporter: config, HTTP server and refresher, and the reload between configs.
public final class Exporter: @unchecked Sendable {
    // @unchecked: `config` and `server` change only in reload(), which the lifecycle calls from
    // one task at a time.
    public let store: SnapshotStore
    public let refresher: Refresher
    /// Rendered bodies, shared by the HTTP servers of successive configs.
    let expositionCache = ExpositionCache()
    public let logger: Logger
    /// barman processes of every runner this exporter made, across reloads.
    let processGroups = ProcessGroups()
    private let configPath: String
    private(set) var config: Config
    private(set) var server: HTTPServer

    public init(config: Config, configPath: String, logger: Logger) throws(SystemError) {
        self.config = config
        self.configPath = configPath
        self.logger = logger
        store = SnapshotStore(MetricsSnapshot(version: BuildInfo.version))
        refresher = Refresher(runner: BarmanRunners.make(config, processGroups: processGroups), settings: RefreshSettings(config), store: store, logger: logger)
        server = try Self.startServer(config, store: store, cache: expositionCache, logger: logger)
        logger.info("listening", ["address": server.listener.displayAddress, "integration": config.integrationType.rawValue,
                                  "version": BuildInfo.version])
        Self.logSettings(config, logger: logger)
    }

    public var port: Int { server.listener.port }

    static func startServer(_ config: Config, store: SnapshotStore, cache: ExpositionCache, logger: Logger) throws(SystemError) -> HTTPServer {
        let routes = Routes(store: store, cache: cache)
        let listener = try ListenSocket(address: config.address, port: config.port)
        return try HTTPServer(listener: listener, logger: logger) { routes.handle($0) }
    }

    /// Re-reads the config file. An invalid file changes nothing: the exporter keeps running on
    /// the old config and logs every problem.
    public func reload(reason: String) async {
        let next: Config
        switch ConfigLoader.load(path: configPath) {
        case .failure(let error):
            logger.error("config reload failed; still running on the previous config", ["signal": reason, "problems": error.description])
            return
        case .success(let (loaded, warnings)):
            next = loaded
            for warning in warnings { logger.warn(warning, ["file": configPath]) }
        }
        logger.level = next.logLevel
        if next.address != config.address || next.port != config.port {
            do {
                let replacement = try Self.startServer(next, store: store, cache: expositionCache, logger: logger)
                server.stop()
                server = replacement
                logger.info("listening", ["address": replacement.listener.displayAddress])
            } catch {
                logger.error("config reload: cannot listen on the new address; still listening on the old one",
                             ["error": error.description, "address": server.listener.displayAddress])
                var kept = next
                kept.address = config.address
                kept.port = config.port
                await apply(kept)
                return
            }
        }
        await apply(next)
        logger.info("config reloaded", ["signal": reason, "file": configPath])
        Self.logSettings(next, logger: logger)
    }

    static func logSettings(_ config: Config, logger: Logger) {
        logger.debug("settings", [
            "integration_type": config.integrationType.rawValue, "cache_ttl": String(config.cacheTTL),
            "checks_cache_ttl": String(config.checksCacheTTL), "refresh_interval": String(config.refreshInterval),
            "log_level": config.logLevel.name, "barman_command": config.barmanCommand,
            "barman_config_file": config.barmanConfigFile ?? "(barman's default)", "command_timeout": String(config.commandTimeout),
        ])
    }

    private func apply(_ next: Config) async {
        let sourceChanged = next.integrationType != config.integrationType || next.barmanCommand != config.barmanCommand
            || next.barmanConfigFile != config.barmanConfigFile
        await refresher.reconfigure(runner: BarmanRunners.make(next, processGroups: processGroups), settings: RefreshSettings(next), sourceChanged: sourceChanged)
        config = next
    }

    /// Every 2 s, frees bodies whose second has passed (a large body is ~2 MB of memory that
    /// would otherwise wait for the next scrape, typically a minute, to be replaced).
    func dropExpiredBodiesForever() async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: .seconds(2)) } catch { return }
            expositionCache.dropExpired(before: WallClock.nowSeconds().rounded(.down))
        }
    }

    /// Stops accepting scrapes (MHD finishes responses in flight) and terminates running barman
    /// process groups.
    public func stop() {
        server.stop()
        processGroups.terminateAll()
    }
}
