import CYAML
import Platform

/// A `key: value` pair from a flat YAML mapping, with 1-based positions for error messages.
public struct YAMLEntry: Sendable, Equatable {
    public var key: String
    public var keyLine: Int
    public var keyColumn: Int
    public var value: String
    public var valueLine: Int
    public var valueColumn: Int
    /// The items, when the value is a list of scalars (only for the keys that take one).
    public var items: [YAMLScalar]? = nil
}

/// The libyaml adapter: reads one flat YAML mapping of scalars (the config), where the keys in
/// `listKeys` may also take a list of scalars, and rejects everything else (other nesting,
/// anchors, aliases, tags, several documents) with a positioned message; `YAMLTree` below reads
/// the nested web config.
///
/// This is the only file that sees libyaml. Values stay strings (libyaml does no type
/// resolution); `ConfigLoader` decides what each key accepts. Duplicate keys are reported by the
/// loader, because libyaml accepts them silently.
public enum YAMLFlatMap {
    public struct Result: Sendable {
        public var entries: [YAMLEntry] = []
        public var problems: [ConfigProblem] = []
    }

    public static func parse(_ bytes: [UInt8], file: String, listKeys: Set<String> = []) -> Result {
        var walker = EventWalker(file: file, listKeys: listKeys)
        feed(bytes, file: file, to: &walker)  // An empty file means all defaults.
        return Result(entries: walker.entries, problems: walker.problems)
    }

    /// Runs libyaml over `bytes`, giving each event to `handler` until the stream ends, the
    /// handler stops or libyaml reports an error (added to the handler's problems).
    static func feed<Handler: YAMLEventHandler>(_ bytes: [UInt8], file: String, to handler: inout Handler) {
        guard !bytes.isEmpty else { return }
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else {
            handler.problems.append(ConfigProblem(file: file, line: 1, column: 1, message: "cannot initialise the YAML parser (out of memory)"))
            return
        }
        defer { yaml_parser_delete(&parser) }
        // libyaml keeps a pointer to the input for the parser's whole life: pin it until the end.
        bytes.withUnsafeBufferPointer { input in
            guard let base = input.baseAddress else { return }
            yaml_parser_set_input_string(&parser, base, input.count)
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else {
                    handler.problems.append(parserProblem(parser, file: file, bytes: bytes))
                    break
                }
                let done = event.type == YAML_STREAM_END_EVENT
                let secondDocument = dispatch(&event, to: &handler, file: file)
                yaml_event_delete(&event)
                if done || secondDocument || handler.stopped { break }
            }
        }
    }

    /// The rules every YAML file of the exporter follows, then the event in Swift terms: one
    /// document, no aliases, anchors or tags (each a positioned problem). True at a second
    /// document, where reading stops.
    private static func dispatch<Handler: YAMLEventHandler>(_ event: inout yaml_event_t, to handler: inout Handler, file: String) -> Bool {
        // libyaml's marks are 0-based.
        let line = Int(event.start_mark.line) + 1
        let column = Int(event.start_mark.column) + 1
        func problem(_ message: String) {
            guard !handler.isSkipping else { return }
            handler.problems.append(ConfigProblem(file: file, line: line, column: column, message: message))
        }
        switch event.type {
        case YAML_DOCUMENT_START_EVENT:
            handler.documents += 1
            if handler.documents == 2 {
                problem("more than one YAML document; \(handler.documentRule)")
                return true
            }
        case YAML_ALIAS_EVENT:
            problem("aliases (*name) are not supported\(handler.keyPhrase); write the value out")
            handler.alias()
        case YAML_SCALAR_EVENT:
            let scalar = event.data.scalar
            if scalar.anchor != nil { problem("anchors (&name) are not supported\(handler.keyPhrase)") }
            if scalar.tag != nil { problem("tags (!tag) are not supported\(handler.keyPhrase); write a plain or quoted value") }
            var text = ""
            if let pointer = scalar.value, scalar.length > 0 {
                // libyaml has already rejected invalid UTF-8, so decoding cannot lose data here.
                text = String(decoding: UnsafeBufferPointer(start: pointer, count: scalar.length), as: UTF8.self)
            }
            handler.scalar(YAMLScalar(value: text, plain: scalar.style == YAML_PLAIN_SCALAR_STYLE, line: line, column: column))
        case YAML_MAPPING_START_EVENT, YAML_SEQUENCE_START_EVENT:
            let isMapping = event.type == YAML_MAPPING_START_EVENT
            let anchor = isMapping ? event.data.mapping_start.anchor : event.data.sequence_start.anchor
            let tag = isMapping ? event.data.mapping_start.tag : event.data.sequence_start.tag
            if handler.checksCollection(atDepth: handler.depth + 1) {
                if anchor != nil { problem("anchors (&name) are not supported") }
                if tag != nil { problem("tags (!tag) are not supported") }
            }
            handler.collectionStart(isMapping: isMapping, line: line, column: column)
        case YAML_MAPPING_END_EVENT, YAML_SEQUENCE_END_EVENT:
            handler.collectionEnd()
        default:
            break
        }
        return false
    }

    /// libyaml's marks are 0-based; reader errors (bad UTF-8, control characters) only carry a
    /// byte offset, so the line and column are computed from the bytes.
    static func parserProblem(_ parser: yaml_parser_t, file: String, bytes: [UInt8]) -> ConfigProblem {
        let problem = parser.problem.map { String(cString: $0) } ?? "unknown error"
        let context = parser.context.map { String(cString: $0) }
        var message: String
        switch parser.error {
        case YAML_READER_ERROR:
            let (line, column) = position(ofByte: parser.problem_offset, in: bytes)
            return ConfigProblem(file: file, line: line, column: column, message: "invalid YAML: \(problem) (the file must be UTF-8 text)")
        case YAML_MEMORY_ERROR:
            message = "out of memory while parsing YAML"
        default:
            message = "invalid YAML: \(problem)"
            if let context { message += " (\(context))" }
        }
        return ConfigProblem(file: file, line: Int(parser.problem_mark.line) + 1, column: Int(parser.problem_mark.column) + 1, message: message)
    }

    static func position(ofByte offset: Int, in bytes: [UInt8]) -> (line: Int, column: Int) {
        var line = 1
        var column = 1
        for byte in bytes.prefix(offset) {
            if byte == UInt8(ascii: "\n") {
                line += 1
                column = 1
            } else {
                column += 1
            }
        }
        return (line, column)
    }
}

