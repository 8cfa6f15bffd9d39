// Shared by the unit tests and the libFuzzer targets (scripts/fuzz.sh links this file into the
// fuzzers with the exporter's modules).
@testable import Barman
@testable import Configuration
@testable import Exporter
@testable import Exposition
@testable import Platform

/// What the fuzzers feed arbitrary bytes to. Any input must give a value or an error, never a
/// crash, hang or unbounded allocation.
enum FuzzHarness {
    /// The config loader, as for a file named fuzz.yaml.
    static func config(_ bytes: [UInt8]) {
        do {
            let config = try ConfigLoader.parse(bytes, file: "fuzz.yaml").config
            precondition((1...65535).contains(config.port), "accepted an invalid port")
        } catch {
            precondition(!error.problems.isEmpty, "failure without a problem")
            for problem in error.problems { precondition(problem.line >= 1 && problem.column >= 1, "problem without a position: \(problem)") }
        }
    }

    /// The web config loader (exporter-toolkit's format), as for a file named fuzz-web.yml.
    static func webConfig(_ bytes: [UInt8]) {
        do {
            let web = try WebConfigLoader.parse(bytes, file: "fuzz-web.yml")
            for hash in web.basicAuthUsers.values { precondition(Bcrypt.isValidHash(hash), "accepted an invalid hash") }
            if let tls = web.tls {
                precondition(!tls.certificatePEM.isEmpty && !tls.keyPEM.isEmpty, "TLS accepted without its certificate and key")
                precondition(tls.minVersion <= tls.maxVersion, "accepted min_version above max_version")
            }
            for header in web.headers { precondition(WebConfigLoader.allowedHeaders[header.name] != nil, "accepted header \(header.name)") }
        } catch {
            precondition(!error.problems.isEmpty, "failure without a problem")
            for problem in error.problems { precondition(problem.line >= 1 && problem.column >= 1, "problem without a position: \(problem)") }
        }
    }

    /// barman output through every decoder, and whatever decodes through the metrics renderer.
    static func barmanJSON(_ bytes: [UInt8]) {
        for exitStatus: Int32 in [0, 1] {
            let output = CommandOutput(stdout: bytes, exitStatus: exitStatus)
            var snapshot = MetricsSnapshot(version: "fuzz")
            snapshot.backups = try? BarmanDecoding.backupList(output)
            // list-backups is read as a stream, the other answers as trees: both must be as strict.
            if snapshot.backups != nil {
                precondition((try? JSONParser.parse(bytes)) != nil, "list-backups accepted what the JSON parser rejects")
            }
            snapshot.checks = try? BarmanDecoding.checks(output)
            snapshot.servers = try? BarmanDecoding.serverInfo(output)
            if snapshot.servers != nil {
                precondition((try? JSONParser.parse(bytes)) != nil, "show-servers accepted what the JSON parser rejects")
            }
            snapshot.barmanVersion = try? BarmanDecoding.version(output)
            // The same bytes as a WAL catalog tail, cut or whole, and as barman's time formats.
            if let newest = WALCatalog.newestArchiveTime(in: bytes, startsAtLineBoundary: exitStatus == 0) {
                precondition(newest.isFinite && newest > 0, "a catalog time must be a positive number")
                snapshot.lastArchivedWAL["pg"] = newest
            }
            let prefix = String(decoding: bytes.prefix(64), as: UTF8.self)
            _ = BarmanTime.parseDateTime(prefix)
            _ = BarmanTime.backupStart(id: prefix)
            if let details = try? BarmanDecoding.backupDetails(output, server: "pg", backupID: "x") {
                snapshot.details["pg"] = details
                if snapshot.backups?["pg"] == nil { snapshot.backups = (snapshot.backups ?? [:]).merging(["pg": []]) { $1 } }
            }
            let text = TextRenderer.render(MetricsBuilder.families(snapshot, now: 1_800_000_000))
            precondition(text.isEmpty || text.last == UInt8(ascii: "\n"), "exposition must end with a newline")
        }
    }
}
