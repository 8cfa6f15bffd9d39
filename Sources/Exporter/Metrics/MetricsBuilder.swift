/// Computes every metric family from a snapshot. Pure: the time of the scrape (and the process'
/// own figures, for the daemon) are passed in, so ages are right at the moment of each scrape
/// and tests need no clock.
public enum MetricsBuilder {
    public static func families(_ snapshot: MetricsSnapshot, now: Double, process: ProcessStatistics? = nil) -> [MetricFamily] {
        // Keyed by name: hashing a short name per sample, not the whole definition with its HELP.
        var samples: [String: (definition: MetricDefinition, samples: [Sample])] = [:]
        func add(_ metric: MetricDefinition, _ labels: [String], _ value: Double?) {
            guard let value else { return }
            samples[metric.name, default: (metric, [])].samples.append(Sample(labels, value))
        }

        for (name, backups) in snapshot.backups ?? [:] {
            let server = name.text
            add(Metric.backupsTotal, [server], Double(backups.count))
            add(Metric.backupsFailed, [server], Double(backups.count { $0.status == "FAILED" }))
            // barman lists newest first; `number` counts DONE backups only, 0 = newest.
            let done = backups.filter(\.isDone)
            for (number, backup) in done.enumerated() {
                add(Metric.backupSize, [String(number), server], backup.sizeBytes)
                add(Metric.backupWALSize, [String(number), server], backup.walSizeBytes)
            }
            if let newest = done.first?.endTime {
                add(Metric.lastBackup, [server], now - Double(newest))
                add(Metric.lastBackupTimestamp, [server], Double(newest))
            }
            if let oldest = done.last?.endTime {
                add(Metric.firstBackup, [server], now - Double(oldest))
                add(Metric.firstBackupTimestamp, [server], Double(oldest))
            }
            addRecoverability(server, backups, done, add)
            if let minimum = snapshot.servers?[name]?.minimumRedundancy {
                add(Metric.minimumRedundancySatisfied, [server], done.count(where: \.isFull) >= minimum ? 1 : 0)
            }
            // Details only of the newest DONE backup listed now: until its show-backup answers,
            // none, never the previous backup's next to the new backup's time (nor a vanished
            // server's old "last backup").
            if let newest = done.first, let details = snapshot.details[name], details.backupID == newest.id {
                add(Metric.lastBackupCopyTime, [server], details.copyTimeSeconds)
                add(Metric.lastBackupThroughput, [server], details.throughputBytesPerSecond)
                add(Metric.lastBackupWALFiles, [server], details.walFiles)
                add(Metric.lastBackupWALRate, [server], details.walRatePerSecond)
                add(Metric.lastBackupDuration, [server], details.durationSeconds)
            }
        }

        for (name, checks) in snapshot.checks ?? [:] {
            let server = name.text
            for check in checks {
                add(Metric.up, [check.name, server], check.ok ? 1 : 0)
            }
        }

        for (name, clients) in snapshot.replication ?? [:] {
            let server = name.text
            add(Metric.streamingClients, [server], Double(clients.count))
            var bySyncState: [String: Int] = [:]
            // Two clients may share every identifying label (no slot, same host and name): one
            // series each is impossible, so the worst (largest) lag of them is exported.
            var lags: [[String]: (sent: Double?, write: Double?, flush: Double?)] = [:]
            for client in clients {
                bySyncState[client.syncState, default: 0] += 1
                let labels = [client.applicationName, client.clientAddress, server, client.slot]
                let previous = lags[labels]
                lags[labels] = (maxOptional(previous?.sent, client.sentLagBytes), maxOptional(previous?.write, client.writeLagBytes),
                                maxOptional(previous?.flush, client.flushLagBytes))
            }
            for (state, count) in bySyncState { add(Metric.streamingClientsBySyncState, [server, state], Double(count)) }
            for (labels, lag) in lags {
                add(Metric.clientSentLag, labels, lag.sent)
                add(Metric.clientWriteLag, labels, lag.write)
                add(Metric.clientFlushLag, labels, lag.flush)
            }
        }

        for (name, info) in snapshot.servers ?? [:] {
            let server = name.text
            add(Metric.serverActive, [server], info.active.map { $0 ? 1 : 0 })
            add(Metric.serverDisabled, [server], info.disabled.map { $0 ? 1 : 0 })
            add(Metric.serverPassiveNode, [server], info.passiveNode.map { $0 ? 1 : 0 })
            if let archiver = info.archiver {
                add(Metric.archiverFailures, [server], archiver.failedCount)
                add(Metric.archiverLastFailureTimestamp, [server], archiver.lastFailedTime)
                add(Metric.archiverLastArchivedTimestamp, [server], archiver.lastArchivedTime)
            }
        }
        for (name, time) in snapshot.lastArchivedWAL {
            add(Metric.lastArchivedWALTimestamp, [name.text], time)
        }
        if let version = snapshot.barmanVersion { add(Metric.versionInfo, [version], 1) }

        if let process {
            add(Metric.processCPU, [], process.cpuSeconds)
            add(Metric.processResidentMemory, [], process.residentBytes)
            add(Metric.processVirtualMemory, [], process.virtualBytes)
            add(Metric.processOpenFDs, [], process.openFileDescriptors)
            add(Metric.processMaxFDs, [], process.maxFileDescriptors)
            add(Metric.processStartTime, [], process.startTimeSeconds)
        }

        add(Metric.metricsUpdate, [], snapshot.lastRefreshMilliseconds)
        add(Metric.buildInfo, [snapshot.version], 1)
        for (kind, health) in snapshot.health {
            let label = [kind.rawValue]
            add(Metric.commandSuccess, label, health.lastRunSucceeded ? 1 : 0)
            add(Metric.commandLastSuccess, label, health.lastSuccessUnixTime)
            add(Metric.commandDuration, label, health.lastRunDurationSeconds)
            add(Metric.commandRuns, label, Double(health.runs))
            add(Metric.commandFailures, label, Double(health.failures))
        }

        return samples.values
            .map { entry in MetricFamily(definition: entry.definition, samples: LabelOrder.sorted(entry.samples)) }
            .sorted { $0.definition.name < $1.definition.name }
    }
}

