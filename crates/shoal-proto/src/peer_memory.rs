//! Reading a value straight out of the memory of another process on this
//! host (`process_vm_readv`): one copy, made by the kernel, from the pages
//! that hold the value where it was made into the buffer that will hold it
//! here. A socket takes two (into the kernel, and out of it).
//!
//! The kernel decides who may read whom: the same user, and the reader
//! allowed to trace the other process (Yama, seccomp and containers may
//! say no). Every refusal is an error the caller answers by asking for the
//! bytes over the socket instead; see [`crate::data`].

use bytes::Bytes;

/// How many bytes one system call copies at most.
#[cfg(target_os = "linux")]
const STEP: usize = 8 << 20;

/// Values from this size on get memory of their own in huge pages.
#[cfg(target_os = "linux")]
const HUGE_MIN: usize = 4 << 20;

/// Copies `len` bytes at `addr` in process `pid` into a new buffer. The
/// other process must keep them there until this returns.
///
/// A value of [`HUGE_MIN`] bytes or more, unless the allocator holds free
/// memory enough for it ([`allocator_holds`]), goes into memory of its own,
/// advised to be made of 2 MiB pages, and a helper thread makes those pages
/// ahead of the copy (`buffer::Helper`). Making fresh pages is most of what
/// receiving costs, and one large page is made for the price of a few
/// small ones: worker to worker here, 6.5–10.7 GB/s against 2.7–3.7 in
/// small pages (BENCHMARKS.md). Its size is the announced length, but only
/// once the last of those bytes was read from the other process: a length
/// no process holds reserves nothing, and memory is only made as bytes are
/// copied in.
#[cfg(target_os = "linux")]
pub fn read(pid: u32, addr: u64, len: usize) -> std::io::Result<Bytes> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let addr = usize::try_from(addr).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    addr.checked_add(len)
        .ok_or(std::io::ErrorKind::InvalidInput)?;
    if len >= HUGE_MIN && !allocator_holds(len) {
        let mut last = [std::mem::MaybeUninit::uninit(); 1];
        copy(pid, addr + len - 1, &mut last)?;
        let mut region = huge::Region::new(len)?;
        let place = region.as_uninit();
        // SAFETY: the region is this function's, nothing is in it yet, and
        // the helper is dropped (waiting for its step) before it is.
        let helper = unsafe { crate::buffer::Helper::start_at(place.as_mut_ptr() as usize, len) };
        let mut at = 0;
        while at < len {
            let n = (len - at).min(STEP);
            at += copy(pid, addr + at, &mut place[at..at + n])?;
        }
        drop(helper);
        return Ok(Bytes::from_owner(region));
    }
    let fill = |room: &mut [std::mem::MaybeUninit<u8>], at: usize| {
        let n = room.len().min(STEP);
        copy(pid, addr + at, &mut room[..n])
    };
    // SAFETY: `copy` reports the bytes the kernel wrote into the room.
    unsafe { crate::buffer::fill_exactly(len, fill) }
}

/// Whether this process's allocator holds free memory enough for a value of
/// `len` bytes: memory that tasks freed and the heaps kept, whose pages are
/// made already. A buffer from there costs no page at all, which beats even
/// huge pages: in a worker that had run a shuffle, the array expression of
/// `benches/dask_collections.py` took 1.84 s with every block in huge pages
/// of its own against 1.42–1.56 s with blocks from the heaps. Twice the
/// length, since free memory in the heaps is in pieces.
#[cfg(target_os = "linux")]
fn allocator_holds(len: usize) -> bool {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics (under
        // its own locks).
        let info = unsafe { libc::mallinfo2() };
        info.fordblks / 2 >= len
    }
    #[cfg(not(target_env = "gnu"))]
    {
        let _ = len;
        false
    }
}

/// Copies from `addr` in process `pid` into `into`; how many bytes came
/// (never zero: a hole in the other process's memory is an error).
#[cfg(target_os = "linux")]
fn copy(
    pid: libc::pid_t,
    addr: usize,
    into: &mut [std::mem::MaybeUninit<u8>],
) -> std::io::Result<usize> {
    let local = libc::iovec {
        iov_base: into.as_mut_ptr().cast(),
        iov_len: into.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut _,
        iov_len: into.len(),
    };
    // SAFETY: `local` is `into`, memory of this process it may write (the
    // kernel only writes it, so its bytes need not be initialised); the
    // kernel checks `remote` against the other process's mappings and
    // copies at most `into.len()` bytes.
    let got = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    match usize::try_from(got) {
        Ok(0) => Err(std::io::ErrorKind::UnexpectedEof.into()),
        Ok(n) => Ok(n),
        Err(_) => Err(std::io::Error::last_os_error()),
    }
}

