#if canImport(Glibc)
import Glibc
#endif
@testable import Barman
@testable import Exporter
@testable import Exposition
@testable import Platform
import Synchronization
import Testing

/// Work the event thread must not do (a bcrypt) runs on a worker while the connection waits
/// suspended; password guessing is throttled per client address.
@Suite("Deferred replies and login throttling", .serialized)
struct DeferredReplyTests {
    /// A gate a worker job waits at until the test opens it.
    final class Gate: Sendable {
        private let open = Atomic<Bool>(false)
        private let reached = Atomic<Bool>(false)
        func release() { open.store(true, ordering: .releasing) }
        /// Closed again, for the next job.
        func reset() {
            reached.store(false, ordering: .releasing)
            open.store(false, ordering: .releasing)
        }
        func wait() {
            reached.store(true, ordering: .releasing)
            Deadline.poll(every: .milliseconds(2), for: .seconds(30)) { open.load(ordering: .acquiring) }
        }
        /// Whether a job is waiting at the gate now.
        func isReached() -> Bool { Deadline.poll(every: .milliseconds(2), for: .seconds(10)) { reached.load(ordering: .acquiring) } }
    }

    /// While one request's answer is being computed on a worker (a slow bcrypt), the event
    /// thread answers everyone else at once: before, the check ran on it and every request and
    /// TLS handshake waited behind it.
    @Test func aSlowCheckOnTheWorkerHoldsUpNoOtherRequest() throws {
        let worker = WorkerThread(name: "test", capacity: 4)
        let gate = Gate()
        let server = try HTTPServer(listener: try ListenSocket(address: "127.0.0.1", port: 0), logger: Logger(level: .error)) { request in
            guard request.path == "/slow" else { return .now(HTTPResponse(status: 200, body: Array("fast".utf8))) }
            return .later(on: worker, whenBusy: { HTTPResponse(status: 503) }) {
                gate.wait()
                return HTTPResponse(status: 200, body: Array("slow".utf8))
            }
        }
        defer { server.stop() }
        let slow = try RawHTTPConnection(port: server.listener.port)
        try slow.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(gate.isReached(), "the slow job never started")
        // The slow answer is still being computed; another client is served meanwhile.
        let fast = try RawHTTPConnection(port: server.listener.port).request("GET", "/")
        #expect(fast.status == 200 && fast.bodyText == "fast")
        gate.release()
        let answer = try slow.readResponse()
        #expect(answer.status == 200 && answer.bodyText == "slow")
        // The resumed connection stays usable (keep-alive).
        #expect(try slow.request("GET", "/").status == 200)
    }

    /// A connection resumed by its worker is answered as soon as the worker is done, on a server
    /// where nothing else happens: the event loops sleep in their own wait, which libmicrohttpd
    /// does not wake on a resume (its inter-thread channel is off without its own threads), so
    /// the resume wakes them. Missing that, the answer waited for the connection timeout.
    @Test func aResumedConnectionIsAnsweredAtOnce() throws {
        let worker = WorkerThread(name: "test", capacity: 4)
        let gate = Gate()
        var limits = HTTPLimits()
        limits.connectionTimeoutSeconds = 120
        let server = try HTTPServer(listener: try ListenSocket(address: "127.0.0.1", port: 0), limits: limits, logger: Logger(level: .error)) { _ in
            .later(on: worker, whenBusy: { HTTPResponse(status: 503) }) {
                gate.wait()
                return HTTPResponse(status: 200, body: Array("done".utf8))
            }
        }
        defer { server.stop() }
        for round in 1...3 {
            let waiting = try RawHTTPConnection(port: server.listener.port)
            try waiting.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(gate.isReached(), "round \(round): the job never started")
            let released = ContinuousClock.now
            gate.release()
            let answer = try waiting.readResponse()
            // Seconds, not milliseconds: only a loop that sleeps through the resume (until the
            // 120 s connection timeout, or the client's 10 s read timeout) fails this.
            #expect(answer.status == 200 && answer.bodyText == "done", "round \(round)")
            #expect(ContinuousClock.now - released < .seconds(5), "round \(round): answered \(ContinuousClock.now - released) after the worker finished")
            gate.reset()
        }
    }

