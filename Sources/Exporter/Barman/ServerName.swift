/// A server name as barman prints it, compared, hashed and ordered by its UTF-8 bytes.
///
/// Swift's `String` equality is Unicode canonical equivalence: `"e\u{301}" == "\u{E9}"`. barman
/// (Python) tells such names apart, so keyed by `String` two servers would merge into one series.
public struct ServerName: Hashable, Comparable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    public let text: String

    public init(_ text: String) {
        self.text = text
    }

    public init(stringLiteral value: String) {
        self.init(value)
    }

    public static func == (lhs: ServerName, rhs: ServerName) -> Bool {
        lhs.text.utf8.elementsEqual(rhs.text.utf8)
    }

    public func hash(into hasher: inout Hasher) {
        for byte in text.utf8 { hasher.combine(byte) }
    }

    public static func < (lhs: ServerName, rhs: ServerName) -> Bool {
        lhs.text.utf8.lexicographicallyPrecedes(rhs.text.utf8)
    }

    public var description: String { text }
}
