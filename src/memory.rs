//! Keeping the resident footprint small. Measured with `benches/load` (VmRSS/VmHWM); see the
//! README's Performance section. (Limiting glibc's malloc arenas to two was tried: the peak
//! with 16 dashboard loads at once moved by 140 KiB of 7.6 MiB, within the noise, so the
//! allocator is left alone.)

/// Gives the memory the allocator keeps free back to the system. glibc's malloc keeps what
/// it freed in its arenas for reuse (it returns only the top of the heap, and only past a
/// threshold): after work that allocated many small objects at once — loading a hundred
/// thousand paths, building the pages table of a large site — that memory would stay
/// resident although nothing uses it. Called after such work, never on a hot path (it walks
/// the arenas).
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only inspects and releases the allocator's free lists; it takes
    // the allocator's own locks and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A tracker is I/O-bound: past a few cores, more worker threads only add stacks, arenas
/// and contention. One per core, at most four.
pub fn worker_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |cores| cores.get())
        .min(4)
}
