import Synchronization
import Platform
import Exposition
import Configuration
import Barman

/// The running daemon: the pipeline, the HTTP servers in front of it (one per listening
/// socket), and the switch from one config to the next on reload.
public final class ExporterService: Sendable {
    public let pipeline: Pipeline
    public let logger: Logger
    /// Rendered bodies, shared by the HTTP servers of successive configs.
    let expositionCache = ExpositionCache()
    private let configPath: String
    /// `--web.config.file`, which wins over the config's `web_config_file`.
    private let webConfigFlag: String?
    /// exporter-toolkit's flags: where to listen, the metrics path, the log level.
    private let flags: RuntimeFlags
    /// Replaced together on reload; the lifecycle reloads from one task at a time.
    private let state: Mutex<(config: Config, servers: [HTTPServer], web: WebAccess)>

    public init(config: Config, configPath: String, webConfigFlag: String? = nil, web: WebConfig = WebConfig(), flags: RuntimeFlags = RuntimeFlags(),
                logger: Logger) throws(SystemError) {
        self.configPath = configPath
        self.webConfigFlag = webConfigFlag
        self.flags = flags
        self.logger = logger
        pipeline = Pipeline(config: config, logger: logger)
        let access = WebAccess(config: web)
        let listeners = try Self.listeners(config: config, flags: flags)
        var servers: [HTTPServer] = []
        for listener in listeners {
            servers.append(try Self.startServer(on: listener, access: access, store: pipeline.store, cache: expositionCache,
                                                telemetryPath: flags.telemetryPath, logger: logger))
        }
        state = Mutex((config, servers, access))
        for server in servers {
            logger.log(.info, "listening", fields: [("address", server.listener.displayAddress), ("metrics_path", flags.telemetryPath),
                                                    ("integration", config.integrationType.rawValue), ("version", BuildInfo.version)] + Self.describe(web))
        }
        logger.log(.debug, "settings", fields: ConfigLoader.settings(config))
    }

    /// Where to listen: systemd's sockets (`--web.systemd-socket`), each `--web.listen-address`,
    /// or the config's address and port. Every one is bound, or none is used.
    static func listeners(config: Config, flags: RuntimeFlags) throws(SystemError) -> [ListenSocket] {
        if flags.systemdSocket {
            var adopted: [ListenSocket] = []
            for fd in try ListenSocket.systemdListenDescriptors() { adopted.append(try ListenSocket(adopting: fd)) }
            return adopted
        }
        if flags.listenAddresses.isEmpty { return [try ListenSocket(address: config.address, port: config.port)] }
        var bound: [ListenSocket] = []
        for address in flags.listenAddresses { bound.append(try ListenSocket(address: address.host, port: address.port)) }
        return bound
    }

    /// Whether the config's address and port say where to listen (no flag does).
    private var listensWhereTheConfigSays: Bool { !flags.systemdSocket && flags.listenAddresses.isEmpty }

    public var refresher: Refresher { pipeline.refresher }
    /// The first listening socket's port.
    public var port: Int { state.withLock { $0.servers.first?.listener.port ?? 0 } }

    static func startServer(on listener: ListenSocket, access: WebAccess, store: SnapshotStore, cache: ExpositionCache, telemetryPath: String,
                            logger: Logger) throws(SystemError) -> HTTPServer {
        let routes = Routes(store: store, cache: cache, telemetryPath: telemetryPath)
        return try HTTPServer(listener: listener, tls: access.serverTLS, readsCredentials: access.readsCredentials, logger: logger) { request in
            access.handle(request) { routes.reply($0) }
        }
    }

    /// For the "listening" log line: whether TLS, client certificates and basic auth are on.
    static func describe(_ web: WebConfig) -> [(String, String)] {
        [("tls", web.tls.map { "on (client_auth_type \($0.clientAuth.rawValue))" } ?? "off"),
         ("basic_auth_users", String(web.basicAuthUsers.count))]
    }

