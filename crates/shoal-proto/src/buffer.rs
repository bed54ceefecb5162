//! Receive buffers for values: memory that a frame's bytes are read into
//! once, by the kernel, and that Python later adopts as it is.
//!
//! What receiving a large value costs on one host is mostly not the copy out
//! of the socket but fresh memory: the kernel must find and zero a page for
//! every 4 KiB a new buffer is written to (about 1 GB/s on a virtual machine,
//! a third of what loopback TCP carries). So a helper thread makes a
//! buffer's pages (`madvise(MADV_POPULATE_WRITE)`, a MiB at a time) ahead
//! of the bytes while the connection's thread copies them in.
//!
//! A buffer's first allocation is as large as its frame up to
//! [`FIRST_ALLOCATION`] (bounded: never sized by a length a peer announced
//! alone); past it, the buffer doubles as bytes arrive.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::frame::FrameError;

/// The most memory a frame gets before any of its bytes arrived.
pub const FIRST_ALLOCATION: usize = 64 << 20;

/// The least spare capacity worth a helper thread to back with pages.
const HELPED: usize = 1 << 20;

/// How many bytes of pages the helper makes per call, between looks at
/// whether it should stop.
const HELPER_STEP: usize = 1 << 20;

/// A thread that makes the pages of a buffer's spare capacity, front to
/// back, while the connection's thread copies bytes into the pages it made.
/// Making a page (finding it, zeroing it, mapping it) costs more than the
/// copy into it, so on a machine with a core to spare this takes most of
/// the per-byte work off the receiving thread. Pages only: the helper never
/// reads or writes the buffer's bytes.
///
/// Dropping a `Helper` returns once the helper no longer touches the buffer
/// (at most one step of [`HELPER_STEP`] bytes later), so a read that is
/// cancelled (a timeout) frees its buffer safely.
pub(crate) struct Helper {
    shared: Arc<HelperState>,
}

#[derive(Default)]
struct HelperState {
    stop: AtomicBool,
    /// Held while a step runs.
    busy: Mutex<()>,
}

impl Helper {
    /// Starts backing `buf`'s spare capacity with pages, if it is large
    /// enough to be worth it. The buffer must not move or be freed while
    /// the `Helper` lives.
    fn start(buf: &mut Vec<u8>) -> Option<Helper> {
        let spare = buf.spare_capacity_mut();
        if spare.len() < HELPED {
            return None;
        }
        // SAFETY: the spare capacity is allocated, uninitialised memory the
        // buffer owns; the caller keeps it in place while the helper lives.
        unsafe { Helper::start_at(spare.as_mut_ptr() as usize, spare.len()) }
    }