/// What `YAMLFlatMap.feed` gives the events of a document to, after the rules every file
/// follows were checked.
protocol YAMLEventHandler {
    var problems: [ConfigProblem] { get set }
    /// Set to stop reading (a mistake that makes the rest meaningless or too costly).
    var stopped: Bool { get }
    /// Documents started so far (reading stops at the second).
    var documents: Int { get set }
    /// What the file must be, for the second-document message ("the file is a single mapping").
    var documentRule: String { get }
    /// " (key 'name')" while a key waits for its value, for messages; "" otherwise.
    var keyPhrase: String { get }
    /// Inside a value the handler rejected: no more problems are reported from within it.
    var isSkipping: Bool { get }
    /// Open collections (0 at the top).
    var depth: Int { get }
    /// Whether anchors and tags of a collection starting at `depth` are reported (a handler that
    /// rejects the collection anyway says so once).
    func checksCollection(atDepth depth: Int) -> Bool
    mutating func scalar(_ scalar: YAMLScalar)
    mutating func collectionStart(isMapping: Bool, line: Int, column: Int)
    mutating func collectionEnd()
    /// After an alias, which the rules already reported.
    mutating func alias()
}

/// Turns a flat mapping's events into entries, tracking where in the document it is.
private struct EventWalker: YAMLEventHandler {
    let file: String
    var entries: [YAMLEntry] = []
    var problems: [ConfigProblem] = []
    var documents = 0
    let documentRule = "the config is a single flat mapping"

    /// Depth of mappings/sequences; 1 = inside the top-level mapping.
    private(set) var depth = 0
    /// Inside the top-level mapping: the key waiting for its value.
    private var pendingKey: YAMLScalar?
    /// Set while skipping a rejected nested value, so its contents do not produce more errors.
    private var skipDepth: Int?
    /// Set when a rejected value nests deeper than `deepestSkipped`: parsing stops there, since
    /// libyaml's time grows with the square of the depth (100k levels: 26 s). Shallower mistakes
    /// are skipped, so every other problem of the file is still reported.
    private(set) var stopped = false
    static let deepestSkipped = 16
    /// Keys whose value may be a list of scalars.
    let listKeys: Set<String>
    /// While inside such a list: its key and the items so far.
    private var list: (key: YAMLScalar, items: [YAMLScalar])?

