import CMicroHTTPD
import Platform
import Exposition
import Configuration
import Barman

/// The result of loading TLS material the way the server will (GnuTLS).
public enum TLSCredentials {
    public enum Check: Equatable {
        case usable(notAfter: Double?)
        case badCertificateOrKey(String)
        case badClientCA(String)
    }

    /// Whether `certificate` and `key` (PEM) form a usable pair and `clientCA` holds certificates.
    public static func check(certificate: [UInt8], key: [UInt8], clientCA: [UInt8]?) -> Check {
        func cString(_ bytes: [UInt8]) -> [CChar] { bytes.map { CChar(bitPattern: $0) } + [0] }
        var keyString = cString(key)
        defer { for index in keyString.indices { keyString[index] = 0 } }
        var reason = [CChar](repeating: 0, count: 512)
        var notAfter: Int64 = -1
        let result: Int32 = cString(certificate).withUnsafeBufferPointer { certificateString in
            keyString.withUnsafeBufferPointer { keyPointer in
                if let clientCA {
                    return cString(clientCA).withUnsafeBufferPointer { caString in
                        cmhd_check_tls_material(certificateString.baseAddress, keyPointer.baseAddress, caString.baseAddress, &reason, reason.count, &notAfter)
                    }
                }
                return cmhd_check_tls_material(certificateString.baseAddress, keyPointer.baseAddress, nil, &reason, reason.count, &notAfter)
            }
        }
        let text = String(decoding: reason.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        switch result {
        case 0: return .usable(notAfter: notAfter >= 0 ? Double(notAfter) : nil)
        case -2: return .badClientCA(text)
        default: return .badCertificateOrKey(text)
        }
    }
}