    /// Starts backing `[start, start + len)` with pages.
    ///
    /// # Safety
    /// The range must be memory this process owns, whose contents nobody
    /// relies on yet, and stay mapped until the `Helper` is dropped.
    pub(crate) unsafe fn start_at(start: usize, len: usize) -> Option<Helper> {
        let shared = Arc::new(HelperState::default());
        let state = shared.clone();
        // Outside a runtime the pages are made by faults instead.
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        // Detached: dropping the `Helper` is what waits for it.
        drop(runtime.spawn_blocking(move || {
            let mut at = 0;
            while at < len {
                let _step = state.busy.lock().unwrap_or_else(|e| e.into_inner());
                if state.stop.load(Ordering::Acquire) {
                    return;
                }
                let step = HELPER_STEP.min(len - at);
                make_pages(start + at, step);
                at += step;
            }
        }));
        Some(Helper { shared })
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        // Waits for a step under way: no step starts after this.
        drop(self.shared.busy.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// Backs the whole pages within `[start, start + len)` with memory, as a
/// write to each would. Advice only: where the kernel does not know it,
/// pages are made by faults as the bytes land.
fn make_pages(start: usize, len: usize) {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let first = start.next_multiple_of(PAGE);
        let last = (start + len) / PAGE * PAGE;
        if first < last {
            // SAFETY: the caller owns [start, start + len) as allocated,
            // uninitialised capacity that stays allocated until this call
            // returned (see `Helper::start`); MADV_POPULATE_WRITE only backs
            // those pages with (zeroed) memory and changes no byte.
            unsafe {
                libc::madvise(
                    first as *mut libc::c_void,
                    last - first,
                    libc::MADV_POPULATE_WRITE,
                );
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (start, len);
}

/// A buffer being filled with a value of `len` bytes, in steps: it grows
/// as bytes arrive (never by `len` alone past [`FIRST_ALLOCATION`]), and a
/// [`Helper`] makes the pages of its spare capacity ahead of them.
struct Filling {
    // Fields drop in order: the helper is gone before the buffer is freed,
    // also when a read is dropped half way.
    helper: Option<Helper>,
    out: Vec<u8>,
    len: usize,
}

impl Filling {
    fn new(len: usize) -> Filling {
        let mut f = Filling {
            helper: None,
            out: Vec::with_capacity(len.min(FIRST_ALLOCATION)),
            len,
        };
        f.helper = Helper::start(&mut f.out);
        f
    }

    /// How many bytes the next step may write at the end of `out` (zero
    /// once the value is whole), growing the buffer first if it is full.
    fn room(&mut self) -> usize {
        if self.out.len() == self.out.capacity() && self.out.len() < self.len {
            // The buffer may move: the helper must be done with it first.
            self.helper = None;
            // Double what arrived, never past `len`.
            let more = (self.len - self.out.len()).min(self.out.len());
            self.out.reserve_exact(more);
            self.helper = Helper::start(&mut self.out);
        }
        (self.len - self.out.len()).min(self.out.capacity() - self.out.len())
    }

    fn done(mut self) -> Bytes {
        self.helper = None;
        Bytes::from(std::mem::take(&mut self.out))
    }
}

/// Reads exactly `len` bytes from `r` into one buffer.
pub async fn read_exactly<R>(r: &mut R, len: usize) -> Result<Bytes, FrameError>
where
    R: AsyncRead + Unpin,
{
    let mut rx = Filling::new(len);
    loop {
        let want = rx.room();
        if want == 0 {
            return Ok(rx.done());
        }
        let got = (&mut *r).take(want as u64).read_buf(&mut rx.out).await?;
        if got == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
}

/// Fills one buffer of `len` bytes by calling `fill` with the spare room
/// at its end and how many bytes it holds already; `fill` writes a prefix
/// of that room and says how long (zero is an error: the source ended).
/// Blocking: for a source that is not a socket (another process's memory).
///
/// # Safety
/// `fill` must have written every byte it says it wrote (the buffer's
/// length is set from its answer, so those bytes are read afterwards).
pub(crate) unsafe fn fill_exactly<F>(len: usize, mut fill: F) -> std::io::Result<Bytes>
where
    F: FnMut(&mut [std::mem::MaybeUninit<u8>], usize) -> std::io::Result<usize>,
{
    let mut rx = Filling::new(len);
    loop {
        let want = rx.room();
        if want == 0 {
            return Ok(rx.done());
        }
        let at = rx.out.len();
        let got = fill(&mut rx.out.spare_capacity_mut()[..want], at)?;
        if got == 0 || got > want {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        }
        // SAFETY: `fill` wrote the first `got` bytes of the spare capacity
        // (the caller's promise), and `got <= want <= spare capacity`.
        unsafe { rx.out.set_len(at + got) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_exactly_the_length_across_growth_steps() {
        for len in [0, 1, 65_535, 65_537, FIRST_ALLOCATION + 12_345] {
            let data: Vec<u8> = (0..len + 7).map(|i| (i % 251) as u8).collect();
            let mut r = &data[..];
            let got = read_exactly(&mut r, len).await.unwrap();
            assert_eq!(&got[..], &data[..len]);
            assert_eq!(r.len(), 7, "read past the frame");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_dropped_half_way_stops_its_helper_before_the_buffer_goes() {
        // Half of a frame arrives, then the peer stalls: the read is given
        // up (as a timeout does) while the helper is still making pages.
        let len = 48 << 20;
        for _ in 0..20 {
            let (mut a, mut b) = tokio::io::duplex(1 << 20);
            let writer = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                // Fails once the reader's end is gone.
                let _ = a.write_all(&vec![3u8; len / 2]).await;
                a
            });
            let read = tokio::time::timeout(
                std::time::Duration::from_millis(20),
                read_exactly(&mut b, len),
            );
            assert!(read.await.is_err(), "the frame cannot be complete");
            drop(b);
            drop(writer.await.unwrap());
        }
        // A read after them all is whole and right.
        let data = vec![9u8; HELPED * 5 + 3];
        let got = read_exactly(&mut &data[..], data.len()).await.unwrap();
        assert_eq!(&got[..], &data[..]);
    }

    #[tokio::test]
    async fn a_short_stream_is_an_error() {
        let data = [1u8; 100];
        let err = read_exactly(&mut &data[..], 101).await.unwrap_err();
        assert!(matches!(err, FrameError::Io(_)), "{err}");
    }
}
