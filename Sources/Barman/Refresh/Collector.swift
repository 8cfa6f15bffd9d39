import Platform
import Exposition
import Configuration

/// One source of facts about barman: a barman command (or a file barman writes), how its answer
/// is decoded, when it is asked again, the metric families made from it and how they are
/// emitted, all in one file, as node_exporter's collectors are. `Collectors.all` lists them.
///
/// A collector never runs twice at a time. It reads what other collectors published from the
/// snapshot (`after` makes it wait for them when they run in the same refresh) and publishes
/// its own answer, data and health together, through its `CollectContext`.
public protocol Collector: Sendable {
    /// Its name in logs and in other collectors' `after` and `notWhileRunning`.
    var name: String { get }
    /// Every family `emit` adds to; `Metric.all` and docs/metrics.md are checked against these.
    var metrics: [MetricDefinition] { get }
    /// When the refresher runs it; `.never` for a collector that only emits.
    var schedule: Schedule { get }
    /// One run: asks barman (or reads a file) and publishes what it learnt.
    func collect(_ context: CollectContext) async
    /// Its samples for a scrape, from the snapshot (and, for the process, the scrape's figures).
    func emit(_ snapshot: MetricsSnapshot, _ scrape: Scrape, into families: inout FamilyBuilder)
}

extension Collector {
    public var schedule: Schedule { .never }
    public func collect(_ context: CollectContext) async {}
}

/// When a collector runs, and what it must not overlap.
public struct Schedule: Sendable {
    public enum Due: Sendable {
        /// Never run by the refresher (the collector only emits).
        case never
        /// At every refresh; the collector decides itself what is worth asking.
        case everyRefresh
        /// When the last usable answer is older than this setting (asked again at every
        /// refresh while it fails).
        case afterTTL(@Sendable (RefreshSettings) -> Duration)
        /// Once after start and after each reload, until it gives a usable answer.
        case oncePerReload
    }

    public var due: Due
    /// Collectors it waits for when they start in the same refresh, because it reads what they
    /// publish; one still running from an earlier refresh is not waited for (the last answer
    /// it published is used).
    public var after: Set<String>
    /// Collectors it waits for in the same refresh only until they first answered: after that it
    /// uses their last answer at once, so one that hangs never holds it up.
    public var afterFirstAnswerOf: Set<String>
    /// Collectors that must not run while it does. It does not start while one of them runs,
    /// and those due in the same refresh start once it is done.
    public var notWhileRunning: Set<String>

    public init(_ due: Due, after: Set<String> = [], afterFirstAnswerOf: Set<String> = [], notWhileRunning: Set<String> = []) {
        self.due = due
        self.after = after
        self.afterFirstAnswerOf = afterFirstAnswerOf
        self.notWhileRunning = notWhileRunning
    }

    public static let never = Schedule(.never)

    /// Whether failures delay its next run (`Refresher.retryBackoff`): for collectors asked on a
    /// TTL or once per reload; those asked at every refresh decide themselves what to ask.
    var backsOff: Bool {
        switch due {
        case .afterTTL, .oncePerReload: return true
        case .never, .everyRefresh: return false
        }
    }
}

/// What a scrape passes to emission besides the snapshot.
public struct Scrape: Sendable {
    /// The scrape's time (whole seconds in the daemon), for ages.
    public var now: Double
    /// The exporter's own process figures; nil for `--once` and in tests.
    public var process: ProcessStatistics?

    public init(now: Double, process: ProcessStatistics? = nil) {
        self.now = now
        self.process = process
    }
}

/// What a collector can do while it runs: run barman, read barman's files, publish.
public struct CollectContext: Sendable {
    let refresher: Refresher
    let collector: String
    let schedule: Schedule
    /// The barman source this run belongs to; answers of a source a reload replaced are dropped.
    let generation: UInt64
    public let files: any BarmanFiles
    public let logger: Logger
    /// The servers asked about and served: the collectors that list servers (list-backups,
    /// check, replication-status, show-servers) keep only these, and the others work from
    /// what those published.
    public let selection: ServerSelection

    /// `answer` without the servers the selection leaves out.
    public func selected<Value>(_ answer: [ServerName: Value]) -> [ServerName: Value] {
        selection.selectsAll ? answer : answer.filter { selection.includes($0.key.text) }
    }

