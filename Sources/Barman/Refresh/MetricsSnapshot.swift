import Platform
import Exposition
import Configuration

/// How one kind of barman command has fared since start-up (exporter-health metrics).
public struct CommandHealth: Sendable, Equatable {
    public var lastRunSucceeded = false
    public var lastSuccessUnixTime: Double?
    public var lastRunDurationSeconds: Double = 0
    public var runs: Int = 0
    public var failures: Int = 0

    public init() {}
}

/// Names the answer of one collector in a snapshot; the collector's file declares it, with a
/// typed property on `MetricsSnapshot` that reads it.
public struct AnswerKey<Value: Sendable & Equatable>: Sendable {
    let name: String

    public init(_ name: String) {
        self.name = name
    }
}

/// Everything known at one moment, as an immutable value: the latest usable answer of each
/// collector, and the health of each barman command. Each answer is published together with the
/// health of the run that gave it, in one store update, and a scrape renders one snapshot: a
/// response shows each collector's newest published answer with its own health, never an answer
/// without the health of the run that gave it. (Collectors publish independently, so one response
/// can show `list-backups` of this refresh next to a `check` of the one before.)
public struct MetricsSnapshot: Sendable, Equatable {
    /// Collector answers by key name; nil (absent) until the collector's first usable answer.
    private var answers: [String: any Sendable & Equatable] = [:]
    /// By barman command (`list-backups`, `show-backup`...).
    public var health: [String: CommandHealth] = [:]
    /// Duration of the last complete refresh cycle; nil before the first one ends.
    public var lastRefreshMilliseconds: Double?
    /// The exporter's own version.
    public var version: String

    public init(version: String) {
        self.version = version
    }

    public subscript<Value>(key: AnswerKey<Value>) -> Value? {
        get { answers[key.name] as? Value }
        set { answers[key.name] = newValue }
    }

    /// Forgets every collector's answer and marks every command failed (a reload changed where
    /// barman's answers come from).
    mutating func forgetAnswers() {
        answers = [:]
        for command in health.keys { health[command]?.lastRunSucceeded = false }
    }

    public static func == (lhs: MetricsSnapshot, rhs: MetricsSnapshot) -> Bool {
        guard lhs.health == rhs.health, lhs.lastRefreshMilliseconds == rhs.lastRefreshMilliseconds, lhs.version == rhs.version,
              lhs.answers.keys == rhs.answers.keys else { return false }
        return lhs.answers.allSatisfy { name, value in rhs.answers[name].map { equal(value, $0) } ?? false }
    }

    private static func equal<Value: Equatable>(_ value: Value, _ other: any Sendable & Equatable) -> Bool {
        (other as? Value) == value
    }
}
