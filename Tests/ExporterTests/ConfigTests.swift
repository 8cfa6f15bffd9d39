@testable import Barman
@testable import Configuration
@testable import Exporter
@testable import Exposition
@testable import Platform
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Config file")
struct ConfigTests {
    func load(_ yaml: String) -> Result<Config, ConfigError> {
        Result { () throws(ConfigError) in try ConfigLoader.parse(Array(yaml.utf8), file: "c.yaml").config }
    }

    /// The single problem reported for `yaml`, as `FILE:LINE:COLUMN: message`.
    func problem(_ yaml: String) throws -> String {
        guard case .failure(let error) = load(yaml) else {
            Issue.record("expected an error for: \(yaml)")
            return ""
        }
        try #require(error.problems.count == 1, "problems: \(error.problems)")
        return error.problems[0].description
    }

    @Test func emptyFileMeansDefaults() throws {
        let config = try load("").get()
        #expect(config == Config())
        #expect(config.address == "127.0.0.1")
        #expect(config.port == 9780)
        #expect(config.integrationType == .shell)
        #expect(config.cacheTTL == 50)
        #expect(config.checksCacheTTL == 300)
        #expect(config.refreshInterval == 60)
        #expect(config.logLevel == .warn)
        #expect(config.barmanCommand == "barman")
        #expect(config.barmanConfigFile == nil)
        #expect(config.commandTimeout == 600)
        #expect(try load("# only a comment\n\n").get() == Config())
        #expect(try load("---\n").get() == Config())
    }

    @Test func goExporterExampleConfig() throws {
        let config = try load("""
            address: 127.0.0.1
            port: "2222"
            integration_type: "shell"
            cache_ttl: 50
            checks_cache_ttl: 50
            refresh_interval: 60
            log_level: "warn"
            """).get()
        #expect(config.port == 2222)
        #expect(config.integrationType == .shell)
        #expect(config.logLevel == .warn)
    }

    @Test func everyKeySet() throws {
        let config = try load("""
            address: "::1"
            port: 9999
            integration_type: mock
            cache_ttl: 0
            checks_cache_ttl: 300
            refresh_interval: 1
            log_level: DeBuG
            barman_command: /usr/local/bin/barman
            barman_config_file: /etc/barman.conf
            command_timeout: 30
            """).get()
        #expect(config.address == "::1")
        #expect(config.port == 9999)
        #expect(config.integrationType == .mock)
        #expect(config.cacheTTL == 0)
        #expect(config.checksCacheTTL == 300)
        #expect(config.refreshInterval == 1)
        #expect(config.logLevel == .debug)
        #expect(config.barmanCommand == "/usr/local/bin/barman")
        #expect(config.barmanConfigFile == "/etc/barman.conf")
        #expect(config.commandTimeout == 30)
    }

    @Test func hostNamesAndAddresses() throws {
        for address in ["localhost", "0.0.0.0", "::", "backup-01.example.com", "fe80::1"] {
            #expect(try load("address: \"\(address)\"\n").get().address == address)
        }
        #expect(try problem("address: \"[::1]:80\"\n") == "c.yaml:1:10: address: expected an IPv4/IPv6 address (without brackets or port) or a host name, found '[::1]:80'")
        #expect(try problem("address: bad_host\n").hasPrefix("c.yaml:1:10: address: expected an IPv4/IPv6"))
    }

    @Test func unknownKeySuggestsTheClosest() throws {
        #expect(try problem("port: 1\ncache-ttl: 5\n") == "c.yaml:2:1: unknown key 'cache-ttl'; did you mean 'cache_ttl'?")
        #expect(try problem("refresh_intervall: 5\n") == "c.yaml:1:1: unknown key 'refresh_intervall'; did you mean 'refresh_interval'?")
        #expect(try problem("listen: x\n").hasPrefix("c.yaml:1:1: unknown key 'listen'; known keys: address, port,"))
    }

    @Test func nestedMappingOrListIsRejected() throws {
        #expect(try problem("port: 1\nweb:\n  port: 2\n") == "c.yaml:3:3: 'web' has a nested mapping; all options are first-level (\"key: value\")")
        #expect(try problem("address: [a, b]\n") == "c.yaml:1:10: 'address' has a nested list; all options are first-level (\"key: value\")")
        #expect(try problem("- port: 1\n") == "c.yaml:1:1: the config must be a mapping of 'key: value' lines, found a list")
        #expect(try problem("9780\n") == "c.yaml:1:1: the config must be a mapping of 'key: value' lines, found a single value")
    }

