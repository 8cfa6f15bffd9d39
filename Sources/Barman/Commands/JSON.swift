import Platform
import Exposition
import Configuration

/// A parsed JSON value. Numbers keep whether they were written as integers, because barman's
/// types vary between versions (`throughput_bytes` is a float in 3.4 and an int in 3.20).
///
/// Not `indirect`: arrays and dictionaries already hold their elements out of line, so a scalar
/// is stored inline instead of in a heap box of its own.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case integer(Int64)
    case float(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members[key] }
        return nil
    }
}

/// Where and why a document is not valid JSON.
public struct JSONError: Error, Sendable, Equatable, CustomStringConvertible {
    public var offset: Int
    public var message: String
    public var description: String { "invalid JSON at byte \(offset): \(message)" }
}

/// Strict RFC 8259 parsing into a `JSONValue` tree, without Foundation.
///
/// It is its own code (not JSONDecoder) to keep Foundation out of the binary and to bound what
/// hostile input can cost: nesting depth is limited and invalid UTF-8 is an error.
public enum JSONParser {
    public static let maximumDepth = 64

    public static func parse(_ data: [UInt8]) throws(JSONError) -> JSONValue {
        let result: Swift.Result<JSONValue, JSONError> = JSONReader.withReader(data) { reader in
            do throws(JSONError) {
                let value = try reader.readValue()
                try reader.finish()
                return .success(value)
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }
}

/// A pull reader over one JSON document, for answers too big to hold as a tree: the caller
/// walks objects and arrays member by member, reads the values it needs and skips the rest.
/// Skipping allocates nothing for ASCII strings, and everything read or skipped is validated
/// as strictly as `JSONParser.parse` does.
struct JSONReader {
    private let bytes: UnsafeBufferPointer<UInt8>
    private var index = 0
    private var depth = 0
    /// Bit d - 1 is set once the open container at depth d has an element (a `,` must come next).
    private var containerHasElements: UInt64 = 0

    /// Runs `body` with a reader over `data`, which stays valid only inside `body`.
    static func withReader<Result>(_ data: [UInt8], _ body: (inout JSONReader) -> Result) -> Result {
        data.withUnsafeBufferPointer { buffer in
            var reader = JSONReader(bytes: buffer)
            return body(&reader)
        }
    }

    private init(bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    private func error(_ message: String) -> JSONError {
        JSONError(offset: index, message: message)
    }

    /// The next byte after whitespace, without consuming it; nil at the end of the input.
    mutating func peek() -> UInt8? {
        skipWhitespace()
        return index < bytes.count ? bytes[index] : nil
    }

    /// Checks that nothing but whitespace follows the document.
    mutating func finish() throws(JSONError) {
        skipWhitespace()
        guard index == bytes.count else { throw error("unexpected data after the end of the document") }
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    /// The next value, as a tree.
    mutating func readValue() throws(JSONError) -> JSONValue {
        skipWhitespace()
        guard index < bytes.count else { throw error("unexpected end of input") }
        switch bytes[index] {
        case UInt8(ascii: "{"):
            try beginObject()
            var members: [String: JSONValue] = [:]
            while let key = try nextKey() { members[key] = try readValue() }
            return .object(members)
        case UInt8(ascii: "["):
            try beginArray()
            var elements: [JSONValue] = []
            while try nextElement() { elements.append(try readValue()) }
            return .array(elements)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw error("unexpected character")
        }
    }

    /// Validates and passes over the next value.
    mutating func skipValue() throws(JSONError) {
        skipWhitespace()
        guard index < bytes.count else { throw error("unexpected end of input") }
        switch bytes[index] {
        case UInt8(ascii: "{"):
            try beginObject()
            while try advanceToNextMember() {
                try skipString()
                try expectColon()
                try skipValue()
            }
        case UInt8(ascii: "["):
            try beginArray()
            while try nextElement() { try skipValue() }
        case UInt8(ascii: "\""): try skipString()
        default: _ = try readValue()
        }
    }

    /// Consumes the '{' of an object; then `nextKey` until it returns nil.
    mutating func beginObject() throws(JSONError) {
        skipWhitespace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: "{") else { throw error("expected an object") }
        try enter()
        index += 1
    }

    /// The next key of the current object, positioned at its value; nil after the closing '}'.
    mutating func nextKey() throws(JSONError) -> String? {
        guard try advanceToNextMember() else { return nil }
        let key = try parseString()
        try expectColon()
        return key
    }

    /// Consumes the '[' of an array; then `nextElement` until it returns false.
    mutating func beginArray() throws(JSONError) {
        skipWhitespace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: "[") else { throw error("expected an array") }
        try enter()
        index += 1
    }

    /// Whether the current array has another element (the reader is then positioned at it);
    /// false after the closing ']'.
    mutating func nextElement() throws(JSONError) -> Bool {
        skipWhitespace()
        guard index < bytes.count else { throw error("unexpected end of input in an array") }
        if try closesOrSeparates(closing: UInt8(ascii: "]"), "expected ',' or ']' in an array") { return false }
        skipWhitespace()
        return true
    }

    /// Past the separator before the next member's key; false after the closing '}'.
    private mutating func advanceToNextMember() throws(JSONError) -> Bool {
        skipWhitespace()
        guard index < bytes.count else { throw error("unexpected end of input in an object") }
        if try closesOrSeparates(closing: UInt8(ascii: "}"), "expected ',' or '}' in an object") { return false }
        skipWhitespace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw error("expected a string key") }
        return true
    }

    /// At an element boundary: consumes `closing` and leaves the container (true), or the ','
    /// required before every element but the first (false). A ',' before `closing` is then
    /// caught by whoever reads the element that should follow.
    private mutating func closesOrSeparates(closing: UInt8, _ message: String) throws(JSONError) -> Bool {
        let bit: UInt64 = 1 << UInt64(depth - 1)
        if bytes[index] == closing {
            index += 1
            containerHasElements &= ~bit
            depth -= 1
            return true
        }
        if containerHasElements & bit != 0 {
            guard bytes[index] == UInt8(ascii: ",") else { throw error(message) }
            index += 1
        }
        containerHasElements |= bit
        return false
    }

    private mutating func expectColon() throws(JSONError) {
        skipWhitespace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw error("expected ':' after a key") }
        index += 1
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(JSONError) {
        let count = literal.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw error("unexpected end of input") }
        for offset in 0..<count where bytes[index + offset] != literal.utf8Start[offset] {
            throw error("invalid literal")
        }
        index += count
    }

