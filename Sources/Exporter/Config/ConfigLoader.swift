#if canImport(Glibc)
import Glibc
#endif

/// Reads and validates the config file: every key known, every value of the right type and
/// range, no key twice. Reports all problems at once so an operator fixes them in one go.
public enum ConfigLoader {
    /// Every key the config accepts, in documentation order.
    public static let knownKeys = [
        "address", "port", "integration_type", "cache_ttl", "checks_cache_ttl", "refresh_interval",
        "log_level", "barman_command", "barman_config_file", "command_timeout",
    ]

    /// Loads `path`. A missing or unreadable file is one problem without a position (line 0).
    public static func load(path: String) -> Swift.Result<(Config, warnings: [String]), ConfigError> {
        let bytes: [UInt8]
        switch FileReader.readAll(path: path, limit: 1 << 20) {
        case .success(let data): bytes = data
        case .failure(let error):
            return .failure(ConfigError([ConfigProblem(file: path, line: 0, column: 0, message: error.description)]))
        }
        return parse(bytes, file: path)
    }

    public static func parse(_ bytes: [UInt8], file: String) -> Swift.Result<(Config, warnings: [String]), ConfigError> {
        let yaml = YAMLFlatMap.parse(bytes, file: file)
        var problems = yaml.problems
        var config = Config()
        var seen: [String: Int] = [:]

        for entry in yaml.entries {
            func fail(_ message: String) {
                problems.append(ConfigProblem(file: file, line: entry.valueLine, column: entry.valueColumn, message: "\(entry.key): \(message)"))
            }
            if let firstLine = seen[entry.key] {
                problems.append(ConfigProblem(file: file, line: entry.keyLine, column: entry.keyColumn,
                                              message: "duplicate key '\(entry.key)' (first set on line \(firstLine))"))
                continue
            }
            seen[entry.key] = entry.keyLine

            switch entry.key {
            case "address":
                if let error = validateAddress(entry.value) { fail(error) } else { config.address = entry.value }
            case "port":
                switch integer(entry, range: 1...65535) {
                case .success(let value): config.port = value
                case .failure(let message): fail(message.text)
                }
            case "integration_type":
                if let type = IntegrationType(rawValue: entry.value) {
                    config.integrationType = type
                } else {
                    fail("expected 'shell' or 'mock', found \(shown(entry.value))")
                }
            case "cache_ttl", "checks_cache_ttl", "refresh_interval", "command_timeout":
                let minimum = entry.key == "cache_ttl" || entry.key == "checks_cache_ttl" ? 0 : 1
                switch integer(entry, range: minimum...31_536_000) {
                case .success(let value):
                    switch entry.key {
                    case "cache_ttl": config.cacheTTL = value
                    case "checks_cache_ttl": config.checksCacheTTL = value
                    case "refresh_interval": config.refreshInterval = value
                    default: config.commandTimeout = value
                    }
                case .failure(let message): fail(message.text)
                }
            case "log_level":
                if let level = LogLevel(configValue: entry.value) {
                    config.logLevel = level
                } else {
                    fail("expected one of ERROR, WARN, INFO, DEBUG (any case), found \(shown(entry.value))")
                }
            case "barman_command":
                if entry.value.isEmpty || entry.value.contains("\0") {
                    fail("expected the barman executable (a path or a name in PATH), found \(shown(entry.value))")
                } else {
                    config.barmanCommand = entry.value
                }
            case "barman_config_file":
                if entry.value.isEmpty || entry.value.contains("\0") {
                    fail("expected the path of a barman configuration file, found \(shown(entry.value))")
                } else {
                    config.barmanConfigFile = entry.value
                }
            default:
                var message = "unknown key '\(entry.key)'"
                if let suggestion = closestKey(to: entry.key) {
                    message += "; did you mean '\(suggestion)'?"
                } else {
                    message += "; known keys: \(knownKeys.joined(separator: ", "))"
                }
                problems.append(ConfigProblem(file: file, line: entry.keyLine, column: entry.keyColumn, message: message))
            }
        }

        guard problems.isEmpty else { return .failure(ConfigError(problems)) }
        var warnings: [String] = []
        for (key, ttl) in [("cache_ttl", config.cacheTTL), ("checks_cache_ttl", config.checksCacheTTL)] where ttl > config.refreshInterval {
            warnings.append("\(key) (\(ttl) s) is longer than refresh_interval (\(config.refreshInterval) s): some refreshes will reuse cached barman output")
        }
        return .success((config, warnings))
    }

    struct Message: Error { var text: String }

    /// Integers are accepted plain (`9780`) or quoted (`"9780"`), as the Go exporter's example config quotes the port.
    static func integer(_ entry: YAMLEntry, range: ClosedRange<Int>) -> Swift.Result<Int, Message> {
        let text = entry.value
        let digits = text.utf8.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
        guard !text.isEmpty, digits, text.utf8.count <= 18, let value = Int(text) else {
            return .failure(Message(text: "expected a whole number from \(range.lowerBound) to \(range.upperBound), found \(shown(text))"))
        }
        guard range.contains(value) else {
            return .failure(Message(text: "\(value) is out of range; expected \(range.lowerBound) to \(range.upperBound)"))
        }
        return .success(value)
    }

    /// An IPv4 or IPv6 literal, or a host name made of RFC 1123 labels.
    static func validateAddress(_ text: String) -> String? {
        if text.isEmpty { return "expected an IP address or host name, found an empty value" }
        var ipv4 = in_addr()
        var ipv6 = in6_addr()
        if inet_pton(AF_INET, text, &ipv4) == 1 || inet_pton(AF_INET6, text, &ipv6) == 1 { return nil }
        let labels = text.split(separator: ".", omittingEmptySubsequences: false)
        let validLabels = text.utf8.count <= 253 && labels.allSatisfy { label in
            guard (1...63).contains(label.utf8.count), label.first != "-", label.last != "-" else { return false }
            return label.utf8.allSatisfy { byte in
                (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                    || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "-")
            }
        }
        if validLabels { return nil }
        return "expected an IPv4/IPv6 address (without brackets or port) or a host name, found \(shown(text))"
    }

    static func shown(_ text: String) -> String {
        text.isEmpty ? "an empty value" : "'\(text)'"
    }

    /// The known key within edit distance 3 of `key`, if any (catches typos and `-` for `_`).
    static func closestKey(to key: String) -> String? {
        let normalized = key.lowercased().replacingDashes()
        if let exact = knownKeys.first(where: { $0 == normalized }) { return exact }
        let scored = knownKeys.map { ($0, editDistance(Array(normalized.utf8), Array($0.utf8))) }
        guard let best = scored.min(by: { $0.1 < $1.1 }), best.1 <= 3 else { return nil }
        return best.0
    }

    static func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}

private extension String {
    func replacingDashes() -> String {
        String(self.map { $0 == "-" ? "_" : $0 })
    }
}