    @Test func duplicateKeyIsRejected() throws {
        #expect(try problem("port: 1\nlog_level: info\nport: 2\n") == "c.yaml:3:1: duplicate key 'port' (first set on line 1)")
    }

    @Test func wrongTypesAndRanges() throws {
        #expect(try problem("port: abc\n") == "c.yaml:1:7: port: expected a whole number from 1 to 65535, found 'abc'")
        #expect(try problem("port: 0\n") == "c.yaml:1:7: port: 0 is out of range; expected 1 to 65535")
        #expect(try problem("port: 65536\n") == "c.yaml:1:7: port: 65536 is out of range; expected 1 to 65535")
        #expect(try problem("port:\n") == "c.yaml:1:6: port: expected a whole number from 1 to 65535, found an empty value")
        #expect(try problem("cache_ttl: -1\n") == "c.yaml:1:12: cache_ttl: expected a whole number from 0 to 31536000, found '-1'")
        #expect(try problem("checks_cache_ttl: 1.5\n") == "c.yaml:1:19: checks_cache_ttl: expected a whole number from 0 to 31536000, found '1.5'")
        #expect(try problem("refresh_interval: 0\n") == "c.yaml:1:19: refresh_interval: 0 is out of range; expected 1 to 31536000")
        #expect(try problem("command_timeout: yes\n") == "c.yaml:1:18: command_timeout: expected a whole number from 1 to 31536000, found 'yes'")
        #expect(try problem("integration_type: Shell\n") == "c.yaml:1:19: integration_type: expected 'shell' or 'mock', found 'Shell'")
        #expect(try problem("log_level: verbose\n") == "c.yaml:1:12: log_level: expected one of ERROR, WARN, INFO, DEBUG (any case), found 'verbose'")
        #expect(try problem("barman_command: \"\"\n") == "c.yaml:1:17: barman_command: expected the barman executable (a path or a name in PATH), found an empty value")
    }

    @Test func everyProblemIsReported() throws {
        guard case .failure(let error) = load("port: x\nbogus: 1\nlog_level: loud\n") else {
            Issue.record("expected errors")
            return
        }
        #expect(error.problems.map(\.line) == [1, 2, 3])
    }

    @Test func moreThanOneDocument() throws {
        #expect(try problem("port: 1\n---\nport: 2\n") == "c.yaml:2:1: more than one YAML document; the config is a single flat mapping")
    }