    /// Stopping (or a reload replacing the server) answers waiting connections 503 at once, and
    /// a worker that finishes afterwards touches nothing.
    @Test func stoppingAnswersWaitingConnections() throws {
        let worker = WorkerThread(name: "test", capacity: 4)
        let gate = Gate()
        let server = try HTTPServer(listener: try ListenSocket(address: "127.0.0.1", port: 0), logger: Logger(level: .error)) { _ in
            .later(on: worker, whenBusy: { HTTPResponse(status: 503) }) {
                gate.wait()
                return HTTPResponse(status: 200)
            }
        }
        let waiting = try RawHTTPConnection(port: server.listener.port)
        try waiting.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(gate.isReached(), "the job never started")
        server.stop()
        #expect(try waiting.readResponse().status == 503)
        gate.release()
        // The job ends after the server is gone: nothing crashes, the worker goes on.
        let done = Atomic<Bool>(false)
        #expect(worker.submit { done.store(true, ordering: .releasing) })
        #expect(Deadline.poll(for: .seconds(10)) { done.load(ordering: .acquiring) })
    }

    @Test func aFullWorkerAnswersWhenBusy() throws {
        let worker = WorkerThread(name: "test", capacity: 1)
        let gate = Gate()
        #expect(worker.submit { gate.wait() })
        #expect(gate.isReached())
        #expect(worker.submit {})
        #expect(!worker.submit {}, "over capacity")
        gate.release()
    }

    @Test func jobsRunInTheOrderTheyAreDue() throws {
        let worker = WorkerThread(name: "test", capacity: 8)
        let order = Mutex<[Int]>([])
        #expect(worker.submit(after: .milliseconds(300)) { order.withLock { $0.append(3) } })
        #expect(worker.submit(after: .milliseconds(100)) { order.withLock { $0.append(2) } })
        #expect(worker.submit { order.withLock { $0.append(1) } })
        #expect(Deadline.poll(for: .seconds(10)) { order.withLock { $0.count } == 3 })
        #expect(order.withLock { $0 } == [1, 2, 3])
    }

    /// A password seen before is answered on the event thread; a new one goes to the password
    /// worker; wrong ones from one address are throttled after five.
    @Test func webAccessDefersNewPasswordsAndThrottlesGuessing() throws {
        var config = WebConfig()
        config.basicAuthUsers = ["prometheus": WebConfigTests.hash]
        let access = WebAccess(config: config)
        let ok: @Sendable (HTTPRequest) -> HTTPResponse = { _ in HTTPResponse(status: 200) }
        func request(_ password: String, from address: String = "192.0.2.1") -> HTTPRequest {
            HTTPRequest(method: "GET", path: "/metrics", credentials: BasicCredentials(user: "prometheus", password: Array(password.utf8)),
                        clientAddress: address)
        }
        func isDeferred(_ reply: HTTPReply) -> Bool { if case .later = reply { true } else { false } }
        // The first time: checked off the event thread.
        let first = access.handle(request("s3cret pass")) { .now(ok($0)) }
        #expect(isDeferred(first))
        #expect(access.handleNow(request("s3cret pass"), next: ok).status == 200)
        // Verified now: answered at once, even from an address that is throttled.
        for attempt in 0..<5 {
            #expect(access.handleNow(request("guess \(attempt)", from: "192.0.2.9"), next: ok).status == 401)
        }
        let throttled = access.handleNow(request("guess 6", from: "192.0.2.9"), next: ok)
        #expect(throttled.status == 429 && throttled.headers.contains { $0.0 == "Retry-After" })
        guard case .now(let remembered) = access.handle(request("s3cret pass", from: "192.0.2.9"), next: { .now(ok($0)) }) else {
            Issue.record("a verified password waited for the worker")
            return
        }
        #expect(remembered.status == 200)
        // Another address is not throttled by that one's guesses.
        #expect(access.handleNow(request("guess", from: "192.0.2.10"), next: ok).status == 401)
    }

    /// The first scrape of a format (nothing rendered yet) is rendered on a worker, not on the
    /// event thread; once a body is ready, scrapes are answered at once.
    @Test func theEventThreadNeverRenders() {
        var snapshot = MetricsSnapshot(version: "1")
        snapshot.backups = ["pg": []]
        let routes = Routes(store: SnapshotStore(snapshot), now: { 1795544800 })
        let request = HTTPRequest(method: "GET", path: "/metrics")
        guard case .later(_, _, _, let render) = routes.reply(request) else {
            Issue.record("the first scrape rendered on the event thread")
            return
        }
        #expect(render().status == 200)
        guard case .now(let ready) = routes.reply(request) else {
            Issue.record("a ready body waited for the worker")
            return
        }
        #expect(ready.status == 200)
        // Other paths never wait.
        guard case .now = routes.reply(HTTPRequest(method: "GET", path: "/")) else {
            Issue.record("the landing page waited")
            return
        }
    }