    private mutating func enter() throws(JSONError) {
        depth += 1
        if depth > JSONParser.maximumDepth { throw error("nesting deeper than \(JSONParser.maximumDepth) levels") }
    }

    /// Passes over a string; only one with escapes or non-ASCII bytes is decoded (to validate it).
    private mutating func skipString() throws(JSONError) {
        let start = index
        index += 1
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") { index += 1; return }
            if byte == UInt8(ascii: "\\") || byte >= 0x80 { break }
            if byte < 0x20 { throw error("control character in a string") }
            index += 1
        }
        index = start
        _ = try parseString()
    }

    private mutating func parseString() throws(JSONError) -> String {
        index += 1  // opening quote
        let start = index
        // Fast path: no escapes. Scan to the closing quote.
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let slice = UnsafeBufferPointer(rebasing: bytes[start..<index])
                index += 1
                guard let text = String(validating: slice, as: UTF8.self) else { throw JSONError(offset: start, message: "string is not valid UTF-8") }
                return text
            }
            if byte == UInt8(ascii: "\\") { break }
            if byte < 0x20 { throw error("control character in a string") }
            index += 1
        }
        var buffer = Array(bytes[start..<index])
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                guard let text = String(validating: buffer, as: UTF8.self) else { throw JSONError(offset: start, message: "string is not valid UTF-8") }
                return text
            case UInt8(ascii: "\\"):
                index += 1
                guard index < bytes.count else { throw error("unexpected end of input in a string") }
                let escape = bytes[index]
                index += 1
                switch escape {
                case UInt8(ascii: "\""): buffer.append(0x22)
                case UInt8(ascii: "\\"): buffer.append(0x5C)
                case UInt8(ascii: "/"): buffer.append(0x2F)
                case UInt8(ascii: "b"): buffer.append(0x08)
                case UInt8(ascii: "f"): buffer.append(0x0C)
                case UInt8(ascii: "n"): buffer.append(0x0A)
                case UInt8(ascii: "r"): buffer.append(0x0D)
                case UInt8(ascii: "t"): buffer.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try parseHex4()
                    if (0xD800...0xDBFF).contains(scalar) {
                        guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                            throw error("unpaired surrogate in \\u escape")
                        }
                        index += 2
                        let low = try parseHex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw error("invalid low surrogate in \\u escape") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(scalar) {
                        throw error("unpaired surrogate in \\u escape")
                    }
                    guard let unicode = Unicode.Scalar(scalar) else { throw error("invalid \\u escape") }
                    buffer.append(contentsOf: Array(String(Character(unicode)).utf8))
                default:
                    throw error("invalid escape sequence")
                }
            default:
                if byte < 0x20 { throw error("control character in a string") }
                buffer.append(byte)
                index += 1
            }
        }
        throw error("unterminated string")
    }

    private mutating func parseHex4() throws(JSONError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw error("truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw error("invalid hex digit in \\u escape")
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }

    private mutating func parseNumber() throws(JSONError) -> JSONValue {
        let start = index
        var isInteger = true
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        guard index < bytes.count, isDigit(bytes[index]) else { throw error("invalid number") }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else {
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            isInteger = false
            index += 1
            guard index < bytes.count, isDigit(bytes[index]) else { throw error("invalid number: digit expected after '.'") }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            isInteger = false
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard index < bytes.count, isDigit(bytes[index]) else { throw error("invalid number: digit expected in exponent") }
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        if isInteger, let value = Int64(text) { return .integer(value) }
        guard let value = Double(text), value.isFinite else { throw JSONError(offset: start, message: "number out of range") }
        return .float(value)
    }

    private func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
}
