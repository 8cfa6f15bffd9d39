import Platform
import Exposition
import Configuration

/// Why barman's answer to a command could not be used.
public struct DecodeFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Turns barman's JSON (3.4 and 3.20 shapes) into typed records.
///
/// The envelope rules, as barman 3.4.0 and 3.20.1 print it with `-f json`: one JSON object whose
/// keys are server names plus `_ERROR`/`_WARNING`/`_INFO`/... message lists; exit status 0,
/// except `check`, which exits 1 when a check fails and is still data.
public enum BarmanDecoding {
    /// Server name -> that server's JSON, after checking exit status, JSON validity and `_ERROR`.
    public static func servers(of command: BarmanCommand, _ output: CommandOutput) throws(DecodeFailure) -> [ServerName: JSONValue] {
        let (members, errors) = try envelope(of: command, output, tolerated: command.kind == "check" ? [0, 1] : [0])
        if !errors.isEmpty {
            throw DecodeFailure("barman \(command) reported an error: \(errors.joined(separator: "; "))")
        }
        return members
    }

    /// The servers of a JSON answer and barman's `_ERROR` messages, after checking the exit
    /// status and JSON validity.
    /// The top level is read member by member so that server names keep their exact bytes
    /// (see `ServerName`); each server's own JSON becomes a tree.
    static func envelope(of command: BarmanCommand, _ output: CommandOutput, tolerated: Set<Int32>) throws(DecodeFailure) -> ([ServerName: JSONValue], [String]) {
        try checkStatus(of: command, output, tolerated: tolerated)
        let decoded: Result<([ServerName: JSONValue], [String]), DecodeFailure> = JSONReader.withReader(output.stdout) { reader in
            do throws(JSONError) {
                guard reader.peek() == UInt8(ascii: "{") else {
                    try reader.skipValue()
                    try reader.finish()
                    return .failure(notAnObject(command))
                }
                var members: [ServerName: JSONValue] = [:]
                var errors: [String] = []
                try reader.beginObject()
                while let key = try reader.nextKey() {
                    let value = try reader.readValue()
                    if key == "_ERROR" {
                        errors = messageList(value)
                    } else if !key.hasPrefix("_") {
                        members[ServerName(key)] = value
                    }
                }
                try reader.finish()
                return .success((members, errors))
            } catch {
                return .failure(invalidJSON(command, error))
            }
        }
        return try decoded.get()
    }

    static func checkStatus(of command: BarmanCommand, _ output: CommandOutput, tolerated: Set<Int32>) throws(DecodeFailure) {
        guard tolerated.contains(output.exitStatus) else {
            throw DecodeFailure("barman \(command) exited with status \(output.exitStatus)" + errorMessages(output.stdout))
        }
        guard !output.stdout.isEmpty else {
            throw DecodeFailure("barman \(command) printed nothing on stdout (is -q set in an alias or wrapper?)")
        }
    }

    /// An answer read as a stream, server by server: `readServer` reads the value of one server
    /// (keys starting with `_` are barman's messages; `_ERROR` fails the answer). Throws
    /// `JSONError` for invalid JSON and `DecodeFailure` for JSON of the wrong shape, both turned
    /// into a `DecodeFailure` naming the command.
    static func streamServers<Value>(of command: BarmanCommand, _ output: CommandOutput,
                                     _ readServer: (String, inout JSONReader) throws -> Value) throws(DecodeFailure) -> [ServerName: Value] {
        try checkStatus(of: command, output, tolerated: [0])
        let decoded: Result<([ServerName: Value], [String]), DecodeFailure> = JSONReader.withReader(output.stdout) { reader in
            do {
                guard reader.peek() == UInt8(ascii: "{") else {
                    try reader.skipValue()
                    try reader.finish()
                    throw notAnObject(command)
                }
                var result: [ServerName: Value] = [:]
                var errors: [String] = []
                try reader.beginObject()
                while let server = try reader.nextKey() {
                    if server == "_ERROR" {
                        errors = messageList(try reader.readValue())
                    } else if server.hasPrefix("_") {
                        try reader.skipValue()
                    } else {
                        result[ServerName(server)] = try readServer(server, &reader)
                    }
                }
                try reader.finish()
                return .success((result, errors))
            } catch let failure as DecodeFailure {
                return .failure(failure)
            } catch {
                return .failure(invalidJSON(command, error))
            }
        }
        let (values, errors) = try decoded.get()
        if !errors.isEmpty {
            throw DecodeFailure("barman \(command) reported an error: \(errors.joined(separator: "; "))")
        }
        return values
    }

    // MARK: - Field helpers (barman mixes ints, floats, numeric strings and the string "None")

    /// The same words whether an answer was read as a tree or as a stream.
    static func invalidJSON(_ command: BarmanCommand, _ error: any Error) -> DecodeFailure {
        DecodeFailure("barman \(command) printed \(error)")
    }

    static func notAnObject(_ command: BarmanCommand) -> DecodeFailure {
        DecodeFailure("barman \(command) printed JSON that is not an object")
    }

    static func missing(_ field: String, _ context: String) -> DecodeFailure {
        DecodeFailure("\(context): missing or invalid field '\(field)'")
    }

    /// A string field, "" when absent or null (barman prints `null` for a unix-socket client address).
    static func string(_ value: JSONValue?) -> String {
        if case .string(let text)? = value { return text }
        return ""
    }

    static func requiredString(_ value: JSONValue, _ field: String, _ context: String) throws(DecodeFailure) -> String {
        guard case .string(let text)? = value[field] else { throw missing(field, context) }
        return text
    }

    /// A number written as a JSON int, float or numeric string; `nil` for absent, null or "None".
    static func number(_ value: JSONValue?) -> Double? {
        switch value {
        case .integer(let integer)?: return Double(integer)
        case .float(let float)?: return float
        case .string(let text)?:
            guard let parsed = Double(text), parsed.isFinite else { return nil }
            return parsed
        default: return nil
        }
    }

    static func integer(_ value: JSONValue?) -> Int64? {
        switch value {
        case .integer(let integer)?: return integer
        case .string(let text)?: return Int64(text)
        case .float(let float)? where float.isFinite && float == float.rounded(.towardZero) && abs(float) < 9e15: return Int64(float)
        default: return nil
        }
    }

    static func errorMessages(_ stdout: [UInt8]) -> String {
        guard let document = try? JSONParser.parse(stdout), let errors = document["_ERROR"] else { return "" }
        return ": " + messageList(errors).joined(separator: "; ")
    }

    static func messageList(_ value: JSONValue) -> [String] {
        if case .array(let items) = value {
            return items.map { item -> String in
                if case .string(let text) = item { return text }
                return "\(item)"
            }
        }
        if case .string(let text) = value { return [text] }
        return ["\(value)"]
    }
}

/// One copy of each distinct string: decoded values that repeat across servers then share
/// storage instead of each pinning its own allocation.
struct StringPool {
    private var pool: [String: String] = [:]

    mutating func shared(_ text: String) -> String {
        if let existing = pool[text] { return existing }
        pool[text] = text
        return text
    }
}
