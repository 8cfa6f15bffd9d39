import Platform
import Exposition
import Configuration

/// The two ways barman writes a point in time that are not already Unix seconds.
public enum BarmanTime {
    /// When a backup started, from its id: barman names a backup after its start,
    /// `YYYYMMDDTHHMMSS` in the backup host's local time (`strftime` of the start time), and the
    /// JSON of a running backup has nothing else. Read in the exporter's time zone, which is the
    /// backup host's when both run on it (the packaged setup). Nil for any other id.
    public static func backupStart(id: String) -> Int64? {
        let bytes = Array(id.utf8)
        guard bytes.count == 15, bytes[8] == UInt8(ascii: "T") else { return nil }
        guard let year = digits(bytes, 0, 4), let month = digits(bytes, 4, 2), let day = digits(bytes, 6, 2),
              let hour = digits(bytes, 9, 2), let minute = digits(bytes, 11, 2), let second = digits(bytes, 13, 2),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
        return LocalTime.unixTime(year: year, month: month, day: day, hour: hour, minute: minute, second: second)
    }

    /// A Python `str(datetime)` with its UTC offset, as `show-servers` prints PostgreSQL's
    /// `pg_stat_archiver` times: `2026-11-24 18:25:31.123456+00:00` (fraction optional). Nil
    /// for anything else, including a time without an offset: its zone would be a guess.
    public static func parseDateTime(_ text: String) -> Double? {
        let bytes = Array(text.utf8)
        guard bytes.count >= 25, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"),
              bytes[10] == UInt8(ascii: " ") || bytes[10] == UInt8(ascii: "T"),
              bytes[13] == UInt8(ascii: ":"), bytes[16] == UInt8(ascii: ":") else { return nil }
        guard let year = digits(bytes, 0, 4), let month = digits(bytes, 5, 2), let day = digits(bytes, 8, 2),
              let hour = digits(bytes, 11, 2), let minute = digits(bytes, 14, 2), let second = digits(bytes, 17, 2),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
        var index = 19
        var fraction = 0.0
        if bytes[index] == UInt8(ascii: ".") {
            index += 1
            var scale = 0.1
            let start = index
            while index < bytes.count, let digit = digitValue(bytes[index]) {
                fraction += Double(digit) * scale
                scale /= 10
                index += 1
            }
            guard index > start else { return nil }
        }
        guard bytes.count - index == 6, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-"),
              bytes[index + 3] == UInt8(ascii: ":"),
              let offsetHours = digits(bytes, index + 1, 2), let offsetMinutes = digits(bytes, index + 4, 2),
              offsetHours < 24, offsetMinutes < 60 else { return nil }
        let offset = (offsetHours * 3600 + offsetMinutes * 60) * (bytes[index] == UInt8(ascii: "-") ? -1 : 1)
        let utc = daysFromCivil(year: year, month: month, day: day) * 86400 + hour * 3600 + minute * 60 + second
        return Double(utc - offset) + fraction
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm): no C
    /// library time-zone state involved.
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let shiftedYear = month <= 2 ? year - 1 : year
        let era = (shiftedYear >= 0 ? shiftedYear : shiftedYear - 399) / 400
        let yearOfEra = shiftedYear - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146097 + dayOfEra - 719468
    }

    private static func digitValue(_ byte: UInt8) -> Int? {
        byte >= 0x30 && byte <= 0x39 ? Int(byte - 0x30) : nil
    }

    private static func digits(_ bytes: [UInt8], _ start: Int, _ count: Int) -> Int? {
        guard start + count <= bytes.count else { return nil }
        var value = 0
        for byte in bytes[start..<(start + count)] {
            guard let digit = digitValue(byte) else { return nil }
            value = value * 10 + digit
        }
        return value
    }

    /// Whether `seconds` can be a time barman or PostgreSQL recorded: from 2000 to 2100. Values
    /// outside (1e308, year 5138, year 1) are refused rather than served as facts.
    public static func isPlausible(_ seconds: Double) -> Bool {
        seconds.isFinite && seconds >= 946_684_800 && seconds < 4_102_444_800
    }

    /// Unix seconds as barman's WAL catalog writes them (Python's `str(float)`: digits, an
    /// optional fraction), plausible; nil for anything else (hex floats, exponents, signs).
    public static func catalogTime(_ text: some Collection<UInt8>) -> Double? {
        var sawPoint = false
        var digits = 0
        for byte in text {
            if byte == UInt8(ascii: ".") && !sawPoint && digits > 0 {
                sawPoint = true
            } else if byte >= 0x30 && byte <= 0x39 {
                digits += 1
            } else {
                return nil
            }
        }
        guard digits > 0, digits <= 20, let value = Double(String(decoding: text, as: UTF8.self)), isPlausible(value) else { return nil }
        return value
    }
}
