import Platform
import Exposition
import Configuration
import Barman

/// The web config applied to each request before the routes: client certificate, then basic
/// auth (exporter-toolkit's order), then the configured headers on every answer, refusals included.
public struct WebAccess: Sendable {
    public let config: WebConfig
    let authenticator: BasicAuthenticator?
    /// Failed logins per client address, for this web config (a reload starts afresh).
    let throttle = LoginThrottle()

    public init(config: WebConfig) {
        self.config = config
        authenticator = config.basicAuthUsers.isEmpty ? nil : BasicAuthenticator(users: config.basicAuthUsers)
    }

    /// How the HTTP server must be started for this config.
    public var serverTLS: HTTPServerTLS? {
        config.tls.map { tls in
            HTTPServerTLS(certificatePEM: tls.certificatePEM, keyPEM: tls.keyPEM, clientCAPEM: tls.clientCAPEM,
                          checkClientCertificates: tls.clientAuth.requiresCertificate || tls.clientAuth.verifiesCertificate,
                          priorities: tls.priorities)
        }
    }

    public var readsCredentials: Bool { authenticator != nil }

    /// What an operator should know about a valid web config: a certificate expired or expiring
    /// within 14 days, passwords sent without TLS.
    public static func warnings(_ config: WebConfig, file: String, now: Double) -> [String] {
        var warnings: [String] = []
        if let tls = config.tls, let notAfter = tls.notAfter {
            if notAfter <= now {
                warnings.append("the TLS certificate \(tls.certFile) has expired (\(WallClock.iso8601(Int64(notAfter) * 1000))); scrapers that verify it will fail: renew it and reload")
            } else if notAfter - now < 14 * 86_400 {
                warnings.append("the TLS certificate \(tls.certFile) expires in \(Int((notAfter - now) / 86_400)) days (\(WallClock.iso8601(Int64(notAfter) * 1000))): renew it and reload")
            }
        }
        if config.tls == nil && !config.basicAuthUsers.isEmpty {
            warnings.append("basic_auth_users without tls_server_config: passwords cross the network in clear text")
        }
        return warnings
    }

    /// What a new web config turns off that the running one had: said at reload as a warning,
    /// so a deploy that drops protection (on purpose or not) is visible at the default level.
    public static func weakenings(from old: WebConfig, to new: WebConfig) -> [String] {
        var turnedOff: [String] = []
        if old.tls != nil && new.tls == nil {
            turnedOff.append("TLS (tls_server_config): the exporter now serves plain HTTP")
        } else if let before = old.tls?.clientAuth, let after = new.tls?.clientAuth,
                  before.requiresCertificate && !after.requiresCertificate {
            turnedOff.append("required client certificates (client_auth_type \(before.rawValue) -> \(after.rawValue))")
        }
        if !old.basicAuthUsers.isEmpty && new.basicAuthUsers.isEmpty {
            turnedOff.append("basic authentication (basic_auth_users): anyone who reaches the port can scrape")
        }
        return turnedOff
    }

    /// Checks a password that was not verified before: bcrypt runs here, one at a time for the
    /// whole process, at nice +19 (the lowest priority: on a busy host guesses wait, scrapes do
    /// not), never on the HTTP event thread. At most `capacity` checks wait; past that a login
    /// is answered 503, a second later.
    static let passwordChecks = WorkerThread(name: "password checks", capacity: 16, nice: 19)
    /// Answers for throttled clients, sent `throttleDelay` late so a guessing loop gets slow.
    static let delayedAnswers = WorkerThread(name: "delayed answers", capacity: 1024)
    static let throttleDelay: Duration = .seconds(1)

