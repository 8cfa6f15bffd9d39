import Platform
import Exposition
import Configuration
import Barman

/// What the command line asks for. Flags take one or two dashes, like the Go exporter's `-config`.
public enum CommandLineAction: Equatable, Sendable {
    /// `webConfigPath`: `--web.config.file`, which wins over the config's `web_config_file`.
    case run(configPath: String, webConfigPath: String?, flags: RuntimeFlags = RuntimeFlags())
    case checkConfig(configPath: String, webConfigPath: String?, flags: RuntimeFlags = RuntimeFlags())
    /// One refresh, then the metrics to stdout (`output` nil) or atomically to a file.
    case once(configPath: String, output: String?, flags: RuntimeFlags = RuntimeFlags())
    case help
    case version
}

/// exporter-toolkit's flags, as node_exporter and postgres_exporter take them; each wins over
/// the config file's setting (and stays in force across reloads).
public struct RuntimeFlags: Equatable, Sendable {
    /// `--web.listen-address`, repeatable: `HOST:PORT`, `[IPV6]:PORT` or `:PORT` (every address).
    /// Replaces the config's `address` and `port` when given.
    public var listenAddresses: [ListenAddress] = []
    /// `--web.telemetry-path`: where the metrics are served.
    public var telemetryPath = "/metrics"
    /// `--web.systemd-socket`: serve on the sockets systemd passes (LISTEN_FDS).
    public var systemdSocket = false
    /// `--log.level`, over the config's `log_level`.
    public var logLevel: LogLevel?
    /// `--log.format`.
    public var logFormat: LogFormat = .logfmt

    public init() {}
}

