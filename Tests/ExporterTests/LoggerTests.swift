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
}
