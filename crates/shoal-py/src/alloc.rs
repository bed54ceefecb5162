//! The engine's memory allocator: small blocks from mimalloc, large ones
//! from the system's.
//!
//! The engine makes and frees small blocks all the time (a message, a task's
//! record, a key): with glibc's allocator that churn took about a quarter of
//! the scheduler thread's time (free-list consolidation above all), where
//! mimalloc's per-thread pages serve it cheaply.
//!
//! Large blocks (data frames received from peers, results) stay with the
//! system allocator, where a worker's memory policy governs them (see
//! `shoal_worker::allocator`: when freed memory is kept or given back).
//!
//! The choice is made from the block's size alone, which Rust passes again
//! when the block is freed, so every block goes back to the allocator that
//! made it.

use std::alloc::{GlobalAlloc, Layout, System};

use mimalloc::MiMalloc;

/// Blocks up to this size come from mimalloc.
const SMALL: usize = 64 * 1024;

pub struct EngineAlloc;

fn small(layout: &Layout) -> bool {
    layout.size() <= SMALL
}

// SAFETY: every call goes to one of two sound allocators, chosen from the
// layout's size; `dealloc` and `realloc` receive the layout the block was
// allocated with (GlobalAlloc's contract), so a block is always freed or
// resized by the allocator that made it. A `realloc` crossing the threshold
// moves the block between them with a copy of the smaller size.
unsafe impl GlobalAlloc for EngineAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if small(&layout) {
            unsafe { MiMalloc.alloc(layout) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if small(&layout) {
            unsafe { MiMalloc.alloc_zeroed(layout) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if small(&layout) {
            unsafe { MiMalloc.dealloc(ptr, layout) }
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let was_small = small(&layout);
        // SAFETY: the caller guarantees `new_size`, rounded up to the
        // alignment, does not overflow `isize`.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (was_small, small(&new_layout)) {
            (true, true) => unsafe { MiMalloc.realloc(ptr, layout, new_size) },
            (false, false) => unsafe { System.realloc(ptr, layout, new_size) },
            _ => {
                let new = unsafe { self.alloc(new_layout) };
                if !new.is_null() {
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                new
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn blocks_move_between_allocators_intact() {
        // Grows from mimalloc's side to the system's and back, keeping its
        // contents (this crate's tests run under `EngineAlloc`).
        let mut v: Vec<u8> = (0..=255).collect();
        for _ in 0..12 {
            let more = v.clone();
            v.extend_from_slice(&more);
        }
        assert_eq!(v.len(), 256 << 12);
        assert!(v.chunks(256).all(|c| c.iter().copied().eq(0..=255)));
        v.truncate(300);
        v.shrink_to_fit();
        assert!(v[..256].iter().copied().eq(0..=255));
    }
}
