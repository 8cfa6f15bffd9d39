/// Text compared, hashed and ordered by its UTF-8 bytes, as label values must be.
///
/// Swift's `String` equality is Unicode canonical equivalence: `"e\u{301}" == "\u{E9}"`. barman
/// (Python) and Prometheus tell such texts apart, so keyed by `String` two servers (or two
/// label values) would merge into one series.
public struct ExactString: Hashable, Comparable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    public let text: String

    public init(_ text: String) {
        self.text = text
    }

    public init(stringLiteral value: String) {
        self.init(value)
    }

    public static func == (lhs: ExactString, rhs: ExactString) -> Bool {
        lhs.text.hasSameUTF8(as: rhs.text)
    }

    public func hash(into hasher: inout Hasher) {
        text.hashUTF8(into: &hasher)
    }

    public static func < (lhs: ExactString, rhs: ExactString) -> Bool {
        lhs.text.utf8.lexicographicallyPrecedes(rhs.text.utf8)
    }

    public var description: String { text }
}

extension String {
    /// Byte-for-byte equality of the UTF-8 (not canonical equivalence, as `==` is).
    func hasSameUTF8(as other: String) -> Bool {
        let (left, right) = (utf8, other.utf8)
        guard left.count == right.count else { return false }
        let compared = left.withContiguousStorageIfAvailable { a in
            right.withContiguousStorageIfAvailable { b in a.elementsEqual(b) }
        }
        return (compared ?? nil) ?? left.elementsEqual(right)
    }

    /// Hashes the UTF-8 bytes, consistent with `hasSameUTF8(as:)`.
    func hashUTF8(into hasher: inout Hasher) {
        let hashed: Void? = utf8.withContiguousStorageIfAvailable { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        if hashed == nil { for byte in utf8 { hasher.combine(byte) } }
    }
}
