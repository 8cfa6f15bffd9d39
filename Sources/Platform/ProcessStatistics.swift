#if canImport(Glibc)
import Glibc
#endif

/// The exporter's own process, as every Prometheus client library reports it (`process_*`),
/// read from /proc like client_golang's process collector.
public struct ProcessStatistics: Sendable, Equatable {
    /// User plus system CPU time.
    public var cpuSeconds: Double
    public var residentBytes: Double
    public var virtualBytes: Double
    public var openFileDescriptors: Double
    /// The soft limit on open descriptors (RLIMIT_NOFILE).
    public var maxFileDescriptors: Double
    /// Unix time the process started.
    public var startTimeSeconds: Double

    /// Now; nil when /proc cannot be read (then the metrics are left out, not made up).
    public static func current() -> ProcessStatistics? {
        guard let statusLine = try? FileReader.readAll(path: "/proc/self/stat", limit: 4096),
              let commandEnd = statusLine.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        // Fields after "pid (comm) ": state is field 3, so field n is at index n - 3.
        let fields = statusLine[(commandEnd + 1)...].split(separator: UInt8(ascii: " ")).map { String(decoding: $0, as: UTF8.self) }
        func field(_ number: Int) -> Double? { fields.count > number - 3 ? Double(fields[number - 3].trimmingTrailingWhitespace()) : nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))
        guard ticks > 0, pageSize > 0, let user = field(14), let system = field(15), let started = field(22),
              let virtual = field(23), let resident = field(24), let bootTime = bootTime, let openFDs = openFileDescriptorCount() else { return nil }
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return nil }
        return ProcessStatistics(cpuSeconds: (user + system) / ticks, residentBytes: resident * pageSize, virtualBytes: virtual,
                                 openFileDescriptors: Double(openFDs), maxFileDescriptors: Double(limit.rlim_cur),
                                 startTimeSeconds: bootTime + started / ticks)
    }

    /// `btime` of /proc/stat: when the system booted, in Unix seconds; read once.
    private static let bootTime: Double? = {
        guard let text = try? FileReader.readAll(path: "/proc/stat", limit: 1 << 20) else { return nil }
        for line in String(decoding: text, as: UTF8.self).split(separator: "\n") where line.hasPrefix("btime ") {
            return Double(line.dropFirst(6))
        }
        return nil
    }()

    /// Entries of /proc/self/fd (the one open to read it included, as client_golang counts).
    private static func openFileDescriptorCount() -> Int? {
        guard let directory = opendir("/proc/self/fd") else { return nil }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            if name != [UInt8(ascii: ".")] && name != [UInt8(ascii: "."), UInt8(ascii: ".")] { count += 1 }
        }
        return count
    }
}

extension String {
    /// Without trailing spaces, tabs and line ends.
    package func trimmingTrailingWhitespace() -> String {
        var scalars = Substring(self)
        while let last = scalars.last, last == " " || last == "\n" || last == "\t" || last == "\r" { scalars.removeLast() }
        return String(scalars)
    }
}
