//! The files spilled values live in.
//!
//! Each worker writes into a directory of its own, `worker-<pid>-spill<n>`,
//! made on first use under the per-user root it is given (the same root and
//! naming as the worker's other files, so a directory left behind by a
//! worker that was killed is recognised by its dead pid and removed by the
//! next worker that starts). The directory is removed when the store is
//! cleared or dropped.
//!
//! A file holds one value: the number of frames (`u32` little-endian), each
//! frame's length (`u64` little-endian), the XXH3 hash of the frames' bytes
//! (`u64` little-endian), then the frames' bytes. Reading checks that the
//! lengths add up to the file's size and that the bytes hash as written, so
//! a damaged file (a bad sector, a truncated write, another process writing
//! into it) is an error, never a wrong value or an allocation sized from its
//! contents: the value is then lost on this worker, and found or computed
//! again like any lost result. Hashing runs at memory speed, well above a
//! disk's.

use std::fs::{DirBuilder, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::PathBuf;

use bytes::Bytes;
use shoal_proto::Payload;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SpillError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{0} is not a private directory of this user (a link, another user's, or open to \
         others); remove it or give the worker a local directory of its own"
    )]
    NotOurs(PathBuf),
    #[error("{0} is damaged (its frame lengths do not match its size)")]
    Damaged(PathBuf),
    #[error("{0} is damaged (its bytes do not match the hash they were written with)")]
    Corrupted(PathBuf),
}

fn io_error(path: &std::path::Path) -> impl FnOnce(io::Error) -> SpillError + '_ {
    move |source| SpillError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A worker's spill directory, made on first use.
pub(crate) struct SpillDir {
    root: PathBuf,
    dir: Option<PathBuf>,
    next: u64,
    files: usize,
}

impl SpillDir {
    pub fn new(root: PathBuf) -> Self {
        SpillDir {
            root,
            dir: None,
            next: 0,
            files: 0,
        }
    }

    /// How many files it holds.
    #[cfg(test)]
    pub fn files(&self) -> usize {
        self.files
    }

    fn dir(&mut self) -> Result<PathBuf, SpillError> {
        if let Some(d) = &self.dir {
            return Ok(d.clone());
        }
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(io_error(&self.root))?;
        // Not followed if a link: the directory itself must be ours alone.
        let meta = std::fs::symlink_metadata(&self.root).map_err(io_error(&self.root))?;
        // SAFETY: geteuid has no preconditions.
        let ours = meta.uid() == unsafe { libc::geteuid() };
        if !meta.is_dir() || !ours || meta.mode() & 0o077 != 0 {
            return Err(SpillError::NotOurs(self.root.clone()));
        }
        let pid = std::process::id();
        for n in 0u32.. {
            let d = self.root.join(format!("worker-{pid}-spill{n}"));
            match DirBuilder::new().mode(0o700).create(&d) {
                Ok(()) => {
                    self.dir = Some(d.clone());
                    return Ok(d);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error(&d)(e)),
            }
        }
        unreachable!("some directory name is free")
    }

    fn path(&self, file: u64) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(file.to_string()))
    }

    /// Writes `value` to a new file and returns its number. A file that
    /// could not be written whole is removed.
    pub fn write(&mut self, value: &Payload) -> Result<u64, SpillError> {
        let dir = self.dir()?;
        self.next += 1;
        let file = self.next;
        let path = dir.join(file.to_string());
        let written = write_value(&path, value);
        if written.is_err() {
            let _ = std::fs::remove_file(&path);
        } else {
            self.files += 1;
        }
        written.map(|()| file)
    }

    /// Reads the value in `file` back.
    pub fn read(&self, file: u64) -> Result<Payload, SpillError> {
        let path = self
            .path(file)
            .ok_or_else(|| SpillError::Damaged(self.root.clone()))?;
        read_value(&path)
    }

    /// Removes `file`.
    pub fn remove(&mut self, file: u64) {
        if let Some(path) = self.path(file) {
            if std::fs::remove_file(path).is_ok() {
                self.files -= 1;
            }
        }
    }

    /// Removes the directory and everything in it.
    pub fn remove_all(&mut self) {
        if let Some(d) = self.dir.take() {
            let _ = std::fs::remove_dir_all(d);
        }
        self.files = 0;
    }
}