    /// Re-reads the config file and the web config with its certificate files. An invalid
    /// config changes nothing: the exporter keeps running on the old one and logs every
    /// problem. An invalid web config keeps the running one (TLS and users) while a valid
    /// config file still applies.
    public func reload(reason: String) async {
        let files: ConfigFiles
        do {
            files = try ConfigFiles.load(configPath: configPath, webConfigFlag: webConfigFlag)
        } catch {
            logger.error("config reload failed; still running on the previous config", ["signal": reason, "problems": error.description])
            return
        }
        let next = files.config
        for warning in files.warnings { logger.warn(warning.message, ["file": warning.file]) }
        logger.level = flags.logLevel ?? next.logLevel
        let (current, servers, currentAccess) = state.withLock { ($0.config, $0.servers, $0.web) }
        var access = currentAccess
        let webPath = files.webPath
        switch files.web {
        case .success(let web):
            if web != currentAccess.config { access = WebAccess(config: web) }
            for turnedOff in WebAccess.weakenings(from: currentAccess.config, to: web) {
                logger.warn("this reload turns off \(turnedOff)", ["file": webPath ?? "(no web config)"])
            }
        case .failure(let error):
            logger.error("web config reload failed; still serving with the previous TLS and users", ["signal": reason, "problems": error.description])
        }
        var applied = next
        let addressChanged = next.address != current.address || next.port != current.port
        if addressChanged && !listensWhereTheConfigSays {
            logger.warn("config reload: address and port are not used; the command line says where to listen",
                        ["flag": flags.systemdSocket ? "--web.systemd-socket" : "--web.listen-address"])
        }
        if addressChanged && listensWhereTheConfigSays, let server = servers.first {
            do {
                let replacement = try moveServer(from: server, current: current, to: next, access: access)
                state.withLock {
                    $0.servers = [replacement]
                    $0.web = access
                }
                logger.log(.info, "listening", fields: [("address", replacement.listener.displayAddress)] + Self.describe(access.config))
            } catch {
                logger.error("config reload: cannot listen on the new address; still listening on the old one",
                             ["error": error.description, "address": state.withLock { $0.servers.first?.listener.displayAddress ?? "none" }])
                applied.address = current.address
                applied.port = current.port
            }
        } else if access.config != currentAccess.config {
            // The same sockets: each new server starts on its socket before the old one stops
            // accepting, so no scrape is refused while certificates rotate.
            do {
                var replacements: [HTTPServer] = []
                for server in servers {
                    replacements.append(try Self.startServer(on: server.listener, access: access, store: pipeline.store, cache: expositionCache,
                                                             telemetryPath: flags.telemetryPath, logger: logger))
                }
                // The old servers finish what they accepted (old certificate), closing each
                // connection after its next answer, and stop after the connection timeout.
                for server in servers { server.retire(within: .seconds(Int64(HTTPLimits().connectionTimeoutSeconds) + 1)) }
                state.withLock {
                    $0.servers = replacements
                    $0.web = access
                }
                logger.log(.info, "web config reloaded", fields: [("file", webPath ?? "(none)")] + Self.describe(access.config))
            } catch {
                logger.error("web config reload: cannot start the server with it; still serving with the previous TLS and users", ["error": error.description])
            }
        }
        await pipeline.reconfigure(from: current, to: applied)
        state.withLock { $0.config = applied }
        if applied == next { logger.info("config reloaded", ["signal": reason, "file": configPath]) }
        logger.log(.debug, "settings", fields: ConfigLoader.settings(applied))
    }

    /// A server for `config`'s address on this exporter's store and body cache.
    private func startServer(_ config: Config, access: WebAccess) throws(SystemError) -> HTTPServer {
        let listener = try ListenSocket(address: config.address, port: config.port)
        return try Self.startServer(on: listener, access: access, store: pipeline.store, cache: expositionCache, telemetryPath: flags.telemetryPath, logger: logger)
    }

    /// A server on `next`'s address, the old one stopped. The new socket is bound first, so the
    /// old one keeps serving if that fails; but the same port on another address of the same
    /// host (127.0.0.1 and 0.0.0.0, or ::) cannot be bound while the old socket holds it, so
    /// then the old server is stopped first, and restarted if the new address cannot be bound.
    private func moveServer(from server: HTTPServer, current: Config, to next: Config, access: WebAccess) throws(SystemError) -> HTTPServer {
        let currentAccess = state.withLock { $0.web }
        do {
            let replacement = try startServer(next, access: access)
            server.stop()
            return replacement
        } catch where error.isAddressInUse && next.port == current.port {
            server.stop()
            do {
                return try startServer(next, access: access)
            } catch {
                do {
                    let restored = try startServer(current, access: currentAccess)
                    state.withLock { $0.servers = [restored] }
                } catch let restoreError {
                    logger.error("config reload: cannot listen on the old address either; not serving until a reload fixes the address",
                                 ["error": restoreError.description])
                }
                throw error
            }
        }
    }

    /// Stops accepting scrapes (MHD finishes responses in flight) and terminates running barman
    /// process groups.
    public func stop() {
        for server in state.withLock({ $0.servers }) { server.stop() }
        pipeline.processGroups.terminateAll()
    }
}
