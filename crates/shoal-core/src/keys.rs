//! Finding tasks by key without storing any key twice.
//!
//! The index is a hash table of task slots alone (the low 32 bits of a task
//! id, see [`crate::table`]): a key's hash finds the bucket and the task in
//! that slot (the caller's `task_at`) confirms the match by its own key, so
//! colliding hashes never return the wrong task, and the table stores
//! neither keys, hashes nor whole ids: 4 bytes and a control byte per
//! bucket. Growing the table hashes each key again.

use hashbrown::HashTable;
use shoal_proto::TaskId;

pub(crate) fn hash(key: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key.as_bytes())
}

/// The slot part of a task id.
fn slot(id: TaskId) -> u32 {
    id as u32
}

#[derive(Default)]
pub(crate) struct KeyIndex {
    slots: HashTable<u32>,
}

impl KeyIndex {
    /// The task named `key`; `task_at` gives the id and key of the task in
    /// a slot.
    pub fn get<'a>(
        &self,
        key: &str,
        task_at: impl Fn(u32) -> Option<(TaskId, &'a str)>,
    ) -> Option<TaskId> {
        let &s = self
            .slots
            .find(hash(key), |&s| task_at(s).is_some_and(|(_, k)| k == key))?;
        task_at(s).map(|(id, _)| id)
    }

    /// Indexes task `id` under `key`, which is not indexed yet; `key_at`
    /// gives the key of the task in each slot indexed before.
    pub fn insert<'a>(&mut self, key: &str, id: TaskId, key_at: impl Fn(u32) -> &'a str) {
        self.slots
            .insert_unique(hash(key), slot(id), |&other| hash(key_at(other)));
    }

    /// Forgets task `id`, indexed under `key`.
    pub fn remove(&mut self, key: &str, id: TaskId) {
        if let Ok(entry) = self.slots.find_entry(hash(key), |&s| s == slot(id)) {
            entry.remove();
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_find_their_tasks_through_growth_and_removal() {
        let names: Vec<String> = (0..5000).map(|i| format!("k-{i}")).collect();
        let key_of = |s: u32| names[s as usize].as_str();
        let task_at = |s: u32| Some((TaskId::from(s), key_of(s)));
        let mut idx = KeyIndex::default();
        for (i, k) in names.iter().enumerate() {
            idx.insert(k, i as TaskId, key_of);
        }
        assert!(names
            .iter()
            .enumerate()
            .all(|(i, k)| idx.get(k, task_at) == Some(i as TaskId)));
        assert_eq!(idx.get("k-5000", task_at), None);
        for (i, k) in names.iter().enumerate().step_by(2) {
            idx.remove(k, i as TaskId);
        }
        assert_eq!(idx.len(), 2500);
        for (i, k) in names.iter().enumerate() {
            let found = idx.get(k, task_at);
            assert_eq!(found, (i % 2 == 1).then_some(i as TaskId), "{k}");
        }
    }

    #[test]
    fn a_hash_collision_is_told_apart_by_the_key() {
        // Two different keys in one bucket chain: each lookup confirms the
        // key, so neither finds the other's task.
        let names = ["a", "b"];
        let key_of = |s: u32| names[s as usize];
        let task_at = |s: u32| Some((TaskId::from(s), key_of(s)));
        let mut idx = KeyIndex::default();
        let h = hash("a");
        idx.slots.insert_unique(h, 0, |&o| hash(key_of(o)));
        idx.slots.insert_unique(h, 1, |&o| hash(key_of(o)));
        assert_eq!(idx.slots.find(h, |&s| key_of(s) == "b").copied(), Some(1));
        assert_eq!(idx.get("a", task_at), Some(0));
        idx.remove("a", 0);
        assert_eq!(idx.get("a", task_at), None);
        assert_eq!(idx.slots.find(h, |&s| key_of(s) == "b").copied(), Some(1));
    }

    #[test]
    fn a_slot_found_is_read_as_the_whole_id_of_its_task() {
        // The index keeps slots; the id it gives back is the one of the
        // task in the slot now (its sequence number in the high bits).
        let id: TaskId = (7 << 32) | 3;
        let task_at = |s: u32| (s == 3).then_some((id, "k"));
        let mut idx = KeyIndex::default();
        idx.insert("k", id, |_| "k");
        assert_eq!(idx.get("k", task_at), Some(id));
        idx.remove("k", id);
        assert_eq!(idx.get("k", task_at), None);
    }
}