fn write_value(path: &std::path::Path, value: &Payload) -> Result<(), SpillError> {
    let mut f = File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_error(path))?;
    let count = u32::try_from(value.frames.len()).map_err(|_| SpillError::Damaged(path.into()))?;
    let mut header = Vec::with_capacity(12 + 8 * value.frames.len());
    header.extend_from_slice(&count.to_le_bytes());
    for frame in &value.frames {
        header.extend_from_slice(&(frame.len() as u64).to_le_bytes());
    }
    header.extend_from_slice(&hash_frames(&value.frames).to_le_bytes());
    f.write_all(&header).map_err(io_error(path))?;
    for frame in &value.frames {
        f.write_all(frame).map_err(io_error(path))?;
    }
    // No fsync: the file lives only as long as this process, and a full
    // disk already fails the write (file systems reserve blocks on write).
    Ok(())
}

/// The hash of a value's bytes, frame after frame.
fn hash_frames<B: AsRef<[u8]>>(frames: &[B]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for frame in frames {
        h.update(frame.as_ref());
    }
    h.digest()
}

fn read_value(path: &std::path::Path) -> Result<Payload, SpillError> {
    let mut f = File::open(path).map_err(io_error(path))?;
    let mut data = Vec::new();
    f.read_to_end(&mut data).map_err(io_error(path))?;
    let data = Bytes::from(data);
    let damaged = || SpillError::Damaged(path.to_path_buf());
    let count = data
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(damaged)? as usize;
    let body = count
        .checked_mul(8)
        .and_then(|n| n.checked_add(12))
        .filter(|&n| n <= data.len())
        .ok_or_else(damaged)?;
    let hash = data[body - 8..body]
        .try_into()
        .map(u64::from_le_bytes)
        .map_err(|_| damaged())?;
    let mut frames = Vec::with_capacity(count);
    let mut at = body;
    for i in 0..count {
        let len = data[4 + 8 * i..12 + 8 * i]
            .try_into()
            .map(u64::from_le_bytes)
            .map_err(|_| damaged())?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|n| at.checked_add(n))
            .filter(|&end| end <= data.len())
            .ok_or_else(damaged)?;
        frames.push(data.slice(at..end));
        at = end;
    }
    if at != data.len() {
        return Err(damaged());
    }
    if hash_frames(&frames) != hash {
        return Err(SpillError::Corrupted(path.to_path_buf()));
    }
    Ok(Payload { frames })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let p =
            std::env::temp_dir().join(format!("shoal-spill-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        let _ = std::fs::remove_file(&p);
        p
    }

    fn one_value() -> Payload {
        Payload {
            frames: vec![Bytes::from_static(b"value")],
        }
    }

    #[test]
    fn a_private_root_takes_spilled_values() {
        let root = scratch("private");
        let mut d = SpillDir::new(root.clone());
        let f = d.write(&one_value()).expect("spill");
        assert_eq!(d.read(f).expect("read back"), one_value());
        let mode = std::fs::metadata(&root).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        d.remove_all();
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_damaged_file_is_an_error_never_a_wrong_value() {
        let root = scratch("damaged");
        let mut d = SpillDir::new(root.clone());
        let value = Payload {
            frames: vec![
                Bytes::from_static(b"header"),
                Bytes::from(vec![7u8; 100_000]),
            ],
        };
        let f = d.write(&value).expect("spill");
        let path = d.path(f).unwrap();
        let good = std::fs::read(&path).unwrap();
        // One byte flipped inside the second frame.
        let mut bad = good.clone();
        let at = bad.len() - 50_000;
        bad[at] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(matches!(d.read(f), Err(SpillError::Corrupted(_))));
        // Cut short: the lengths no longer add up.
        std::fs::write(&path, &good[..good.len() - 1]).unwrap();
        assert!(matches!(d.read(f), Err(SpillError::Damaged(_))));
        // Restored, it reads back equal.
        std::fs::write(&path, &good).unwrap();
        assert_eq!(d.read(f).expect("read back"), value);
        d.remove_all();
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_root_open_to_others_or_a_link_is_refused() {
        // Planted before the worker made it: open to everyone.
        let open = scratch("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = SpillDir::new(open.clone()).write(&one_value());
        assert!(matches!(err, Err(SpillError::NotOurs(_))), "{err:?}");
        assert_eq!(
            std::fs::read_dir(&open).unwrap().count(),
            0,
            "nothing written"
        );
        // A link to a private directory elsewhere.
        let target = scratch("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = scratch("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = SpillDir::new(link.clone()).write(&one_value());
        assert!(matches!(err, Err(SpillError::NotOurs(_))), "{err:?}");
        assert_eq!(
            std::fs::read_dir(&target).unwrap().count(),
            0,
            "nothing written"
        );
        for p in [&open, &target] {
            std::fs::remove_dir_all(p).unwrap();
        }
        std::fs::remove_file(&link).unwrap();
    }
}
