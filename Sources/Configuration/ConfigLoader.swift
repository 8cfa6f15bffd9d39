import Platform

/// A valid config and what is worth a warning about it.
public struct LoadedConfig: Sendable, Equatable {
    public var config: Config
    public var warnings: [String]
}

/// Reads and validates the config file: every key known, every value of the right type and
/// range, no key twice. Reports all problems at once so an operator fixes them in one go.
public enum ConfigLoader {
    /// Every key the config accepts, in documentation order.
    public static var knownKeys: [String] { ConfigKey.all.map(\.name) }

    /// Loads `path`. A missing or unreadable file is one problem without a position (line 0).
    public static func load(path: String) throws(ConfigError) -> LoadedConfig {
        try parse(readFile(path), file: path)
    }

    /// The bytes of a config file (this one or the web config): a regular file of at most
    /// 1 MiB, or one problem naming it.
    package static func readFile(_ path: String) throws(ConfigError) -> [UInt8] {
        do {
            return try FileReader.readAll(path: path, limit: 1 << 20, regularOnly: true)
        } catch {
            throw ConfigError([ConfigProblem(file: path, line: 0, column: 0, message: error.description)])
        }
    }

    public static func parse(_ bytes: [UInt8], file: String) throws(ConfigError) -> LoadedConfig {
        let yaml = YAMLFlatMap.parse(bytes, file: file, listKeys: Set(ConfigKey.all.filter(\.takesList).map(\.name)))
        var problems = yaml.problems
        var config = Config()
        var seen: [String: (line: Int, spelled: String)] = [:]

        for entry in yaml.entries {
            // A setting with two names (barman_config, barman_config_file) is set once.
            let setting = ConfigKey.named(entry.key)?.sameAs ?? entry.key
            if let first = seen[setting] {
                let spelled = first.spelled == entry.key ? "" : " as '\(first.spelled)'"
                problems.append(ConfigProblem(file: file, line: entry.keyLine, column: entry.keyColumn,
                                              message: "duplicate key '\(entry.key)' (first set on line \(first.line)\(spelled))"))
                continue
            }
            seen[setting] = (entry.keyLine, entry.key)
            guard let key = ConfigKey.named(entry.key) else {
                var message = "unknown key '\(entry.key)'"
                if let suggestion = closestKey(to: entry.key) {
                    message += "; did you mean '\(suggestion)'?"
                } else {
                    message += "; known keys: \(knownKeys.joined(separator: ", "))"
                }
                problems.append(ConfigProblem(file: file, line: entry.keyLine, column: entry.keyColumn, message: message))
                continue
            }
            do {
                if let items = entry.items, let assignList = key.assignList {
                    try assignList(items, &config)
                } else {
                    try key.assign(entry.value, &config)
                }
            } catch {
                problems.append(ConfigProblem(file: file, line: error.line ?? entry.valueLine, column: error.column ?? entry.valueColumn,
                                              message: "\(entry.key): \(error.message)"))
            }
        }

        guard problems.isEmpty else { throw ConfigError(problems) }
        var warnings: [String] = []
        // checks_cache_ttl and servers_cache_ttl are longer than the interval by design.
        if config.cacheTTL > config.refreshInterval {
            warnings.append("cache_ttl (\(config.cacheTTL) s) is longer than refresh_interval (\(config.refreshInterval) s): some refreshes will reuse cached barman output")
        }
        return LoadedConfig(config: config, warnings: warnings)
    }

    /// Every setting as (key, value), for the debug log line written at start and on reload.
    public static func settings(_ config: Config) -> [(String, String)] {
        ConfigKey.all.map { ($0.name, $0.show(config)) }
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
