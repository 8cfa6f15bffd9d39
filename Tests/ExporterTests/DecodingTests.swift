@testable import Barman
@testable import Configuration
@testable import Exporter
@testable import Exposition
@testable import Platform
import Testing

/// Decoding real barman output of both versions (fixtures: Tests/ExporterTests/Fixtures/README.md).
@Suite("Decoding barman JSON")
struct DecodingTests {
    @Test(arguments: ["3.4.0", "3.20.1"])
    func listBackups(version: String) throws {
        let backups = try BarmanDecoding.backupList(try TestSupport.fixture(version, "list-backups-all"))
        #expect(backups.keys.sorted() == ["pg", "pg2", "pg3"])
        let pg = try #require(backups["pg"])
        #expect(pg.count == 2)
        #expect(pg.allSatisfy { $0.isDone })
        // Newest first, end times from the string `end_time_timestamp`.
        let newestEnd = try #require(pg[0].endTime), previousEnd = try #require(pg[1].endTime)
        #expect(newestEnd > previousEnd)
        #expect(backups["pg2"] == [])
        let pg3 = try #require(backups["pg3"])
        #expect(pg3.count == 1)
        #expect(pg3[0].status == "FAILED")
        #expect(pg3[0].endTime == nil && pg3[0].sizeBytes == nil)
    }

    @Test func listBackupsValues340() throws {
        let pg = try #require(try BarmanDecoding.backupList(try TestSupport.fixture("3.4.0", "list-backups-all"))["pg"])
        // 3.4 has no backup_type: the backups count as full.
        #expect(pg[0] == BackupSummary(id: "20261124T182524", status: "DONE", endTime: 1795544728, sizeBytes: 53674590, walSizeBytes: 201326592, retentionStatus: "-"))
        #expect(pg[1] == BackupSummary(id: "20261124T182428", status: "DONE", endTime: 1795544721, sizeBytes: 53674593, walSizeBytes: 33554432, retentionStatus: "-"))
        #expect(pg.allSatisfy { $0.isFull })
    }

