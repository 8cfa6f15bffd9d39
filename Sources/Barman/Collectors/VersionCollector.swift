import Platform
import Exposition
import Configuration

/// `barman --version`, asked after start and after each reload (barman may have been upgraded).
public struct VersionCollector: Collector {
    public static let answer = AnswerKey<String>("version")
    static let command = BarmanCommand(kind: "version", option: "--version")

    public init() {}

    public var name: String { "version" }
    public var schedule: Schedule { Schedule(.oncePerReload) }
    public var metrics: [MetricDefinition] { [Metric.versionInfo] }

    public func collect(_ context: CollectContext) async {
        await context.run(Self.command, decode: BarmanDecoding.version) { version, snapshot in
            snapshot.barmanVersion = version
        }
    }

    public func emit(_ snapshot: MetricsSnapshot, _ scrape: Scrape, into families: inout FamilyBuilder) {
        if let version = snapshot.barmanVersion { families.add(Metric.versionInfo, [version], 1) }
    }
}

extension MetricsSnapshot {
    /// What `barman --version` printed (first word).
    public var barmanVersion: String? {
        get { self[VersionCollector.answer] }
        set { self[VersionCollector.answer] = newValue }
    }
}

extension Metric {
    public static let versionInfo = MetricDefinition(
        "barman_version_info", .gauge,
        "A metric with a constant '1' value labeled by the version barman --version reports.", labels: ["version"])

}

extension BarmanDecoding {
    /// `barman --version` prints `3.4.0 Barman by EnterpriseDB (www.enterprisedb.com)`; older
    /// releases put the version alone on the first line. The version is the first word.
    public static func version(_ output: CommandOutput) throws(DecodeFailure) -> String {
        let command = VersionCollector.command
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
