//! Receive buffers for values: memory that a frame's bytes are read into
//! once, by the kernel, and that Python later adopts as it is.
//!
//! What receiving a large value costs on one host is mostly not the copy out
//! of the socket but fresh memory: the kernel must find and zero a page for
//! every 4 KiB a new buffer is written to (about 1 GB/s on a virtual machine,
//! a third of what loopback TCP carries). So a buffer asks for its pages a
//! few MiB ahead of the bytes in one `madvise(MADV_POPULATE_WRITE)` instead
//! of taking a fault per page as they land.
//!
//! A buffer's first allocation is as large as its frame up to
//! [`FIRST_ALLOCATION`] (bounded: never sized by a length a peer announced
//! alone); past it, the buffer doubles as bytes arrive.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::frame::FrameError;

/// The most memory a frame gets before any of its bytes arrived.
pub const FIRST_ALLOCATION: usize = 64 << 20;

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

/// Reads exactly `len` bytes from `r` into one buffer.
pub async fn read_exactly<R>(r: &mut R, len: usize) -> Result<Bytes, FrameError>
where
    R: AsyncRead + Unpin,
{
    let mut out = Vec::with_capacity(len.min(FIRST_ALLOCATION));
    let mut populated = 0;
    while out.len() < len {
        if out.len() == out.capacity() {
            // Double what arrived, never past `len`.
            out.reserve_exact((len - out.len()).min(out.len()));
            populated = 0;
        }
        if populated < out.len() + POPULATE_AHEAD / 2 {
            populated = populate(&mut out, POPULATE_AHEAD);
        }
        let want = (len - out.len()).min(out.capacity() - out.len());
        let got = (&mut *r).take(want as u64).read_buf(&mut out).await?;
        if got == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
    Ok(Bytes::from(out))
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

    #[tokio::test]
    async fn a_short_stream_is_an_error() {
        let data = [1u8; 100];
        let err = read_exactly(&mut &data[..], 101).await.unwrap_err();
        assert!(matches!(err, FrameError::Io(_)), "{err}");
    }
}
