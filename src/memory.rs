//! Keeping the resident footprint small. Measured with `benches/load` (VmRSS/VmHWM); see the
//! README's Performance section. (Limiting glibc's malloc arenas to two was tried: the peak
//! with 16 dashboard loads at once moved by 140 KiB of 7.6 MiB, within the noise, so the
//! allocator is left alone.)

/// A tracker is I/O-bound: past a few cores, more worker threads only add stacks, arenas
/// and contention. One per core, at most four.
pub fn worker_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |cores| cores.get())
        .min(4)
}