    @Test func anchorsAliasesAndTagsAreRejected() throws {
        guard case .failure(let anchors) = load("port: &p 1\ncache_ttl: *p\n") else {
            Issue.record("expected errors")
            return
        }
        #expect(anchors.problems.map(\.description) == [
            "c.yaml:1:7: anchors (&name) are not supported (key 'port')",
            "c.yaml:2:12: aliases (*name) are not supported (key 'cache_ttl'); write the value out",
        ])
        #expect(try problem("port: !!str 9780\n") == "c.yaml:1:7: tags (!tag) are not supported (key 'port'); write a plain or quoted value")
    }

    @Test func invalidYAMLHasAPosition() throws {
        #expect(try problem("port: \"9780\n") == "c.yaml:2:1: invalid YAML: found unexpected end of stream (while scanning a quoted scalar)")
        #expect(try problem("port: 1\n\tcache_ttl: 2\n") == "c.yaml:2:1: invalid YAML: found a tab character that violates indentation (while scanning a plain scalar)")
    }

    @Test func invalidUTF8IsReportedWithItsPosition() throws {
        let bytes: [UInt8] = Array("port: 1\naddress: ".utf8) + [0xC3, 0x28] + Array("\n".utf8)
        guard case .failure(let error) = Result(catching: { () throws(ConfigError) in try ConfigLoader.parse(bytes, file: "c.yaml") }) else {
            Issue.record("expected an error")
            return
        }
        #expect(error.problems.first?.description == "c.yaml:2:11: invalid YAML: invalid trailing UTF-8 octet (the file must be UTF-8 text)")
    }

    @Test func missingFileIsOneLine() {
        guard case .failure(let error) = Result(catching: { () throws(ConfigError) in try ConfigLoader.load(path: "/nonexistent/config.yaml") }) else {
            Issue.record("expected an error")
            return
        }
        #expect(error.description == "/nonexistent/config.yaml: cannot open '/nonexistent/config.yaml': No such file or directory")
    }

    /// A FIFO (or device) given as the config must not block the reader, which would hold up
    /// `--check-config` and a reload for ever.
    @Test func aConfigThatIsNotARegularFileIsRefusedWithoutBlocking() throws {
        let directory = try TestSupport.temporaryDirectory()
        defer { TestSupport.removeTree(directory) }
        let fifo = directory + "/config.yaml"
        try #require(mkfifo(fifo, 0o600) == 0)
        guard case .failure(let error) = Result(catching: { () throws(ConfigError) in try ConfigLoader.load(path: fifo) }) else {
            Issue.record("expected an error")
            return
        }
        #expect(error.description == "\(fifo): cannot read '\(fifo)': not a regular file; give the path of the config file itself")
        guard case .failure(let directoryError) = Result(catching: { () throws(ConfigError) in try ConfigLoader.load(path: directory) }) else {
            Issue.record("expected an error")
            return
        }
        #expect(directoryError.description.hasSuffix("not a regular file; give the path of the config file itself"))
    }

    /// libyaml's time grows with the square of the nesting depth (100k levels took 26 s): the
    /// nested value is reported, and parsing stops 16 levels into it.
    @Test func deepNestingStopsAtTheFirstNestedCollection() throws {
        let yaml = "port: 1\nbad: " + String(repeating: "[", count: 500_000) + "\n"
        #expect(try problem(yaml) == "c.yaml:2:6: 'bad' has a nested list; all options are first-level (\"key: value\")")
    }

    @Test func refreshIntervalShorterThanATTLIsOnlyAWarning() throws {
        let (config, warnings) = try ConfigLoader.parse(Array("refresh_interval: 30\ncache_ttl: 60\nchecks_cache_ttl: 600\n".utf8), file: "c.yaml").pair
        #expect(config.refreshInterval == 30)
        #expect(warnings == ["cache_ttl (60 s) is longer than refresh_interval (30 s): some refreshes will reuse cached barman output"])
    }

    @Test func shippedExampleConfigsAreValid() throws {
        for path in ["examples/mock.yaml", "examples/config.yaml"] {
            #expect(throws: Never.self, "\(path)") { try ConfigLoader.load(path: TestSupport.packageRoot + "/" + path) }
        }
    }
}

@Suite("Command line")
struct CommandLineTests {
    func parse(_ arguments: [String]) -> Result<CommandLineAction, UsageError> {
        Result { () throws(UsageError) in try CommandLineOptions.parse(arguments) }
    }

    @Test func flags() {
        #expect(parse(["-config", "a.yaml"]) == .success(.run(configPath: "a.yaml", webConfigPath: nil)))
        #expect(parse(["--config", "a.yaml"]) == .success(.run(configPath: "a.yaml", webConfigPath: nil)))
        #expect(parse(["--config=a.yaml"]) == .success(.run(configPath: "a.yaml", webConfigPath: nil)))
        #expect(parse(["--check-config", "-config", "a.yaml"]) == .success(.checkConfig(configPath: "a.yaml", webConfigPath: nil)))
        #expect(parse(["-help"]) == .success(.help))
        #expect(parse(["--version"]) == .success(.version))
        #expect(parse(["--once", "-config", "a.yaml"]) == .success(.once(configPath: "a.yaml", output: nil)))
        #expect(parse(["-config", "a.yaml", "--output", "/x/b.prom"]) == .success(.once(configPath: "a.yaml", output: "/x/b.prom")))
        #expect(parse(["--check-config", "--once", "-config", "a.yaml"]) == .failure(UsageError("--check-config cannot be combined with --once or --output")))
        #expect(parse(["-config", "a.yaml", "--web.config.file", "w.yml"]) == .success(.run(configPath: "a.yaml", webConfigPath: "w.yml")))
        #expect(parse(["--web.config.file=w.yml", "--check-config", "-config", "a.yaml"]) == .success(.checkConfig(configPath: "a.yaml", webConfigPath: "w.yml")))
        #expect(parse(["--once", "-config", "a.yaml", "--web.config.file", "w.yml"]) == .failure(UsageError("--web.config.file is for serving; --once and --output serve nothing")))
    }