    init(file: String, listKeys: Set<String>) {
        self.file = file
        self.listKeys = listKeys
    }

    var isSkipping: Bool { skipDepth != nil }
    var keyPhrase: String { pendingKey.map { " (key '\($0.value)')" } ?? "" }

    /// Only the top-level mapping's: a nested collection is rejected as such.
    func checksCollection(atDepth depth: Int) -> Bool { depth == 1 }

    private mutating func problem(_ line: Int, _ column: Int, _ message: String) {
        problems.append(ConfigProblem(file: file, line: line, column: column, message: message))
    }

    mutating func alias() {
        if skipDepth == nil { pendingKey = nil }
    }

    mutating func scalar(_ scalar: YAMLScalar) {
        guard skipDepth == nil else { return }
        if depth == 2, list != nil {
            list?.items.append(scalar)
            return
        }
        if depth == 0 {
            // A bare scalar document: only "nothing" (empty or ~) is acceptable and means defaults.
            if !scalar.isNull {
                problem(scalar.line, scalar.column, "the config must be a mapping of 'key: value' lines, found a single value")
            }
            return
        }
        if let key = pendingKey {
            entries.append(YAMLEntry(key: key.value, keyLine: key.line, keyColumn: key.column,
                                     value: scalar.value, valueLine: scalar.line, valueColumn: scalar.column))
            pendingKey = nil
        } else {
            pendingKey = scalar
        }
    }

    mutating func collectionStart(isMapping: Bool, line: Int, column: Int) {
        depth += 1
        if let skipDepth, depth - skipDepth >= Self.deepestSkipped { stopped = true }
        guard skipDepth == nil else { return }
        if depth == 1 {
            if !isMapping {
                problem(line, column, "the config must be a mapping of 'key: value' lines, found a list")
                skipDepth = depth
            }
            return
        }
        let kind = isMapping ? "mapping" : "list"
        if depth == 2, !isMapping, let key = pendingKey, listKeys.contains(key.value) {
            list = (key, [])
            pendingKey = nil
            return
        }
        if let (key, _) = list {
            problem(line, column, "'\(key.value)' has a nested \(kind) in its list; each item is one value (a name or a pattern)")
            skipDepth = depth
            return
        }
        if let key = pendingKey {
            problem(line, column, "'\(key.value)' has a nested \(kind); all options are first-level (\"key: value\")")
        } else {
            problem(line, column, "a \(kind) cannot be a key; all options are first-level (\"key: value\")")
        }
        pendingKey = nil
        skipDepth = depth
    }

    mutating func collectionEnd() {
        if skipDepth == depth {
            skipDepth = nil
        } else if depth == 2, let (key, items) = list {
            entries.append(YAMLEntry(key: key.value, keyLine: key.line, keyColumn: key.column,
                                     value: "", valueLine: key.line, valueColumn: key.column, items: items))
            list = nil
        }
        depth -= 1
    }
}

/// A node of a small YAML document (the web config): scalars stay strings with their position;
/// libyaml does no type resolution, the reader of the tree decides what each key accepts.
public indirect enum YAMLNode: Sendable, Equatable {
    case scalar(YAMLScalar)
    case mapping([(key: YAMLScalar, value: YAMLNode)], line: Int, column: Int)
    case sequence([YAMLNode], line: Int, column: Int)

    public static func == (lhs: YAMLNode, rhs: YAMLNode) -> Bool {
        switch (lhs, rhs) {
        case (.scalar(let a), .scalar(let b)): return a == b
        case (.mapping(let a, let al, let ac), .mapping(let b, let bl, let bc)):
            return al == bl && ac == bc && a.count == b.count && zip(a, b).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        case (.sequence(let a, let al, let ac), .sequence(let b, let bl, let bc)): return a == b && al == bl && ac == bc
        default: return false
        }
    }

    /// 1-based position of the node's first character.
    public var line: Int {
        switch self {
        case .scalar(let scalar): return scalar.line
        case .mapping(_, let line, _), .sequence(_, let line, _): return line
        }
    }

    public var column: Int {
        switch self {
        case .scalar(let scalar): return scalar.column
        case .mapping(_, _, let column), .sequence(_, _, let column): return column
        }
    }
}

