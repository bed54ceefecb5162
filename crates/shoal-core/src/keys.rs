//! Finding tasks by key without storing any key twice.
//!
//! The index is a hash table of task ids alone: a key's hash finds the
//! bucket and the task's own key (the caller's `key_of`) confirms the match,
//! so colliding hashes never return the wrong task, and the table stores
//! neither keys nor hashes. Growing the table hashes each key again.

use hashbrown::HashTable;
use shoal_proto::TaskId;

pub(crate) fn hash(key: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key.as_bytes())
}

#[derive(Default)]
pub(crate) struct KeyIndex {
    ids: HashTable<TaskId>,
}

impl KeyIndex {
    /// The task named `key`; `key_of` gives a task's key.
    pub fn get<'a>(&self, key: &str, key_of: impl Fn(TaskId) -> &'a str) -> Option<TaskId> {
        self.ids.find(hash(key), |&id| key_of(id) == key).copied()
    }

    /// Indexes task `id` under `key`, which is not indexed yet; `key_of`
    /// gives the key of every task indexed before.
    pub fn insert<'a>(&mut self, key: &str, id: TaskId, key_of: impl Fn(TaskId) -> &'a str) {
        self.ids
            .insert_unique(hash(key), id, |&other| hash(key_of(other)));
    }

    /// Forgets task `id`, indexed under `key`.
    pub fn remove(&mut self, key: &str, id: TaskId) {
        if let Ok(entry) = self.ids.find_entry(hash(key), |&x| x == id) {
            entry.remove();
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_find_their_tasks_through_growth_and_removal() {
        let names: Vec<String> = (0..5000).map(|i| format!("k-{i}")).collect();
        let key_of = |id: TaskId| names[id as usize].as_str();
        let mut idx = KeyIndex::default();
        for (i, k) in names.iter().enumerate() {
            idx.insert(k, i as TaskId, key_of);
        }
        assert!(names
            .iter()
            .enumerate()
            .all(|(i, k)| idx.get(k, key_of) == Some(i as TaskId)));
        assert_eq!(idx.get("k-5000", key_of), None);
        for (i, k) in names.iter().enumerate().step_by(2) {
            idx.remove(k, i as TaskId);
        }
        assert_eq!(idx.len(), 2500);
        for (i, k) in names.iter().enumerate() {
            let found = idx.get(k, key_of);
            assert_eq!(found, (i % 2 == 1).then_some(i as TaskId), "{k}");
        }
    }

    #[test]
    fn a_hash_collision_is_told_apart_by_the_key() {
        // Two different keys in one bucket chain: each lookup confirms the
        // key, so neither finds the other's task.
        let names = ["a", "b"];
        let key_of = |id: TaskId| names[id as usize];
        let mut idx = KeyIndex::default();
        let h = hash("a");
        idx.ids.insert_unique(h, 0, |&o| hash(key_of(o)));
        idx.ids.insert_unique(h, 1, |&o| hash(key_of(o)));
        assert_eq!(idx.ids.find(h, |&id| key_of(id) == "b").copied(), Some(1));
        assert_eq!(idx.get("a", key_of), Some(0));
        idx.remove("a", 0);
        assert_eq!(idx.get("a", key_of), None);
        assert_eq!(idx.ids.find(h, |&id| key_of(id) == "b").copied(), Some(1));
    }
}
