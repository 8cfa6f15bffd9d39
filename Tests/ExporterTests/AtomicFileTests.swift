@testable import Barman
@testable import Configuration
@testable import Exporter
@testable import Exposition
@testable import Platform
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `--output`'s file replacement in a directory others can write to (a textfile directory).
@Suite("Writing the metrics file")
struct AtomicFileTests {
    /// A link planted where the old code put its temporary file (`.NAME.tmp.PID`) must not lead
    /// the write into another file.
    @Test func aPlantedLinkIsNeverFollowed() throws {
        let directory = try TestSupport.temporaryDirectory()
        defer { TestSupport.removeTree(directory) }
        let victim = directory + "/victim"
        try TestSupport.write("secret\n", to: victim, mode: 0o600)
        #expect(symlink(victim, "\(directory)/.barman.prom.tmp.\(getpid())") == 0)

        try AtomicFile.write(Array("metrics\n".utf8), to: directory + "/barman.prom")

        #expect(String(decoding: try FileReader.readAll(path: victim, limit: 100), as: UTF8.self) == "secret\n")
        #expect(String(decoding: try FileReader.readAll(path: directory + "/barman.prom", limit: 100), as: UTF8.self) == "metrics\n")
    }

    /// A link at the final name is replaced by the file, not written through.
    @Test func aLinkAtTheTargetIsReplaced() throws {
        let directory = try TestSupport.temporaryDirectory()
        defer { TestSupport.removeTree(directory) }
        let victim = directory + "/victim"
        try TestSupport.write("secret\n", to: victim, mode: 0o600)
        let target = directory + "/barman.prom"
        #expect(symlink(victim, target) == 0)

        try AtomicFile.write(Array("metrics\n".utf8), to: target, mode: 0o644)

        #expect(String(decoding: try FileReader.readAll(path: victim, limit: 100), as: UTF8.self) == "secret\n")
        var information = stat()
        #expect(lstat(target, &information) == 0)
        #expect(information.st_mode & S_IFMT == S_IFREG)
        #expect(information.st_mode & 0o777 == 0o644)
        #expect(String(decoding: try FileReader.readAll(path: target, limit: 100), as: UTF8.self) == "metrics\n")
        #expect(TestSupport.names(in: directory) == ["barman.prom", "victim"])
    }
}
