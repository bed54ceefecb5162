//! The worker's data store: results and inputs held here, by key.
//!
//! Values live in memory until the bytes held there pass the store's
//! `target` (a fraction of the worker's memory limit); then the least
//! recently used ones are written to disk (see [`crate::spill`]) and read
//! back — into memory again — when asked for. A value larger than the
//! target goes to disk at once. If writing fails (a full disk, a directory
//! that cannot be made), the value stays in memory and a warning says why:
//! nothing is lost, and the worker's pause and terminate thresholds still
//! guard the process.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use crate::spill::SpillDir;
use crate::value::Value;

/// A value held in memory, with its place in the LRU order.
struct InMemory {
    value: Value,
    nbytes: u64,
    tick: u64,
}

/// A value written to disk.
struct OnDisk {
    file: u64,
    nbytes: u64,
}

/// Results held by a worker, in memory or spilled to disk.
pub(crate) struct DataStore {
    memory: HashMap<String, InMemory>,
    disk: HashMap<String, OnDisk>,
    /// Keys in memory by last use, oldest first.
    lru: BTreeMap<u64, String>,
    tick: u64,
    memory_bytes: u64,
    disk_bytes: u64,
    /// Bytes in memory above which values spill (0: never).
    target: u64,
    /// Bytes the process holds besides these values, as last measured by
    /// the memory monitor: values spill as soon as they and it pass the
    /// target (Dask's rule for resident memory, applied when a value
    /// arrives rather than at the next measurement).
    unmanaged: u64,
    spill: SpillDir,
    /// The worker closed: nothing more is spilled.
    closed: bool,
    /// Where to say that a value was lost here (its spill file could not be
    /// read back), so the scheduler stops sending fetches for it here.
    reports: Option<tokio::sync::mpsc::UnboundedSender<shoal_proto::WorkerToScheduler>>,
}

impl DataStore {
    /// A store that spills above `target` bytes (0: never) into a directory
    /// of its own under `root`, made on first use.
    pub fn new(target: u64, root: PathBuf) -> Self {
        DataStore {
            memory: HashMap::new(),
            disk: HashMap::new(),
            lru: BTreeMap::new(),
            tick: 0,
            memory_bytes: 0,
            disk_bytes: 0,
            target,
            unmanaged: 0,
            spill: SpillDir::new(root),
            closed: false,
            reports: None,
        }
    }

    /// Reports values lost here (see [`DataStore::get`]) on `tx`.
    pub fn reporting_to(
        mut self,
        tx: tokio::sync::mpsc::UnboundedSender<shoal_proto::WorkerToScheduler>,
    ) -> Self {
        self.reports = Some(tx);
        self
    }

    /// A store that never spills.
    #[cfg(test)]
    pub fn in_memory() -> Self {
        DataStore::new(0, std::env::temp_dir())
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.memory.contains_key(key) || self.disk.contains_key(key)
    }

    /// Bytes of values held in memory.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }

    /// Bytes of values spilled to disk.
    pub fn disk_bytes(&self) -> u64 {
        self.disk_bytes
    }

