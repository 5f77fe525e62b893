//! How the daemon's allocator hands memory back.
//!
//! glibc gives each thread that allocates under contention an arena of its
//! own (up to eight per core) and keeps what an arena once held. A snapshot
//! clones the store and compacts the write-ahead log on the blocking threads,
//! so every arena those threads touched kept a snapshot's worth of pages:
//! 106-142 MB resident after the 64-client run of benches/vs-etcd.sh, against
//! 42-49 MB with one arena and large blocks mapped on their own, at the same
//! throughput (measured 2026-12-01, see the README's memory figures).

/// Allocations at least this large get pages of their own, returned to the
/// system when freed (glibc otherwise raises its threshold as large blocks
/// are freed, up to 32 MiB, and keeps them in the heap).
const MMAP_THRESHOLD: i32 = 256 * 1024;

/// One arena and a fixed mapping threshold, unless the operator set glibc's
/// own variables (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`), which win.
/// Call before any thread starts.
pub fn limit_retention() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let unset = |name: &str| std::env::var_os(name).is_none();
        // SAFETY: mallopt only changes allocator parameters; it is called
        // before the runtime starts any thread.
        unsafe {
            if unset("MALLOC_ARENA_MAX") {
                libc::mallopt(libc::M_ARENA_MAX, 1);
            }
            if unset("MALLOC_MMAP_THRESHOLD_") {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            }
        }
    }
}
