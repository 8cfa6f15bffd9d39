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
for (servers, backups) in [(3, 5), (25, 30), (50, 60), (100, 60), (200, 60), (400, 60)] {
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
