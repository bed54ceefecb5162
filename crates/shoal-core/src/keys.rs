//! Finding tasks by key without storing every key twice.
//!
//! The index maps a 64-bit hash of the key to the task; the key itself lives
//! only in the task. A lookup checks the task's key, so a hash collision can
//! never return the wrong task: the rare colliding key is kept whole in an
//! overflow map instead.

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use shoal_proto::TaskId;

pub(crate) fn hash(key: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key.as_bytes())
}

#[derive(Default)]
pub(crate) struct KeyIndex {
    primary: FxHashMap<u64, TaskId>,
    overflow: HashMap<Box<str>, TaskId>,
}

impl KeyIndex {
    /// The task named `key`; `key_of` gives a task's key.
    pub fn get<'a>(&self, key: &str, key_of: impl Fn(TaskId) -> &'a str) -> Option<TaskId> {
        if let Some(&id) = self.primary.get(&hash(key)) {
            if key_of(id) == key {
                return Some(id);
            }
        }
        self.overflow.get(key).copied()
    }

    /// Indexes a key that is not indexed yet.
    pub fn insert(&mut self, key: &str, id: TaskId) {
        match self.primary.entry(hash(key)) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(id);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.overflow.insert(key.into(), id);
            }
        }
    }

    /// Forgets the key of task `id`.
    pub fn remove(&mut self, key: &str, id: TaskId) {
        let h = hash(key);
        if self.primary.get(&h) == Some(&id) {
            self.primary.remove(&h);
        } else {
            self.overflow.remove(key);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.primary.len() + self.overflow.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colliding_hashes_still_find_the_right_task() {
        // Force a collision by indexing two keys under one primary slot.
        let names = ["a", "b"];
        let mut idx = KeyIndex::default();
        idx.insert("a", 1);
        // Pretend "b" hashed like "a": put it where a collision would go.
        idx.overflow.insert("b".into(), 2);
        let key_of = |id: TaskId| names[(id - 1) as usize];
        assert_eq!(idx.get("a", key_of), Some(1));
        assert_eq!(idx.get("b", key_of), Some(2));
        assert_eq!(idx.get("c", key_of), None);
        idx.remove("a", 1);
        assert_eq!(idx.get("a", key_of), None);
        assert_eq!(idx.get("b", key_of), Some(2));
        idx.remove("b", 2);
        assert_eq!(idx.len(), 0);
    }

    #[test]
    fn a_key_whose_slot_is_taken_goes_to_overflow() {
        let mut idx = KeyIndex::default();
        idx.insert("x", 1);
        // Same key text for a second task can only happen after a removal,
        // but a different key with a taken slot lands in overflow.
        idx.primary.insert(hash("y"), 1);
        idx.insert("y", 2);
        let key_of = |id: TaskId| if id == 1 { "x" } else { "y" };
        assert_eq!(idx.get("y", key_of), Some(2));
        assert_eq!(idx.get("x", key_of), Some(1));
    }
}
