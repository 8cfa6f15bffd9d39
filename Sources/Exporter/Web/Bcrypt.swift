#if canImport(Glibc)
import Glibc
#endif
import CCrypt
import Synchronization
import Platform
import Exposition
import Configuration
import Barman

/// The libcrypt adapter: bcrypt through the system's libxcrypt, which reads `$2y$` (what
/// `htpasswd -B` writes), `$2b$` and `$2a$` hashes. This is the only file that sees libcrypt.
public enum Bcrypt {
    /// The hash of `password` with `hash`'s salt and cost, or nil when libcrypt refuses the hash
    /// (not bcrypt, malformed). Takes about 50-100 ms at cost 10, by design.
    static func rehash(_ password: [UInt8], like hash: String) -> [UInt8]? {
        computations.add(1, ordering: .relaxed)
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

    /// Costs accepted in a web config: `htpasswd -B`'s range. Each step doubles the time; cost
    /// 17 is already about 10 s a check, and cost 31 (bcrypt's limit) would keep the HTTP
    /// thread busy for days at every load and login (found by the fuzzer).
    public static let costs = 4...17

    /// Whether `hash` is a well-formed bcrypt hash (`$2y$`, `$2b$` or `$2a$`, a cost in `costs`,
    /// 53 characters of bcrypt's base64), checked without hashing anything.
    public static func isValidHash(_ hash: String) -> Bool {
        let bytes = Array(hash.utf8)
        guard bytes.count == 60, bytes[0] == UInt8(ascii: "$"), bytes[1] == UInt8(ascii: "2"),
              [UInt8(ascii: "a"), UInt8(ascii: "b"), UInt8(ascii: "y")].contains(bytes[2]),
              bytes[3] == UInt8(ascii: "$"), bytes[6] == UInt8(ascii: "$"),
              let cost = Int(String(decoding: bytes[4..<6], as: UTF8.self)), costs.contains(cost) else { return false }
        let alphabet = Array("./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789".utf8)
        return bytes[7...].allSatisfy { alphabet.contains($0) }
    }

    /// The cost of a valid hash (`$2y$10$...` -> 10).
    static func cost(of hash: String) -> Int? {
        isValidHash(hash) ? Int(String(decoding: Array(hash.utf8)[4..<6], as: UTF8.self)) : nil
    }

    /// bcrypt computations so far, in this process (tests: nothing is hashed at load).
    static let computations = Atomic<Int>(0)

    /// A well-formed hash of `cost` that no password matches (its hash part is all zero bits,
    /// which bcrypt does not produce in practice), made without hashing anything: checking an
    /// unknown user's password against it costs what a known user's check costs.
    static func dummyHash(cost: Int) -> String {
        let cost = min(max(cost, costs.lowerBound), costs.upperBound)
        return "$2b$" + (cost < 10 ? "0" : "") + String(cost) + "$" + String(repeating: ".", count: 53)
    }

    /// A new bcrypt hash of `password` at `cost` with a random salt (`$2b$`), for tests; nil if
    /// libcrypt cannot make one.
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