/// Every status and retention status barman defines (`BackupInfo`) gets a series, 0 when no
/// backup has it, so that an alert on "none DONE" or "one OBSOLETE" has a series to test.
let backupStatuses = ["DONE", "EMPTY", "FAILED", "STARTED", "SYNCING", "WAITING_FOR_WALS"]
/// `list-backups` prints a VALID backup as `-`, like one without a retention policy
/// (`Server.list_backups`), so VALID is not among them.
let retentionStatuses = ["-", "KEEP:FULL", "KEEP:STANDALONE", "OBSOLETE", "OBSOLETE*"]

/// Backup lifecycle, type and retention of one server, from its `list-backups` entries
/// (newest first) alone.
private func addRecoverability(_ server: String, _ backups: [BackupSummary], _ done: [BackupSummary],
                               _ add: (MetricDefinition, [String], Double?) -> Void) {
    var byStatus = Dictionary(uniqueKeysWithValues: backupStatuses.map { ($0, 0) })
    for backup in backups { byStatus[backup.status, default: 0] += 1 }
    for (status, count) in byStatus { add(Metric.backupsByStatus, [server, status], Double(count)) }

    var byRetention = Dictionary(uniqueKeysWithValues: retentionStatuses.map { ($0, 0) })
    var byType: [String: Int] = [:]
    for backup in done {
        if let retention = backup.retentionStatus { byRetention[retention, default: 0] += 1 }
        if let type = backup.backupType { byType[type, default: 0] += 1 }
    }
    for (retention, count) in byRetention { add(Metric.backupsByRetentionStatus, [retention, server], Double(count)) }
    for (type, count) in byType { add(Metric.backupsByType, [type, server], Double(count)) }

    // Running: STARTED, WAITING_FOR_WALS, SYNCING, EMPTY. The oldest one is the one to worry about.
    let starts = backups.filter { !$0.isDone && $0.status != "FAILED" }.compactMap { BarmanTime.backupStart(id: $0.id) }
    add(Metric.backupInProgressStart, [server], starts.min().map(Double.init))
    add(Metric.lastFullBackupTimestamp, [server], done.first(where: \.isFull)?.endTime.map(Double.init))
}