    @Test func checksUnderWayCountAgainstTheAllowance() {
        let throttle = LoginThrottle()
        for _ in 0..<LoginThrottle.allowedFailures { #expect(throttle.beginCheck("a")) }
        #expect(!throttle.beginCheck("a"), "five checks under way: a sixth would exceed the allowance")
        throttle.endCheck("a", failed: false)  // the right password after all
        #expect(throttle.beginCheck("a"))
        #expect(throttle.beginCheck("b"))
    }
}

/// A reload that changes the web config (certificate rotation) starts a new server on the same
/// socket: connections the old one accepted must not be dropped.
@Suite("Server hand-over")
struct HandOverTests {
    @Test func aRetiredServerFinishesItsKeepAliveConnections() throws {
        let listener = try ListenSocket(address: "127.0.0.1", port: 0)
        let old = try HTTPServer(listener: listener, logger: Logger(level: .error)) { _ in .now(HTTPResponse(status: 200, body: Array("old".utf8))) }
        let connection = try RawHTTPConnection(port: listener.port)
        #expect(try connection.request("GET", "/").bodyText == "old")
        let successor = try HTTPServer(listener: listener, logger: Logger(level: .error)) { _ in .now(HTTPResponse(status: 200, body: Array("new".utf8))) }
        defer { successor.stop() }
        old.retire(within: .seconds(2))
        // The next request on the old connection is still answered (stopping the old server at
        // once dropped it), and told to reconnect.
        let last = try connection.request("GET", "/")
        #expect(last.status == 200 && last.bodyText == "old")
        #expect(last.headers["connection"]?.lowercased() == "close")
        #expect(connection.isClosedByPeer())
        // New connections reach the successor.
        #expect(try RawHTTPConnection(port: listener.port).request("GET", "/").bodyText == "new")
    }
}

@Suite("Descriptor limits")
struct DescriptorLimitTests {
    /// libmicrohttpd's default of 256 connections ignores RLIMIT_NOFILE: with `ulimit -n 64`,
    /// 80 idle connections left no descriptor for barman or a catalog read.
    @Test func theConnectionLimitLeavesRoomForBarman() {
        #expect(HTTPLimits.connectionLimit(openFiles: 64) == 16)
        #expect(HTTPLimits.connectionLimit(openFiles: 1024) == 256)
        #expect(HTTPLimits.connectionLimit(openFiles: 20) == 4)
        #expect(HTTPLimits.connectionLimit(openFiles: nil) == 256)
        #expect(HTTPLimits.connectionLimit(openFiles: Int.max) == 256)
    }

    /// One libmicrohttpd thread per processor the exporter may use, at least 1 and at most 4,
    /// and never more threads than connections (libmicrohttpd divides the limit among them).
    @Test func oneEventThreadPerProcessor() {
        #expect(HTTPLimits.threads(processors: 1) == 1)
        #expect(HTTPLimits.threads(processors: 2) == 2)
        #expect(HTTPLimits.threads(processors: 64) == 4)
        #expect(HTTPLimits.threads(processors: 0) == 1)
        #expect(Processors.available() >= 1)
        #expect(HTTPLimits().threads == HTTPLimits.threads(processors: Processors.available()))
        #expect(HTTPLimits.threads(processors: 64) <= HTTPLimits.connectionLimit(openFiles: 0))
    }

    /// Out of descriptors is not a permission problem: the advice says what to raise.
    @Test func catalogErrorsAdviseByReason() {
        #expect(WALCatalogCollector.advice(for: SystemError("open", "/x", code: EMFILE)).contains("LimitNOFILE"))
        #expect(WALCatalogCollector.advice(for: SystemError("open", "/x", code: EACCES)).contains("barman's user"))
        #expect(!WALCatalogCollector.advice(for: SystemError("open", "/x", code: EIO)).contains("barman's user"))
    }

    /// --web.telemetry-path: the metrics there, 404 at /metrics, the landing page links to it.
    @Test func theTelemetryPathMovesTheMetrics() async throws {
        let store = SnapshotStore(MetricsSnapshot(version: "test"))
        let routes = Routes(store: store, telemetryPath: "/barman/metrics")
        #expect(routes.handle(HTTPRequest(method: "GET", path: "/barman/metrics")).status == 200)
        let old = routes.handle(HTTPRequest(method: "GET", path: "/metrics"))
        #expect(old.status == 404 && String(decoding: old.payload.bytes, as: UTF8.self) == "404 page not found: only / and /barman/metrics exist\n")
        let page = String(decoding: routes.handle(HTTPRequest(method: "GET", path: "/")).payload.bytes, as: UTF8.self)
        #expect(page.contains(#"<a href="/barman/metrics">"#) && !page.contains(#"href="/metrics""#))
        #expect(Routes(store: store).handle(HTTPRequest(method: "GET", path: "/metrics")).status == 200)
    }
}

