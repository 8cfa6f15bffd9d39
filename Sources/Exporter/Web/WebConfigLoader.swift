import Platform
import Exposition
import Configuration
import Barman

/// Reads and checks a web config file: every key known, every value of the right type, the
/// certificate, key and CA files readable and usable together, the bcrypt hashes well-formed.
/// Reports every problem at once as `FILE:LINE:COLUMN: message`. Keys exporter-toolkit has and
/// this exporter does not support are errors naming the key, never silently ignored.
public enum WebConfigLoader {
    public static let topLevelKeys = ["tls_server_config", "http_server_config", "basic_auth_users"]
    public static let tlsKeys = ["cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version"]
    /// exporter-toolkit's keys that have no equivalent here yet, with what to do instead.
    static let unsupported: [String: String] = [
        "rate_limit": "limit request rates in front of the exporter (a reverse proxy) or remove it",
        "cert": "put the certificate in a file and give cert_file",
        "key": "put the key in a file and give key_file",
        "client_ca": "put the CA certificates in a file and give client_ca_file",
        "client_allowed_sans": "issue client certificates from a CA that signs only the scrapers' certificates",
        "cipher_suites": "remove it: GnuTLS's NORMAL cipher suites are used, AES-128-GCM first",
        "curve_preferences": "remove it: GnuTLS's NORMAL curves are used",
        "prefer_server_cipher_suites": "remove it",
    ]
    /// exporter-toolkit's allowed response headers, with the values it allows (nil: any value).
    static let allowedHeaders: [String: [String]?] = [
        "Strict-Transport-Security": nil,
        "X-Content-Type-Options": ["nosniff"],
        "X-Frame-Options": ["deny", "sameorigin"],
        "X-XSS-Protection": nil,
        "Content-Security-Policy": nil,
    ]

    public static func load(path: String) throws(ConfigError) -> WebConfig {
        try parse(ConfigLoader.readFile(path), file: path)
    }