/// One `--web.listen-address`.
public struct ListenAddress: Equatable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// `HOST:PORT`, `[IPV6]:PORT` or `:PORT` (every IPv4 and IPv6 address, `::`); nil otherwise.
    public init?(parsing text: String) {
        let host: Substring, portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
            guard host.contains(":"), ListenSocket.isIPLiteral(String(host)) else { return nil }
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            guard !host.contains(":") else { return nil }  // an IPv6 address needs brackets
        }
        guard !portText.isEmpty, portText.utf8.allSatisfy({ (0x30...0x39).contains($0) }), portText.count <= 5,
              let port = Int(portText), (0...65535).contains(port) else { return nil }
        guard !host.contains(where: { $0 == " " || $0 == "/" }) else { return nil }
        self.init(host: host.isEmpty ? "::" : String(host), port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

public enum CommandLineOptions {
    /// Every flag, as `--help`, the man page, docs/configuration.md and the README spell it (a
    /// test checks each shows them all).
    public static let flags = ["-config", "--web.config.file", "--web.listen-address", "--web.systemd-socket", "--web.telemetry-path",
                               "--log.level", "--log.format", "--check-config", "--once", "--output", "--help", "--version"]

    /// The packaged config, used when no `-config` is given and it exists.
    public static let packagedConfigPath = "/etc/prometheus-barman-exporter/config.yaml"

    public static let usage = """
        Usage: prometheus-barman-exporter [-config FILE] [--web.config.file FILE]
                                          [--web.listen-address ADDRESS:PORT]... [--web.systemd-socket]
                                          [--web.telemetry-path PATH] [--log.level LEVEL] [--log.format FORMAT]
                                          [--check-config | --once | --output FILE]
               prometheus-barman-exporter --help | --version

        Serves Prometheus metrics about pgbarman backups, read from `barman -f json`.

          -config FILE, --config FILE   the YAML config file (default: \(packagedConfigPath),
                                        when it exists)
          --web.config.file FILE        TLS, client certificates, basic auth and headers, in
                                        exporter-toolkit's web config format (wins over the
                                        config's web_config_file)
          --web.listen-address ADDRESS:PORT
                                        where to listen, instead of the config's address and
                                        port; repeat it for several (192.0.2.1:9780,
                                        [2001:db8::1]:9780, :9780 for every address)
          --web.systemd-socket          serve on the socket(s) systemd passes (socket
                                        activation: LISTEN_FDS); instead of any address
          --web.telemetry-path PATH     the path of the metrics (default /metrics)
          --log.level LEVEL             debug, info, warn or error (wins over log_level)
          --log.format FORMAT           logfmt (default) or json: one JSON object a line
          --check-config                validate the config file, print OK or every problem, exit
          --once                        refresh once, print the metrics to stdout, exit
                                        (status 1 if any barman command failed)
          --output FILE                 refresh once, write the metrics to FILE atomically (for
                                        node_exporter's textfile collector), exit like --once
          --help                        show this help
          --version                     print the version

        Signals: SIGHUP or SIGUSR1 reload the config file; SIGTERM or SIGINT stop.
        Configuration reference: /usr/share/doc/prometheus-barman-exporter or docs/configuration.md
        """

    /// Parses `arguments` (without the program name). The error is a one-line message.
    /// `packagedConfigExists`: whether `packagedConfigPath` exists, used when `-config` is not given.
    public static func parse(_ arguments: [String], packagedConfigExists: Bool = false) throws(UsageError) -> CommandLineAction {
        var configPath: String?
        var webConfigPath: String?
        var checkOnly = false
        var once = false
        var outputPath: String?
        var flags = RuntimeFlags()
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            let flag = argument.hasPrefix("--") ? String(argument.dropFirst(2)) : argument.hasPrefix("-") ? String(argument.dropFirst()) : nil
            guard let flag else {
                throw UsageError("unexpected argument '\(argument)'; the config file goes after -config")
            }
            let (name, inlineValue) = splitInline(flag)
            switch name {
            case "help", "h":
                return .help
            case "version", "v":
                return .version
            case "check-config":
                checkOnly = true
            case "once":
                once = true
            case "web.systemd-socket":
                flags.systemdSocket = true
            case "web.listen-address", "web.telemetry-path", "log.level", "log.format":
                var value = inlineValue
                if value == nil {
                    index += 1
                    guard index < arguments.count else { throw UsageError("--\(name) needs a value; see --help") }
                    value = arguments[index]
                }
                try flags.set(name, value ?? "")
            case "output", "config", "web.config.file":
                // The path follows as `--flag=PATH` or as the next argument.
                let example = name == "output" ? "--output /var/lib/prometheus/node-exporter/barman.prom"
                    : name == "config" ? "-config /etc/prometheus-barman-exporter/config.yaml" : "--web.config.file /etc/prometheus-barman-exporter/web.yml"
                let spelled = name == "config" ? "-config" : "--\(name)"
                var path = inlineValue
                if path == nil {
                    index += 1
                    guard index < arguments.count else { throw UsageError("\(spelled) needs a file path, e.g. \(example)") }
                    path = arguments[index]
                }
                guard let path, !path.isEmpty else { throw UsageError("\(spelled) needs a non-empty file path") }
                switch name {
                case "output": outputPath = path
                case "config": configPath = path
                default: webConfigPath = path
                }
            default:
                throw UsageError("unknown flag '\(argument)'; see --help")
            }
            index += 1
        }
        guard let configPath = configPath ?? (packagedConfigExists ? packagedConfigPath : nil) else {
            throw UsageError("missing -config FILE, and \(packagedConfigPath) does not exist; e.g. prometheus-barman-exporter -config /etc/barman-exporter.yaml")
        }
        if checkOnly && (once || outputPath != nil) {
            throw UsageError("--check-config cannot be combined with --once or --output")
        }
        if webConfigPath != nil && (once || outputPath != nil) {
            throw UsageError("--web.config.file is for serving; --once and --output serve nothing")
        }
        let servingFlags = !flags.listenAddresses.isEmpty || flags.systemdSocket || flags.telemetryPath != "/metrics"
        if servingFlags && (once || outputPath != nil) {
            throw UsageError("--web.* flags are for serving; --once and --output serve nothing")
        }
        if flags.systemdSocket && !flags.listenAddresses.isEmpty {
            throw UsageError("--web.systemd-socket and --web.listen-address exclude each other: systemd's socket unit says where to listen")
        }
        if once || outputPath != nil { return .once(configPath: configPath, output: outputPath, flags: flags) }
        return checkOnly ? .checkConfig(configPath: configPath, webConfigPath: webConfigPath, flags: flags)
            : .run(configPath: configPath, webConfigPath: webConfigPath, flags: flags)
    }

    private static func splitInline(_ flag: String) -> (String, String?) {
        guard let equals = flag.firstIndex(of: "=") else { return (flag, nil) }
        return (String(flag[..<equals]), String(flag[flag.index(after: equals)...]))
    }
}

public struct UsageError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension RuntimeFlags {
    /// Sets the flag `name` (without dashes) from `value`; a usage error says what is expected.
    mutating func set(_ name: String, _ value: String) throws(UsageError) {
        switch name {
        case "web.listen-address":
            guard let address = ListenAddress(parsing: value) else {
                throw UsageError("--web.listen-address: expected HOST:PORT, [IPV6]:PORT or :PORT, found '\(value)'; e.g. --web.listen-address 127.0.0.1:9780")
            }
            listenAddresses.append(address)
        case "web.telemetry-path":
            guard value.hasPrefix("/"), value != "/", value.utf8.count <= 1024,
                  !value.unicodeScalars.contains(where: { $0.value <= 0x20 || $0 == "?" || $0 == "#" || $0.value == 0x7F }) else {
                throw UsageError("--web.telemetry-path: expected a path such as /metrics (starting with /, not / itself, no spaces, ? or #), found '\(value)'")
            }
            telemetryPath = value
        case "log.level":
            guard let level = LogLevel(configValue: value) else {
                throw UsageError("--log.level: expected debug, info, warn or error, found '\(value)'")
            }
            logLevel = level
        default:
            guard let format = LogFormat(rawValue: value) else {
                throw UsageError("--log.format: expected logfmt or json, found '\(value)'")
            }
            logFormat = format
        }
    }
}
