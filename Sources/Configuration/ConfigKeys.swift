import Platform

/// One key of the config file: everything the loader, `--check-config`, the settings log line
/// and docs/configuration.md (checked by a test) know about it.
///
/// Adding a key: a field in `Config`, one entry in `ConfigKey.all`, one row in the docs.
public struct ConfigKey: Sendable {
    public let name: String
    /// The type column of the docs table.
    public let typeDescription: String
    /// The meaning column of the docs table.
    public let summary: String
    /// The default as the docs and the settings log line show it.
    public let defaultText: String
    /// Parses `text` and stores it in the config.
    let assign: @Sendable (String, inout Config) throws(ConfigValueError) -> Void
    /// The current value, for the settings log line.
    let show: @Sendable (Config) -> String
    /// For a key that takes a list of scalars: parses the items (an error names the item).
    let assignList: (@Sendable ([YAMLScalar], inout Config) throws(ConfigValueError) -> Void)?

    public var takesList: Bool { assignList != nil }
    /// Another name of the same setting (`barman_config` for `barman_config_file`): setting both is
    /// a duplicate.
    public private(set) var sameAs: String?

    init<Value>(_ name: String, _ field: WritableKeyPath<Config, Value> & Sendable, _ parser: ValueParser<Value>, _ summary: String) {
        self.name = name
        self.typeDescription = parser.typeDescription
        self.summary = summary
        self.defaultText = parser.show(Config()[keyPath: field])
        assign = { (text, config) throws(ConfigValueError) in config[keyPath: field] = try parser.parse(text) }
        show = { config in parser.show(config[keyPath: field]) }
        assignList = nil
    }

    /// A key that takes a YAML list of values, each parsed by `item`; an empty value is an
    /// empty list, any other single value is refused (a list is written `[a, b]` or as `- a` lines).
    init(_ name: String, list field: WritableKeyPath<Config, [String]> & Sendable, _ item: ValueParser<String>, example: String, _ summary: String) {
        self.name = name
        self.typeDescription = "list of \(item.typeDescription)"
        self.summary = summary
        self.defaultText = "none"
        assign = { (text, config) throws(ConfigValueError) in
            guard text.isEmpty else { throw ConfigValueError("expected a list, e.g. \(example), found \(shown(text))") }
            config[keyPath: field] = []
        }
        assignList = { (items, config) throws(ConfigValueError) in
            var values: [String] = []
            for scalar in items {
                do throws(ConfigValueError) {
                    values.append(try item.parse(scalar.value))
                } catch {
                    throw ConfigValueError("item \(values.count + 1): \(error.message)", line: scalar.line, column: scalar.column)
                }
            }
            config[keyPath: field] = values
        }
        show = { config in config[keyPath: field].isEmpty ? "none" : config[keyPath: field].joined(separator: ",") }
    }

