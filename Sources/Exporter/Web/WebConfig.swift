import Platform
import Exposition
import Configuration
import Barman

/// What `--web.config.file` asks for: TLS, client certificates, basic auth and extra response
/// headers, in exporter-toolkit's format so the file written for node_exporter works here too.
/// Loaded and checked by `WebConfigLoader`; the certificate files are read into it, so a server
/// started from one `WebConfig` never reads a file that changed in between.
public struct WebConfig: Sendable, Equatable {
    public var tls: TLSServerConfig?
    /// User name -> bcrypt hash; no users means no authentication.
    public var basicAuthUsers: [String: String] = [:]
    /// Added to every response, sorted by name.
    public var headers: [HTTPHeaderField] = []

    /// No TLS, no authentication, no headers: what the exporter does without a web config.
    public init() {}
}

public struct HTTPHeaderField: Sendable, Equatable {
    public var name: String
    public var value: String
}

public struct TLSServerConfig: Sendable, Equatable {
    public var certFile: String
    public var keyFile: String
    public var clientAuth: ClientAuthType = .noClientCert
    public var clientCAFile: String?
    public var minVersion: TLSVersion = .tls12
    public var maxVersion: TLSVersion = .tls13
    /// The files' contents (PEM), read when the web config was loaded.
    public var certificatePEM: [UInt8] = []
    public var keyPEM: [UInt8] = []
    public var clientCAPEM: [UInt8]?
    /// When the server certificate expires (seconds since the epoch), if known.
    public var notAfter: Double?

    /// The GnuTLS priority string for libmicrohttpd: GnuTLS's NORMAL set (the same suites, key
    /// exchanges and curves) with only the allowed protocol versions, and the server choosing
    /// AES-128-GCM first as Go's crypto/tls does for exporter-toolkit. GnuTLS otherwise follows the
    /// client's order, and OpenSSL's clients (curl, wrk, many agents) list AES-256-GCM first: 14
    /// AES rounds a block instead of 10, at both ends, for no security a scrape needs.
    public var priorities: String {
        let versions = TLSVersion.allCases.filter { $0 >= minVersion && $0 <= maxVersion }
        return "NORMAL:%SERVER_PRECEDENCE:-CIPHER-ALL" + Self.cipherPreference.map { ":+\($0)" }.joined()
            + ":-VERS-ALL" + versions.reversed().map { ":+\($0.gnutlsName)" }.joined()
    }

    /// NORMAL's ciphers (GnuTLS 3.7.9, Debian 12's), fastest first on processors with AES instructions.
    static let cipherPreference = ["AES-128-GCM", "AES-256-GCM", "CHACHA20-POLY1305", "AES-128-CCM", "AES-256-CCM",
                                   "AES-128-CBC", "AES-256-CBC"]
}

/// exporter-toolkit's `client_auth_type` values (Go's `tls.ClientAuthType` names).
public enum ClientAuthType: String, Sendable, CaseIterable {
    case noClientCert = "NoClientCert"
    case requestClientCert = "RequestClientCert"
    case requireAnyClientCert = "RequireAnyClientCert"
    case verifyClientCertIfGiven = "VerifyClientCertIfGiven"
    case requireAndVerifyClientCert = "RequireAndVerifyClientCert"

    /// Whether a connection without a client certificate is refused.
    var requiresCertificate: Bool { self == .requireAnyClientCert || self == .requireAndVerifyClientCert }
    /// Whether a client certificate that is given must chain to `client_ca_file`.
    var verifiesCertificate: Bool { self == .verifyClientCertIfGiven || self == .requireAndVerifyClientCert }
}

public enum TLSVersion: String, Sendable, CaseIterable, Comparable {
    case tls10 = "TLS10"
    case tls11 = "TLS11"
    case tls12 = "TLS12"
    case tls13 = "TLS13"

    var gnutlsName: String {
        switch self {
        case .tls10: return "VERS-TLS1.0"
        case .tls11: return "VERS-TLS1.1"
        case .tls12: return "VERS-TLS1.2"
        case .tls13: return "VERS-TLS1.3"
        }
    }

    public static func < (lhs: TLSVersion, rhs: TLSVersion) -> Bool {
        allCases.firstIndex(of: lhs) ?? 0 < allCases.firstIndex(of: rhs) ?? 0
    }
}
