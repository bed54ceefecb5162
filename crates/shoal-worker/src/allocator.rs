//! How a worker process's memory allocator keeps freed memory.
//!
//! A worker's tasks allocate and free large blocks all the time (a pandas
//! column, an array's chunk, a shuffle's pieces). With glibc's defaults as
//! Dask's workers run them (`MALLOC_TRIM_THRESHOLD_=65536`, which also pins
//! the mmap threshold at 128 KiB), every block of 128 KiB or more is a
//! fresh mapping that the kernel zeroes page by page when it is first
//! written, and unmaps when it is freed: a `set_index` of 400 MB took a
//! million page faults and half again the time it takes when freed blocks
//! are kept for reuse (measured in one process: 6.4 s against 4.2 s).
//!
//! Keeping freed blocks costs resident memory that a worker near its limit
//! needs back, and a worker that looks full pauses with nothing to spill.
//! So the allocator runs in two modes:
//! - **roomy** (the start, and whenever resident memory is well below the
//!   limit): blocks up to [`ROOMY_MMAP_THRESHOLD`] come from the heaps and
//!   are reused there;
//! - **frugal** (from half the memory limit until memory falls below a
//!   third of it): every large block is its own mapping again, returned
//!   when freed, and the free pages the heaps hold are given back at once
//!   (`malloc_trim(0)`), as every later spill or pause does too.
//!
//! The top of each heap is returned past 64 KiB in both modes. Arrow's own
//! allocator is set to the system's for workers (`ARROW_DEFAULT_MEMORY_POOL`
//! in `shoal/worker/options.py`) so that one policy governs all of a task's
//! memory. Only where glibc's allocator is in use; only in a process that
//! is the worker's alone (a worker on threads of a user's process leaves
//! that process's allocator as it is).

/// Blocks up to this size come from the heaps in roomy mode.
pub const ROOMY_MMAP_THRESHOLD: usize = 32 << 20;

/// glibc's own mmap threshold, used in frugal mode.
pub const FRUGAL_MMAP_THRESHOLD: usize = 128 << 10;

/// Above this fraction of the memory limit, the allocator turns frugal...
const FRUGAL_ABOVE: f64 = 0.5;
/// ...and below this one, roomy again.
const ROOMY_BELOW: f64 = 1.0 / 3.0;

/// The allocator's mode, as the memory monitor last set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Roomy,
    Frugal,
}

impl Mode {
    /// The mode for `rss` resident bytes under a `limit` (0: none), coming
    /// from `self`: the two thresholds apart, so that memory hovering
    /// around one does not switch the mode at every measurement.
    pub fn next(self, rss: u64, limit: u64) -> Mode {
        if limit == 0 {
            return Mode::Roomy;
        }
        let fraction = rss as f64 / limit as f64;
        match self {
            Mode::Roomy if fraction > FRUGAL_ABOVE => Mode::Frugal,
            Mode::Frugal if fraction < ROOMY_BELOW => Mode::Roomy,
            same => same,
        }
    }

    /// Tells the allocator; turning frugal also gives back the free pages
    /// the heaps hold.
    pub fn apply(self) {
        let threshold = match self {
            Mode::Roomy => ROOMY_MMAP_THRESHOLD,
            Mode::Frugal => FRUGAL_MMAP_THRESHOLD,
        };
        set_thresholds(threshold);
        if self == Mode::Frugal {
            give_free_pages_back();
        }
    }
}

fn set_thresholds(mmap_threshold: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's tunables.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 * 1024);
        libc::mallopt(
            libc::M_MMAP_THRESHOLD,
            i32::try_from(mmap_threshold).unwrap_or(i32::MAX),
        );
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = mmap_threshold;
}

/// Gives the system the free pages inside the allocator's heaps, not only
/// at their tops (`malloc_trim(0)`): after a burst of pandas work the
/// executor threads' heaps are full of holes that the trim threshold never
/// reaches, and a worker short of memory would stay paused with nothing to
/// spill.
pub fn give_free_pages_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns unused memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frugal_from_half_the_limit_until_below_a_third() {
        let limit = 900;
        let mut mode = Mode::Roomy;
        let mut seen = Vec::new();
        for rss in [100, 400, 460, 500, 400, 310, 290, 400] {
            mode = mode.next(rss, limit);
            seen.push(mode);
        }
        use Mode::*;
        assert_eq!(
            seen,
            [Roomy, Roomy, Frugal, Frugal, Frugal, Frugal, Roomy, Roomy]
        );
    }

    #[test]
    fn without_a_limit_always_roomy() {
        assert_eq!(Mode::Frugal.next(u64::MAX, 0), Mode::Roomy);
    }
}
