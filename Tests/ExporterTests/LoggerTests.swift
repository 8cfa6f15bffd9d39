@testable import Barman
@testable import Configuration
@testable import Exporter
@testable import Exposition
@testable import Platform
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Logging")
struct LoggerTests {
    /// The lines `body` logs to a file, with `JOURNAL_STREAM` as given ("" = the file's own).
    func lines(journalStream: String?, _ body: (Logger) -> Void) throws -> [String] {
        let capture = try LogCapture()
        let fd = capture.fileDescriptor
        var stream = journalStream
        if stream == "" {
            var information = stat()
            try #require(fstat(fd, &information) == 0)
            stream = "\(information.st_dev):\(information.st_ino)"
        }
        let logger = Logger(level: .debug, fileDescriptor: fd, journal: Logger.isJournal(fd, stream: stream))
        body(logger)
        return try capture.text.split(separator: "\n").map(String.init)
    }

    /// With stderr on the journal, each line carries its syslog priority, so `journalctl -p err`
    /// shows the errors and only them.
    @Test func journalLinesCarryTheirPriority() throws {
        let logged = try lines(journalStream: "") { logger in
            logger.error("e")
            logger.warn("w")
            logger.info("i")
            logger.debug("d")
        }
        #expect(logged.map { String($0.prefix(3)) } == ["<3>", "<4>", "<6>", "<7>"])
        #expect(logged[0].dropFirst(3).hasPrefix("ts="))
        #expect(logged[0].hasSuffix("level=error msg=e"))
    }

    /// Anywhere else (a terminal, a file, a child that inherited the variable), plain logfmt.
    @Test func otherwiseLinesArePlainLogfmt() throws {
        for stream: String? in [nil, "1:2", "garbage"] {
            let logged = try lines(journalStream: stream) { $0.error("e") }
            #expect(logged.count == 1 && logged[0].hasPrefix("ts="), "\(String(describing: stream))")
        }
    }

    /// --log.format json: one JSON object a line, the same fields, any value escaped.
    @Test func jsonLinesAreOneObjectEach() throws {
        let capture = try LogCapture()
        let logger = Logger(level: .info, format: .json, fileDescriptor: capture.fileDescriptor, journal: false)
        logger.error("barman failed", ["argv": "barman -f json \"check\" all", "stderr": "line 1\nline 2\t\u{1}", "server": "pg-é"])
        logger.debug("not written")
        let lines = try capture.text.split(separator: "\n").map(String.init)
        #expect(lines.count == 1)
        let object = try JSONParser.parse(Array(try #require(lines.first).utf8))
        guard case .object(let fields) = object else { Issue.record("not an object: \(lines)"); return }
        #expect(fields["level"] == .string("error") && fields["msg"] == .string("barman failed"))
        #expect(fields["argv"] == .string("barman -f json \"check\" all"))
        #expect(fields["stderr"] == .string("line 1\nline 2\t\u{1}") && fields["server"] == .string("pg-é"))
        if case .string(let time)? = fields["ts"] { #expect(time.hasSuffix("Z") && time.count == 24) } else { Issue.record("no ts") }
    }
}

