@testable import Barman
@testable import Configuration
@testable import Exporter
@testable import Exposition
@testable import Platform
import Testing

@Suite("Web config")
struct WebConfigTests {
    /// Cost 4 keeps the tests fast; the format is what `htpasswd -B` writes.
    static let password = Array("s3cret pass".utf8)
    static let hash = Bcrypt.hash(password, cost: 4) ?? ""

    func problems(_ text: String, file: String = "/etc/x/web.yml") -> [String] {
        do {
            _ = try WebConfigLoader.parse(Array(text.utf8), file: file)
            return []
        } catch {
            return error.problems.map(\.description)
        }
    }

    /// Fail closed: a truncated web config must not turn TLS and authentication off.
    @Test func anEmptyFileIsAnErrorNotPlainHTTP() throws {
        for text in ["", "\n", "# all commented out\n", "~\n", "---\n"] {
            #expect(problems(text) == ["/etc/x/web.yml:1:1: the web config is empty; write its settings (tls_server_config, basic_auth_users...), or to serve plain HTTP without authentication remove --web.config.file / web_config_file"], "\(text.debugDescription)")
        }
        // Keys without settings are a config that says "plain HTTP" (exporter-toolkit's reading).
        #expect(try WebConfigLoader.parse(Array("tls_server_config:\nbasic_auth_users: {}\n".utf8), file: "w.yml") == WebConfig())
    }

    /// A reload that removes protection says so at warn level, naming what was turned off.
    @Test func weakeningsAreNamed() {
        var protected = WebConfig()
        var tls = TLSServerConfig(certFile: "a", keyFile: "b")
        tls.clientAuth = .requireAndVerifyClientCert
        protected.tls = tls
        protected.basicAuthUsers = ["prometheus": WebConfigTests.hash]
        #expect(WebAccess.weakenings(from: protected, to: protected).isEmpty)
        #expect(WebAccess.weakenings(from: WebConfig(), to: protected).isEmpty)
        let plain = WebAccess.weakenings(from: protected, to: WebConfig())
        #expect(plain.count == 2 && plain[0].hasPrefix("TLS") && plain[1].hasPrefix("basic authentication"))
        var optional = protected
        optional.tls?.clientAuth = .verifyClientCertIfGiven
        #expect(WebAccess.weakenings(from: protected, to: optional) == ["required client certificates (client_auth_type RequireAndVerifyClientCert -> VerifyClientCertIfGiven)"])
    }