private func maxOptional(_ a: Double?, _ b: Double?) -> Double? {
    switch (a, b) {
    case let (a?, b?): return max(a, b)
    default: return a ?? b
    }
}

/// Series order: label values compared left to right, digit runs by numeric value, so
/// `number="2"` comes before `number="10"` and output is deterministic.
enum LabelOrder {
    /// Sorts in time linear in the number of samples: each distinct value of a label is ranked
    /// once (a family has few: its servers, its backup numbers, its check names), then the
    /// samples are ordered by their ranks with a stable counting sort per label, last label
    /// first (LSD radix sort). Comparing whole label arrays sample against sample cost more
    /// than half of a render and grew as n log n.
    static func sorted(_ samples: [Sample]) -> [Sample] {
        guard samples.count > 1, let width = samples.first?.labelValues.count, width > 0,
              samples.allSatisfy({ $0.labelValues.count == width }) else { return samples }
        var order = Array(samples.indices)
        for position in (0..<width).reversed() {
            let (ranks, distinct) = ranks(of: samples, at: position)
            guard distinct > 1 else { continue }
            var starts = [Int](repeating: 0, count: distinct + 1)
            for index in order { starts[ranks[index] + 1] += 1 }
            for rank in 0..<distinct { starts[rank + 1] += starts[rank] }
            var next = order
            for index in order {
                next[starts[ranks[index]]] = index
                starts[ranks[index]] += 1
            }
            order = next
        }
        return order.map { samples[$0] }
    }

    /// Per sample, the rank of its value at `position` among the distinct values there, and
    /// how many there are. Values are told apart by their bytes, like server names.
    private static func ranks(of samples: [Sample], at position: Int) -> (ranks: [Int], distinct: Int) {
        var provisional: [ExactText: Int] = [:]
        var values: [String] = []
        let firstSeen = samples.map { sample -> Int in
            let value = sample.labelValues[position]
            if let known = provisional[ExactText(value)] { return known }
            provisional[ExactText(value)] = values.count
            values.append(value)
            return values.count - 1
        }
        let keys = values.map(Key.init)
        let ordered = keys.indices.sorted { lessKeys([keys[$0]], [keys[$1]]) }
        var rankOfFirstSeen = [Int](repeating: 0, count: values.count)
        for (rank, index) in ordered.enumerated() { rankOfFirstSeen[index] = rank }
        return (firstSeen.map { rankOfFirstSeen[$0] }, values.count)
    }

    /// A string that equals another only byte for byte ("e\u{301}" and "\u{E9}" are two).
    private struct ExactText: Hashable {
        let text: String
        init(_ text: String) { self.text = text }
        static func == (lhs: ExactText, rhs: ExactText) -> Bool { lhs.text.hasSameUTF8(as: rhs.text) }
        func hash(into hasher: inout Hasher) { text.hashUTF8(into: &hasher) }
    }

    struct Key {
        let number: Int?
        let text: String
        init(_ text: String) {
            self.text = text
            let digits = !text.isEmpty && text.utf8.count < 19 && text.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
            number = digits ? Int(text) : nil
        }
    }

    static func lessKeys(_ lhs: [Key], _ rhs: [Key]) -> Bool {
        for (left, right) in zip(lhs, rhs) {
            if left.text == right.text {
                // Canonically equivalent is not the same name ("e\u{301}", "\u{E9}"): bytes decide.
                if left.text.hasSameUTF8(as: right.text) { continue }
                return left.text.utf8.lexicographicallyPrecedes(right.text.utf8)
            }
            // Equal numbers written differently ("2", "02") fall through to the text: a total order.
            if let a = left.number, let b = right.number, a != b { return a < b }
            return left.text < right.text
        }
        return lhs.count < rhs.count
    }
}
