/// Where barman keeps a server's WAL catalog (`xlog.db`: one line per archived WAL file).
public struct WALCatalogLocation: Sendable, Equatable {
    /// The catalog barman uses.
    public var path: String
    /// The pre-3.13 catalog that barman >= 3.13 migrates to `path` the first time it needs it;
    /// read while `path` does not exist yet.
    public var legacyPath: String?

    public init(path: String, legacyPath: String? = nil) {
        self.path = path
        self.legacyPath = legacyPath
    }
}

/// PostgreSQL's own archiver statistics (`pg_stat_archiver`), which barman reports for servers
/// with `archiver = on` whose PostgreSQL it can reach.
public struct ArchiverStatistics: Sendable, Equatable {
    /// Failed `archive_command` runs since the statistics were last reset.
    public var failedCount: Double
    /// Unix time of the last failure; nil when there was none.
    public var lastFailedTime: Double?
    /// Unix time PostgreSQL last archived a WAL file successfully; nil when it never did.
    public var lastArchivedTime: Double?

    public init(failedCount: Double, lastFailedTime: Double? = nil, lastArchivedTime: Double? = nil) {
        self.failedCount = failedCount
        self.lastFailedTime = lastFailedTime
        self.lastArchivedTime = lastArchivedTime
    }
}

/// What `show-servers` says about one server that the metrics use. Each field is nil when
/// barman did not print it.
public struct ServerInfo: Sendable, Equatable {
    public var active: Bool?
    public var disabled: Bool?
    /// A passive node copies backups from another barman (`primary_ssh_command`).
    public var passiveNode: Bool?
    public var minimumRedundancy: Int?
    public var walCatalog: WALCatalogLocation?
    public var archiver: ArchiverStatistics?

    public init(active: Bool? = nil, disabled: Bool? = nil, passiveNode: Bool? = nil, minimumRedundancy: Int? = nil,
                walCatalog: WALCatalogLocation? = nil, archiver: ArchiverStatistics? = nil) {
        self.active = active
        self.disabled = disabled
        self.passiveNode = passiveNode
        self.minimumRedundancy = minimumRedundancy
        self.walCatalog = walCatalog
        self.archiver = archiver
    }
}

extension BarmanDecoding {
    /// `show-servers all`: about 130 (3.4) to 170 (3.20) keys per server, of which a few are
    /// kept. Read as a stream, like `list-backups`, so 200 servers never become a tree.
    public static func serverInfo(_ output: CommandOutput) throws(DecodeFailure) -> [ServerName: ServerInfo] {
        try streamServers(of: .showServers, output) { server, reader in
            guard reader.peek() == UInt8(ascii: "{") else {
                try reader.skipValue()
                throw DecodeFailure("barman \(BarmanCommand.showServers): server '\(server)': expected an object")
            }
            var fields: [String: JSONValue] = [:]
            try reader.beginObject()
            while let key = try reader.nextKey() {
                if keptServerFields.contains(key) {
                    fields[key] = try reader.readValue()
                } else {
                    try reader.skipValue()
                }
            }
            return serverInfo(server: server, fields)
        }
    }

    private static let keptServerFields: Set<String> = [
        "active", "disabled", "passive_node", "minimum_redundancy", "wals_directory", "xlogdb_directory",
        "failed_count", "last_failed_time", "last_archived_time",
    ]

    static func serverInfo(server: String, _ fields: [String: JSONValue]) -> ServerInfo {
        func bool(_ key: String) -> Bool? {
            switch fields[key] {
            case .bool(let value)?: return value
            case .string("True")?: return true
            case .string("False")?: return false
            default: return nil
            }
        }
        func time(_ key: String) -> Double? {
            guard case .string(let text)? = fields[key] else { return nil }
            return BarmanTime.parseDateTime(text)
        }
        var info = ServerInfo(active: bool("active"), disabled: bool("disabled"), passiveNode: bool("passive_node"),
                              minimumRedundancy: integer(fields["minimum_redundancy"]).flatMap { Int(exactly: $0) })
        let walsDirectory = nonEmptyString(fields["wals_directory"])
        if let xlogdbDirectory = nonEmptyString(fields["xlogdb_directory"]) {
            // barman >= 3.13: `<xlogdb_directory>/<server>-xlog.db` (Server.XLOGDB_NAME).
            info.walCatalog = WALCatalogLocation(path: xlogdbDirectory + "/" + server + "-xlog.db",
                                                 legacyPath: walsDirectory.map { $0 + "/xlog.db" })
        } else if let walsDirectory {
            info.walCatalog = WALCatalogLocation(path: walsDirectory + "/xlog.db")
        }
        if let failed = number(fields["failed_count"]) {
            info.archiver = ArchiverStatistics(failedCount: failed, lastFailedTime: time("last_failed_time"),
                                               lastArchivedTime: time("last_archived_time"))
        }
        return info
    }

    private static func nonEmptyString(_ value: JSONValue?) -> String? {
        guard case .string(let text)? = value, !text.isEmpty, text != "None" else { return nil }
        return text
    }

    /// `barman --version` prints `3.4.0 Barman by EnterpriseDB (www.enterprisedb.com)`; older
    /// releases put the version alone on the first line. The version is the first word.
    public static func version(_ output: CommandOutput) throws(DecodeFailure) -> String {
        let command = BarmanCommand.version
        try checkStatus(of: command, output, tolerated: [0])
        let word = output.stdout.prefix { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\n") && $0 != UInt8(ascii: "\t") }
        let allowed = { (byte: UInt8) in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "+")
        }
        guard let first = word.first, first >= 0x30, first <= 0x39, word.count <= 64, word.allSatisfy(allowed) else {
            throw DecodeFailure("barman \(command) printed no version number: '\(CommandFailure.excerpt(Array(output.stdout), limit: 80))'")
        }
        return String(decoding: word, as: UTF8.self)
    }
}
