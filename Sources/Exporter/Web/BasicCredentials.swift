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
              zip(authorization, scheme).allSatisfy({ ($0 | 0x20) == $1 }),
              authorization[scheme.count] == UInt8(ascii: " ") else { return nil }
        let token = authorization[(scheme.count + 1)...].drop { $0 == UInt8(ascii: " ") }
        guard let decoded = Base64.decode(Array(token)), let colon = decoded.firstIndex(of: UInt8(ascii: ":")) else { return nil }
        // A user name that is not UTF-8 cannot be a configured one; refused like an unknown user.
        guard let user = String(validating: decoded[..<colon], as: UTF8.self) else { return nil }
        self.init(user: ExactString(user), password: Array(decoded[(colon + 1)...]))
    }
}

/// Standard base64 (RFC 4648, padding required), as basic auth sends it.
enum Base64 {
    private static let values: [UInt8: UInt8] = {
        var table: [UInt8: UInt8] = [:]
        for (index, byte) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8.enumerated() { table[byte] = UInt8(index) }
        return table
    }()

    static func decode(_ text: [UInt8]) -> [UInt8]? {
        guard text.count % 4 == 0 else { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(text.count / 4 * 3)
        var index = 0
        while index < text.count {
            let chunk = text[index..<(index + 4)]
            let padding = chunk.reversed().prefix { $0 == UInt8(ascii: "=") }.count
            // Padding only at the very end, at most two characters.
            guard padding <= 2, padding == 0 || index + 4 == text.count else { return nil }
            var bits: UInt32 = 0
            for byte in chunk.dropLast(padding) {
                guard let value = values[byte] else { return nil }
                bits = bits << 6 | UInt32(value)
            }
            bits <<= UInt32(6 * padding)
            let bytes = [UInt8(truncatingIfNeeded: bits >> 16), UInt8(truncatingIfNeeded: bits >> 8), UInt8(truncatingIfNeeded: bits)]
            output.append(contentsOf: bytes.prefix(3 - padding))
            index += 4
        }
        return output
    }
}
