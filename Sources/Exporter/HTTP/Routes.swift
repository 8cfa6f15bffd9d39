import Platform
import Exposition
import Configuration
import Barman

/// What each path answers. Every answer comes from memory: the metrics path (`/metrics`, or
/// `--web.telemetry-path`) renders the current snapshot and never waits for barman.
public struct Routes: Sendable {
    public let store: SnapshotStore
    public let now: @Sendable () -> Double
    let cache: ExpositionCache
    /// Where the metrics are served; any other path but `/` is 404.
    public let telemetryPath: String
    private let landingPage: SharedBytes

    public init(store: SnapshotStore, cache: ExpositionCache = ExpositionCache(), telemetryPath: String = "/metrics",
                now: @escaping @Sendable () -> Double = { WallClock.nowSeconds() }) {
        self.store = store
        self.cache = cache
        self.now = now
        self.telemetryPath = telemetryPath
        landingPage = telemetryPath == "/metrics" ? Self.landingPageBytes : SharedBytes(Array(Self.landingPage(linking: telemetryPath).utf8))
    }

    /// Makes a body a scrape did not find ready, off the HTTP event thread: the per-second part
    /// for an occasional scraper, or the whole render for the first scrape of a format (or one
    /// after a minute without any). One at a time; the scrapes waiting for the same body find it
    /// ready when their turn comes.
    static let renders = WorkerThread(name: "demand renders", capacity: 256, nice: 10)

    /// The answer as the HTTP server sends it: at once, or, when `/metrics` would have to
    /// render, rendered on `renders` while the connection waits.
    public func reply(_ request: HTTPRequest) -> HTTPReply {
        if let answer = refusalOrPage(request) { return .now(answer) }
        let second = now().rounded(.down)
        if cache.hasBody(for: ContentNegotiation.format(accept: request.accept), gzip: ContentNegotiation.acceptsGzip(request.acceptEncoding),
                         store: store, second: second) {
            return .now(metrics(request, second: second))
        }
        let busy = text(503, "503 service unavailable: too many scrapes waiting for a first render; retry in a second\n")
        return .later(on: Self.renders, whenBusy: { busy }) { metrics(request, second: now().rounded(.down)) }
    }

    /// The answer, computed on the calling thread whatever it costs.
    public func handle(_ request: HTTPRequest) -> HTTPResponse {
        refusalOrPage(request) ?? metrics(request, second: now().rounded(.down))
    }

    /// The answer to anything but a valid `/metrics` request (a refusal, the landing page); nil
    /// for that one.
    private func refusalOrPage(_ request: HTTPRequest) -> HTTPResponse? {
        if request.malformedFieldName {
            return text(400, "400 bad request: whitespace between a header field name and its colon\n")
        }
        if request.version == "HTTP/1.1" && request.hostFields != 1 {
            return text(400, "400 bad request: an HTTP/1.1 request needs exactly one Host header\n")
        }
        let path = Self.originPath(request.path)
        guard path == telemetryPath || path == "/" else {
            return text(404, "404 page not found: only / and \(telemetryPath) exist\n")
        }
        guard request.method == "GET" || request.method == "HEAD" else {
            var response = text(405, "405 method not allowed: use GET or HEAD\n")
            response.headers.append(("Allow", "GET, HEAD"))
            return response
        }
        if path == "/" {
            return HTTPResponse(status: 200, headers: [("Content-Type", "text/html; charset=utf-8")], payload: landingPage)
        }
        return nil
    }

    /// Text 0.0.4 or OpenMetrics, gzipped when asked. Ages are computed with whole seconds of the
    /// scrape time (the unit barman records end times in), so the body is reused within a second.
    func metrics(_ request: HTTPRequest, second: Double) -> HTTPResponse {
        let format = ContentNegotiation.format(accept: request.accept)
        let body = cache.body(for: format, gzip: ContentNegotiation.acceptsGzip(request.acceptEncoding), store: store, second: second)
        var headers = [("Content-Type", format.contentType), ("Vary", "Accept, Accept-Encoding")]
        if body.gzipped { headers.append(("Content-Encoding", "gzip")) }
        return HTTPResponse(status: 200, headers: headers, payload: body.bytes)
    }

    /// The path of an absolute-form target (`http://host:9780/metrics`, RFC 9112 3.2.2, which
    /// servers must accept), or the target itself in origin form.
    static func originPath(_ target: String) -> String {
        for scheme in ["http://", "https://"] where target.utf8.count > scheme.utf8.count && target.lowercased().hasPrefix(scheme) {
            let afterScheme = target.dropFirst(scheme.count)
            guard let slash = afterScheme.firstIndex(of: "/") else { return "/" }
            let path = afterScheme[slash...]
            return String(path.prefix { $0 != "?" && $0 != "#" })
        }
        return target
    }

    private func text(_ status: Int, _ body: String) -> HTTPResponse {
        HTTPResponse(status: status, headers: [("Content-Type", "text/plain; charset=utf-8")], body: Array(body.utf8))
    }

    static let landingPageBytes = SharedBytes(Array(landingPage(linking: "/metrics").utf8))

    /// The page at `/`, linking to the metrics (a path made only of characters HTML and URLs
    /// take as they are: `--web.telemetry-path` refuses spaces, `?` and `#`; `<>"&` are escaped).
    static func landingPage(linking path: String) -> String {
        var escaped = ""
        for character in path {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            default: escaped.append(character)
            }
        }
        return """
        <!DOCTYPE html>
        <html lang="en">
        <head><meta charset="utf-8"><title>Barman Exporter</title></head>
        <body>
        <h1>Barman Exporter</h1>
        <p>Prometheus exporter for <a href="https://pgbarman.org/">pgbarman</a>, version \(BuildInfo.version).</p>
        <p><a href="\(escaped)">Metrics</a></p>
        </body>
        </html>

        """
    }
}
