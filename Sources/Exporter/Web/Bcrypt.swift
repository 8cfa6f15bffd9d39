#if canImport(Glibc)
import Glibc
#endif
import CCrypt

/// The libcrypt adapter: bcrypt through the system's libxcrypt, which reads `$2y$` (what
/// `htpasswd -B` writes), `$2b$` and `$2a$` hashes. This is the only file that sees libcrypt.
public enum Bcrypt {
    /// The hash of `password` with `hash`'s salt and cost, or nil when libcrypt refuses the hash
    /// (not bcrypt, malformed). Takes about 50-100 ms at cost 10, by design.
    static func rehash(_ password: [UInt8], like hash: String) -> [UInt8]? {
        // crypt_rn takes a C string: a password with a NUL byte cannot be bcrypt's input.
        guard !password.contains(0) else { return nil }
        var phrase = password.map { CChar(bitPattern: $0) }
        phrase.append(0)
        let data = UnsafeMutablePointer<crypt_data>.allocate(capacity: 1)
        defer {
            // The scratch area held the password: wipe it before it returns to malloc.
            UnsafeMutableRawPointer(data).initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<crypt_data>.size)
            data.deallocate()
        }
        UnsafeMutableRawPointer(data).initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<crypt_data>.size)
        guard let output = crypt_rn(phrase, hash, data, Int32(MemoryLayout<crypt_data>.size)) else { return nil }
        let bytes = Array(UnsafeBufferPointer(start: UnsafeRawPointer(output).assumingMemoryBound(to: UInt8.self), count: strlen(output)))
        return bytes.first == UInt8(ascii: "*") ? nil : bytes
    }

    /// Whether `password` matches `hash`; the final comparison takes the same time wherever the
    /// bytes differ.
    public static func verify(_ password: [UInt8], hash: String) -> Bool {
        guard let computed = rehash(password, like: hash) else { return false }
        return constantTimeEqual(computed, Array(hash.utf8))
    }

    /// Whether libcrypt accepts `hash` as a bcrypt hash (`$2y$`, `$2b$`, `$2a$`, cost 4-31).
    public static func isValidHash(_ hash: String) -> Bool {
        let prefixes = ["$2y$", "$2b$", "$2a$"]
        guard prefixes.contains(where: { hash.hasPrefix($0) }), hash.utf8.count == 60 else { return false }
        return rehash([], like: hash) != nil
    }

    /// A new bcrypt hash of `password` at `cost` with a random salt (`$2b$`), for the dummy
    /// compare of unknown users and for tests; nil if libcrypt cannot make one.
    public static func hash(_ password: [UInt8], cost: Int = 10) -> String? {
        var setting = [CChar](repeating: 0, count: Int(CRYPT_GENSALT_OUTPUT_SIZE))
        guard crypt_gensalt_rn("$2b$", UInt(cost), nil, 0, &setting, Int32(setting.count)) != nil else { return nil }
        let salt = String(decoding: setting.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return rehash(password, like: salt).map { String(decoding: $0, as: UTF8.self) }
    }
}

/// Equal bytes, compared in time that depends only on the lengths: no early exit at the first
/// difference that would tell an attacker how much of a guess was right.
public func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    var difference = UInt8(truncatingIfNeeded: a.count ^ b.count)
    difference |= a.count == b.count ? 0 : 1
    for index in 0..<max(a.count, b.count) {
        let x = index < a.count ? a[index] : 0
        let y = index < b.count ? b[index] : 0
        difference |= x ^ y
    }
    return difference == 0
}
