#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Severity of a log line; the config's `log_level` picks the lowest one written.
public enum LogLevel: Int, Sendable, Comparable, CaseIterable {
    case debug = 0, info, warn, error

    public static func < (lhs: LogLevel, rhs: LogLevel) -> Bool { lhs.rawValue < rhs.rawValue }

    /// The syslog priority journald reads from a `<N>` line prefix (sd-daemon(3)).
    var syslogPriority: Int {
        switch self {
        case .debug: return 7
        case .info: return 6
        case .warn: return 4
        case .error: return 3
        }
    }

    /// The spelling used in `level=` and accepted (in any case) in the config.
    public var name: String {
        switch self {
        case .debug: return "debug"
        case .info: return "info"
        case .warn: return "warn"
        case .error: return "error"
        }
    }

    public init?(configValue: String) {
        guard let level = LogLevel.allCases.first(where: { $0.name == configValue.lowercased() }) else { return nil }
        self = level
    }
}

/// How each log line is written (`--log.format`, as exporter-toolkit names them).
public enum LogFormat: String, Sendable, CaseIterable {
    /// `ts=... level=... msg="..." key=value`
    case logfmt
    /// One JSON object a line with the same fields: `{"ts":"...","level":"...","msg":"...","key":"value"}`
    case json
}

/// Writes one line per event, logfmt or JSON, to a file descriptor (stderr by default).
///
/// The level can change at run time (config reload), so it is atomic; each line goes out in a
/// single `write(2)` so lines from different threads never interleave. When the descriptor is
/// the journal, each line starts with its syslog priority (`<3>` for errors), so
/// `journalctl -p err` shows the errors and only them.
public final class Logger: Sendable {
    private let minimumLevel: Atomic<Int>
    private let fileDescriptor: Int32
    private let prefixesPriority: Bool
    public let format: LogFormat

    /// `journal` nil: detected from `$JOURNAL_STREAM` (set by systemd when stderr is the journal).
    public init(level: LogLevel = .warn, format: LogFormat = .logfmt, fileDescriptor: Int32 = 2, journal: Bool? = nil) {
        self.format = format
        self.minimumLevel = Atomic(level.rawValue)
        self.fileDescriptor = fileDescriptor
        self.prefixesPriority = journal ?? Self.isJournal(fileDescriptor, stream: getenv("JOURNAL_STREAM").map { String(cString: $0) })
    }

    /// Whether `fd` is the stream `$JOURNAL_STREAM` names (`DEVICE:INODE`). Checked, not assumed:
    /// a child of a service inherits the variable with stderr pointing elsewhere.
    static func isJournal(_ fd: Int32, stream: String?) -> Bool {
        guard let stream else { return false }
        let parts = stream.split(separator: ":")
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var information = stat()
        guard fstat(fd, &information) == 0 else { return false }
        return UInt64(information.st_dev) == device && UInt64(information.st_ino) == inode
    }

    public var level: LogLevel {
        get { LogLevel(rawValue: minimumLevel.load(ordering: .relaxed)) ?? .warn }
        set { minimumLevel.store(newValue.rawValue, ordering: .relaxed) }
    }

    public func isEnabled(_ level: LogLevel) -> Bool { level >= self.level }

    public func debug(_ message: @autoclosure () -> String, _ fields: @autoclosure () -> KeyValuePairs<String, String> = [:]) {
        log(.debug, message(), fields())
    }
    public func info(_ message: @autoclosure () -> String, _ fields: @autoclosure () -> KeyValuePairs<String, String> = [:]) {
        log(.info, message(), fields())
    }
    public func warn(_ message: @autoclosure () -> String, _ fields: @autoclosure () -> KeyValuePairs<String, String> = [:]) {
        log(.warn, message(), fields())
    }
    public func error(_ message: @autoclosure () -> String, _ fields: @autoclosure () -> KeyValuePairs<String, String> = [:]) {
        log(.error, message(), fields())
    }

    public func log(_ level: LogLevel, _ message: String, _ fields: KeyValuePairs<String, String> = [:]) {
        guard isEnabled(level) else { return }
        log(level, message, fields: fields.map { ($0.key, $0.value) })
    }

    /// For fields only known at run time (the settings line).
    public func log(_ level: LogLevel, _ message: String, fields: [(String, String)]) {
        guard isEnabled(level) else { return }
        var line = prefixesPriority ? "<\(level.syslogPriority)>" : ""
        let timestamp = WallClock.iso8601(WallClock.nowMilliseconds())
        switch format {
        case .logfmt:
            line += "ts=\(timestamp) level=\(level.name) msg=\(Logger.quoted(message))"
            for (key, value) in fields {
                line += " \(key)=\(Logger.quoted(value))"
            }
        case .json:
            // The fields in the logfmt order; a field named like ts, level or msg is written as
            // given after them (JSON readers keep the last one).
            line += "{\"ts\":\(Logger.jsonString(timestamp)),\"level\":\(Logger.jsonString(level.name)),\"msg\":\(Logger.jsonString(message))"
            for (key, value) in fields {
                line += ",\(Logger.jsonString(key)):\(Logger.jsonString(value))"
            }
            line += "}"
        }
        line += "\n"
        FileWriter.writeIgnoringErrors(fileDescriptor, Array(line.utf8))
    }

    /// A number as log fields show it: whole numbers without a fraction, others in full.
    public static func number(_ value: Double) -> String {
        value == value.rounded(.towardZero) && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }

    /// A JSON string literal: quotes, backslashes and control characters escaped, so a value
    /// never breaks the one-object-a-line rule.
    static func jsonString(_ value: String) -> String {
        doubleQuoted(value) { scalar in
            guard scalar.value < 0x20 || scalar.value == 0x7F || scalar.value == 0x2028 || scalar.value == 0x2029 else { return nil }
            let hex = String(scalar.value, radix: 16)
            return "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        }
    }

    /// logfmt value: bare when it is a simple token, otherwise double-quoted with escapes, so a
    /// value can never break the one-line-per-event rule.
    static func quoted(_ value: String) -> String {
        let needsQuotes = value.isEmpty || value.unicodeScalars.contains { scalar in
            scalar == " " || scalar == "=" || scalar == "\"" || scalar == "\\" || scalar.value < 0x20 || scalar.value == 0x7F
        }
        guard needsQuotes else { return value }
        return doubleQuoted(value) { scalar in
            scalar.value < 0x20 || scalar.value == 0x7F ? "\\u{\(String(scalar.value, radix: 16))}" : nil
        }
    }

    /// `value` in double quotes with `"`, `\`, newline, CR and tab escaped, and any other scalar
    /// `escape` returns a text for written as that text (the two formats differ only there).
    private static func doubleQuoted(_ value: String, escape: (Unicode.Scalar) -> String?) -> String {
        var result = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            default:
                if let escaped = escape(scalar) { result += escaped } else { result.unicodeScalars.append(scalar) }
            }
        }
        return result + "\""
    }
}