    /// The answer to `request`: refused (certificate, password), or `next`'s, with the
    /// configured headers either way. A password seen before is checked at once; a new one on
    /// the password worker, the connection waiting meanwhile.
    public func handle(_ request: HTTPRequest, next: @escaping @Sendable (HTTPRequest) -> HTTPReply) -> HTTPReply {
        if let refusal = certificateRefusal(request) { return .now(withHeaders(refusal)) }
        guard let authenticator else { return withHeaders(next(request)) }
        guard let credentials = request.credentials else { return .now(withHeaders(unauthorized())) }
        if authenticator.isRemembered(user: credentials.user, password: credentials.password) {
            return withHeaders(next(request))
        }
        let throttle = self.throttle
        let address = request.clientAddress
        guard throttle.beginCheck(address) else {
            var refusal = text(429, "429 too many requests: \(LoginThrottle.allowedFailures) wrong passwords from this address in the last \(LoginThrottle.window.components.seconds) s; wait, then give the right user and password\n")
            refusal.headers.append(("Retry-After", String(LoginThrottle.window.components.seconds)))
            return Self.delayed(withHeaders(refusal))
        }
        let busy = withHeaders(text(503, "503 service unavailable: too many password checks waiting; retry in a few seconds\n"))
        // Every check is taken: answered a moment later, without a bcrypt, so that a flood from
        // many addresses cannot keep the event thread busy answering it either.
        if Self.passwordChecks.queued >= Self.passwordChecks.capacity {
            throttle.endCheck(address, failed: false)
            return Self.delayed(busy)
        }
        return .later(on: Self.passwordChecks, whenBusy: {
            throttle.endCheck(address, failed: false)
            return busy
        }) {
            let accepted = authenticator.accepts(user: credentials.user, password: credentials.password)
            throttle.endCheck(address, failed: !accepted)
            // Already on a worker: whatever the answer costs is computed here.
            return withHeaders(accepted ? Self.computed(next(request)) : unauthorized())
        }
    }

    /// `response`, sent `throttleDelay` late plus up to half a second more (at once if even the
    /// delayed answers are full). The spread keeps guessing clients that started together from
    /// coming back together: answered in one burst each second, they made a scrape that landed
    /// in the burst wait a few milliseconds behind them.
    private static func delayed(_ response: HTTPResponse) -> HTTPReply {
        let delay = throttleDelay + .milliseconds(Int.random(in: 0..<500))
        return .later(on: delayedAnswers, after: delay, whenBusy: { response }) { response }
    }

    /// The same answer, computed here whatever it costs (tests).
    public func handleNow(_ request: HTTPRequest, next: @escaping @Sendable (HTTPRequest) -> HTTPResponse) -> HTTPResponse {
        Self.computed(handle(request) { .now(next($0)) })
    }

    /// A reply's response, computing a deferred one on the calling thread.
    static func computed(_ reply: HTTPReply) -> HTTPResponse {
        switch reply {
        case .now(let response): return response
        case .later(_, _, _, let compute): return compute()
        }
    }

    /// `reply` with the configured headers, whenever it is answered.
    private func withHeaders(_ reply: HTTPReply) -> HTTPReply {
        switch reply {
        case .now(let response):
            return .now(withHeaders(response))
        case .later(let worker, let delay, let whenBusy, let compute):
            return .later(on: worker, after: delay, whenBusy: { withHeaders(whenBusy()) }) { withHeaders(compute()) }
        }
    }

    private func withHeaders(_ response: HTTPResponse) -> HTTPResponse {
        var response = response
        for header in config.headers { response.headers.append((header.name, header.value)) }
        return response
    }

    private func unauthorized() -> HTTPResponse {
        var response = text(401, "401 unauthorized: give a user and password from the exporter's web config (Prometheus: basic_auth)\n")
        response.headers.append(("WWW-Authenticate", "Basic realm=\"prometheus-barman-exporter\", charset=\"UTF-8\""))
        return response
    }

    func certificateRefusal(_ request: HTTPRequest) -> HTTPResponse? {
        guard let clientAuth = config.tls?.clientAuth else { return nil }
        switch request.clientCertificate {
        case .none where clientAuth.requiresCertificate:
            return text(403, "403 forbidden: this exporter requires a TLS client certificate (client_auth_type \(clientAuth.rawValue)); give the scraper one signed by the exporter's client_ca_file (Prometheus: tls_config cert_file and key_file)\n")
        case .rejected(let reason) where clientAuth.verifiesCertificate:
            return text(403, "403 forbidden: the TLS client certificate was not accepted: \(reason)\n")
        default:
            return nil
        }
    }

    private func text(_ status: Int, _ body: String) -> HTTPResponse {
        HTTPResponse(status: status, headers: [("Content-Type", "text/plain; charset=utf-8")], body: Array(body.utf8))
    }
}
