@testable import Barman
@testable import Configuration
@testable import Exporter
@testable import Exposition
@testable import Platform
import Testing

/// Replays the fuzzers' seed corpus and every crash they ever found (Fuzz/README.md).
@Suite("Fuzz regressions")
struct FuzzRegressionTests {
    @Test func configInputs() throws {
        let files = TestSupport.files(in: "Fuzz/corpus/config") + TestSupport.files(in: "Fuzz/regressions/config")
        #expect(files.count >= 5)
        for file in files { FuzzHarness.config(try TestSupport.read(file)) }
    }

    @Test func webConfigInputs() throws {
        let files = TestSupport.files(in: "Fuzz/corpus/web") + TestSupport.files(in: "Fuzz/regressions/web")
        #expect(files.count >= 5)
        for file in files { FuzzHarness.webConfig(try TestSupport.read(file)) }
    }

    @Test func barmanJSONInputs() throws {
        let files = TestSupport.files(in: "Fuzz/corpus/json") + TestSupport.files(in: "Fuzz/regressions/json")
            + TestSupport.files(in: "Tests/ExporterTests/Fixtures/3.4.0").filter { $0.hasSuffix(".stdout") }
        #expect(files.count >= 10)
        for file in files { FuzzHarness.barmanJSON(try TestSupport.read(file)) }
    }
}
