@testable import Barman
@testable import Configuration
@testable import Exporter
@testable import Exposition
@testable import Platform
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The real daemon (libmicrohttpd) on an ephemeral loopback port, with the mock integration.
@Suite("HTTP endpoint", .serialized)
struct HTTPTests {
    func withExporter(_ body: (ExporterService) async throws -> Void) async throws {
        var config = Config()
        config.integrationType = .mock
        config.port = 0  // the kernel picks a free port
        let exporter = try ExporterService(config: config, configPath: "/nonexistent", logger: Logger(level: .error))
        defer { exporter.stop() }
        try await body(exporter)
    }

    @Test func metricsEndpoint() async throws {
        try await withExporter { exporter in
            // Before the first refresh: 200 with the exporter's own metrics only.
            let connection = try RawHTTPConnection(port: exporter.port)
            let early = try connection.request("GET", "/metrics")
            #expect(early.status == 200)
            #expect(early.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
            #expect(early.bodyText.contains("barman_exporter_build_info{version=\"\(BuildInfo.version)\"} 1\n"))
            #expect(!early.bodyText.contains("barman_up"))

            await exporter.refresher.refreshCycle()
            let response = try connection.request("GET", "/metrics")
            #expect(response.status == 200)
            #expect(response.bodyText.contains("barman_up{check=\"failed_backups\",server=\"pg-main\"} 0\n"))
            #expect(response.bodyText.contains("barman_backups_total{server=\"pg-new\"} 0\n"))
            #expect(response.headers["content-length"] == String(response.body.count))
        }
    }

    /// With the renderer running (scrapes then serve what it rendered; the cache's own test shows
    /// they render nothing), a refresh's data is served within a moment.
    @Test func theRendererServesNewSnapshots() async throws {
        try await withExporter { exporter in
            let renderer = try Renderer(store: exporter.pipeline.store, cache: exporter.expositionCache, logger: Logger(level: .error))
            try await withRenderer(renderer) {
                let connection = try RawHTTPConnection(port: exporter.port)
                #expect(try !connection.request("GET", "/metrics").bodyText.contains("barman_up"))
                await exporter.refresher.refreshCycle()
                try await TestSupport.waitUntil("the new snapshot is served") {
                    (try? connection.request("GET", "/metrics").bodyText.contains("barman_up{check=\"failed_backups\",server=\"pg-main\"} 0\n")) == true
                }
            }
        }
    }

    /// The renderer sleeps until the next second or a new snapshot: while scraped, it wakes twice
    /// a second (to render the next second ahead, then as it starts; it polled every 50 ms
    /// before); a new snapshot wakes it at once.
    @Test func theRendererSleepsUntilASecondOrASnapshot() async throws {
        let store = SnapshotStore(MetricsSnapshot(version: "test"))
        let cache = ExpositionCache()
        let renderer = try Renderer(store: store, cache: cache, logger: Logger(level: .error))
        try await withRenderer(renderer) {
            // Scraped once, so the renderer prepares bodies for this format.
            _ = cache.body(for: .text, gzip: false, store: store, second: WallClock.nowSeconds().rounded(.down))
            let before = renderer.wakeups
            try await Task.sleep(for: .milliseconds(1500))
            #expect(renderer.wakeups - before <= 5, "woke \(renderer.wakeups - before) times in 1.5 s")
            let (renders, templates) = (cache.renders, cache.templatesMade)
            store.update { $0.lastRefreshMilliseconds = 1 }
            // Whole (its template) or with this second's body, depending on how recent the scrape was.
            try await TestSupport.waitUntil("the new snapshot is rendered") { cache.renders > renders || cache.templatesMade > templates }
        }
    }

    /// With no scraper at all, nothing is rendered: the renderer renders only the formats
    /// scraped in the last 65 s, however often snapshots change.
    @Test func withoutScrapersNothingIsRendered() async throws {
        let store = SnapshotStore(MetricsSnapshot(version: "test"))
        let cache = ExpositionCache()
        let renderer = try Renderer(store: store, cache: cache, logger: Logger(level: .error))
        try await withRenderer(renderer) {
            for refresh in 0..<5 {
                store.update { $0.lastRefreshMilliseconds = Double(refresh) }
                try await Task.sleep(for: .milliseconds(300))
            }
            #expect(cache.renders == 0)
            #expect(renderer.wakeups >= 5, "the renderer was not running")
        }
    }

