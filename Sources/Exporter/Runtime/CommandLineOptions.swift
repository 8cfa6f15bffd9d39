import Platform
import Exposition
import Configuration
import Barman

/// What the command line asks for. Flags take one or two dashes, like the Go exporter's `-config`.
public enum CommandLineAction: Equatable, Sendable {
    /// `webConfigPath`: `--web.config.file`, which wins over the config's `web_config_file`.
    case run(configPath: String, webConfigPath: String?)
    case checkConfig(configPath: String, webConfigPath: String?)
    /// One refresh, then the metrics to stdout (`output` nil) or atomically to a file.
    case once(configPath: String, output: String?)
    case help
    case version
}

public enum CommandLineOptions {
    /// The packaged config, used when no `-config` is given and it exists.
    public static let packagedConfigPath = "/etc/prometheus-barman-exporter/config.yaml"

    public static let usage = """
        Usage: prometheus-barman-exporter [-config FILE] [--web.config.file FILE]
                                          [--check-config | --once | --output FILE]
               prometheus-barman-exporter --help | --version

        Serves Prometheus metrics about pgbarman backups, read from `barman -f json`.

          -config FILE, --config FILE   the YAML config file (default: \(packagedConfigPath),
                                        when it exists)
          --web.config.file FILE        TLS, client certificates, basic auth and headers, in
                                        exporter-toolkit's web config format (wins over the
                                        config's web_config_file)
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
        if once || outputPath != nil { return .once(configPath: configPath, output: outputPath) }
        return checkOnly ? .checkConfig(configPath: configPath, webConfigPath: webConfigPath) : .run(configPath: configPath, webConfigPath: webConfigPath)
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
