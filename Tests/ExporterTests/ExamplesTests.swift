@testable import Barman
@testable import Configuration
@testable import Exporter
@testable import Exposition
@testable import Platform
import Testing

/// The shipped examples must only use metrics the exporter serves.
@Suite("Shipped examples")
struct ExamplesTests {
    /// Every `barman_...` identifier in `text`.
    func metricNames(in text: String) -> Set<String> {
        var names = Set<String>()
        var current = ""
        for character in text + " " {
            if character.isLetter || character.isNumber || character == "_" {
                current.append(character)
            } else {
                if current.hasPrefix("barman_") { names.insert(current) }
                current = ""
            }
        }
        return names
    }

    /// Sample names the mock integration serves (it exercises every metric).
    func servedNames() throws -> Set<String> {
        let golden = try TestSupport.text("Tests/ExporterTests/Golden/mock.prom")
        return Set(golden.split(separator: "\n").filter { !$0.hasPrefix("#") }.map { String($0.prefix { $0 != "{" && $0 != " " }) })
            .union(Metric.all.filter { $0.name.hasPrefix("barman_exporter_command") }.map(\.name))
    }

    @Test func grafanaDashboardQueriesExistingMetrics() throws {
        let dashboard = try TestSupport.text("examples/grafana-dashboard.json")
        let used = metricNames(in: dashboard)
        #expect(used.count >= 15)
        let unknown = used.subtracting(try servedNames())
        #expect(unknown.isEmpty, "unknown: \(unknown)")
    }

    @Test func alertRulesQueryExistingMetrics() throws {
        let rules = try TestSupport.text("examples/alerts.yml")
        let expressions = rules.split(separator: "\n").filter { $0.trimmingSpaces().hasPrefix("expr:") }.joined(separator: "\n")
        let used = metricNames(in: String(expressions))
        #expect(used.count >= 7)
        let unknown = used.subtracting(try servedNames())
        #expect(unknown.isEmpty, "unknown: \(unknown)")
    }
}
