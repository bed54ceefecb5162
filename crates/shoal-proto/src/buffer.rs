//! Receive buffers for values: memory that a frame's bytes are read into
//! once, by the kernel, and that Python later adopts as it is.
//!
//! What receiving a large value costs on one host is mostly not the copy out
//! of the socket but fresh memory: the kernel must find and zero a page for
//! every 4 KiB a new buffer is written to (about 1 GB/s on a virtual machine,
//! a third of what loopback TCP carries). So the buffers of values, once
//! their values are dropped, wait in a bounded [`Pool`] for the next value
//! of about their size, already backed by memory (a shuffle, a repeated
//! fetch or gather of similar blocks); a process's memory monitor empties it
//! before it would spill ([`release`]), and buffers idle for
//! [`IDLE_LIMIT`] are given back.
//!
//! A new buffer's first allocation is as large as its frame up to
//! [`FIRST_ALLOCATION`] (bounded: never sized by a length a peer announced
//! alone); past it, the buffer doubles as bytes arrive.

use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::frame::FrameError;

/// The most memory a frame gets before any of its bytes arrived.
pub const FIRST_ALLOCATION: usize = 64 << 20;

/// Frames smaller than this are not pooled (the allocator keeps such
/// memory anyway).
const POOLED_MIN: usize = 64 << 10;

/// How long a pooled buffer may wait before its memory is given back.
pub const IDLE_LIMIT: Duration = Duration::from_secs(30);

/// How many bytes the pool keeps unless told otherwise ([`set_limit`]):
/// none, so a client's memory goes back as soon as its values are dropped;
/// a worker process, which watches its memory, sets its own.
const DEFAULT_LIMIT: usize = 0;

/// How far ahead of the bytes received a fresh buffer's pages are made.
const POPULATE_AHEAD: usize = 4 << 20;

/// Makes the pages of `buf`'s spare capacity up to `ahead` bytes past its
/// length in one call (instead of one fault per page as bytes land), and
/// returns the length up to which pages are made. Advice only: where the
/// kernel does not know it, pages are made by faults as before.
fn populate(buf: &mut Vec<u8>, ahead: usize) -> usize {
    let end_len = buf.len() + (buf.capacity() - buf.len()).min(ahead);
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let spare = buf.spare_capacity_mut();
        let start = spare.as_mut_ptr() as usize;
        let end = start + spare.len().min(ahead);
        let first = start.next_multiple_of(PAGE);
        let last = end / PAGE * PAGE;
        if first < last {
            // SAFETY: [first, last) lies inside capacity this Vec owns and
            // has not initialised; MADV_POPULATE_WRITE only backs those
            // pages with (zeroed) memory, as writing to them would.
            unsafe {
                libc::madvise(
                    first as *mut libc::c_void,
                    last - first,
                    libc::MADV_POPULATE_WRITE,
                );
            }
        }
    }
    end_len
}

/// Buffers of dropped values, waiting to be reused.
struct Pool {
    limit: usize,
    held: usize,
    /// Each buffer (empty, its capacity still backed) and when it came back.
    free: Vec<(Vec<u8>, Instant)>,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    limit: DEFAULT_LIMIT,
    held: 0,
    free: Vec::new(),
});

impl Pool {
    /// The smallest buffer that holds `len` bytes without wasting more
    /// than a quarter of itself.
    fn take(&mut self, len: usize) -> Option<Vec<u8>> {
        let best = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, (b, _))| b.capacity() >= len && b.capacity() - len <= b.capacity() / 4)
            .min_by_key(|(_, (b, _))| b.capacity())
            .map(|(i, _)| i)?;
        let (buf, _) = self.free.swap_remove(best);
        self.held -= buf.capacity();
        Some(buf)
    }

    fn give(&mut self, mut buf: Vec<u8>, now: Instant) {
        self.expire(now);
        if buf.capacity() < POOLED_MIN || self.held + buf.capacity() > self.limit {
            return;
        }
        buf.clear();
        self.held += buf.capacity();
        self.free.push((buf, now));
    }

    /// Gives back buffers idle for longer than [`IDLE_LIMIT`].
    fn expire(&mut self, now: Instant) {
        let before = self.free.len();
        self.free
            .retain(|(_, since)| now.saturating_duration_since(*since) < IDLE_LIMIT);
        if self.free.len() != before {
            self.held = self.free.iter().map(|(b, _)| b.capacity()).sum();
        }
    }
}

