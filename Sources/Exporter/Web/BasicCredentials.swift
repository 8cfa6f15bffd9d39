import Exposition

/// The user and password of an `Authorization: Basic` header (RFC 7617).
public struct BasicCredentials: Sendable, Equatable {
    /// The user name as sent: compared by its bytes, never by Unicode equivalence.
    public var user: ExactString
    public var password: [UInt8]

    public init(user: ExactString, password: [UInt8]) {
        self.user = user
        self.password = password
    }

    /// From the header's value: the scheme `Basic` in any case (RFC 7617 via RFC 9110: auth
    /// schemes are case-insensitive), then base64 of `user:password`. Nil for anything else: no
    /// credentials then, which the caller answers with 401.
    public init?(authorization: [UInt8]) {
        let scheme = Array("basic".utf8)
        guard authorization.count > scheme.count,
              authorization.prefix(scheme.count).equalsIgnoringASCIICase(scheme),
              authorization[scheme.count] == UInt8(ascii: " ") else { return nil }
        let token = authorization[(scheme.count + 1)...].drop { $0 == UInt8(ascii: " ") }
        guard let decoded = Base64.decode(token), let colon = decoded.firstIndex(of: UInt8(ascii: ":")) else { return nil }
        // A user name that is not UTF-8 cannot be a configured one; refused like an unknown user.
        guard let user = String(validating: decoded[..<colon], as: UTF8.self) else { return nil }
        self.init(user: ExactString(user), password: Array(decoded[(colon + 1)...]))
    }
}

/// Standard base64 (RFC 4648, padding required), as basic auth sends it.
enum Base64 {
    /// Each byte's 6-bit value; `invalid` for bytes outside the alphabet. A table, not a
    /// dictionary: decoding runs on every authenticated request.
    private static let values: [UInt8] = {
        var table = [UInt8](repeating: invalid, count: 256)
        for (index, byte) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8.enumerated() { table[Int(byte)] = UInt8(index) }
        return table
    }()
    private static let invalid: UInt8 = 0xFF
    private static let pad = UInt8(ascii: "=")

    static func decode<Text: RandomAccessCollection<UInt8>>(_ text: Text) -> [UInt8]? {
        guard text.count % 4 == 0 else { return nil }
        // Padding only at the very end, at most two characters.
        let padding = text.reversed().prefix { $0 == pad }.count
        guard padding <= 2 else { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(text.count / 4 * 3)
        var bits: UInt32 = 0
        var position = 0
        let dataCount = text.count - padding
        for byte in text.prefix(dataCount) {
            let value = values[Int(byte)]
            guard value != invalid else { return nil }
            bits = bits << 6 | UInt32(value)
            position += 1
            if position == 4 {
                output.append(UInt8(truncatingIfNeeded: bits >> 16))
                output.append(UInt8(truncatingIfNeeded: bits >> 8))
                output.append(UInt8(truncatingIfNeeded: bits))
                bits = 0
                position = 0
            }
        }
        // The last group: 2 or 3 characters carry 1 or 2 bytes.
        if padding > 0 {
            bits <<= UInt32(6 * padding)
            output.append(UInt8(truncatingIfNeeded: bits >> 16))
            if padding == 1 { output.append(UInt8(truncatingIfNeeded: bits >> 8)) }
        }
        return output
    }
}
