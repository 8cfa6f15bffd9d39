/// PostgreSQL's WAL positions as barman prints them: LSNs (`0/13000060`) and WAL segment file
/// names (`000000010000000000000013`: timeline, then the segment number in two 32-bit halves).
public enum WALPosition {
    /// The byte position of an LSN printed as `XXXXXXXX/YYYYYYYY` (1 to 8 hex digits each);
    /// nil for anything else.
    public static func lsn(_ text: String) -> UInt64? {
        let halves = text.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        guard halves.count == 2, let high = hex(halves[0]), let low = hex(halves[1]) else { return nil }
        return high << 32 | low
    }

    /// A WAL segment: its timeline and its number counted from the start of WAL.
    public struct Segment: Sendable, Hashable, Comparable {
        public var timeline: UInt32
        public var number: UInt64

        public init(timeline: UInt32, number: UInt64) {
            self.timeline = timeline
            self.number = number
        }

        public static func < (left: Segment, right: Segment) -> Bool {
            (left.timeline, left.number) < (right.timeline, right.number)
        }
    }

    /// The segment a 24-hex-digit file name names, with segments of `segmentSize` bytes (a power
    /// of two from 1 MiB to 1 GiB, PostgreSQL's `wal_segment_size`); nil for another name or a
    /// segment part that size cannot have.
    public static func segment<Name: Collection<UInt8>>(_ name: Name, segmentSize: UInt64) -> Segment? {
        guard name.count == 24, isValid(segmentSize: segmentSize) else { return nil }
        let start = name.startIndex
        let logStart = name.index(start, offsetBy: 8), segmentStart = name.index(start, offsetBy: 16)
        guard let timeline = hex(name[start..<logStart]), let log = hex(name[logStart..<segmentStart]),
              let part = hex(name[segmentStart...]) else { return nil }
        let perLog = 0x1_0000_0000 / segmentSize
        guard part < perLog, timeline > 0 else { return nil }
        return Segment(timeline: UInt32(timeline), number: log * perLog + part)
    }

    /// The LSN just past the end of segment `number`.
    public static func end(ofSegment number: UInt64, segmentSize: UInt64) -> UInt64 {
        (number + 1).multipliedReportingOverflow(by: segmentSize).partialValue
    }

    public static func isValid(segmentSize: UInt64) -> Bool {
        segmentSize >= 1 << 20 && segmentSize <= 1 << 30 && segmentSize & (segmentSize - 1) == 0
    }

    /// Up to 8 hex digits.
    private static func hex<Digits: Collection<UInt8>>(_ digits: Digits) -> UInt64? {
        guard !digits.isEmpty, digits.count <= 8 else { return nil }
        var value: UInt64 = 0
        for byte in digits {
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            default: return nil
            }
            value = value << 4 | UInt64(digit)
        }
        return value
    }
}