/// Sets how many bytes of idle buffers this process keeps (0: none).
pub fn set_limit(bytes: usize) {
    let mut pool = POOL.lock();
    pool.limit = bytes;
    while pool.held > bytes {
        if let Some((buf, _)) = pool.free.pop() {
            pool.held -= buf.capacity();
        }
    }
}

/// Gives every idle buffer's memory back (before a memory monitor spills),
/// and returns how many bytes that was.
pub fn release() -> usize {
    let mut pool = POOL.lock();
    let held = std::mem::take(&mut pool.held);
    pool.free.clear();
    held
}

/// Gives back buffers idle for longer than [`IDLE_LIMIT`].
pub fn release_idle() {
    POOL.lock().expire(Instant::now());
}

/// A value's buffer: returns to the pool when the last `Bytes` that shares
/// it (a `Frame` Python holds, a stored value) is dropped.
struct Recycled(Vec<u8>);

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        POOL.lock()
            .give(std::mem::take(&mut self.0), Instant::now());
    }
}

/// Reads exactly `len` bytes from `r` into one buffer.
pub async fn read_exactly<R>(r: &mut R, len: usize) -> Result<Bytes, FrameError>
where
    R: AsyncRead + Unpin,
{
    let pooled = if len >= POOLED_MIN {
        POOL.lock().take(len)
    } else {
        None
    };
    let fresh = pooled.is_none();
    let mut out = pooled.unwrap_or_else(|| Vec::with_capacity(len.min(FIRST_ALLOCATION)));
    let mut populated = 0;
    while out.len() < len {
        if out.len() == out.capacity() {
            // Double what arrived, never past `len`.
            out.reserve_exact((len - out.len()).min(out.len()));
            populated = 0;
        }
        if fresh && populated < out.len() + POPULATE_AHEAD / 2 {
            populated = populate(&mut out, POPULATE_AHEAD);
        }
        let want = (len - out.len()).min(out.capacity() - out.len());
        let got = (&mut *r).take(want as u64).read_buf(&mut out).await?;
        if got == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
    Ok(if len >= POOLED_MIN {
        Bytes::from_owner(Recycled(out))
    } else {
        Bytes::from(out)
    })
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

    #[test]
    fn the_pool_reuses_a_close_fit_within_its_limit_and_expires_idle_buffers() {
        let t0 = Instant::now();
        let mut pool = Pool {
            limit: 10 << 20,
            held: 0,
            free: Vec::new(),
        };
        pool.give(Vec::with_capacity(4 << 20), t0);
        pool.give(Vec::with_capacity(1 << 20), t0);
        pool.give(Vec::with_capacity(8 << 20), t0); // over the limit
        pool.give(Vec::with_capacity(1 << 10), t0); // too small to keep
        assert_eq!((pool.free.len(), pool.held), (2, 5 << 20));
        assert!(pool.take(2 << 20).is_none(), "4 MiB wastes half of itself");
        let got = pool.take(900 << 10).expect("the 1 MiB buffer fits");
        assert!(got.capacity() >= 1 << 20 && got.is_empty());
        assert_eq!(pool.held, 4 << 20);
        pool.expire(t0 + IDLE_LIMIT);
        assert_eq!((pool.free.len(), pool.held), (0, 0));
    }

    #[tokio::test]
    async fn a_short_stream_is_an_error() {
        let data = [1u8; 100];
        let err = read_exactly(&mut &data[..], 101).await.unwrap_err();
        assert!(matches!(err, FrameError::Io(_)), "{err}");
    }
}