    /// The snapshot as published so far: what other collectors answered.
    public var snapshot: MetricsSnapshot { refresher.store.snapshot }

    /// Runs `command` once a barman slot is free (and while `stillDue` says so), decodes its
    /// output and publishes, in one store update, its health and, when usable, `publish`'s
    /// change. The decoded value, or nil when there was none.
    @discardableResult
    public func run<Value: Sendable>(_ command: BarmanCommand, stillDue: @escaping @Sendable () -> Bool = { true },
                                     decode: @escaping @Sendable (CommandOutput) throws(DecodeFailure) -> Value,
                                     publish: @escaping @Sendable (Value, inout MetricsSnapshot) -> Void) async -> Value? {
        await refresher.run(command, for: self, stillDue: stillDue, decode: decode, publish: publish)
    }

    /// Does `work` for each of `items`, started in their order, twice as many at once as barman
    /// has command slots: each item runs a barman command, which waits for a slot anyway, and a
    /// task made per item up front waited with all the others (at 1,000 servers, 1,000 tasks: 5 MB
    /// of a first refresh's peak memory). Twice, so that a slot barman frees goes at once to a
    /// task already waiting for one, as before, rather than wait for the next task to start.
    public func forEach<Item: Sendable>(_ items: [Item], _ work: @escaping @Sendable (Item) async -> Void) async {
        await Self.forEach(items, atMost: 2 * (await refresher.commandSlots), work)
    }

    static func forEach<Item: Sendable>(_ items: [Item], atMost width: Int, _ work: @escaping @Sendable (Item) async -> Void) async {
        await withTaskGroup(of: Void.self) { group in
            var pending = items.makeIterator()
            for _ in 0..<max(1, width) {
                guard let item = pending.next() else { break }
                group.addTask { await work(item) }
            }
            while await group.next() != nil {
                if let item = pending.next() { group.addTask { await work(item) } }
            }
        }
    }

    /// Runs blocking work (reading barman's files, statvfs) on the file worker thread, off
    /// Swift's cooperative pool, whose few threads must never wait on a disk.
    public func blocking<Value: Sendable>(_ work: @escaping @Sendable () -> Value) async -> Value {
        await withCheckedContinuation { continuation in
            let queued = Self.fileWorker.submit { continuation.resume(returning: work()) }
            // The worker's queue is full or its thread cannot start: here, rather than not at all.
            if !queued { continuation.resume(returning: work()) }
        }
    }

    private static let fileWorker = WorkerThread(name: "barman-files", capacity: 1024)

    /// Publishes data that came from no barman command (a file), unless a reload replaced the
    /// barman source meanwhile.
    public func publish(_ change: @Sendable (inout MetricsSnapshot) -> Void) async {
        await refresher.publish(change, generation: generation)
    }
}

/// Files and directories barman writes that some collectors read (its WAL catalog, its WAL
/// inboxes, the file systems it writes to); the mock integration serves embedded ones.
public protocol BarmanFiles: Sendable {
    /// Up to `maxBytes` of a file from `offset`, read without taking barman's lock, with the
    /// file's size and identity now.
    func read(path: String, from offset: Int, maxBytes: Int) throws(SystemError) -> (bytes: [UInt8], size: Int, identity: FileIdentity)
    /// Each entry of a directory: its name, and a way to get its modification time (nil unless
    /// a regular file).
    func visitDirectory(path: String, _ body: (_ name: String, _ modificationTime: () -> Double?) -> Void) throws(SystemError)
    /// Free space an unprivileged user can use and the size of the file system holding `path`.
    func fileSystemSpace(path: String) throws(SystemError) -> (availableBytes: UInt64, sizeBytes: UInt64)
}

/// barman's files on this host.
public struct LocalBarmanFiles: BarmanFiles {
    public init() {}

    public func read(path: String, from offset: Int, maxBytes: Int) throws(SystemError) -> (bytes: [UInt8], size: Int, identity: FileIdentity) {
        try FileReader.readChunk(path: path, from: offset, maxBytes: maxBytes)
    }

    public func visitDirectory(path: String, _ body: (_ name: String, _ modificationTime: () -> Double?) -> Void) throws(SystemError) {
        try Directory.visit(path: path, body)
    }

    public func fileSystemSpace(path: String) throws(SystemError) -> (availableBytes: UInt64, sizeBytes: UInt64) {
        try FileSystemSpace.of(path: path)
    }
}
