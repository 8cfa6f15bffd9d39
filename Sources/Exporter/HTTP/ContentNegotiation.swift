import Platform
import Exposition
import Configuration
import Barman

/// Chooses the exposition format and encoding from a scraper's Accept and Accept-Encoding.
public enum ContentNegotiation {
    /// OpenMetrics 1.0.0 when the client ranks it above the text format (Prometheus does),
    /// otherwise text 0.0.4, the format every scraper understands.
    public static func format(accept: String?) -> ExpositionFormat {
        guard let accept else { return .text }
        var openMetricsQuality = 0.0
        var textQuality = 0.0
        for range in mediaRanges(accept) {
            switch range.type {
            case "application/openmetrics-text":
                let version = range.parameters["version"]
                if version == nil || version == "1.0.0" { openMetricsQuality = max(openMetricsQuality, range.quality) }
            case "text/plain", "text/*", "*/*":
                textQuality = max(textQuality, range.quality)
            default:
                break
            }
        }
        return openMetricsQuality > 0 && openMetricsQuality > textQuality ? .openMetrics : .text
    }

    /// Whether the client takes gzip (named with a non-zero quality).
    public static func acceptsGzip(_ acceptEncoding: String?) -> Bool {
        guard let acceptEncoding else { return false }
        return mediaRanges(acceptEncoding).contains { ($0.type == "gzip" || $0.type == "x-gzip") && $0.quality > 0 }
    }

    struct MediaRange {
        var type: String
        var parameters: [String: String]
        var quality: Double
    }

    /// `type;key=value;q=0.5, ...`: lower-cased types, parameters without quotes, q default 1.
    static func mediaRanges(_ header: String) -> [MediaRange] {
        header.split(separator: ",").map { element in
            let parts = element.split(separator: ";").map { $0.trimmingSpaces() }
            var parameters: [String: String] = [:]
            for parameter in parts.dropFirst() {
                guard let equals = parameter.firstIndex(of: "=") else { continue }
                let key = parameter[..<equals].trimmingSpaces().lowercased()
                var value = parameter[parameter.index(after: equals)...].trimmingSpaces()
                if value.count >= 2, value.first == "\"", value.last == "\"" { value = String(value.dropFirst().dropLast()) }
                parameters[key] = value
            }
            let quality = parameters["q"].flatMap(Double.init).map { min(max($0, 0), 1) } ?? 1
            return MediaRange(type: (parts.first ?? "").lowercased(), parameters: parameters, quality: quality)
        }
    }
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        var slice = Substring(self)
        while let first = slice.first, first == " " || first == "\t" { slice.removeFirst() }
        while let last = slice.last, last == " " || last == "\t" { slice.removeLast() }
        return String(slice)
    }
}