    /// Relative file names in the web config are relative to its own directory, as in
    /// exporter-toolkit.
    public static func parse(_ bytes: [UInt8], file: String) throws(ConfigError) -> WebConfig {
        let tree = YAMLTree.parse(bytes, file: file)
        guard tree.problems.isEmpty else { throw ConfigError(tree.problems) }
        // Fail closed: an empty file (a half-written deploy, a truncation) must not turn TLS and
        // authentication off. No web config at all is how to serve plain HTTP.
        if tree.root == nil || tree.root.map({ if case .scalar(let scalar) = $0 { scalar.isNull } else { false } }) == true {
            throw ConfigError([ConfigProblem(file: file, line: 1, column: 1, message:
                "the web config is empty; write its settings (tls_server_config, basic_auth_users...), or to serve plain HTTP without authentication remove --web.config.file / web_config_file")])
        }
        var reader = Reader(file: file)
        let config = reader.webConfig(tree.root)
        guard reader.problems.isEmpty else { throw ConfigError(reader.problems) }
        return config
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    private struct Reader {
        let file: String
        var problems: [ConfigProblem] = []

        init(file: String) {
            self.file = file
        }

        mutating func problem(_ node: YAMLNode, _ message: String) {
            problems.append(ConfigProblem(file: file, line: node.line, column: node.column, message: message))
        }

        mutating func problem(_ key: YAMLScalar, _ message: String) {
            problem(.scalar(key), message)
        }

        /// The entries of a mapping; nil (and a problem) for anything else but nothing.
        mutating func mapping(_ node: YAMLNode?, _ name: String) -> [(key: YAMLScalar, value: YAMLNode)]? {
            guard let node else { return [] }
            switch node {
            case .mapping(let entries, _, _): return entries
            case .scalar(let scalar) where scalar.isNull: return []
            case .scalar: problem(node, "\(name) must be a mapping of 'key: value' lines, found a single value"); return nil
            case .sequence: problem(node, "\(name) must be a mapping of 'key: value' lines, found a list"); return nil
            }
        }

        mutating func string(_ node: YAMLNode, _ name: String) -> String? {
            guard case .scalar(let scalar) = node else {
                problem(node, "\(name) must be a single value, found a \(node.isMapping ? "mapping" : "list")")
                return nil
            }
            guard !scalar.isNull, !scalar.value.isEmpty else {
                problem(node, "\(name) is empty; give a value or remove the key")
                return nil
            }
            return scalar.value
        }

        mutating func unknownKey(_ key: YAMLScalar, in section: String, known: [String]) {
            if let hint = WebConfigLoader.unsupported[key.value] {
                problem(key, "\(section)\(key.value) is not supported by prometheus-barman-exporter; \(hint)")
            } else {
                problem(key, "unknown key '\(section)\(key.value)'; known keys: \(known.joined(separator: ", "))")
            }
        }

        mutating func webConfig(_ root: YAMLNode?) -> WebConfig {
            var config = WebConfig()
            guard let entries = mapping(root, "the web config") else { return config }
            for (key, value) in entries {
                switch key.value {
                case "tls_server_config":
                    config.tls = tlsServerConfig(value)
                case "http_server_config":
                    config.headers = httpServerConfig(value)
                case "basic_auth_users":
                    config.basicAuthUsers = users(value)
                default:
                    unknownKey(key, in: "", known: WebConfigLoader.topLevelKeys)
                }
            }
            return config
        }

        mutating func tlsServerConfig(_ node: YAMLNode) -> TLSServerConfig? {
            guard let entries = mapping(node, "tls_server_config") else { return nil }
            if entries.isEmpty { return nil }  // exporter-toolkit: no certificate, plain HTTP
            var values: [String: (text: String, node: YAMLNode)] = [:]
            for (key, value) in entries {
                guard WebConfigLoader.tlsKeys.contains(key.value) else {
                    unknownKey(key, in: "tls_server_config.", known: WebConfigLoader.tlsKeys)
                    continue
                }
                if let text = string(value, "tls_server_config.\(key.value)") { values[key.value] = (text, value) }
            }
            var clientAuth = ClientAuthType.noClientCert
            if let type = values["client_auth_type"] {
                if let parsed = ClientAuthType(rawValue: type.text) {
                    clientAuth = parsed
                } else {
                    problem(type.node, "tls_server_config.client_auth_type '\(type.text)' is not one of \(ClientAuthType.allCases.map(\.rawValue).joined(separator: ", "))")
                }
            }
            var versions = (minimum: TLSVersion.tls12, maximum: TLSVersion.tls13)
            for (name, keyPath) in [("min_version", \(minimum: TLSVersion, maximum: TLSVersion).minimum), ("max_version", \.maximum)] {
                guard let version = values[name] else { continue }
                if let parsed = TLSVersion(rawValue: version.text) {
                    versions[keyPath: keyPath] = parsed
                } else {
                    problem(version.node, "tls_server_config.\(name) '\(version.text)' is not one of \(TLSVersion.allCases.map(\.rawValue).joined(separator: ", "))")
                }
            }
            if versions.minimum > versions.maximum, let node = values["min_version"]?.node ?? values["max_version"]?.node {
                problem(node, "tls_server_config.min_version (\(versions.minimum.rawValue)) is above max_version (\(versions.maximum.rawValue))")
            }
            guard let cert = values["cert_file"], let key = values["key_file"] else {
                let missing = values["cert_file"] == nil ? "cert_file" : "key_file"
                problem(node, "tls_server_config needs both cert_file and key_file; \(missing) is missing")
                return nil
            }
            let base = WebConfigLoader.directory(of: file)
            func resolved(_ path: String) -> String { path.hasPrefix("/") ? path : base + "/" + path }
            var tls = TLSServerConfig(certFile: resolved(cert.text), keyFile: resolved(key.text))
            tls.clientAuth = clientAuth
            tls.minVersion = versions.minimum
            tls.maxVersion = versions.maximum
            tls.clientCAFile = values["client_ca_file"].map { resolved($0.text) }
            if tls.clientAuth != .noClientCert && tls.clientCAFile == nil {
                // libmicrohttpd asks clients for a certificate only when it has CAs to name.
                problem(values["client_auth_type"]?.node ?? node,
                        "tls_server_config.client_auth_type \(tls.clientAuth.rawValue) needs client_ca_file (the CA certificates that sign the scrapers' certificates)")
            }
            if tls.clientAuth == .noClientCert, let ca = values["client_ca_file"] {
                problem(ca.node, "tls_server_config.client_ca_file is set but client_auth_type is NoClientCert; set client_auth_type: RequireAndVerifyClientCert to check client certificates, or remove client_ca_file")
            }
            guard problems.isEmpty else { return tls }
            tls.certificatePEM = read(tls.certFile, key: "cert_file", at: cert.node)
            tls.keyPEM = read(tls.keyFile, key: "key_file", at: key.node)
            if let caFile = tls.clientCAFile, let node = values["client_ca_file"]?.node { tls.clientCAPEM = read(caFile, key: "client_ca_file", at: node) }
            guard problems.isEmpty else { return tls }
            switch TLSCredentials.check(certificate: tls.certificatePEM, key: tls.keyPEM, clientCA: tls.clientCAPEM) {
            case .usable(let notAfter):
                tls.notAfter = notAfter
            case .badCertificateOrKey(let reason):
                problem(cert.node, "tls_server_config: cannot use cert_file \(tls.certFile) with key_file \(tls.keyFile): \(reason)")
            case .badClientCA(let reason):
                problem(values["client_ca_file"]?.node ?? node, "tls_server_config.client_ca_file \(tls.clientCAFile ?? ""): \(reason)")
            }
            return tls
        }

        mutating func read(_ path: String, key: String, at node: YAMLNode) -> [UInt8] {
            do {
                return try FileReader.readAll(path: path, limit: 1 << 20, regularOnly: true)
            } catch {
                problem(node, "tls_server_config.\(key): \(error.description)")
                return []
            }
        }

        mutating func httpServerConfig(_ node: YAMLNode) -> [HTTPHeaderField] {
            guard let entries = mapping(node, "http_server_config") else { return [] }
            var headers: [HTTPHeaderField] = []
            for (key, value) in entries {
                switch key.value {
                case "headers":
                    guard let fields = mapping(value, "http_server_config.headers") else { continue }
                    var seen: [String: Int] = [:]
                    for (name, fieldValue) in fields {
                        guard let text = string(fieldValue, "http_server_config.headers.\(name.value)") else { continue }
                        guard let canonical = WebConfigLoader.allowedHeaders.keys.first(where: { $0.lowercased() == name.value.lowercased() }) else {
                            problem(name, "http_server_config.headers: '\(name.value)' cannot be set; allowed: \(WebConfigLoader.allowedHeaders.keys.sorted().joined(separator: ", "))")
                            continue
                        }
                        if let allowed = WebConfigLoader.allowedHeaders[canonical] ?? nil, !allowed.contains(text.lowercased()) {
                            problem(fieldValue, "http_server_config.headers.\(canonical) '\(text)' is not one of \(allowed.joined(separator: ", "))")
                            continue
                        }
                        if text.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) {
                            problem(fieldValue, "http_server_config.headers.\(canonical) contains a control character")
                            continue
                        }
                        // Header names are case-insensitive: two spellings of one name would send it twice.
                        if let first = seen[canonical] {
                            problem(name, "http_server_config.headers: '\(name.value)' is '\(canonical)' again (first set on line \(first)); header names ignore case, keep one")
                            continue
                        }
                        seen[canonical] = name.line
                        headers.append(HTTPHeaderField(name: canonical, value: text))
                    }
                case "http2":
                    // libmicrohttpd speaks HTTP/1.1 only; `false` says what it does anyway.
                    if case .scalar(let flag) = value, flag.plain, flag.value == "false" { continue }
                    problem(value, "http_server_config.http2: HTTP/2 is not supported (libmicrohttpd serves HTTP/1.1); remove the key or set it to false")
                default:
                    unknownKey(key, in: "http_server_config.", known: ["headers", "http2"])
                }
            }
            return headers.sorted { $0.name < $1.name }
        }

        mutating func users(_ node: YAMLNode) -> [String: String] {
            guard let entries = mapping(node, "basic_auth_users") else { return [:] }
            var users: [String: String] = [:]
            for (user, value) in entries {
                guard let hash = string(value, "basic_auth_users.\(user.value)") else { continue }
                if user.value.isEmpty || user.value.contains(":") {
                    problem(user, "basic_auth_users: a user name must be non-empty and have no ':' (basic auth splits user and password there)")
                    continue
                }
                guard Bcrypt.isValidHash(hash) else {
                    problem(value, "basic_auth_users.\(user.value) is not a bcrypt hash ($2y$, $2b$ or $2a$, cost \(Bcrypt.costs.lowerBound)-\(Bcrypt.costs.upperBound), 60 characters); make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'")
                    continue
                }
                users[user.value] = hash
            }
            return users
        }
    }
}

extension YAMLNode {
    var isMapping: Bool {
        if case .mapping = self { return true }
        return false
    }
}