    /// `X-Frame-Options` and `x-frame-options` are one header: both would be sent.
    @Test func headerNamesDifferingInCaseAreOneHeader() {
        #expect(problems("http_server_config:\n  headers:\n    X-Frame-Options: deny\n    x-frame-options: sameorigin\n")
                == ["/etc/x/web.yml:4:5: http_server_config.headers: 'x-frame-options' is 'X-Frame-Options' again (first set on line 3); header names ignore case, keep one"])
    }

    /// RFC 7617: the scheme is case-insensitive; the rest is base64 of user:password.
    @Test func authorizationHeaderParsing() {
        func parse(_ text: String) -> BasicCredentials? { BasicCredentials(authorization: Array(text.utf8)) }
        let expected = BasicCredentials(user: "prometheus", password: Array("s3cret pass".utf8))
        for scheme in ["Basic", "basic", "BASIC", "bAsIc"] {
            #expect(parse("\(scheme) cHJvbWV0aGV1czpzM2NyZXQgcGFzcw==") == expected, "\(scheme)")
        }
        #expect(parse("Basic  cHJvbWV0aGV1czpzM2NyZXQgcGFzcw==") == expected)
        #expect(parse("Basic dTpwOnE=") == BasicCredentials(user: "u", password: Array("p:q".utf8)))  // u:p:q
        for bad in ["Bearer cHJvbWV0aGV1czpzM2NyZXQgcGFzcw==", "Basic", "Basic ", "Basicx dTpw", "Basic dTpw=", "Basic dTp*",
                    "Basic dXNlcg==", "Basic =dTp"] {
            #expect(parse(bad) == nil, "\(bad)")
        }
    }

    /// Any password bytes survive the header's base64, whatever their length (so the padding
    /// of each last group), against an encoder written from RFC 4648 here.
    @Test func base64DecodesWhatRFC4648Encodes() {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        func encode(_ bytes: [UInt8]) -> [UInt8] {
            var output: [UInt8] = []
            for start in stride(from: 0, to: bytes.count, by: 3) {
                let group = Array(bytes[start..<min(start + 3, bytes.count)])
                let bits = group.enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << UInt32(16 - 8 * $1.offset) }
                for index in 0..<4 {
                    output.append(index <= group.count ? alphabet[Int(bits >> UInt32(18 - 6 * index) & 63)] : UInt8(ascii: "="))
                }
            }
            return output
        }
        var generator = SystemRandomNumberGenerator()
        for length in 0..<64 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            #expect(Base64.decode(encode(bytes)) == bytes, "\(bytes)")
        }
        for bad in ["dQ=", "d===", "====", "dQ==dQ==", "dQ=a", "d Q=", "dQ\u{0}="] {
            #expect(Base64.decode(Array(bad.utf8)) == nil, "\(bad)")
        }
    }

    /// User names compare by bytes: "jose\u{301}" (NFD) is not the configured "jos\u{e9}" (NFC).
    @Test func userNamesCompareByBytes() {
        let authenticator = BasicAuthenticator(users: ["jos\u{e9}": WebConfigTests.hash])
        #expect(!authenticator.accepts(user: ExactString("jose\u{301}"), password: WebConfigTests.password))
        #expect(authenticator.accepts(user: ExactString("jos\u{e9}"), password: WebConfigTests.password))
    }

    /// Nothing is hashed when a web config loads (a cost-17 user delayed start by 8-11 s), and
    /// unknown users are checked against a hash of the highest cost among the users.
    @Test func noHashingAtLoadAndUnknownUsersCostTheMost() {
        let cost17 = "$2b$17$abadefghijklmnopqrstuuPp7HPfoAs8I2dCQCQ/fW7zEJv8I8C8e"
        let authenticator = BasicAuthenticator(users: ["fast": WebConfigTests.hash, "slow": cost17])
        #expect(authenticator.dummyCost == 17)
        #expect(authenticator.bcryptRuns == 0)
        #expect(authenticator.dummyHashIsMadeWithoutHashing)
    }

    @Test func usersHeadersAndHashes() throws {
        let text = "basic_auth_users:\n  prometheus: \(Self.hash)\n  alloy: '\(Self.hash)'\nhttp_server_config:\n  headers:\n    x-frame-options: DENY\n    Strict-Transport-Security: max-age=31536000\n"
        let web = try WebConfigLoader.parse(Array(text.utf8), file: "w.yml")
        #expect(web.basicAuthUsers == ["prometheus": Self.hash, "alloy": Self.hash])
        #expect(web.headers == [HTTPHeaderField(name: "Strict-Transport-Security", value: "max-age=31536000"),
                                HTTPHeaderField(name: "X-Frame-Options", value: "DENY")])
        #expect(web.tls == nil)
    }

    @Test func everyProblemWithFileLineAndColumn() {
        let text = """
            tls_server_config:
              cert_file: a.crt
              cipher_suites: [x]
              client_auth_type: Sometimes
            basic_auth_users:
              prometheus: plaintext
              prometheus: \(Self.hash)
            http_server_config:
              headers:
                Server: x
              http2: true
            rate_limit: {interval: 1s}
            colour: blue

            """
        // A YAML-level mistake (a key twice) is reported before the contents are read.
        #expect(problems(text) == ["/etc/x/web.yml:7:3: duplicate key 'prometheus' (first set on line 6)"])
        // Once the YAML itself is sound, every key and value is checked.
        let sound = text.split(separator: "\n", omittingEmptySubsequences: false).filter { $0 != "  prometheus: \(Self.hash)" }.joined(separator: "\n")
        #expect(problems(sound) == [
            "/etc/x/web.yml:3:3: tls_server_config.cipher_suites is not supported by prometheus-barman-exporter; remove it: GnuTLS's NORMAL cipher suites are used, AES-128-GCM first",
            "/etc/x/web.yml:4:21: tls_server_config.client_auth_type 'Sometimes' is not one of NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert",
            "/etc/x/web.yml:2:3: tls_server_config needs both cert_file and key_file; key_file is missing",
            "/etc/x/web.yml:6:15: basic_auth_users.prometheus is not a bcrypt hash ($2y$, $2b$ or $2a$, cost 4-17, 60 characters); make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'",
            "/etc/x/web.yml:9:5: http_server_config.headers: 'Server' cannot be set; allowed: Content-Security-Policy, Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, X-XSS-Protection",
            "/etc/x/web.yml:10:10: http_server_config.http2: HTTP/2 is not supported (libmicrohttpd serves HTTP/1.1); remove the key or set it to false",
            "/etc/x/web.yml:11:1: rate_limit is not supported by prometheus-barman-exporter; limit request rates in front of the exporter (a reverse proxy) or remove it",
            "/etc/x/web.yml:12:1: unknown key 'colour'; known keys: tls_server_config, http_server_config, basic_auth_users",
        ])
    }

    @Test func wrongTypesAndYAMLFeatures() {
        #expect(problems("basic_auth_users: [a, b]\n") == ["/etc/x/web.yml:1:19: basic_auth_users must be a mapping of 'key: value' lines, found a list"])
        #expect(problems("basic_auth_users:\n  p: {a: b}\n") == ["/etc/x/web.yml:2:6: basic_auth_users.p must be a single value, found a mapping"])
        #expect(problems("- a\n") == ["/etc/x/web.yml:1:1: the web config must be a mapping of 'key: value' lines, found a list"])
        #expect(problems("a: &x 1\nb: *x\n").first == "/etc/x/web.yml:1:4: anchors (&name) are not supported")
        #expect(problems("a: 1\n---\nb: 2\n") == ["/etc/x/web.yml:2:1: more than one YAML document; the file is a single mapping"])
        #expect(problems(String(repeating: "[", count: 40)).first?.contains("nested more than 16 levels deep") == true)
    }

    @Test func clientAuthNeedsItsCAAndTheCANeedsAClientAuthType() {
        #expect(problems("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n")
                == ["/etc/x/web.yml:4:21: tls_server_config.client_auth_type RequireAndVerifyClientCert needs client_ca_file (the CA certificates that sign the scrapers' certificates)"])
        #expect(problems("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n").first?.hasPrefix(
            "/etc/x/web.yml:4:19: tls_server_config.client_ca_file is set but client_auth_type is NoClientCert") == true)
        #expect(problems("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n  max_version: TLS12\n")
                == ["/etc/x/web.yml:4:16: tls_server_config.min_version (TLS13) is above max_version (TLS12)"])
    }

    @Test func certificateFilesAreRelativeToTheWebConfigAndMustExist() {
        let found = problems("tls_server_config:\n  cert_file: tls/a.crt\n  key_file: /nonexistent/b.key\n", file: "/nonexistent-dir/web.yml")
        #expect(found.count == 2)
        #expect(found.first?.hasPrefix("/nonexistent-dir/web.yml:2:14: tls_server_config.cert_file: cannot open '/nonexistent-dir/tls/a.crt'") == true)
        #expect(found.last?.hasPrefix("/nonexistent-dir/web.yml:3:13: tls_server_config.key_file: cannot open '/nonexistent/b.key'") == true)
    }

    @Test func prioritiesAllowOnlyTheConfiguredVersions() {
        let ciphers = "NORMAL:%SERVER_PRECEDENCE:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:+AES-128-CCM:+AES-256-CCM:+AES-128-CBC:+AES-256-CBC"
        var tls = TLSServerConfig(certFile: "a", keyFile: "b")
        #expect(tls.priorities == ciphers + ":-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2")
        tls.minVersion = .tls13
        #expect(tls.priorities == ciphers + ":-VERS-ALL:+VERS-TLS1.3")
    }

    @Test func garbageIsNotATLSKeyPair() {
        let check = TLSCredentials.check(certificate: Array("not a certificate".utf8), key: Array("nor a key".utf8), clientCA: nil)
        guard case .badCertificateOrKey(let reason) = check else {
            Issue.record("accepted garbage: \(check)")
            return
        }
        #expect(!reason.isEmpty)
    }
}

