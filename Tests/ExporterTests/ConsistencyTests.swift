@testable import Barman
@testable import Configuration
@testable import Exporter
@testable import Exposition
@testable import Platform
import Synchronization
import Testing

/// Scrapes hammered while refreshes swap snapshots: every response must parse and be internally
/// consistent, never a half-updated mix of two barman answers.
@Suite("Snapshot consistency")
struct ConsistencyTests {
    /// barman alternates between two states on every call of each command:
    /// A: 3 DONE backups of 111 bytes + 1 FAILED, all 20 checks OK; B: 5 DONE of 222 bytes, all FAILED.
    static let script = #"""
        #!/bin/sh
        state=$2
        shift 4
        n=$(cat "$state/$1.count" 2>/dev/null || echo 0)
        echo $((n + 1)) > "$state/$1.count"
        done_backup() { printf '{"backup_id": "%s", "end_time_timestamp": "1795544728", "size_bytes": %s, "status": "DONE", "wal_size_bytes": %s}' "$1" "$2" "$2"; }
        checks() { i=0; sep=""; printf '{'; while [ $i -lt 20 ]; do printf '%s"check%s": {"hint": "", "status": "%s"}' "$sep" $i "$1"; sep=", "; i=$((i + 1)); done; printf '}'; }
        case "$1" in
          list-backups)
            if [ $((n % 2)) = 0 ]; then
              printf '{"s": [%s, %s, {"backup_id": "F", "status": "FAILED"}, %s]}' "$(done_backup A0 111)" "$(done_backup A1 111)" "$(done_backup A2 111)"
            else
              printf '{"s": [%s, %s, %s, %s, %s]}' "$(done_backup B0 222)" "$(done_backup B1 222)" "$(done_backup B2 222)" "$(done_backup B3 222)" "$(done_backup B4 222)"
            fi ;;
          check)
            if [ $((n % 2)) = 0 ]; then printf '{"s": %s}' "$(checks OK)"; exit 0; else printf '{"s": %s}' "$(checks FAILED)"; exit 1; fi ;;
          replication-status)
            printf '{"s": {"server_lsn": "0/1", "streaming_clients": []}}' ;;
          show-backup)
            printf '{"s": {"backup_id": "%s", "status": "DONE", "base_backup_information": {"copy_time_seconds": 1, "throughput_bytes": 1}, "wal_information": {"no_of_files": 1, "wal_rate_per_second": 1}}}' "$3" ;;
        esac
        """#

    @Test func scrapesDuringRefreshesSeeOneConsistentSnapshot() async throws {
        let directory = try TestSupport.temporaryDirectory()
        defer { TestSupport.removeTree(directory) }
        try TestSupport.write(Self.script.split(separator: "\n", omittingEmptySubsequences: false).map { $0.drop { $0 == " " } }.joined(separator: "\n"),
                              to: directory + "/barman", mode: 0o755)
        let store = SnapshotStore(MetricsSnapshot(version: "1"))
        let refresher = Refresher(runner: ProcessBarmanRunner(executable: directory + "/barman", configFile: directory, timeout: .seconds(30)),
                                  settings: RefreshSettings(cacheTTL: .zero, checksCacheTTL: .zero, refreshInterval: .seconds(60)),
                                  store: store, logger: Logger(level: .error))
        await refresher.refreshCycle()
        let routes = Routes(store: store)
        let server = try HTTPServer(listener: try ListenSocket(address: "127.0.0.1", port: 0), logger: Logger(level: .error)) { .now(routes.handle($0)) }
        defer { server.stop() }
        let port = server.listener.port

        let refreshing = Task {
            for _ in 0..<20 { await refresher.refreshCycle() }
        }
        let scrapers = 4
        let shared = Shared()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<scrapers {
                group.addTask {
                    await onThread {
                        guard let connection = try? RawHTTPConnection(port: port) else {
                            shared.problems.withLock { $0.append("cannot connect") }
                            return
                        }
                        while !shared.done.load(ordering: .relaxed) {
                            guard let response = try? connection.request("GET", "/metrics") else {
                                shared.problems.withLock { $0.append("request failed") }
                                return
                            }
                            let (state, problem) = Self.verify(response.bodyText)
                            if let problem { shared.problems.withLock { $0.append(problem) } }
                            shared.states.withLock { _ = $0.insert(state) }
                        }
                    }
                }
            }
            await refreshing.value
            shared.done.store(true, ordering: .relaxed)
        }
        #expect(shared.problems.withLock { $0 } == [])
        // Both barman states were actually served while scraping.
        #expect(shared.states.withLock { $0 }.isSuperset(of: ["backups A", "backups B"]))
    }

    final class Shared: Sendable {
        let problems = Mutex<[String]>([])
        let states = Mutex<Set<String>>([])
        let done = Atomic<Bool>(false)
    }

    /// Parses one response; returns which backup state it showed, or the inconsistency found.
    static func verify(_ text: String) -> (String, String?) {
        var values: [String: [String: Double]] = [:]  // metric -> labels text -> value
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: " ")
            guard parts.count == 2, let value = Double(parts[1]) else { return ("", "unparsable line: \(line)") }
            let name = String(parts[0].prefix { $0 != "{" })
            values[name, default: [:]][String(parts[0].dropFirst(name.count))] = value
        }
        let total = values["barman_backups_total"]?[#"{server="s"}"#]
        let failed = values["barman_backups_failed"]?[#"{server="s"}"#]
        let sizes = Array((values["barman_backup_size"] ?? [:]).values)
        let walSizes = Array((values["barman_backup_wal_size"] ?? [:]).values)
        let state: String
        switch (total, failed, Set(sizes), sizes.count, Set(walSizes), walSizes.count) {
        case (4, 1, [111], 3, [111], 3): state = "backups A"
        case (5, 0, [222], 5, [222], 5): state = "backups B"
        default: return ("", "mixed backups: total \(String(describing: total)) failed \(String(describing: failed)) sizes \(sizes) wal \(walSizes)")
        }
        let checks = Array((values["barman_up"] ?? [:]).values)
        guard checks.count == 20, Set(checks).count == 1 else { return (state, "mixed checks: \(checks.count) series, values \(Set(checks))") }
        return (state, nil)
    }
}
