#if canImport(Glibc)
import Glibc
#endif

/// The host's time zone, as the C library knows it (TZ, /etc/localtime).
public enum LocalTime {
    /// Unix time of a wall-clock time in the local zone (mktime); nil when the C library cannot
    /// represent it.
    public static func unixTime(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int) -> Int64? {
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        // -1: the C library decides whether daylight saving time was in effect then.
        parts.tm_isdst = -1
        let seconds = mktime(&parts)
        // -1 is also 1969-12-31 23:59:59 UTC, a time mktime can give.
        guard seconds != -1 || (parts.tm_year == 69 && parts.tm_mon == 11 && parts.tm_mday == 31) else { return nil }
        return Int64(seconds)
    }
}
