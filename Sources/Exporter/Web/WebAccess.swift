import Platform
import Exposition
import Configuration
import Barman

/// The web config applied to each request before the routes: client certificate, then basic
/// auth (exporter-toolkit's order), then the configured headers on every answer, refusals included.
public struct WebAccess: Sendable {
    public let config: WebConfig
    let authenticator: BasicAuthenticator?

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

    public func handle(_ request: HTTPRequest, next: (HTTPRequest) -> HTTPResponse) -> HTTPResponse {
        var response = refusal(request) ?? next(request)
        for header in config.headers { response.headers.append((header.name, header.value)) }
        return response
    }

    func refusal(_ request: HTTPRequest) -> HTTPResponse? {
        if let clientAuth = config.tls?.clientAuth {
            switch request.clientCertificate {
            case .none where clientAuth.requiresCertificate:
                return text(403, "403 forbidden: this exporter requires a TLS client certificate (client_auth_type \(clientAuth.rawValue)); give the scraper one signed by the exporter's client_ca_file (Prometheus: tls_config cert_file and key_file)\n")
            case .rejected(let reason) where clientAuth.verifiesCertificate:
                return text(403, "403 forbidden: the TLS client certificate was not accepted: \(reason)\n")
            default:
                break
            }
        }
        if let authenticator {
            guard let credentials = request.credentials, authenticator.accepts(user: credentials.user, password: credentials.password) else {
                var response = text(401, "401 unauthorized: give a user and password from the exporter's web config (Prometheus: basic_auth)\n")
                response.headers.append(("WWW-Authenticate", "Basic realm=\"prometheus-barman-exporter\", charset=\"UTF-8\""))
                return response
            }
        }
        return nil
    }

    private func text(_ status: Int, _ body: String) -> HTTPResponse {
        HTTPResponse(status: status, headers: [("Content-Type", "text/plain; charset=utf-8")], body: Array(body.utf8))
    }
}
