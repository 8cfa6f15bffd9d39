// swift-tools-version:6.0
import PackageDescription

// The layering is held by the targets: each may use only those below it.
//
//   Exporter        HTTP server (libmicrohttpd adapter), web config and auth, daemon lifecycle
//   Barman          barman commands, decoding, collectors, refresher, snapshot store
//   Configuration   the config file (libyaml adapter)      Exposition   metric model, text formats, gzip
//   Platform        the system-call layer: the only Swift target that imports Glibc
//
// C modules are imported only by Platform and by one adapter file per C library
// (LayeringTests checks every import).
let strict: [SwiftSetting] = [.unsafeFlags(["-warnings-as-errors"])]

let package = Package(
    name: "prometheus-barman-exporter",
    products: [
        .executable(name: "prometheus-barman-exporter", targets: ["prometheus-barman-exporter"]),
    ],
    targets: [
        .systemLibrary(
            name: "CMicroHTTPD",
            pkgConfig: "libmicrohttpd",
            providers: [.apt(["libmicrohttpd-dev", "libgnutls28-dev"])]
        ),
        // bcrypt password hashes for basic auth (libxcrypt).
        .systemLibrary(
            name: "CCrypt",
            pkgConfig: "libcrypt",
            providers: [.apt(["libcrypt-dev"])]
        ),
        .systemLibrary(
            name: "CYAML",
            pkgConfig: "yaml-0.1",
            providers: [.apt(["libyaml-dev"])]
        ),
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        // glibc calls Swift's Glibc module hides (pipe2, closefrom for posix_spawn, malloc tuning) and wait macros.
        .target(name: "CGlibcShims"),
        // A TLS response's records in one socket write (a GnuTLS transport under
        // libmicrohttpd's sessions).
        .target(name: "CGnuTLSShims", linkerSettings: [.linkedLibrary("gnutls")]),
        .target(name: "Platform", dependencies: ["CGlibcShims"], swiftSettings: strict),
        .target(name: "Exposition", dependencies: ["CZlib"], swiftSettings: strict),
        .target(name: "Configuration", dependencies: ["Platform", "CYAML"], swiftSettings: strict),
        .target(name: "Barman", dependencies: ["Platform", "Exposition", "Configuration"], swiftSettings: strict),
        .target(
            name: "Exporter",
            dependencies: ["Platform", "Exposition", "Configuration", "Barman", "CMicroHTTPD", "CGnuTLSShims", "CCrypt"],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "prometheus-barman-exporter",
            dependencies: ["Exporter", "Platform"],
            swiftSettings: strict
        ),
        // `make bench`: rendering cost per series (not shipped).
        .executableTarget(
            name: "exporter-bench",
            dependencies: ["Barman", "Exposition", "Platform"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ExporterTests",
            dependencies: ["Platform", "Exposition", "Configuration", "Barman", "Exporter"],
            // Read from disk by path (TestSupport), not bundled.
            exclude: ["Fixtures", "Golden"],
            swiftSettings: strict
        ),
    ],
    swiftLanguageModes: [.v6]
)