@Suite("Basic auth")
struct BasicAuthTests {
    @Test func bcryptVerifiesWhatHtpasswdWrites() throws {
        // `htpasswd -nbB -C 4 prometheus 'open sesame'` ($2y$, Apache's spelling of $2b$).
        let htpasswd = "$2y$04$PaT8vLXPl8grS/tksDu1NeD69ag/svz3JALC/6lbt0AzxuEiJ.l3C"
        #expect(Bcrypt.isValidHash(htpasswd))
        #expect(Bcrypt.verify(Array("open sesame".utf8), hash: htpasswd))
        #expect(!Bcrypt.verify(Array("open sesamE".utf8), hash: htpasswd))
        #expect(!Bcrypt.verify(Array("open sesame\0".utf8), hash: htpasswd))
        #expect(!Bcrypt.isValidHash("$1$abc$defghijklmnopqrstuvwxyz"))
        #expect(!Bcrypt.isValidHash("plaintext"))
        // Found by the fuzzer: a well-formed hash of cost 30 took libcrypt hours to check at load.
        #expect(!Bcrypt.isValidHash("$2b$30$abadefghijklmnopqrstuuPp7HPfoAs8I2dCQCQ/fW7zEJv8I8C8e"))
        #expect(Bcrypt.isValidHash("$2b$17$abadefghijklmnopqrstuuPp7HPfoAs8I2dCQCQ/fW7zEJv8I8C8e"))
        #expect(!Bcrypt.isValidHash("$2b$04$abadefghijklmnopqrstuuPp7HPfoAs8I2dCQCQ/fW7zEJv8I8C8:"))
    }

