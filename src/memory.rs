//! Keeping the resident footprint small. Measured with `benches/load` (VmRSS/VmHWM); see the
//! README's Performance section. (Limiting glibc's malloc arenas to two was tried: the peak
//! with 16 dashboard loads at once moved by 140 KiB of 7.6 MiB, within the noise.)

/// Blocks from this size up get their own mapping, returned to the system when freed.
const OWN_MAPPING_FROM: i32 = 64 * 1024;
/// Free memory at the top of the heap beyond this is returned at once.
const TRIM_ABOVE: i32 = 128 * 1024;

/// Tunes glibc's allocator for a small footprint; call before anything allocates much.
///
/// The large blocks of this program are few and short-lived or rebuilt now and then: a
/// dashboard page being written (200 KB for a year of a large site), a pages table (2 MB
/// for 100,000 paths) and its sort orders, the registry's arrays as they grow. By default
/// glibc raises its mmap threshold to the size of each mapped block freed, so after the
/// first such block all later ones come from the heap, where a block freed between two
/// live ones stays resident for good: with a large site the heap crept up by a megabyte
/// over a few dashboard loads. A fixed threshold keeps every large block in its own
/// mapping (one mmap and munmap each, microseconds against the milliseconds the work
/// takes), so a freed one leaves nothing behind.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets the allocator's parameters; called once at start-up, before
    // the runtime's threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, OWN_MAPPING_FROM);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_ABOVE);
    }
}

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