    /// How many values are held, in memory and on disk.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.memory.len() + self.disk.len()
    }

    /// Stores `value` under `key`, replacing any earlier value, then spills
    /// what no longer fits under the target.
    pub fn insert(&mut self, key: String, value: Value) {
        self.remove(&key);
        let nbytes = value.nbytes();
        if self.target > 0 && nbytes > self.target {
            // It would push everything else out and still not fit.
            if let Some(file) = self.write(&key, &value) {
                self.disk.insert(key, OnDisk { file, nbytes });
                self.disk_bytes += nbytes;
                return;
            }
        }
        self.put_in_memory(key, value, nbytes);
        if self.target > 0 {
            self.spill_above(self.room());
        }
    }

    /// Tells the store how much memory the process holds besides its
    /// values (resident minus managed, measured by the memory monitor).
    pub fn set_unmanaged(&mut self, bytes: u64) {
        self.unmanaged = bytes;
    }

    /// Bytes of values memory may hold now: the target, less what the
    /// process holds besides them.
    fn room(&self) -> u64 {
        self.target.saturating_sub(self.unmanaged)
    }

    /// The value of `key`, read back from disk if it was spilled (it is then
    /// in memory again, as the most recently used). `None` if it is not
    /// here, or its file could not be read (it is then forgotten, and the
    /// scheduler told: `Lost`).
    pub fn get(&mut self, key: &str) -> Option<Value> {
        if let Some(entry) = self.memory.get_mut(key) {
            self.tick += 1;
            self.lru.remove(&entry.tick);
            entry.tick = self.tick;
            self.lru.insert(self.tick, key.to_string());
            return Some(entry.value.clone());
        }
        let spilled = self.disk.remove(key)?;
        self.disk_bytes -= spilled.nbytes;
        let read = self.spill.read(spilled.file);
        self.spill.remove(spilled.file);
        let value = match read {
            Ok(v) => v,
            Err(e) => {
                shoal_proto::throttle::warn(format_args!(
                    "could not read {key} back from disk, so it is lost here: {e}"
                ));
                if let Some(tx) = &self.reports {
                    let _ = tx.send(shoal_proto::WorkerToScheduler::Lost {
                        keys: vec![key.to_string()],
                    });
                }
                return None;
            }
        };
        let value = Value::Frames(value);
        if self.target > 0 && spilled.nbytes > self.target {
            // Too large to keep in memory: back to disk, handed out once.
            if let Some(file) = self.write(key, &value) {
                self.disk.insert(
                    key.to_string(),
                    OnDisk {
                        file,
                        nbytes: spilled.nbytes,
                    },
                );
                self.disk_bytes += spilled.nbytes;
                return Some(value);
            }
        }
        self.put_in_memory(key.to_string(), value.clone(), spilled.nbytes);
        // Room for it: older values go to disk, never this one.
        if self.target > 0 {
            self.spill_above(self.room().max(spilled.nbytes));
        }
        Some(value)
    }

    /// Forgets `key`; true if it was here.
    pub fn remove(&mut self, key: &str) -> bool {
        if let Some(entry) = self.memory.remove(key) {
            self.lru.remove(&entry.tick);
            self.memory_bytes -= entry.nbytes;
            return true;
        }
        if let Some(spilled) = self.disk.remove(key) {
            self.disk_bytes -= spilled.nbytes;
            self.spill.remove(spilled.file);
            return true;
        }
        false
    }

    /// Writes least recently used values to disk until `bytes` of memory
    /// are freed or none is left there; returns the bytes freed. Stops at
    /// the first value that cannot be written.
    pub fn evict(&mut self, bytes: u64) -> u64 {
        let goal = self.memory_bytes.saturating_sub(bytes);
        let before = self.memory_bytes;
        self.spill_above(goal);
        before - self.memory_bytes
    }

    /// Writes least recently used values to disk while more than `limit`
    /// bytes are in memory (no limit if 0).
    fn spill_above(&mut self, limit: u64) {
        if self.closed {
            return;
        }
        while self.memory_bytes > limit {
            let Some((&tick, _)) = self.lru.first_key_value() else {
                return;
            };
            let key = self.lru[&tick].clone();
            // A cheap copy: frames and objects are shared, not duplicated.
            let value = self.memory[&key].value.clone();
            let Some(file) = self.write(&key, &value) else {
                return;
            };
            let entry = self.memory.remove(&key).expect("an LRU key is in memory");
            self.lru.remove(&tick);
            self.memory_bytes -= entry.nbytes;
            self.disk_bytes += entry.nbytes;
            self.disk.insert(
                key,
                OnDisk {
                    file,
                    nbytes: entry.nbytes,
                },
            );
        }
    }

    fn put_in_memory(&mut self, key: String, value: Value, nbytes: u64) {
        self.tick += 1;
        self.lru.insert(self.tick, key.clone());
        self.memory_bytes += nbytes;
        self.memory.insert(
            key,
            InMemory {
                value,
                nbytes,
                tick: self.tick,
            },
        );
    }

    /// Writes `value` to a new file (serializing a held object first);
    /// `None` (with a warning) if it cannot.
    fn write(&mut self, key: &str, value: &Value) -> Option<u64> {
        let frames = match value.to_payload() {
            Ok(frames) => frames,
            Err(e) => {
                shoal_proto::throttle::warn(format_args!(
                    "could not serialize {key} to spill it, keeping it in memory: {e}"
                ));
                return None;
            }
        };
        match self.spill.write(&frames) {
            Ok(file) => Some(file),
            Err(e) => {
                shoal_proto::throttle::warn(format_args!(
                    "could not spill {key} to disk, keeping it in memory: {e}"
                ));
                None
            }
        }
    }

    /// Removes the spill directory, and spills nothing after. Values in
    /// memory stay until the store is dropped: one may own a buffer of the
    /// Python interpreter, which must not be freed from this thread while
    /// the interpreter shuts down.
    pub fn close(&mut self) {
        self.disk.clear();
        self.disk_bytes = 0;
        self.spill.remove_all();
        self.target = 0;
        self.closed = true;
    }

    /// Checks the store's books: every key in exactly one place, the byte
    /// counts equal to the sums, the LRU order naming each key in memory.
    #[cfg(test)]
    pub fn check(&self) {
        assert_eq!(self.lru.len(), self.memory.len());
        for (tick, key) in &self.lru {
            assert_eq!(self.memory[key].tick, *tick);
        }
        for key in self.memory.keys() {
            assert!(!self.disk.contains_key(key), "{key} in memory and on disk");
        }
        let mem: u64 = self.memory.values().map(|e| e.nbytes).sum();
        let disk: u64 = self.disk.values().map(|e| e.nbytes).sum();
        assert_eq!(mem, self.memory_bytes);
        assert_eq!(disk, self.disk_bytes);
        assert_eq!(self.spill.files(), self.disk.len());
    }
}

