/// Computes every metric family from a snapshot. Pure: the time of the scrape is passed in, so
/// ages are right at the moment of each scrape and tests need no clock.
public enum MetricsBuilder {
    public static func families(_ snapshot: MetricsSnapshot, now: Double) -> [MetricFamily] {
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
            // Details only for servers that still list a DONE backup: a server that vanished, or
            // whose backups were all deleted, must not keep reporting its old "last backup".
            if !done.isEmpty, let details = snapshot.details[name] {
                add(Metric.lastBackupCopyTime, [server], details.copyTimeSeconds)
                add(Metric.lastBackupThroughput, [server], details.throughputBytesPerSecond)
                add(Metric.lastBackupWALFiles, [server], details.walFiles)
                add(Metric.lastBackupWALRate, [server], details.walRatePerSecond)
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

private func maxOptional(_ a: Double?, _ b: Double?) -> Double? {
    switch (a, b) {
    case let (a?, b?): return max(a, b)
    default: return a ?? b
    }
}

/// Series order: label values compared left to right, digit runs by numeric value, so
/// `number="2"` comes before `number="10"` and output is deterministic.
enum LabelOrder {
    /// Sorts by precomputed keys, so each label value is classified (number or not) once, not
    /// once per comparison.
    static func sorted(_ samples: [Sample]) -> [Sample] {
        let keys = samples.map { sample in sample.labelValues.map(Key.init) }
        let order = keys.indices.sorted { lessKeys(keys[$0], keys[$1]) }
        return order.map { samples[$0] }
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
                if left.text.utf8.elementsEqual(right.text.utf8) { continue }
                return left.text.utf8.lexicographicallyPrecedes(right.text.utf8)
            }
            if let a = left.number, let b = right.number { return a < b }
            return left.text < right.text
        }
        return lhs.count < rhs.count
    }
}