#[cfg(target_os = "linux")]
mod huge {
    /// The size of a huge page on the platforms shoal runs on.
    const HUGE_PAGE: usize = 2 << 20;

    /// Private memory of its own for one value, aligned to huge pages and
    /// advised to be made of them; unmapped when the last view goes. One
    /// mapping, exactly as long as the value (to the next page).
    pub struct Region {
        start: *mut u8,
        len: usize,
        mapped: usize,
    }

    // SAFETY: the region is plain memory owned by this value; after it is
    // filled it is only read.
    unsafe impl Send for Region {}
    unsafe impl Sync for Region {}

    impl Region {
        pub fn new(len: usize) -> std::io::Result<Region> {
            const PAGE: usize = 4096;
            let mapped = len.next_multiple_of(PAGE);
            // A huge page more, to place the start on a huge page.
            let asked = mapped
                .checked_add(HUGE_PAGE)
                .ok_or(std::io::ErrorKind::InvalidInput)?;
            // SAFETY: a new private anonymous mapping; nothing else is
            // touched. MAP_NORESERVE: memory is counted as pages are made.
            let base = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    asked,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if base == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error());
            }
            let (base, start) = (base as usize, (base as usize).next_multiple_of(HUGE_PAGE));
            let (head, tail) = (start - base, base + asked - (start + mapped));
            // SAFETY: the parts of the new mapping before `start` and after
            // `start + mapped` are unmapped; nothing refers to them. An
            // error leaves them mapped and unused, which is harmless.
            // Advice on the rest: an error (huge pages off) leaves small
            // pages, which are correct too.
            unsafe {
                if head > 0 {
                    libc::munmap(base as *mut libc::c_void, head);
                }
                if tail > 0 {
                    libc::munmap((start + mapped) as *mut libc::c_void, tail);
                }
                libc::madvise(start as *mut libc::c_void, mapped, libc::MADV_HUGEPAGE);
            }
            Ok(Region {
                start: start as *mut u8,
                len,
                mapped,
            })
        }
    }

    impl Region {
        /// The region's bytes, to be written.
        pub fn as_uninit(&mut self) -> &mut [std::mem::MaybeUninit<u8>] {
            // SAFETY: `start..start + len` lies within the mapping, which
            // lives as long as self and is borrowed mutably here.
            unsafe { std::slice::from_raw_parts_mut(self.start.cast(), self.len) }
        }
    }

    impl AsRef<[u8]> for Region {
        fn as_ref(&self) -> &[u8] {
            // SAFETY: as in `as_mut`.
            unsafe { std::slice::from_raw_parts(self.start, self.len) }
        }
    }

    impl Drop for Region {
        fn drop(&mut self) {
            // SAFETY: what `new` kept of its mapping, unmapped once.
            unsafe { libc::munmap(self.start.cast(), self.mapped) };
        }
    }
}

/// Not on this platform: the caller asks for the bytes over the socket.
#[cfg(not(target_os = "linux"))]
pub fn read(_pid: u32, _addr: u64, _len: usize) -> std::io::Result<Bytes> {
    Err(std::io::ErrorKind::Unsupported.into())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn reads_a_value_of_this_process_across_steps_and_refuses_a_hole() {
        let me = std::process::id();
        for len in [1, 4096, HUGE_MIN - 1, HUGE_MIN, STEP + 3, 3 * STEP + 12_345] {
            let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let got = read(me, data.as_ptr() as u64, len).unwrap();
            assert_eq!(&got[..], &data[..]);
        }
        // Address 8 is never mapped: the kernel refuses, nothing is made up.
        assert!(read(me, 8, 4096).is_err());
        assert!(read(me, 8, HUGE_MIN).is_err());
        // A length past what the process holds is refused before memory is
        // set aside for it.
        let small = vec![1u8; 4096];
        assert!(read(me, small.as_ptr() as u64, 1 << 40).is_err());
    }
}
