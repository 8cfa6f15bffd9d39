@testable import Platform
import Testing

/// The layering the targets hold (Package.swift), checked where SwiftPM cannot: C modules and
/// Glibc are imported only by the system-call layer (Platform) and by one adapter file per C
/// library, and no target imports one above it.
@Suite("Layering")
struct LayeringTests {
    /// Which files may import each C module (a path prefix: a target's directory, or one file).
    static let cImporters: [String: [String]] = [
        "Glibc": ["Sources/Platform/", "Sources/Exporter/HTTP/HTTPServer.swift", "Sources/Exporter/Web/Bcrypt.swift"],
        "CGlibcShims": ["Sources/Platform/"],
        "CGnuTLSShims": ["Sources/Exporter/HTTP/HTTPServer.swift"],
        "CMicroHTTPD": ["Sources/Exporter/HTTP/HTTPServer.swift", "Sources/Exporter/HTTP/TLSCredentials.swift"],
        "CYAML": ["Sources/Configuration/YAMLFlatMap.swift"],
        "CZlib": ["Sources/Exposition/Gzip.swift"],
        "CCrypt": ["Sources/Exporter/Web/Bcrypt.swift"],
    ]

    /// The Swift targets each target may import (those below it).
    static let targetImports: [String: Set<String>] = [
        "Platform": [],
        "Exposition": [],
        "Configuration": ["Platform"],
        "Barman": ["Platform", "Exposition", "Configuration"],
        "Exporter": ["Platform", "Exposition", "Configuration", "Barman"],
        "prometheus-barman-exporter": ["Platform", "Exporter"],
        "exporter-bench": ["Platform", "Exposition", "Barman"],
    ]

    static func swiftFiles(under directory: String) -> [String] {
        TestSupport.names(in: TestSupport.packageRoot + "/" + directory).flatMap { name -> [String] in
            let path = directory + "/" + name
            if name.hasSuffix(".swift") { return [path] }
            return TestSupport.names(in: TestSupport.packageRoot + "/" + path).isEmpty ? [] : swiftFiles(under: path)
        }
    }

    static func imports(of path: String) throws -> [String] {
        try TestSupport.text(path).split(separator: "\n").compactMap { line in
            let words = line.split(separator: " ")
            guard let index = words.firstIndex(of: "import"), index == words.startIndex || words[words.startIndex] == "@testable",
                  index + 1 < words.endIndex else { return nil }
            return String(words[index + 1])
        }
    }

    /// The standard library's string searching by strings (`firstRange(of:)`, `replacing(_:with:)`,
    /// `ranges(of:)`, `split(separator: "ab")`) lives in _StringProcessing, whose regex engine then
    /// comes into the statically linked binary whole: 1.7 MB more for one `split(separator: ", ")`.
    @Test func theBinaryDoesNotPullInTheRegexEngine() throws {
        let patterns = [".firstRange(of:", ".replacing(", ".ranges(of:", ".wholeMatch(", "Regex<", "#/"]
        for file in Self.swiftFiles(under: "Sources") {
            let text = try TestSupport.text(file)
            for pattern in patterns {
                #expect(!text.contains(pattern), "\(file) uses \(pattern)")
            }
            // split with a separator of two or more characters.
            for line in text.split(separator: "\n") where line.contains("split(separator: \"") {
                let afterQuote = line.split(separator: "\"", maxSplits: 2, omittingEmptySubsequences: false)
                let literal = afterQuote.count < 2 ? "" : afterQuote[1]
                #expect(literal.count == 1 || (literal.count == 2 && literal.first == "\\"), "\(file): \(line)")
            }
        }
    }

    @Test func cModulesAndGlibcAreImportedOnlyByPlatformAndTheAdapters() throws {
        let files = Self.swiftFiles(under: "Sources")
        #expect(files.count > 40)
        var checked = 0
        for file in files {
            for module in try Self.imports(of: file) {
                guard let allowed = Self.cImporters[module] else { continue }
                checked += 1
                #expect(allowed.contains { file.hasPrefix($0) }, "\(file) imports \(module)")
            }
        }
        #expect(checked > 10)
    }

    @Test func noTargetImportsOneAboveIt() throws {
        for (target, allowed) in Self.targetImports {
            let files = Self.swiftFiles(under: "Sources/" + target)
            #expect(!files.isEmpty, "\(target) has no sources")
            for file in files {
                for module in try Self.imports(of: file) where Self.targetImports[module] != nil {
                    #expect(allowed.contains(module), "\(file) (\(target)) imports \(module)")
                }
            }
        }
    }
}