    /// exporter-toolkit's flags.
    @Test func exporterToolkitFlags() {
        var flags = RuntimeFlags()
        flags.listenAddresses = [ListenAddress(host: "127.0.0.1", port: 9780), ListenAddress(host: "::1", port: 9781), ListenAddress(host: "::", port: 9782)]
        flags.telemetryPath = "/barman/metrics"
        flags.logLevel = .debug
        flags.logFormat = .json
        #expect(parse(["-config", "a.yaml", "--web.listen-address", "127.0.0.1:9780", "--web.listen-address=[::1]:9781", "--web.listen-address", ":9782",
                       "--web.telemetry-path", "/barman/metrics", "--log.level=DEBUG", "--log.format", "json"])
                == .success(.run(configPath: "a.yaml", webConfigPath: nil, flags: flags)))
        var socket = RuntimeFlags()
        socket.systemdSocket = true
        #expect(parse(["-config", "a.yaml", "--web.systemd-socket"]) == .success(.run(configPath: "a.yaml", webConfigPath: nil, flags: socket)))
        var logOnly = RuntimeFlags()
        logOnly.logFormat = .json
        #expect(parse(["--once", "-config", "a.yaml", "--log.format", "json"]) == .success(.once(configPath: "a.yaml", output: nil, flags: logOnly)))
        #expect(parse(["--check-config", "-config", "a.yaml", "--web.listen-address", "host.example:80"])
                == .success(.checkConfig(configPath: "a.yaml", webConfigPath: nil, flags: { var f = RuntimeFlags(); f.listenAddresses = [ListenAddress(host: "host.example", port: 80)]; return f }())))
        for bad in ["9780", "::1:9780", "[::1]9780", "[host]:80", "127.0.0.1:", "127.0.0.1:65536", "a b:80", "[::1]:x"] {
            #expect(ListenAddress(parsing: bad) == nil, "\(bad)")
        }
        for (arguments, message) in [(["--web.telemetry-path", "/"], "--web.telemetry-path: expected a path such as /metrics (starting with /, not / itself, no spaces, ? or #), found '/'"),
                                     (["--web.telemetry-path", "/a?b"], "--web.telemetry-path: expected a path such as /metrics (starting with /, not / itself, no spaces, ? or #), found '/a?b'"),
                                     (["--log.level"], "--log.level needs a value; see --help"),
                                     (["--web.systemd-socket", "--web.listen-address", ":1"], "--web.systemd-socket and --web.listen-address exclude each other: systemd's socket unit says where to listen"),
                                     (["--once", "--web.telemetry-path", "/x"], "--web.* flags are for serving; --once and --output serve nothing")] {
            #expect(parse(["-config", "a.yaml"] + arguments) == .failure(UsageError(message)), "\(arguments)")
        }
    }

    @Test func packagedConfigWhenNoConfigIsGiven() {
        let packaged = CommandLineOptions.packagedConfigPath
        #expect(packaged == "/etc/prometheus-barman-exporter/config.yaml")
        #expect(Result { () throws(UsageError) in try CommandLineOptions.parse([], packagedConfigExists: true) }
                == .success(.run(configPath: packaged, webConfigPath: nil)))
        #expect(Result { () throws(UsageError) in try CommandLineOptions.parse(["--check-config"], packagedConfigExists: true) }
                == .success(.checkConfig(configPath: packaged, webConfigPath: nil)))
        // -config still wins.
        #expect(Result { () throws(UsageError) in try CommandLineOptions.parse(["-config", "a.yaml"], packagedConfigExists: true) }
                == .success(.run(configPath: "a.yaml", webConfigPath: nil)))
    }

    @Test func errors() {
        #expect(parse([]) == .failure(UsageError("missing -config FILE, and /etc/prometheus-barman-exporter/config.yaml does not exist; e.g. prometheus-barman-exporter -config /etc/barman-exporter.yaml")))
        #expect(parse(["--web.config.file"]) == .failure(UsageError("--web.config.file needs a file path, e.g. --web.config.file /etc/prometheus-barman-exporter/web.yml")))
        #expect(parse(["-config"]) == .failure(UsageError("-config needs a file path, e.g. -config /etc/prometheus-barman-exporter/config.yaml")))
        #expect(parse(["--port", "1"]) == .failure(UsageError("unknown flag '--port'; see --help")))
        #expect(parse(["-config", "a.yaml", "--output"]) == .failure(UsageError("--output needs a file path, e.g. --output /var/lib/prometheus/node-exporter/barman.prom")))
        #expect(parse(["--config="]) == .failure(UsageError("-config needs a non-empty file path")))
    }
}

private extension LoadedConfig {
    var pair: (Config, [String]) { (config, warnings) }
}

/// servers_include / servers_exclude: the only keys that take a list, and what they select.
@Suite("Server selection")
struct ServerSelectionTests {
    let config = ConfigTests()