public struct YAMLScalar: Sendable, Equatable {
    public var value: String
    /// Written without quotes: only then do `~`, `null` and an empty value mean "nothing", and
    /// `true`/`false` a boolean.
    public var plain: Bool
    public var line: Int
    public var column: Int

    public var isNull: Bool { plain && (value.isEmpty || value == "~" || value == "null") }
}

/// Reads one YAML document into a `YAMLNode` tree for files that nest (the web config), with
/// the same strictness as `YAMLFlatMap`: no anchors, aliases, tags or second documents, and no
/// key twice in a mapping; every problem with its position.
public enum YAMLTree {
    public struct Result: Sendable {
        /// nil for an empty document.
        public var root: YAMLNode?
        public var problems: [ConfigProblem] = []
    }

    /// Deeper documents are refused: the web config nests three levels, and libyaml's time grows
    /// with the square of the depth.
    static let maximumDepth = 16

    public static func parse(_ bytes: [UInt8], file: String) -> Result {
        var builder = TreeBuilder(file: file)
        YAMLFlatMap.feed(bytes, file: file, to: &builder)
        return Result(root: builder.problems.isEmpty ? builder.root : nil, problems: builder.problems)
    }
}

/// Builds the tree from a document's events with a stack of open collections.
private struct TreeBuilder: YAMLEventHandler {
    let file: String
    var problems: [ConfigProblem] = []
    var root: YAMLNode?
    private(set) var stopped = false
    var documents = 0
    let documentRule = "the file is a single mapping"
    let keyPhrase = ""
    let isSkipping = false

    private enum Open {
        case mapping(entries: [(key: YAMLScalar, value: YAMLNode)], pendingKey: YAMLScalar?, line: Int, column: Int)
        case sequence(items: [YAMLNode], line: Int, column: Int)
    }
    private var stack: [Open] = []

    init(file: String) {
        self.file = file
    }

    var depth: Int { stack.count }
    func checksCollection(atDepth depth: Int) -> Bool { true }

    private mutating func problem(_ line: Int, _ column: Int, _ message: String) {
        problems.append(ConfigProblem(file: file, line: line, column: column, message: message))
    }

    mutating func alias() {
        stopped = true
    }

    mutating func scalar(_ scalar: YAMLScalar) {
        add(.scalar(scalar))
    }

    mutating func collectionStart(isMapping: Bool, line: Int, column: Int) {
        if stack.count >= YAMLTree.maximumDepth {
            problem(line, column, "nested more than \(YAMLTree.maximumDepth) levels deep")
            stopped = true
            return
        }
        if case .mapping(_, nil, _, _)? = stack.last {
            problem(line, column, "a \(isMapping ? "mapping" : "list") cannot be a key")
            stopped = true
            return
        }
        stack.append(isMapping ? .mapping(entries: [], pendingKey: nil, line: line, column: column) : .sequence(items: [], line: line, column: column))
    }

    mutating func collectionEnd() {
        guard let open = stack.popLast() else { return }
        switch open {
        case .mapping(let entries, _, let line, let column): add(.mapping(entries, line: line, column: column))
        case .sequence(let items, let line, let column): add(.sequence(items, line: line, column: column))
        }
    }

    /// Puts a finished node where it belongs: the root, a list item, a mapping's key or value.
    private mutating func add(_ node: YAMLNode) {
        guard let top = stack.popLast() else {
            root = node
            return
        }
        switch top {
        case .sequence(var items, let line, let column):
            items.append(node)
            stack.append(.sequence(items: items, line: line, column: column))
        case .mapping(var entries, let pendingKey, let line, let column):
            if let key = pendingKey {
                entries.append((key, node))
                stack.append(.mapping(entries: entries, pendingKey: nil, line: line, column: column))
            } else if case .scalar(let key) = node {
                if let first = entries.first(where: { $0.key.value == key.value }) {
                    problem(key.line, key.column, "duplicate key '\(key.value)' (first set on line \(first.key.line))")
                }
                stack.append(.mapping(entries: entries, pendingKey: key, line: line, column: column))
            } else {
                stack.append(.mapping(entries: entries, pendingKey: nil, line: line, column: column))
            }
        }
    }
}