    @Test func listBackupsValues3201() throws {
        let pg = try #require(try BarmanDecoding.backupList(try TestSupport.fixture("3.20.1", "list-backups-all"))["pg"])
        #expect(pg[0] == BackupSummary(id: "20261124T182645", status: "DONE", endTime: 1795544805, sizeBytes: 53673989, walSizeBytes: 100663296,
                                       backupType: "full", retentionStatus: "-"))
    }

    @Test(arguments: ["3.4.0", "3.20.1"])
    func checksExitOneIsData(version: String) throws {
        let output = try TestSupport.fixture(version, "check-all")
        #expect(output.exitStatus == 1)  // pg3's failed_backups check fails
        let checks = try BarmanDecoding.checks(output)
        #expect(checks.keys.sorted() == ["pg", "pg2", "pg3"])
        let pg3 = try #require(checks["pg3"])
        #expect(pg3.count == 22)
        #expect(pg3.filter { !$0.ok }.map(\.name) == ["failed_backups"])
        let pgChecks = try #require(checks["pg"])
        #expect(pgChecks.allSatisfy { $0.ok })
    }

    @Test(arguments: ["3.4.0", "3.20.1"])
    func emptyConfigHasNoServers(version: String) throws {
        #expect(try BarmanDecoding.backupList(try TestSupport.fixture(version, "empty-list-backups-all")).isEmpty)
        #expect(try BarmanDecoding.checks(try TestSupport.fixture(version, "empty-check-all")).isEmpty)
    }

    @Test func showBackup340() throws {
        let details = try BarmanDecoding.backupDetails(try TestSupport.fixture("3.4.0", "show-backup-pg-latest"), server: "pg", backupID: "20261124T182524")
        #expect(details == BackupDetails(backupID: "20261124T182524", copyTimeSeconds: 4.099697, throughputBytesPerSecond: 9000024.635967,
                                         walFiles: 12, walRatePerSecond: 0.01326498091819527, beginTime: 1795544724, endTime: 1795544728,
                                         beginWAL: "000000010000000000000006"))
        #expect(details.durationSeconds == 4)
    }

    @Test func showBackup3201() throws {
        // 3.20 renames the size fields and makes throughput_bytes an int.
        let details = try BarmanDecoding.backupDetails(try TestSupport.fixture("3.20.1", "show-backup-pg-latest"), server: "pg", backupID: "20261124T182645")
        #expect(details == BackupDetails(backupID: "20261124T182645", copyTimeSeconds: 0.304078, throughputBytesPerSecond: 121339830,
                                         walFiles: 6, walRatePerSecond: 0.007748162375667854, beginTime: 1795544805, endTime: 1795544805,
                                         beginWAL: "00000001000000000000000C"))
    }

    @Test(arguments: [("3.4.0", "20261124T182531"), ("3.20.1", "20261124T182648")])
    func showBackupOfAFailedBackupIsAnError(version: String, id: String) throws {
        let output = try TestSupport.fixture(version, "show-backup-pg3-\(id)")
        #expect(throws: DecodeFailure("barman show-backup pg3 \(id): server 'pg3': backup status is FAILED, expected DONE")) {
            try BarmanDecoding.backupDetails(output, server: "pg3", backupID: id)
        }
    }

    @Test(arguments: ["3.4.0", "3.20.1"])
    func errorEntryIsAnError(version: String) throws {
        #expect(throws: DecodeFailure("barman list-backups all exited with status 1: Unknown server 'nosuch'")) {
            try BarmanDecoding.backupList(try TestSupport.fixture(version, "nosuch-list-backups"))
        }
        // Exit status 0 with an _ERROR entry is still an error.
        let zeroExit = CommandOutput(stdout: Array(#"{"_ERROR": ["Unknown server 'nosuch'"], "pg": []}"#.utf8))
        #expect(throws: DecodeFailure("barman list-backups all reported an error: Unknown server 'nosuch'")) {
            try BarmanDecoding.backupList(zeroExit)
        }
    }

    @Test(arguments: ["3.4.0", "3.20.1"])
    func replicationStatus(version: String) throws {
        let report = try BarmanDecoding.replication(try TestSupport.fixture(version, "replication-status-all"))
        #expect(report.clients.keys.sorted() == ["pg", "pg2", "pg3"])
        #expect(report.unreachable.isEmpty && report.errors.isEmpty)
        let pg = try #require(report.clients["pg"])
        // Both barman homes of the lab stream from each cluster, through slots barman and barman_new.
        #expect(pg.map(\.slot).sorted() == ["barman", "barman_new"])
        #expect(pg.allSatisfy { $0.applicationName == "barman_receive_wal" && $0.syncState == "async" && $0.clientAddress == "127.0.0.1" })
        #expect(pg.map(\.flushLagBytes) == [96, 96])
        #expect(pg.map(\.sentLagBytes) == [0, 0])
    }

    @Test func replicationStatusWithAServerDown() throws {
        // barman's answer when one server's PostgreSQL is down (captured from barman 3.4.0 and 3.20.1): exit status 1, `{}` for it.
        let output = CommandOutput(stdout: Array(#"{"_ERROR": ["Unable to connect to server pg2"], "pg": {"server_lsn": "0/1", "standby_info": "No streaming clients attached", "streaming_clients": []}, "pg2": {}}"#.utf8), exitStatus: 1)
        let report = try BarmanDecoding.replication(output)
        #expect(report == ReplicationReport(clients: ["pg": []], serverLSN: ["pg": 1], unreachable: ["pg2"], errors: ["Unable to connect to server pg2"]))
        let allDown = CommandOutput(stdout: Array(#"{"_ERROR": ["Unable to connect to server pg2"], "pg2": {}}"#.utf8), exitStatus: 1)
        #expect(throws: DecodeFailure("barman replication-status all exited with status 1: Unable to connect to server pg2")) {
            try BarmanDecoding.replication(allDown)
        }
        #expect(try BarmanDecoding.replication(try TestSupport.fixture("3.4.0", "empty-list-backups-all")).clients.isEmpty)
    }

    @Test func nagiosTextIsNotJSON() throws {
        let output = try TestSupport.fixture("3.4.0", "json-nagios-check-all")
        var failing = output
        failing.exitStatus = 1
        #expect(throws: DecodeFailure.self) { try BarmanDecoding.checks(failing) }
        #expect(throws: DecodeFailure("barman check all exited with status 2")) { try BarmanDecoding.checks(output) }
    }

    @Test func messageKeysAreNeverServers() throws {
        let output = CommandOutput(stdout: Array(#"{"_INFO": ["Skipping inactive server 'old'"], "_WARNING": ["x"], "pg": []}"#.utf8))
        #expect(try BarmanDecoding.backupList(output).keys.sorted() == ["pg"])
    }

    @Test func missingRequiredFieldNamesCommandServerAndField() {
        let output = CommandOutput(stdout: Array(#"{"pg": [{"backup_id": "b1", "status": "DONE", "end_time_timestamp": "1", "size_bytes": 5}]}"#.utf8))
        #expect(throws: DecodeFailure("barman list-backups all: server 'pg': backup 'b1': missing or invalid field 'wal_size_bytes'")) {
            try BarmanDecoding.backupList(output)
        }
    }

    /// list-backups is read as a stream: fields it does not use are skipped, but still validated.
    @Test func listBackupsSkipsUnusedFieldsOfAnyShape() throws {
        let text = #"""
        { "_INFO" : [ "x" ] ,"pg\u00e9":[ {"extra": {"a": [1, {"b": null}], "c": "\u00fc\n"}, "backup_id":"b\u0031",
          "status":"DONE","end_time_timestamp":"1700000000","size_bytes":1.5e3,"wal_size_bytes":"7",
          "tablespaces": null, "é": true},
          {"status": "FAILED", "backup_id": "b0", "end_time_timestamp": null} ], "empty": [] }
        """#
        let backups = try BarmanDecoding.backupList(CommandOutput(stdout: Array(text.utf8)))
        #expect(backups == [
            "pg\u{e9}": [BackupSummary(id: "b1", status: "DONE", endTime: 1_700_000_000, sizeBytes: 1500, walSizeBytes: 7),
                          BackupSummary(id: "b0", status: "FAILED")],
            "empty": [],
        ])
    }

    @Test(arguments: [
        #"{"pg": [{"backup_id": "b", "status": "FAILED", "extra": [1,]}]}"#,
        #"{"pg": [{"backup_id": "b", "status": "FAILED", "extra": {"a": 1,}}]}"#,
        #"{"pg": [{"backup_id": "b", "status": "FAILED", "extra": tru}]}"#,
        #"{"pg": [{"backup_id": "b", "status": "FAILED", "extra": "\x"}]}"#,
        #"{"pg": [{"backup_id": "b", "status": "FAILED"}], "_INFO": [01]}"#,
        #"{"pg": [{"backup_id": "b", "status": "FAILED"}] "x": []}"#,
        #"{"pg": [{"backup_id": "b", "status": "FAILED"},]}"#,
        #"{"pg": []} []"#,
        #"{"pg": [{"backup_id": "b", "status": "FAILED"}"#,
    ])
    func listBackupsRejectsInvalidJSONAnywhere(text: String) {
        #expect(throws: DecodeFailure.self) { try BarmanDecoding.backupList(CommandOutput(stdout: Array(text.utf8))) }
        #expect(throws: JSONError.self) { try JSONParser.parse(Array(text.utf8)) }
    }

    @Test func listBackupsRejectsInvalidUTF8InSkippedStrings() {
        let output = CommandOutput(stdout: Array(#"{"pg": [{"backup_id": "b", "status": "FAILED", "x": ""#.utf8) + [0xC3, 0x28] + Array(#""}]}"#.utf8))
        #expect(throws: DecodeFailure("barman list-backups all printed invalid JSON at byte 53: string is not valid UTF-8")) {
            try BarmanDecoding.backupList(output)
        }
    }

    @Test func numbersAsStringsIntsFloatsAndNone() {
        #expect(BarmanDecoding.number(.string("12.5")) == 12.5)
        #expect(BarmanDecoding.number(.integer(0)) == 0)
        #expect(BarmanDecoding.number(.float(0.25)) == 0.25)
        #expect(BarmanDecoding.number(.string("None")) == nil)
        #expect(BarmanDecoding.number(.null) == nil)
        #expect(BarmanDecoding.integer(.string("1795544728")) == 1795544728)
        #expect(BarmanDecoding.integer(.string("17.5")) == nil)
    }

    @Test func otherExitStatusesAndEmptyOutput() {
        #expect(throws: DecodeFailure("barman list-backups all printed nothing on stdout (is -q set in an alias or wrapper?)")) {
            try BarmanDecoding.backupList(CommandOutput(stdout: []))
        }
        #expect(throws: DecodeFailure("barman check all exited with status 2")) {
            try BarmanDecoding.checks(CommandOutput(stdout: Array("{}".utf8), exitStatus: 2))
        }
        #expect(throws: DecodeFailure("barman list-backups all printed JSON that is not an object")) {
            try BarmanDecoding.backupList(CommandOutput(stdout: Array("[1]".utf8)))
        }
    }
}

@Suite("JSON parser")
struct JSONParserTests {
    @Test func values() throws {
        let value = try JSONParser.parse(Array(#" {"a": [1, -2.5e3, true, false, null, "x\n\u00e9\ud83d\ude00"], "b": {}} "#.utf8))
        #expect(value == .object(["a": .array([.integer(1), .float(-2500), .bool(true), .bool(false), .null, .string("x\né😀")]), "b": .object([:])]))
    }

    @Test func invalidDocuments() {
        for text in ["", "{", "{\"a\" 1}", "[1,]", "01", "1.", "\"\\x\"", "{\"a\":1} x", "\"\u{01}\"", "nul", "[\"\\ud800\"]", "1e999"] {
            #expect(throws: JSONError.self, "\(text)") { try JSONParser.parse(Array(text.utf8)) }
        }
        #expect(throws: JSONError.self) { try JSONParser.parse([0x22, 0xFF, 0x22]) }
    }

    @Test func nestingIsBounded() {
        let deep = String(repeating: "[", count: 100_000)
        #expect(throws: JSONError(offset: 64, message: "nesting deeper than 64 levels")) { try JSONParser.parse(Array(deep.utf8)) }
    }

    @Test func largeIntegersFallBackToDouble() throws {
        let expected = try #require(Double("123456789012345678901234"))
        #expect(try JSONParser.parse(Array("123456789012345678901234".utf8)) == .float(expected))
    }

    /// Server names that are canonically equivalent Unicode but different bytes are different
    /// servers to barman: each keeps its own series, with its own bytes.
    @Test func canonicallyEquivalentServerNamesStayApart() throws {
        let composed = "caf\u{E9}", decomposed = "cafe\u{301}"
        #expect(composed == decomposed)  // what Swift's String equality says
        let done = #"{"backup_id": "B", "end_time_timestamp": "1795544728", "size_bytes": %, "status": "DONE", "wal_size_bytes": 1}"#
        func one(_ size: Int) -> String { done.split(separator: "%").joined(separator: String(size)) }
        let listing = try BarmanDecoding.backupList(CommandOutput(stdout: Array("{\"\(composed)\": [\(one(1))], \"\(decomposed)\": [\(one(2)), \(one(3))]}".utf8)))
        #expect(listing.count == 2)
        #expect(listing[ServerName(composed)]?.count == 1)
        #expect(listing[ServerName(decomposed)]?.count == 2)
        let checks = try BarmanDecoding.checks(CommandOutput(stdout: Array(
            "{\"\(composed)\": {\"a\": {\"status\": \"OK\", \"hint\": \"\"}}, \"\(decomposed)\": {\"a\": {\"status\": \"FAILED\", \"hint\": \"\"}}}".utf8)))
        #expect(checks.count == 2)

        var snapshot = MetricsSnapshot(version: "test")
        snapshot.backups = listing
        snapshot.checks = checks
        let text = TestSupport.exposition(snapshot, now: 1795544800)
        #expect(text.contains("barman_backups_total{server=\"\(composed)\"} 1\n"))
        #expect(text.contains("barman_backups_total{server=\"\(decomposed)\"} 2\n"))
        let lines = text.split(separator: "\n").filter { $0.hasPrefix("barman_up{") }.map { Array($0.utf8) }
        #expect(lines.count == 2)
        #expect(Set(lines).count == 2)
    }
}