    @Test func listsOfNamesAndGlobs() throws {
        let flow = try config.load("servers_include: [pg-main, 'prod-*']\nservers_exclude:\n  - prod-old\n  - \"tmp?\"\n").get()
        #expect(flow.serversInclude == ["pg-main", "prod-*"])
        #expect(flow.serversExclude == ["prod-old", "tmp?"])
        #expect(try config.load("servers_include: []\nservers_exclude:\n").get().serverSelection.selectsAll)
        let selection = flow.serverSelection
        #expect(selection.includes("pg-main") && selection.includes("prod-a"))
        #expect(!selection.includes("prod-old") && !selection.includes("pg-other"))
        #expect(ServerSelection(exclude: ["tmp?"]).includes("tmp10") && !ServerSelection(exclude: ["tmp?"]).includes("tmp1"))
        #expect(ServerSelection(include: ["pg-[ab]"], exclude: []).includes("pg-b") && !ServerSelection(include: ["pg-[ab]"]).includes("pg-c"))
        #expect(selection.unmatched(by: ["pg-main", "prod-a"]) == ["servers_exclude: prod-old", "servers_exclude: tmp?"])
    }

    @Test func listsAreRefusedWhereTheyDoNotBelongAndItemsAreChecked() throws {
        // Other keys still take no list, with the same positioned message.
        #expect(try config.problem("address: [a, b]\n") == "c.yaml:1:10: 'address' has a nested list; all options are first-level (\"key: value\")")
        // A single value where a list is expected, nesting inside the list, a bad item.
        #expect(try config.problem("servers_include: pg-main\n") == "c.yaml:1:18: servers_include: expected a list, e.g. [pg-main, 'pg-*'], found 'pg-main'")
        #expect(try config.problem("servers_include:\n  - a\n  - [b, c]\n") == "c.yaml:3:5: 'servers_include' has a nested list in its list; each item is one value (a name or a pattern)")
        #expect(try config.problem("servers_exclude:\n  - {name: x}\n") == "c.yaml:2:5: 'servers_exclude' has a nested mapping in its list; each item is one value (a name or a pattern)")
        #expect(try config.problem("servers_exclude: [ok, 'a/b']\n") == "c.yaml:1:23: servers_exclude: item 2: expected a server name or a shell glob such as 'pg-*', found 'a/b'")
        #expect(try config.problem("servers_exclude: [a]\nservers_exclude: [b]\n") == "c.yaml:2:1: duplicate key 'servers_exclude' (first set on line 1)")
        // Whatever follows a refused list is still read.
        guard case .failure(let error) = config.load("servers_include:\n  - [x]\nport: 0\n") else { Issue.record("accepted"); return }
        #expect(error.problems.map(\.line) == [2, 3])
    }

    @Test func barmanConfigIsAnotherNameOfBarmanConfigFile() throws {
        #expect(try config.load("barman_config: /etc/barman-test.conf\n").get().barmanConfigFile == "/etc/barman-test.conf")
        #expect(try config.problem("barman_config_file: /a\nbarman_config: /b\n")
                == "c.yaml:2:1: duplicate key 'barman_config' (first set on line 1 as 'barman_config_file')")
    }

    /// A server left out costs no show-backup and serves no series; a pattern that matches no
    /// server is logged once.
    @Test func serversLeftOutAreNeverAskedAboutNorServed() async throws {
        let barman = ScriptedBarman()
        try barman.answerFromFixtures("3.4.0")
        let store = SnapshotStore(MetricsSnapshot(version: "test"))
        let log = try LogCapture()
        let settings = RefreshSettings(cacheTTL: .zero, checksCacheTTL: .zero, refreshInterval: .seconds(60),
                                       serverSelection: ServerSelection(include: ["pg*", "nosuch-*"], exclude: ["pg"]))
        let refresher = Refresher(runner: barman, settings: settings, store: store, logger: log.logger(.warn))
        await refresher.refreshCycle()
        await refresher.refreshCycle()
        #expect(!barman.invocations.contains { $0.hasPrefix("show-backup pg ") }, "\(barman.invocations)")
        let text = TestSupport.exposition(store.snapshot, now: 1_795_600_000)
        #expect(!text.contains("server=\"pg\""))
        #expect(text.contains("barman_backups_total{server=\"pg2\"}") && text.contains("barman_backups_total{server=\"pg3\"}"))
        let logged = try log.text
        #expect(logged.ranges(of: "pattern=\"servers_include: nosuch-*\"").count == 1, "logged once: \(logged)")
    }
}
