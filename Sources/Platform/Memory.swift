import CGlibcShims

/// glibc malloc tuning for a long-running process that parses a few MB of barman output per
/// refresh but keeps much less: fewer arenas, and freed memory handed back after big work.
public enum Memory {
    /// Two arenas: the HTTP thread and Swift's pool threads then share free memory instead of
    /// each arena holding its own.
    public static func limitArenas() {
        _ = cgs_limit_malloc_arenas(2)
        // A fixed threshold keeps large buffers (bodies, barman output) in their own mappings,
        // returned to the kernel when freed; glibc's default threshold grows after the first
        // such free and then keeps them on the heap.
        _ = cgs_set_mmap_threshold(128 * 1024)
    }

    /// Returns freed heap pages to the kernel (after decoding barman output or rendering a body).
    public static func releaseFreeMemory() {
        _ = cgs_release_free_memory()
    }
}
