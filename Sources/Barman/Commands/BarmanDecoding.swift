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
        try streamServers(of: command, output, tolerated: command.kind == "check" ? [0, 1] : [0]) { _, reader in try reader.readValue() }
    }

    /// The servers of a JSON answer as trees, and barman's `_ERROR` messages (for a command
    /// whose partial answers are data), after checking the exit status and JSON validity.
    static func envelope(of command: BarmanCommand, _ output: CommandOutput, tolerated: Set<Int32>) throws(DecodeFailure) -> ([ServerName: JSONValue], [String]) {
        try checkStatus(of: command, output, tolerated: tolerated)
        return try readEnvelope(of: command, output.stdout) { _, reader in try reader.readValue() }
    }

    static func checkStatus(of command: BarmanCommand, _ output: CommandOutput, tolerated: Set<Int32>) throws(DecodeFailure) {
        guard tolerated.contains(output.exitStatus) else {
            // barman's reason, when it printed one in `_ERROR`.
            let errors = (try? readEnvelope(of: command, output.stdout) { _, reader in try reader.skipValue() })?.1 ?? []
            throw DecodeFailure("barman \(command) exited with status \(output.exitStatus)" + (errors.isEmpty ? "" : ": " + errors.joined(separator: "; ")))
        }
        guard !output.stdout.isEmpty else {
            throw DecodeFailure("barman \(command) printed nothing on stdout (is -q set in an alias or wrapper?)")
        }
    }

    /// An answer read server by server after checking the exit status: `readServer` reads the
    /// value of one server; `_ERROR` fails the answer. For 200 servers x 60 backups
    /// `list-backups` is 3 MB, and a tree of it was 30 MB of small allocations that left the
    /// heap fragmented (resident) long after the few kept values were copied out.
    static func streamServers<Value>(of command: BarmanCommand, _ output: CommandOutput, tolerated: Set<Int32> = [0],
                                     _ readServer: (String, inout JSONReader) throws -> Value) throws(DecodeFailure) -> [ServerName: Value] {
        try checkStatus(of: command, output, tolerated: tolerated)
        let (values, errors) = try readEnvelope(of: command, output.stdout, readServer)
        if !errors.isEmpty {
            throw DecodeFailure("barman \(command) reported an error: \(errors.joined(separator: "; "))")
        }
        return values
    }

    /// The one reader of barman's envelope: a JSON object whose keys are server names (kept with
    /// their exact bytes, see `ServerName`) and barman's messages (`_ERROR` is returned, other
    /// keys that start with `_` are skipped). `readServer` throws `JSONError` for invalid JSON
    /// and `DecodeFailure` for JSON of the wrong shape; both end up as a `DecodeFailure` naming
    /// the command.
    /// Servers one answer may list: far beyond any barman (200 is a large one), low enough that
    /// what is kept of an answer stays a few tens of MB. Past it the answer is refused (the
    /// command fails, its last good data stays), rather than a part of it served as the whole.
    public static let maximumServers = 10_000

    static func readEnvelope<Value>(of command: BarmanCommand, _ stdout: [UInt8],
                                    _ readServer: (String, inout JSONReader) throws -> Value) throws(DecodeFailure) -> ([ServerName: Value], [String]) {
        let decoded: Result<([ServerName: Value], [String]), DecodeFailure> = JSONReader.withReader(stdout) { reader in
            do {
                guard reader.peek() == UInt8(ascii: "{") else {
                    try reader.skipValue()
                    try reader.finish()
                    throw DecodeFailure("barman \(command) printed JSON that is not an object")
                }
                var result: [ServerName: Value] = [:]
                var errors: [String] = []
                try reader.beginObject()
                while let key = try reader.nextKey() {
                    if key == "_ERROR" {
                        errors = messageList(try reader.readValue())
                    } else if key.hasPrefix("_") {
                        try reader.skipValue()
                    } else {
                        guard result.count < maximumServers else {
                            throw DecodeFailure("barman \(command) lists more than \(maximumServers) servers, the most the exporter serves; its answer is not used (split the servers across barman configurations, each with its own exporter)")
                        }
                        result[ServerName(key)] = try readServer(key, &reader)
                    }
                }
                try reader.finish()
                return .success((result, errors))
            } catch let failure as DecodeFailure {
                return .failure(failure)
            } catch {
                return .failure(DecodeFailure("barman \(command) printed \(error)"))
            }
        }
        return try decoded.get()
    }

    // MARK: - Field helpers (barman mixes ints, floats, numeric strings and the string "None")

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
