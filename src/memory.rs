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

/// Asks for transparent huge pages under a large array that is read at random: the visitor
/// slots are taken in a secret, scattered order, so with millions of them nearly every
/// registration missed the TLB, and in a virtual machine a missed TLB is a two-level page
/// walk. Only for arrays of [`HUGE_PAGES_FROM`] and more: a huge page is resident whole
/// once touched, and the default array (1.5 MiB) is smaller than one. Where the kernel
/// only gives huge pages on request (`madvise` mode) this asks; where it never does, the
/// call changes nothing.
pub fn huge_pages_for<T>(array: &[T]) {
    let bytes = std::mem::size_of_val(array);
    if bytes < HUGE_PAGES_FROM {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // madvise wants a page-aligned start: the first whole page of the array.
        let start = array.as_ptr() as usize;
        let aligned = start.next_multiple_of(PAGE);
        let length = (start + bytes).saturating_sub(aligned) / PAGE * PAGE;
        // SAFETY: the range lies inside `array`'s own allocation, and MADV_HUGEPAGE only
        // changes how the kernel backs it, never its contents.
        unsafe {
            libc::madvise(aligned as *mut libc::c_void, length, libc::MADV_HUGEPAGE);
        }
    }
}

const PAGE: usize = 4096;
pub const HUGE_PAGES_FROM: usize = 8 << 20;

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