    /// Runs `renderer` as the daemon does (a service), for the duration of `body`.
    func withRenderer(_ renderer: Renderer, _ body: () async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await renderer.run() }
            defer { group.cancelAll() }
            try await body()
        }
    }

    @Test func keepAliveReusesTheConnection() async throws {
        try await withExporter { exporter in
            let connection = try RawHTTPConnection(port: exporter.port)
            for _ in 0..<5 {
                let response = try connection.request("GET", "/metrics")
                #expect(response.status == 200)
                #expect(response.headers["connection"]?.lowercased() != "close")
            }
            // Pipelined: two requests sent at once, two responses in order.
            try connection.send("GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try connection.readResponse().status == 200)
            #expect(try connection.readResponse().status == 404)
        }
    }

    @Test func headHasHeadersButNoBody() async throws {
        try await withExporter { exporter in
            let connection = try RawHTTPConnection(port: exporter.port)
            let head = try connection.request("HEAD", "/metrics")
            #expect(head.status == 200)
            #expect(head.headers["content-type"] == ExpositionFormat.text.contentType)
            #expect(Int(head.headers["content-length"] ?? "") ?? 0 > 0)
            // The connection is still usable, so no body bytes were sent after the headers.
            #expect(try connection.request("GET", "/").status == 200)
        }
    }

    /// A body in pieces (a plain body is the template's text with each second's families
    /// between) goes out as one I/O vector: whole, in order, with its length, large or small,
    /// several times on one connection, and not at all for HEAD.
    @Test func aBodyInPiecesArrivesWhole() throws {
        let large = (0..<3).map { piece in SharedBytes((0..<1_500_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ piece) }) }
        let body = SharedBytes(joining: [large[0], SharedBytes([]), SharedBytes(Array("middle".utf8)), SharedBytes(joining: [large[1], large[2]])])
        #expect(body.chunks.count == 4)
        let expected = large[0].bytes + Array("middle".utf8) + large[1].bytes + large[2].bytes
        #expect(body.count == expected.count && body.bytes == expected)
        let server = try HTTPServer(listener: try ListenSocket(address: "127.0.0.1", port: 0), logger: Logger(level: .error)) { _ in
            .now(HTTPResponse(status: 200, payload: body))
        }
        defer { server.stop() }
        let connection = try RawHTTPConnection(port: server.listener.port)
        for _ in 0..<3 {
            let response = try connection.request("GET", "/")
            #expect(response.headers["content-length"] == "\(expected.count)")
            #expect(response.body == expected)
        }
        let head = try connection.request("HEAD", "/")
        #expect(head.headers["content-length"] == "\(expected.count)" && head.body.isEmpty)
        #expect(try connection.request("GET", "/").body == expected)
    }

    /// Each connection gets the send buffer asked for, not the kernel's autotuning (which let
    /// one connection take megabytes of a large body per write while others waited).
    @Test func connectionsGetTheSendBufferAskedFor() throws {
        var limits = HTTPLimits()
        limits.sendBufferBytes = 96 * 1024
        let server = try HTTPServer(listener: try ListenSocket(address: "127.0.0.1", port: 0), limits: limits, logger: Logger(level: .error)) { _ in
            .now(HTTPResponse(status: 200, body: Array("ok".utf8)))
        }
        defer { server.stop() }
        let client = try RawHTTPConnection(port: server.listener.port)
        // Answered: the server has taken the connection.
        #expect(try client.request("GET", "/").status == 200)
        func port(_ fd: Int32, peer: Bool) -> Int? {
            var address = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let status = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { peer ? getpeername(fd, $0, &length) : getsockname(fd, $0, &length) }
            }
            return status == 0 && address.sin_family == sa_family_t(AF_INET) ? Int(UInt16(bigEndian: address.sin_port)) : nil
        }
        let clientPort = try #require(port(client.fd, peer: false))
        // The server's end of this connection, among this process' descriptors.
        var descriptors: [Int32] = []
        try Directory.visit(path: "/proc/self/fd") { name, _ in if let fd = Int32(name) { descriptors.append(fd) } }
        let serverEnd = try #require(descriptors.first { port($0, peer: false) == server.listener.port && port($0, peer: true) == clientPort })
        var size: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        #expect(getsockopt(serverEnd, SOL_SOCKET, SO_SNDBUF, &size, &length) == 0)
        // Linux doubles the size asked for (bookkeeping overhead).
        #expect(size == 2 * 96 * 1024)
    }

    @Test func landingPage() async throws {
        try await withExporter { exporter in
            let response = try RawHTTPConnection(port: exporter.port).request("GET", "/")
            #expect(response.status == 200)
            #expect(response.headers["content-type"] == "text/html; charset=utf-8")
            #expect(response.bodyText.contains("<a href=\"/metrics\">"))
        }
    }

    @Test func unknownPathIs404() async throws {
        try await withExporter { exporter in
            let connection = try RawHTTPConnection(port: exporter.port)
            for path in ["/metric", "/metrics/", "/favicon.ico", "/" + String(repeating: "a", count: 2000), "/%00", "/%6detrics"] {
                #expect(try connection.request("GET", path).status == 404, "\(path.prefix(20))")
            }
            // A query string is not part of the path (Prometheus' `params:` adds one).
            #expect(try connection.request("GET", "/metrics?collect%5B%5D=x").status == 200)
        }
    }

    @Test func otherMethodsAre405WithAllow() async throws {
        try await withExporter { exporter in
            let connection = try RawHTTPConnection(port: exporter.port)
            for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "FOO"] {
                let response = try connection.request(method, "/metrics", headers: ["Content-Length: 0"])
                #expect(response.status == 405, "\(method)")
                #expect(response.headers["allow"] == "GET, HEAD", "\(method)")
            }
            // A request body is read and discarded; the connection stays usable.
            try connection.send("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
            #expect(try connection.readResponse().status == 405)
            #expect(try connection.request("GET", "/metrics").status == 200)
        }
    }

    @Test func malformedRequestGets400AndServerStaysUp() async throws {
        try await withExporter { exporter in
            // libmicrohttpd 0.9.75 closes on a request line without a URI, answers the rest.
            let garbage = try RawHTTPConnection(port: exporter.port)
            try garbage.send("GARBAGE\r\n\r\n")
            #expect(garbage.isClosedByPeer())
            let badHeader = try RawHTTPConnection(port: exporter.port)
            try badHeader.send("GET /metrics HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
            #expect(try badHeader.readResponse().status == 400)
            let badVersion = try RawHTTPConnection(port: exporter.port)
            try badVersion.send("GET /metrics HTTP/9.9\r\nHost: x\r\n\r\n")
            #expect(try badVersion.readResponse().status == 505)
            let huge = try RawHTTPConnection(port: exporter.port)
            try huge.send("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "b", count: 40_000))\r\n\r\n")
            #expect(try huge.readResponse().status == 431)
            #expect(try RawHTTPConnection(port: exporter.port).request("GET", "/metrics").status == 200)
        }
    }

    /// RFC 9112: servers must accept the absolute form of a request target, and must answer 400
    /// to an HTTP/1.1 request without exactly one Host field or with whitespace before a colon.
    @Test func requestTargetAndHostFollowRFC9112() async throws {
        try await withExporter { exporter in
            await exporter.refresher.refreshCycle()
            func status(_ request: String) throws -> Int {
                let connection = try RawHTTPConnection(port: exporter.port)
                try connection.send(request)
                return try connection.readResponse().status
            }
            let absolute = try RawHTTPConnection(port: exporter.port)
            try absolute.send("GET http://localhost:\(exporter.port)/metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            let response = try absolute.readResponse()
            #expect(response.status == 200)
            #expect(response.bodyText.contains("barman_backups_total{server=\"pg-main\"} 4\n"))
            #expect(try status("GET HTTP://localhost/ HTTP/1.1\r\nHost: localhost\r\n\r\n") == 200)
            #expect(try status("GET http://localhost/nope HTTP/1.1\r\nHost: localhost\r\n\r\n") == 404)
            #expect(try status("GET /metrics HTTP/1.1\r\n\r\n") == 400)
            #expect(try status("GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") == 400)
            #expect(try status("GET /metrics HTTP/1.1\r\nhOsT: a\r\nHOST: b\r\n\r\n") == 400)
            #expect(try status("GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n") == 400)
            #expect(try status("GET /metrics HTTP/1.0\r\n\r\n") == 200)
        }
    }

    @Test func bindFailureIsAClearError() throws {
        let first = try ListenSocket(address: "127.0.0.1", port: 0)
        defer { first.close() }
        #expect(throws: SystemError.self) { try ListenSocket(address: "127.0.0.1", port: first.port) }
        do {
            _ = try ListenSocket(address: "127.0.0.1", port: first.port)
        } catch {
            #expect(error.description == "cannot bind '127.0.0.1:\(first.port)': Address already in use")
        }
        do {
            _ = try ListenSocket(address: "no-such-host.invalid", port: 0)
            Issue.record("expected a resolution error")
        } catch {
            #expect(error.description.hasPrefix("cannot resolve listen address 'no-such-host.invalid':"))
        }
    }
}

/// Clients that misbehave: each must not stop the server from answering well-behaved ones.
@Suite("HTTP abuse", .serialized)
struct HTTPAbuseTests {
    func withServer(_ limits: HTTPLimits, _ body: (HTTPServer) throws -> Void) throws {
        var snapshot = MetricsSnapshot(version: "1")
        snapshot.backups = ["pg": []]
        let routes = Routes(store: SnapshotStore(snapshot))
        let server = try HTTPServer(listener: try ListenSocket(address: "127.0.0.1", port: 0), limits: limits, logger: Logger(level: .error)) {
            .now(routes.handle($0))
        }
        defer { server.stop() }
        try body(server)
    }

    @Test func idleAndSlowClientsAreDisconnectedAtTheTimeout() throws {
        var limits = HTTPLimits()
        limits.connectionTimeoutSeconds = 1
        try withServer(limits) { server in
            let idle = try RawHTTPConnection(port: server.listener.port)
            let slow = try RawHTTPConnection(port: server.listener.port)
            try slow.send("GET /metr")  // and never finishes the request
            // Others are served meanwhile.
            #expect(try RawHTTPConnection(port: server.listener.port).request("GET", "/metrics").status == 200)
            #expect(idle.isClosedByPeer())  // returns once the server closes it, after ~1 s
            #expect(slow.isClosedByPeer())
        }
    }

    @Test func moreConnectionsThanTheLimit() throws {
        var limits = HTTPLimits()
        limits.connectionLimit = 4
        limits.connectionTimeoutSeconds = 1
        try withServer(limits) { server in
            // Fill every slot with idle connections; a new client waits in the backlog and is
            // answered once the idle ones time out, instead of being refused or crashing anything.
            let hogs = try (0..<8).map { _ in try RawHTTPConnection(port: server.listener.port) }
            let client = try RawHTTPConnection(port: server.listener.port)
            #expect(try client.request("GET", "/metrics").status == 200)
            _ = hogs
        }
    }

    @Test func oversizedRequestLineAndHeaders() throws {
        try withServer(HTTPLimits()) { server in
            let longLine = try RawHTTPConnection(port: server.listener.port)
            try longLine.send("GET /" + String(repeating: "x", count: 100_000) + " HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try longLine.readResponse().status == 414)
            let manyHeaders = try RawHTTPConnection(port: server.listener.port)
            try manyHeaders.send("GET /metrics HTTP/1.1\r\n" + (0..<2000).map { "X-\($0): y\r\n" }.joined() + "\r\n")
            #expect(try manyHeaders.readResponse().status == 431)
            // A proxy's or an authentication scheme's large header still fits: up to 15 kB.
            let largeHeader = try RawHTTPConnection(port: server.listener.port)
            try largeHeader.send("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Large: \(String(repeating: "l", count: 15_000))\r\n\r\n")
            #expect(try largeHeader.readResponse().status == 200)
            #expect(try RawHTTPConnection(port: server.listener.port).request("GET", "/metrics").status == 200)
        }
    }

    @Test func manyPipelinedRequestsOnOneConnection() throws {
        try withServer(HTTPLimits()) { server in
            let connection = try RawHTTPConnection(port: server.listener.port)
            try connection.send(String(repeating: "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", count: 50))
            for _ in 0..<50 {
                #expect(try connection.readResponse().status == 200)
            }
        }
    }

    @Test func stopWaitsForResponsesInFlightOnly() throws {
        try withServer(HTTPLimits()) { server in
            let idle = try RawHTTPConnection(port: server.listener.port)
            #expect(try idle.request("GET", "/metrics").status == 200)
            // MHD marks the response complete just after the client has it; then the idle
            // keep-alive connection holds nothing up.
            for _ in 0..<200 where server.responsesInFlight != 0 { usleep(5_000) }
            #expect(server.responsesInFlight == 0)
            let clock = ContinuousClock()
            let started = clock.now
            server.stop()
            // Waiting for the idle connection would take the whole 2 s drain timeout.
            #expect(clock.now - started < .milliseconds(1900))
            #expect(idle.isClosedByPeer())
        }
    }
}
