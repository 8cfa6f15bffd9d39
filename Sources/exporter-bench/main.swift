// Rendering benchmark for `make bench`: builds snapshots of growing size in memory (no barman)
// and times MetricsBuilder + TextRenderer, the work a scrape does when its body is not cached.
// Prints the time per render for each size and the least-squares slope per series.
import Barman
import Exposition
import Platform

func snapshot(servers: Int, backups: Int) -> MetricsSnapshot {
    var snapshot = MetricsSnapshot(version: BuildInfo.version)
    var listing: [ServerName: [BackupSummary]] = [:]
    var checks: [ServerName: [CheckResult]] = [:]
    let checkNames = (0..<22).map { "check_number_\($0)" }
    for index in 0..<servers {
        let server = ServerName("pg\(index)")
        listing[server] = (0..<backups).map { number in
            BackupSummary(id: "20261124T\(100000 + number)", status: number % 10 == 3 ? "FAILED" : "DONE",
                          endTime: 1_795_544_728 - Int64(number) * 86_400, sizeBytes: 53_674_590, walSizeBytes: 33_554_432)
        }
        checks[server] = checkNames.map { CheckResult(name: $0, ok: true) }
        snapshot.details[server] = BackupDetails(backupID: "20261124T100000", copyTimeSeconds: 4.099697, throughputBytesPerSecond: 9_000_024.6, walFiles: 12, walRatePerSecond: 0.0132)
    }
    snapshot.backups = listing
    snapshot.checks = checks
    snapshot.lastRefreshMilliseconds = 1234
    return snapshot
}

let clock = ContinuousClock()

/// `exporter-bench catalog [SEGMENTS]`: a WAL catalog of SEGMENTS lines (default 1,000,000, about
/// 70 MB) read whole as at start, then again after barman appended 100 segments, as at a refresh.
func catalogBenchmark(segments: Int) throws(SystemError) {
    let path = "/tmp/exporter-bench-\(segments)-xlog.db"
    func lines(_ range: Range<Int>) -> [UInt8] {
        var text: [UInt8] = []
        text.reserveCapacity(range.count * 70)
        for number in range {
            func hex8(_ value: Int) -> String {
                let digits = String(value, radix: 16, uppercase: true)
                return String(repeating: "0", count: 8 - digits.count) + digits
            }
            text.append(contentsOf: "00000001\(hex8(number / 256))\(hex8(number % 256))\t16777216\t\(1_795_000_000 + number).123456\tNone\n".utf8)
        }
        return text
    }
    try AtomicFile.write(lines(0..<segments), to: path)
    defer { try? FileWriter.remove(path: path) }
    let location = WALCatalogLocation(path: path)
    let files = LocalBarmanFiles()
    var reader = WALCatalog.Reader()
    let residentBefore = ProcessStatistics.current()?.residentBytes ?? 0
    var failure: SystemError?
    let first = clock.measure {
        do throws(SystemError) { try reader.update(location, files: files) } catch { failure = error }
    }
    if let failure { throw failure }
    let residentAfter = ProcessStatistics.current()?.residentBytes ?? 0
    try FileWriter.append(lines(segments..<(segments + 100)), to: path)
    let refresh = clock.measure {
        do throws(SystemError) { try reader.update(location, files: files) } catch { failure = error }
    }
    if let failure { throw failure }
    let missing = reader.scan.segments.missing(from: WALPosition.Segment(timeline: 1, number: 0))
    func milliseconds(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        return String(format1: Double(seconds) * 1000 + Double(attoseconds) / 1e15)
    }
    print("catalog of \(segments) segments (\(reader.scan.files) files listed after 100 more; \(missing) missing):")
    print("  first read \(milliseconds(first)) ms, resident memory +\(String(format1: Double(residentAfter - min(residentAfter, residentBefore)) / 1_048_576)) MB while reading")
    print("  a refresh after 100 new segments \(milliseconds(refresh)) ms")
}

if CommandLine.arguments.dropFirst().first == "catalog" {
    do {
        try catalogBenchmark(segments: CommandLine.arguments.dropFirst(2).first.flatMap { Int($0) } ?? 1_000_000)
    } catch {
        print("catalog benchmark failed: \(error)")
        ProcessExit.exit(1)
    }
    ProcessExit.exit(0)
}
// `exporter-bench SERVERS BACKUPS RENDERS`: only that, for a profiler (valgrind --tool=callgrind
// counts instructions: the difference between 1 and 2 renders is one render).
let arguments = CommandLine.arguments.dropFirst().compactMap { Int($0) }
if arguments.count == 3 {
    let data = snapshot(servers: arguments[0], backups: arguments[1])
    var bytes = 0
    var series = 0
    for iteration in 0..<arguments[2] {
        let families = MetricsBuilder.families(data, now: 1_795_600_000 + Double(iteration))
        series = families.reduce(0) { $0 + $1.samples.count }
        bytes += TextRenderer.render(families).count
    }
    print("rendered \(arguments[2]) bodies of \(series) series, \(bytes) bytes")
    ProcessExit.exit(0)
}
var points: [(series: Double, microseconds: Double)] = []
print("servers backups   series      bytes  render_us  ns_per_series")
for (servers, backups) in [(3, 5), (25, 30), (50, 60), (100, 60), (200, 60), (400, 60), (1_000, 60)] {
    let data = snapshot(servers: servers, backups: backups)
    var bytes = 0
    var series = 0
    let iterations = max(5, 2_000 / servers)
    _ = TextRenderer.render(MetricsBuilder.families(data, now: 1_795_600_000))  // warm-up
    let elapsed = clock.measure {
        for iteration in 0..<iterations {
            let families = MetricsBuilder.families(data, now: 1_795_600_000 + Double(iteration))
            series = families.reduce(0) { $0 + $1.samples.count }
            bytes = TextRenderer.render(families).count
        }
    }
    let (seconds, attoseconds) = elapsed.components
    let microseconds = (Double(seconds) * 1e6 + Double(attoseconds) / 1e12) / Double(iterations)
    points.append((Double(series), microseconds))
    let perSeries = microseconds * 1000 / Double(series)
    print("\(servers)".padding(7) + "\(backups)".padding(8) + "\(series)".padding(9) + "\(bytes)".padding(11)
          + String(format1: microseconds).padding(11) + String(format1: perSeries).padding(15))
}
let n = Double(points.count)
let meanX = points.reduce(0) { $0 + $1.series } / n
let meanY = points.reduce(0) { $0 + $1.microseconds } / n
let slope = points.reduce(0) { $0 + ($1.series - meanX) * ($1.microseconds - meanY) } / points.reduce(0) { $0 + ($1.series - meanX) * ($1.series - meanX) }
let intercept = meanY - slope * meanX
// How well a straight line fits, over the sizes large enough for the fixed cost not to dominate.
let large = points.filter { $0.series >= 1000 }
let residual = large.map { abs($0.microseconds - (intercept + slope * $0.series)) / $0.microseconds }.max() ?? 0
print("slope: \(String(format1: slope * 1000)) ns per series, intercept \(String(format1: intercept)) us, worst deviation from the line (>= 1000 series) \(String(format1: residual * 100))%")

extension String {
    init(format1 value: Double) {
        let scaled = (value * 10).rounded() / 10
        self = scaled.description
    }

    func padding(_ width: Int) -> String {
        String(repeating: " ", count: max(0, width - count)) + self + " "
    }
}
