import Platform
import Exposition
import Configuration
import Barman

/// What `main` does with the command line: check a config, run once, or run the daemon until a
/// stop signal. Here rather than in `main.swift` so tests can drive it.
public enum Lifecycle {
    /// Exit statuses: 0 success, 1 runtime failure (cannot bind...), 2 usage or config error.
    public static func main(arguments: [String]) async -> Int32 {
        let action: CommandLineAction
        do {
            action = try CommandLineOptions.parse(arguments, packagedConfigExists: FileReader.exists(path: CommandLineOptions.packagedConfigPath))
        } catch {
            printError("prometheus-barman-exporter: \(error)")
            return 2
        }
        switch action {
        case .help:
            print(CommandLineOptions.usage)
            return 0
        case .version:
            print("prometheus-barman-exporter \(BuildInfo.version)")
            return 0
        case .checkConfig(let path, let webPath, _):
            do {
                let files = try ConfigFiles.load(configPath: path, webConfigFlag: webPath)
                for warning in files.warnings { printError("\(warning.file): warning: \(warning.message)") }
                _ = try files.web.get()
                print("OK")
                return 0
            } catch {
                printError(error.description)
                return 2
            }
        case .run(let path, let webPath, let flags):
            return await run(configPath: path, webConfigFlag: webPath, flags: flags)
        case .once(let path, let output, let flags):
            return await runOnce(configPath: path, output: output, flags: flags)
        }
    }

    /// `--once` / `--output`: one refresh of every source, the metrics written once. Exit status
    /// 1 when any barman command failed (the metrics, including the failure, are still written).
    /// SIGTERM or SIGINT stops it at once, barman's process groups with it (status 128 + signal,
    /// nothing written).
    static func runOnce(configPath: String, output: String?, flags: RuntimeFlags = RuntimeFlags()) async -> Int32 {
        guard let (files, _, logger) = loadForStart(configPath, flags: flags) else { return 2 }
        let config = files.config
        let signals: AsyncStream<Int32>
        do {
            signals = try Signals.stream()
        } catch {
            logger.error("cannot start", ["error": error.description])
            return 1
        }
        let pipeline = Pipeline(config: config, logger: logger)
        let stoppedBy: Int32? = await withTaskGroup(of: Int32?.self) { group in
            group.addTask {
                await pipeline.refresher.refreshCycle()
                return nil
            }
            group.addTask {
                for await signal in signals where Signals.stops.contains(signal) {
                    // Ends the refresh: its barman commands return as cancelled.
                    pipeline.processGroups.terminateAll()
                    return signal
                }
                return nil
            }
            // Whichever ends first ends the other; a stop signal wins even when the refresh it
            // cut short returned first.
            var stoppedBy: Int32?
            for await result in group {
                group.cancelAll()
                if let result { stoppedBy = result }
            }
            return stoppedBy
        }
        if let stoppedBy {
            logger.warn("stopped before the refresh was complete; nothing written", ["signal": Signals.name(stoppedBy)])
            return 128 + stoppedBy
        }
        let snapshot = pipeline.store.snapshot
        let body = TextRenderer.render(MetricsBuilder.families(snapshot, now: WallClock.nowSeconds().rounded(.down)))
        do {
            if let output {
                try AtomicFile.write(body, to: output)
            } else {
                try FileWriter.writeAll(1, body, to: "standard output")
            }
        } catch {
            logger.error("cannot write the metrics", ["error": error.description])
            return 1
        }
        return snapshot.health.values.allSatisfy(\.lastRunSucceeded) ? 0 : 1
    }

    /// The config files and a logger at the config's level, with their warnings logged; nil
    /// (problems printed) when either file is invalid.
    static func loadForStart(_ configPath: String, webConfigFlag: String? = nil, flags: RuntimeFlags) -> (ConfigFiles, WebConfig, Logger)? {
        do {
            let files = try ConfigFiles.load(configPath: configPath, webConfigFlag: webConfigFlag)
            let web = try files.web.get()
            let logger = Logger(level: flags.logLevel ?? files.config.logLevel, format: flags.logFormat)
            for warning in files.warnings { logger.warn(warning.message, ["file": warning.file]) }
            return (files, web, logger)
        } catch {
            printError(error.description)
            return nil
        }
    }

    static func run(configPath: String, webConfigFlag: String?, flags: RuntimeFlags = RuntimeFlags()) async -> Int32 {
        guard let (files, web, logger) = loadForStart(configPath, webConfigFlag: webConfigFlag, flags: flags) else { return 2 }
        let config = files.config
        let signals: AsyncStream<Int32>
        let exporter: ExporterService
        let renderer: Renderer
        do {
            signals = try Signals.stream()
            exporter = try ExporterService(config: config, configPath: configPath, webConfigFlag: webConfigFlag, web: web, flags: flags, logger: logger)
            renderer = try Renderer(store: exporter.pipeline.store, cache: exporter.expositionCache, logger: logger)
        } catch {
            logger.error("cannot start", ["error": error.description])
            return 1
        }
        SystemdNotifier.notify("READY=1")
        await ServiceGroup.run([
            RefreshService(refresher: exporter.refresher),
            renderer,
            MemoryReclaimer(store: exporter.pipeline.store, cache: exporter.expositionCache),
            SignalHandler(signals: signals, exporter: exporter, logger: logger),
        ])
        return 0
    }

    static func printError(_ message: String) {
        FileWriter.writeIgnoringErrors(2, Array((message + "\n").utf8))
    }
}