    /// Every key, in documentation order.
    public static let all: [ConfigKey] = [
        ConfigKey("address", \.address, .address,
                  "Address to listen on. Listen on other addresses only with TLS and authentication (`web_config_file`) or a reverse proxy that adds them. `0.0.0.0` listens on every IPv4 address, `\"::\"` (quoted) on every IPv4 and IPv6 address."),
        ConfigKey("port", \.port, .integer(1...65535),
                  "TCP port. 9780 is the Python exporter's default."),
        ConfigKey("integration_type", \.integrationType, .integrationType,
                  "`shell` runs the barman CLI; `mock` serves embedded sample data (three servers) and needs no barman."),
        ConfigKey("cache_ttl", \.cacheTTL, .seconds(minimum: 0),
                  "How long answers of `list-backups` and `replication-status` are reused. `show-backup` is not asked again on a timer: only when `list-backups` shows that the newest DONE backup of a server changed (a new backup, or new WAL)."),
        ConfigKey("checks_cache_ttl", \.checksCacheTTL, .seconds(minimum: 0),
                  "How long the answer of `check` is reused. 300 s keeps checks at most 5 minutes old for a fifth of the cost of checking every minute: `check all` is most of barman's cost (two PostgreSQL connections per server, 27 CPU s a run at 200 servers), can take minutes (many tablespaces, barman issue #75), and since barman 3.15 is not read-only (it may run archive-wal and switch WAL, waiting up to 10 s per server)."),
        ConfigKey("servers_cache_ttl", \.serversCacheTTL, .seconds(minimum: 0),
                  "How long the answer of `show-servers` is reused: server state (active, disabled, passive), minimum redundancy, where the WAL catalog is, and PostgreSQL's archiver statistics. Like `check` it connects to every PostgreSQL server. The WAL catalog itself is read at every refresh."),
        ConfigKey("refresh_interval", \.refreshInterval, .seconds(minimum: 1),
                  "How often sources whose cache has expired are asked again. A `cache_ttl` longer than this is allowed and logged as a warning: some refreshes then reuse cached backups and WAL streaming."),
        ConfigKey("log_level", \.logLevel, .logLevel,
                  "`DEBUG` logs every barman command with its logId, argv, duration and exit status."),
        ConfigKey("barman_command", \.barmanCommand, .path(expected: "the barman executable (a path or a name in PATH)", type: "path or command name"),
                  "The barman executable; a name without `/` is looked up in the exporter's `PATH` before each run (under systemd that is systemd's `PATH`, not your login shell's; the error names the `PATH` searched)."),
        ConfigKey("barman_config_file", \.barmanConfigFile, .optional(.path(expected: "the path of a barman configuration file", type: "path")),
                  "Passed to barman as `-c FILE`. Without it barman uses its default (`/etc/barman.conf`)."),
        ConfigKey("barman_config", \.barmanConfigFile, .optional(.path(expected: "the path of a barman configuration file", type: "path")),
                  "The same as `barman_config_file` (the name pgbackrest_exporter's `--backrest.config` users look for); set one of them.").alias(of: "barman_config_file"),
        ConfigKey("command_timeout", \.commandTimeout, .seconds(minimum: 1),
                  "How long one barman command may run. Then its process group gets SIGTERM, and SIGKILL 5 s later."),
        ConfigKey("web_config_file", \.webConfigFile, .optional(.path(expected: "the path of a web config file", type: "path")),
                  "TLS, client certificates, basic auth and response headers, in exporter-toolkit's web config format (the file node_exporter's `--web.config.file` reads); see docs/operations.md. `--web.config.file` on the command line wins. A relative path is relative to this config file's directory. Re-read, with the certificates, on reload."),
        ConfigKey("servers_include", list: \.serversInclude, .serverPattern, example: "[pg-main, 'pg-*']",
                  "Serve only the barman servers matching one of these names or shell globs (`*`, `?`, `[...]`; quote a value that starts with `*`). Empty (the default): every server. A server left out costs no `show-backup` or `list-processes` and has no series. A pattern that matches no server is logged once."),
        ConfigKey("servers_exclude", list: \.serversExclude, .serverPattern, example: "[pg-test, 'tmp-*']",
                  "Leave out the barman servers matching one of these names or shell globs, also when `servers_include` matches them."),
    ]

    public static func named(_ name: String) -> ConfigKey? { all.first { $0.name == name } }

    func alias(of name: String) -> ConfigKey {
        var key = self
        key.sameAs = name
        return key
    }
}

/// Why a value is not acceptable for its key; the loader adds the file, position and key.
public struct ConfigValueError: Error, Sendable, Equatable {
    public var message: String
    /// Where in the file, when not at the value itself (an item of a list).
    public var line: Int?
    public var column: Int?
    public init(_ message: String, line: Int? = nil, column: Int? = nil) {
        self.message = message
        self.line = line
        self.column = column
    }
}

/// How the text of one value becomes a typed value, and back for display.
struct ValueParser<Value>: Sendable {
    let typeDescription: String
    let parse: @Sendable (String) throws(ConfigValueError) -> Value
    let show: @Sendable (Value) -> String

