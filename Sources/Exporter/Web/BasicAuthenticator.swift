import Synchronization
import Platform
import Exposition
import Configuration
import Barman

/// Checks basic-auth credentials against the web config's bcrypt hashes, remembering the ones
/// verified so that a scraper sending the same good password every 15 s pays bcrypt (about
/// 70 ms at cost 10) once, not at every scrape.
///
/// Like exporter-toolkit: an unknown user is checked against a dummy hash of the highest cost
/// among the users, so answers take as long as for a known user with a wrong password and do not
/// reveal which users exist (give every user the same cost: a lower one shows in the time).
/// Nothing is hashed when the web config loads. User names are compared by their bytes.
/// Wrong passwords are not remembered: each costs a bcrypt, which is what makes guessing slow.
public final class BasicAuthenticator: Sendable {
    private let hashes: [ExactString: String]
    private let dummyHash: String
    /// Per user, the passwords verified since this web config was loaded (a reload starts
    /// empty). Bounded: cleared when it reaches `cacheLimit` entries.
    private let verified = Mutex<(passwords: [ExactString: [[UInt8]]], count: Int)>(([:], 0))
    static let cacheLimit = 100
    /// How many bcrypt computations ran (for tests: a remembered password costs none).
    private let hashesComputed = Atomic<Int>(0)

    /// `users`: user name -> bcrypt hash, already validated.
    public init(users: [String: String]) {
        hashes = Dictionary(users.map { (ExactString($0.key), $0.value) }) { first, _ in first }
        let cost = users.values.compactMap(Bcrypt.cost(of:)).max() ?? 10
        dummyHash = Bcrypt.dummyHash(cost: cost)
    }

    public var bcryptRuns: Int { hashesComputed.load(ordering: .relaxed) }

    /// Whether `user`'s `password` was verified already: no bcrypt needed.
    public func isRemembered(user: ExactString, password: [UInt8]) -> Bool {
        verified.withLock { cache in
            // Every remembered password of the user is compared in full, whichever matches.
            var found = false
            for remembered in cache.passwords[user] ?? [] where constantTimeEqual(remembered, password) { found = true }
            return found
        }
    }

    /// Whether `user` with `password` may scrape: remembered, or checked with bcrypt now.
    public func accepts(user: ExactString, password: [UInt8]) -> Bool {
        if isRemembered(user: user, password: password) { return true }
        hashesComputed.add(1, ordering: .relaxed)
        guard let hash = hashes[user] else {
            _ = Bcrypt.verify(password, hash: dummyHash)
            return false
        }
        guard Bcrypt.verify(password, hash: hash) else { return false }
        verified.withLock { cache in
            if cache.count >= Self.cacheLimit { cache = ([:], 0) }
            cache.passwords[user, default: []].append(password)
            cache.count += 1
        }
        return true
    }

    /// The cost of the hash unknown users are checked against (the highest of the users').
    var dummyCost: Int? { Bcrypt.cost(of: dummyHash) }
    /// Whether that hash is the constant `Bcrypt.dummyHash` (no random salt: nothing hashed).
    var dummyHashIsMadeWithoutHashing: Bool { dummyCost.map { dummyHash == Bcrypt.dummyHash(cost: $0) } ?? false }
}
