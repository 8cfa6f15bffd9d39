// swift-tools-version:6.0
import PackageDescription

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
        // All of the exporter's logic lives in this library so the tests exercise it directly.
        .target(
            name: "Exporter",
            dependencies: ["CMicroHTTPD", "CYAML", "CZlib", "CCrypt", "CGlibcShims"],
            swiftSettings: [.unsafeFlags(["-warnings-as-errors"])]
        ),
        .executableTarget(
            name: "prometheus-barman-exporter",
            dependencies: ["Exporter"],
            swiftSettings: [.unsafeFlags(["-warnings-as-errors"])]
        ),
        // `make bench`: rendering cost per series (not shipped).
        .executableTarget(
            name: "exporter-bench",
            dependencies: ["Exporter"],
            swiftSettings: [.unsafeFlags(["-warnings-as-errors"])]
        ),
        .testTarget(
            name: "ExporterTests",
            dependencies: ["Exporter"],
            // Read from disk by path (TestSupport), not bundled.
            exclude: ["Fixtures", "Golden"],
            swiftSettings: [.unsafeFlags(["-warnings-as-errors"])]
        ),
    ],
    swiftLanguageModes: [.v6]
)
