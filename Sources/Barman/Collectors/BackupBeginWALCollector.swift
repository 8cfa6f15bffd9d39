import Synchronization
import Platform
import Exposition
import Configuration

/// `barman show-backup SERVER BACKUP_ID` of each server's oldest DONE backup, for its first WAL
/// segment (`begin_wal`): the WAL catalog's continuity is counted from there, since a restore of
/// that backup, or of any later one, needs every segment after it.
///
/// A DONE backup's `begin_wal` never changes, so each backup is asked once; when the oldest is
/// also the newest, the answer `BackupDetailsCollector` got is used and nothing is run.
public final class BackupBeginWALCollector: Collector {
    public static let answer = AnswerKey<[ServerName: BackupBegin]>("backup-begin-wal")

    /// Per server: the backup whose show-backup failed, how often in a row, and when to ask
    /// again (1, 2, 4... minutes, at most an hour): a backup barman cannot show is not asked
    /// about at every refresh.
    private let failures = Mutex<[ServerName: (backupID: String, count: Int, retryAt: ContinuousClock.Instant)]>([:])
    private let clock = ContinuousClock()

    public init() {}

    public var name: String { "backup-begin-wal" }
    /// After list-backups (which backup is the oldest) and show-backup (whose answer may be it).
    public var schedule: Schedule { Schedule(.everyRefresh, after: ["list-backups", "show-backup"]) }
    public var metrics: [MetricDefinition] { [] }

    public func collect(_ context: CollectContext) async {
        let snapshot = context.snapshot
        let oldest = (snapshot.backups ?? [:]).compactMapValues { $0.last(where: \.isDone) }
        let known = snapshot.oldestBackupBeginWAL
        // A server that vanished or has no DONE backup any more has no begin to count from.
        var kept = known.filter { oldest[$0.key]?.id == $0.value.backupID }
        var due: [(server: ServerName, backupID: String)] = []
        let now = clock.now
        let waiting = failures.withLock { failures in
            failures = failures.filter { oldest[$0.key]?.id == $0.value.backupID }
            return failures.filter { $0.value.retryAt > now }
        }
        for (server, backup) in oldest where kept[server] == nil {
            if let details = snapshot.details[server], details.backupID == backup.id {
                kept[server] = BackupBegin(backupID: backup.id, beginWAL: details.beginWAL)
            } else if waiting[server] == nil {
                due.append((server, backup.id))
            }
        }
        let settled = kept
        if settled != known { await context.publish { $0.oldestBackupBeginWAL = settled } }
        await context.forEach(due.sorted(by: { $0.server.text < $1.server.text })) { server, backupID in
            let serverText = server.text
            let answered = await context.run(BackupDetailsCollector.command(server: serverText, backupID: backupID), stillDue: {
                context.snapshot.backups?[server]?.last(where: \.isDone)?.id == backupID
            }, decode: { output throws(DecodeFailure) in
                try BarmanDecoding.backupDetails(output, server: serverText, backupID: backupID)
            }, publish: { details, snapshot in
                snapshot.oldestBackupBeginWAL[server] = BackupBegin(backupID: backupID, beginWAL: details.beginWAL)
            })
            self.failures.withLock { failures in
                guard answered == nil else { return failures[server] = nil }
                let count = failures[server].map { $0.backupID == backupID ? $0.count + 1 : 1 } ?? 1
                failures[server] = (backupID, count, self.clock.now + .seconds(60 << min(count - 1, 6)))
            }
        }
    }

    public func emit(_ snapshot: MetricsSnapshot, _ scrape: Scrape, into families: inout FamilyBuilder) {}
}

/// A backup's first WAL segment; nil when barman's answer had none (it is not asked again).
public struct BackupBegin: Sendable, Equatable {
    public var backupID: String
    public var beginWAL: String?
}

extension MetricsSnapshot {
    /// Server -> its oldest DONE backup and that backup's first WAL segment.
    public var oldestBackupBeginWAL: [ServerName: BackupBegin] {
        get { self[BackupBeginWALCollector.answer] ?? [:] }
        set { self[BackupBeginWALCollector.answer] = newValue }
    }
}
