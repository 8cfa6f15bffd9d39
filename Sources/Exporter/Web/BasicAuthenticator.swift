import Synchronization
import Platform
import Exposition
import Configuration
import Barman

/// Checks basic-auth credentials against the web config's bcrypt hashes, remembering the ones
/// verified so that a scraper sending the same good password every 15 s pays bcrypt (about
/// 70 ms at cost 10, on the HTTP thread) once, not at every scrape.
///
/// Like exporter-toolkit: an unknown user is checked against a dummy hash, so answers take as
/// long as for a known user with a wrong password and do not reveal which users exist. Wrong
/// passwords are not remembered: each costs a bcrypt, which is what makes guessing slow.
public final class BasicAuthenticator: Sendable {
    private let hashes: [String: String]
    private let dummyHash: String
    /// Per user, the passwords verified since this web config was loaded (a reload starts
    /// empty). Bounded: cleared when it reaches `cacheLimit` entries.
    private let verified = Mutex<(passwords: [String: [[UInt8]]], count: Int)>(([:], 0))
    static let cacheLimit = 100
    /// How many bcrypt computations ran (for tests: a remembered password costs none).
    private let hashesComputed = Atomic<Int>(0)

    /// `users`: user name -> bcrypt hash, already validated.
    public init(users: [String: String]) {
        hashes = users
        // Same cost as a typical user's hash, so the time does not give unknown users away.
        let sample = users.values.sorted().first ?? ""
        let cost = Bcrypt.cost(of: sample) ?? 10
        // Failing that (libcrypt out of memory), a real user's hash: its result is ignored.
        dummyHash = Bcrypt.hash(Array("dummy password for unknown users".utf8), cost: cost) ?? sample
    }

    public var bcryptRuns: Int { hashesComputed.load(ordering: .relaxed) }

    /// Whether `user` with `password` may scrape.
    public func accepts(user: String, password: [UInt8]) -> Bool {
        let known = verified.withLock { cache in
            // Every remembered password of the user is compared in full, whichever matches.
            (cache.passwords[user] ?? []).map { constantTimeEqual($0, password) }.contains(true)
        }
        if known { return true }
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
}