impl Drop for DataStore {
    fn drop(&mut self) {
        self.spill.remove_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use shoal_proto::Payload;

    fn value(byte: u8, n: usize) -> Value {
        Value::Frames(Payload {
            frames: vec![
                Bytes::from(vec![byte; n / 2]),
                Bytes::from(vec![byte; n - n / 2]),
            ],
        })
    }

    fn root() -> tempdir::Root {
        tempdir::Root::new()
    }

    /// A throwaway directory for one test, removed when dropped.
    mod tempdir {
        use std::path::PathBuf;
        use std::sync::atomic::{AtomicU32, Ordering};

        pub struct Root(pub PathBuf);

        impl Root {
            pub fn new() -> Self {
                static N: AtomicU32 = AtomicU32::new(0);
                let n = N.fetch_add(1, Ordering::SeqCst);
                let p = std::env::temp_dir()
                    .join(format!("shoal-store-test-{}-{n}", std::process::id()));
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&p)
                    .expect("make a test directory");
                Root(p)
            }
        }

        impl Drop for Root {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn below_the_target_nothing_spills() {
        let root = root();
        let mut s = DataStore::new(1000, root.0.clone());
        s.insert("a".into(), value(1, 400));
        s.insert("b".into(), value(2, 400));
        s.check();
        assert_eq!((s.memory_bytes(), s.disk_bytes()), (800, 0));
        assert_eq!(
            std::fs::read_dir(&root.0).unwrap().count(),
            0,
            "no directory made"
        );
    }

    #[test]
    fn above_the_target_the_least_recently_used_spill_and_read_back_equal() {
        let root = root();
        let mut s = DataStore::new(1000, root.0.clone());
        s.insert("a".into(), value(1, 400));
        s.insert("b".into(), value(2, 400));
        assert!(s.get("a").is_some(), "a is now the most recently used");
        s.insert("c".into(), value(3, 400));
        s.check();
        assert_eq!((s.memory_bytes(), s.disk_bytes()), (800, 400));
        assert!(s.memory.contains_key("a") && s.disk.contains_key("b"));
        // Reading b back puts it in memory and pushes out the oldest (c).
        assert_eq!(s.get("b"), Some(value(2, 400)));
        s.check();
        assert!(s.disk.contains_key("a") || s.disk.contains_key("c"));
        assert_eq!((s.memory_bytes(), s.disk_bytes()), (800, 400));
        for (k, b) in [("a", 1), ("b", 2), ("c", 3)] {
            assert_eq!(s.get(k), Some(value(b, 400)), "{k}");
            s.check();
        }
    }

    #[test]
    fn memory_the_process_holds_besides_the_values_leaves_them_less_room() {
        let root = root();
        let mut s = DataStore::new(1000, root.0.clone());
        s.insert("a".into(), value(1, 400));
        s.set_unmanaged(500);
        s.insert("b".into(), value(2, 400));
        s.check();
        // 400 + 400 would fit the target, but not beside 500 unmanaged.
        assert_eq!((s.memory_bytes(), s.disk_bytes()), (400, 400));
        assert!(s.memory.contains_key("b") && s.disk.contains_key("a"));
        s.set_unmanaged(0);
        assert_eq!(s.get("a"), Some(value(1, 400)));
        assert_eq!((s.memory_bytes(), s.disk_bytes()), (800, 0));
    }

    #[test]
    fn a_value_larger_than_the_target_goes_straight_to_disk() {
        let root = root();
        let mut s = DataStore::new(1000, root.0.clone());
        s.insert("small".into(), value(1, 100));
        s.insert("big".into(), value(2, 5000));
        s.check();
        assert_eq!((s.memory_bytes(), s.disk_bytes()), (100, 5000));
        assert_eq!(s.get("big"), Some(value(2, 5000)));
        s.check();
        assert_eq!(s.disk_bytes(), 5000, "still too large for memory");
        assert!(s.memory.contains_key("small"));
    }

    #[test]
    fn removing_frees_memory_disk_and_files() {
        let root = root();
        let mut s = DataStore::new(500, root.0.clone());
        for i in 0..10u8 {
            s.insert(format!("k{i}"), value(i, 200));
        }
        s.check();
        assert!(s.disk_bytes() > 0);
        for i in 0..10u8 {
            assert!(s.remove(&format!("k{i}")));
        }
        s.check();
        assert_eq!((s.len(), s.memory_bytes(), s.disk_bytes()), (0, 0, 0));
        assert!(!s.remove("k0"));
    }

    #[test]
    fn replacing_a_key_counts_it_once() {
        let mut s = DataStore::in_memory();
        s.insert("a".into(), value(1, 100));
        s.insert("a".into(), value(2, 300));
        s.check();
        assert_eq!(s.memory_bytes(), 300);
        assert_eq!(s.get("a"), Some(value(2, 300)));
    }

    #[test]
    fn evict_writes_out_the_oldest_until_enough_is_freed() {
        let root = root();
        let mut s = DataStore::new(10_000, root.0.clone());
        for i in 0..5u8 {
            s.insert(format!("k{i}"), value(i, 100));
        }
        assert_eq!(s.evict(250), 300);
        s.check();
        assert!(s.disk.contains_key("k0") && s.disk.contains_key("k2"));
        assert!(s.memory.contains_key("k3"));
        assert_eq!(s.evict(u64::MAX), 200);
        assert_eq!(s.memory_bytes(), 0);
    }

    #[test]
    fn a_directory_that_cannot_be_made_keeps_values_in_memory() {
        let root = root();
        let file = root.0.join("not-a-directory");
        std::fs::write(&file, b"x").unwrap();
        let mut s = DataStore::new(100, file);
        s.insert("a".into(), value(1, 300));
        s.insert("b".into(), value(2, 300));
        s.check();
        assert_eq!((s.memory_bytes(), s.disk_bytes()), (600, 0));
        assert_eq!(s.get("a"), Some(value(1, 300)));
    }

    #[test]
    fn close_and_drop_remove_the_spill_directory() {
        let root = root();
        let mut s = DataStore::new(100, root.0.clone());
        s.insert("a".into(), value(1, 300));
        assert_eq!(std::fs::read_dir(&root.0).unwrap().count(), 1);
        drop(s);
        assert_eq!(std::fs::read_dir(&root.0).unwrap().count(), 0);
        let mut s = DataStore::new(100, root.0.clone());
        s.insert("a".into(), value(1, 300));
        s.insert("b".into(), value(2, 50));
        s.close();
        assert_eq!(std::fs::read_dir(&root.0).unwrap().count(), 0);
        s.insert("c".into(), value(3, 300));
        assert_eq!(
            std::fs::read_dir(&root.0).unwrap().count(),
            0,
            "no spill after close"
        );
        assert_eq!(s.get("b"), Some(value(2, 50)), "memory stays");
    }

    #[test]
    fn a_file_removed_behind_its_back_is_a_lost_value_not_a_crash() {
        let root = root();
        let mut s = DataStore::new(100, root.0.clone());
        s.insert("a".into(), value(1, 300));
        let dir = std::fs::read_dir(&root.0).unwrap().next().unwrap().unwrap();
        for f in std::fs::read_dir(dir.path()).unwrap() {
            std::fs::write(f.unwrap().path(), b"short").unwrap();
        }
        assert_eq!(s.get("a"), None);
        assert!(!s.contains_key("a"));
        assert_eq!(s.disk_bytes(), 0);
    }

    #[test]
    fn a_held_object_is_serialized_only_to_spill_and_reads_back_as_its_frames() {
        use crate::value::testing::held;
        use std::sync::atomic::Ordering;
        let root = root();
        let mut s = DataStore::new(1000, root.0.clone());
        let Value::Frames(frames) = value(7, 100) else {
            unreachable!()
        };
        let (obj, fake) = held(Some(frames.clone()), 400);
        s.insert("h".into(), obj.clone());
        s.insert("a".into(), value(1, 400));
        assert_eq!(s.get("h"), Some(obj.clone()), "the object itself");
        s.check();
        assert_eq!(s.memory_bytes(), 800, "counted by its estimate");
        assert_eq!(fake.serialized.load(Ordering::SeqCst), 0, "not serialized");
        // a, then h, are the least recently used: a spills first, then h.
        s.insert("b".into(), value(2, 400));
        s.insert("c".into(), value(3, 400));
        s.check();
        assert!(s.disk.contains_key("h"), "spilled");
        assert_eq!(fake.serialized.load(Ordering::SeqCst), 1);
        assert_eq!(s.get("h"), Some(Value::Frames(frames)), "read back");
        s.check();
    }

    #[test]
    fn a_held_object_that_cannot_be_serialized_stays_in_memory() {
        use crate::value::testing::held;
        let root = root();
        let mut s = DataStore::new(1000, root.0.clone());
        let (obj, _) = held(None, 600);
        s.insert("h".into(), obj.clone());
        s.insert("a".into(), value(1, 600));
        s.check();
        assert_eq!(s.get("h"), Some(obj), "kept");
        assert_eq!((s.memory_bytes(), s.disk_bytes()), (1200, 0));
    }
}
