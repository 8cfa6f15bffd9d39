#if canImport(Glibc)
import Glibc
#endif

/// The limit on open descriptors (RLIMIT_NOFILE), which every connection, barman pipe and
/// catalog read counts against.
public enum OpenFiles {
    /// The soft limit now; nil if it cannot be read, `Int.max` when unlimited.
    public static func softLimit() -> Int? {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return nil }
        return limit.rlim_cur == rlim_t.max ? Int.max : Int(clamping: limit.rlim_cur)
    }

    /// Raises the soft limit to the hard one (at most `cap`), as Go programs do at start: the
    /// soft limit of 1024 that many systems set is a compatibility default for select(), which
    /// the exporter does not use. Best effort: the soft limit stays as it was if refused.
    @discardableResult
    public static func raiseSoftLimit(cap: Int = 65536) -> Int? {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return nil }
        let target = limit.rlim_max == rlim_t.max ? rlim_t(cap) : min(limit.rlim_max, rlim_t(cap))
        if limit.rlim_cur != rlim_t.max && limit.rlim_cur < target {
            var raised = limit
            raised.rlim_cur = target
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) != 0 { return softLimit() }
        }
        return softLimit()
    }
}

extension SystemError {
    /// The process or the system has no descriptor left (EMFILE, ENFILE).
    public var isOutOfDescriptors: Bool { code == EMFILE || code == ENFILE }
    /// This user may not (EACCES, EPERM).
    public var isPermissionDenied: Bool { code == EACCES || code == EPERM }
}