    @Test func constantTimeComparison() {
        #expect(constantTimeEqual([1, 2, 3], [1, 2, 3]))
        #expect(!constantTimeEqual([1, 2, 3], [1, 2, 4]))
        #expect(!constantTimeEqual([1, 2, 3], [1, 2, 3, 0]))
        #expect(!constantTimeEqual([], [0]))
        #expect(constantTimeEqual([], []))
    }

    @Test func aVerifiedPasswordIsRememberedAWrongOneNever() {
        let authenticator = BasicAuthenticator(users: ["prometheus": WebConfigTests.hash])
        #expect(authenticator.accepts(user: "prometheus", password: WebConfigTests.password))
        let afterFirst = authenticator.bcryptRuns
        for _ in 0..<5 { #expect(authenticator.accepts(user: "prometheus", password: WebConfigTests.password)) }
        #expect(authenticator.bcryptRuns == afterFirst, "a remembered password must not cost a bcrypt")
        for _ in 0..<3 { #expect(!authenticator.accepts(user: "prometheus", password: Array("guess".utf8))) }
        #expect(authenticator.bcryptRuns == afterFirst + 3, "every wrong guess costs a bcrypt")
        #expect(!authenticator.accepts(user: "root", password: WebConfigTests.password))
        #expect(authenticator.bcryptRuns == afterFirst + 4, "an unknown user costs a bcrypt too (no user enumeration by timing)")
    }

    @Test func refusalsAndHeaders() throws {
        var config = WebConfig()
        config.basicAuthUsers = ["prometheus": WebConfigTests.hash]
        config.headers = [HTTPHeaderField(name: "X-Frame-Options", value: "deny")]
        let access = WebAccess(config: config)
        let ok = HTTPResponse(status: 200, body: Array("metrics".utf8))
        let missing = access.handleNow(HTTPRequest(method: "GET", path: "/metrics")) { _ in ok }
        #expect(missing.status == 401)
        #expect(missing.headers.contains { $0.0 == "WWW-Authenticate" && $0.1.hasPrefix("Basic ") })
        #expect(missing.headers.contains { $0 == ("X-Frame-Options", "deny") })
        let good = HTTPRequest(method: "GET", path: "/metrics", credentials: BasicCredentials(user: "prometheus", password: WebConfigTests.password))
        let answered = access.handleNow(good) { _ in ok }
        #expect(answered.status == 200 && answered.body == Array("metrics".utf8))
        #expect(answered.headers.contains { $0 == ("X-Frame-Options", "deny") })

        var tls = TLSServerConfig(certFile: "a", keyFile: "b")
        tls.clientAuth = .requireAndVerifyClientCert
        var certificateConfig = WebConfig()
        certificateConfig.tls = tls
        let certificates = WebAccess(config: certificateConfig)
        #expect(certificates.handleNow(HTTPRequest(method: "GET", path: "/", clientCertificate: .none)) { _ in ok }.status == 403)
        #expect(certificates.handleNow(HTTPRequest(method: "GET", path: "/", clientCertificate: .rejected(reason: "expired"))) { _ in ok }.status == 403)
        #expect(certificates.handleNow(HTTPRequest(method: "GET", path: "/", clientCertificate: .verified)) { _ in ok }.status == 200)
    }
}