    /// Integers are accepted plain (`9780`) or quoted (`"9780"`), as the Go exporter's example
    /// config quotes the port.
    static func integer(_ range: ClosedRange<Int>, type: String? = nil) -> ValueParser<Int> {
        ValueParser<Int>(
            typeDescription: type ?? "integer \(range.lowerBound)-\(range.upperBound), plain or quoted (`\"2222\"`)",
            parse: { (text) throws(ConfigValueError) in
                let digits = text.utf8.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
                guard !text.isEmpty, digits, text.utf8.count <= 18, let value = Int(text) else {
                    throw ConfigValueError("expected a whole number from \(range.lowerBound) to \(range.upperBound), found \(shown(text))")
                }
                guard range.contains(value) else {
                    throw ConfigValueError("\(value) is out of range; expected \(range.lowerBound) to \(range.upperBound)")
                }
                return value
            },
            show: { String($0) })
    }

    /// Up to a year, which catches a value given in milliseconds by mistake.
    static func seconds(minimum: Int) -> ValueParser<Int> {
        integer(minimum...31_536_000, type: "seconds, integer >= \(minimum)")
    }

    /// An IPv4 or IPv6 literal, or a host name made of RFC 1123 labels.
    static var address: ValueParser<String> {
        ValueParser<String>(
            typeDescription: "IPv4/IPv6 literal or host name",
            parse: { (text) throws(ConfigValueError) in
                if text.isEmpty { throw ConfigValueError("expected an IP address or host name, found an empty value") }
                if ListenSocket.isIPLiteral(text) { return text }
                let labels = text.split(separator: ".", omittingEmptySubsequences: false)
                let validLabels = text.utf8.count <= 253 && labels.allSatisfy { label in
                    guard (1...63).contains(label.utf8.count), label.first != "-", label.last != "-" else { return false }
                    return label.utf8.allSatisfy { byte in
                        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                            || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "-")
                    }
                }
                guard validLabels else {
                    throw ConfigValueError("expected an IPv4/IPv6 address (without brackets or port) or a host name, found \(shown(text))")
                }
                return text
            },
            show: { $0 })
    }

    static var integrationType: ValueParser<IntegrationType> {
        choice("`shell` or `mock`", expected: "'shell' or 'mock'", { IntegrationType(rawValue: $0) }, show: \.rawValue)
    }

    static var logLevel: ValueParser<LogLevel> {
        choice("`ERROR`, `WARN`, `INFO`, `DEBUG`, any case", expected: "one of ERROR, WARN, INFO, DEBUG (any case)",
               { LogLevel(configValue: $0) }, show: { $0.name.uppercased() })
    }

    /// One of a few words.
    static func choice<Choice>(_ type: String, expected: String, _ parse: @escaping @Sendable (String) -> Choice?,
                               show: @escaping @Sendable (Choice) -> String) -> ValueParser<Choice> {
        ValueParser<Choice>(
            typeDescription: type,
            parse: { (text) throws(ConfigValueError) in
                guard let value = parse(text) else { throw ConfigValueError("expected \(expected), found \(shown(text))") }
                return value
            },
            show: show)
    }

    /// A path (or command name) that can reach `execve`/barman: not empty, no NUL.
    static func path(expected: String, type: String) -> ValueParser<String> {
        ValueParser<String>(
            typeDescription: type,
            parse: { (text) throws(ConfigValueError) in
                guard !text.isEmpty, !text.contains("\0") else { throw ConfigValueError("expected \(expected), found \(shown(text))") }
                return text
            },
            show: { $0 })
    }

    /// A barman server name or a shell glob over names: not empty, no `/`, no control characters.
    static var serverPattern: ValueParser<String> {
        ValueParser<String>(
            typeDescription: "server names or shell globs",
            parse: { (text) throws(ConfigValueError) in
                guard !text.isEmpty, text.utf8.count <= 255, !text.contains("/"), text.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F }) else {
                    throw ConfigValueError("expected a server name or a shell glob such as 'pg-*', found \(shown(text))")
                }
                return text
            },
            show: { $0 })
    }

    /// A setting that is absent by default.
    static func optional(_ parser: ValueParser<String>) -> ValueParser<String?> {
        ValueParser<String?>(
            typeDescription: parser.typeDescription,
            parse: { (text) throws(ConfigValueError) in try parser.parse(text) },
            show: { $0.map(parser.show) ?? "none" })
    }
}

/// A value as error messages quote it.
func shown(_ text: String) -> String {
    text.isEmpty ? "an empty value" : "'\(text)'"
}
