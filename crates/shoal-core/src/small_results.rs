//! Small results the scheduler keeps a copy of.
//!
//! Workers send every result of at most 64 KiB along with `TaskFinished`
//! (the scheduler forwards it to the clients that want it). The core keeps
//! these copies, within a byte budget, for as long as the task is in memory.
//! A kept result survives the death of every worker that held it: the task
//! stays in memory with no holder, tasks that need it get it inside their
//! `ComputeTask`, and nothing is computed again. Under frequent worker
//! deaths this is what keeps finished work finished.

use rustc_hash::FxHashMap;
use shoal_proto::{Payload, TaskId};

/// Bytes of small results kept by default (see
/// [`crate::CoreConfig::keep_bytes`]).
pub const DEFAULT_KEEP_BYTES: u64 = 256 << 20;

/// The kept copies and their total size.
#[derive(Debug, Default)]
pub(crate) struct Kept {
    values: FxHashMap<TaskId, Payload>,
    bytes: u64,
}

impl Kept {
    /// Keeps `value` for `id` if it fits in `budget`; whether it is kept.
    pub fn keep(&mut self, id: TaskId, value: &Payload, budget: u64) -> bool {
        if self.values.contains_key(&id) {
            return true;
        }
        let n = value.nbytes();
        if self.bytes + n > budget {
            return false;
        }
        self.bytes += n;
        self.values.insert(id, value.clone());
        true
    }

    /// Forgets the copy of `id`, if any.
    pub fn drop(&mut self, id: TaskId) {
        if let Some(v) = self.values.remove(&id) {
            self.bytes -= v.nbytes();
        }
    }

    pub fn get(&self, id: TaskId) -> Option<&Payload> {
        self.values.get(&id)
    }

    pub fn contains(&self, id: TaskId) -> bool {
        self.values.contains_key(&id)
    }

    /// The total size of the kept copies.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn ids(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.values.keys().copied()
    }

    /// The size of the kept copies, counted again (for the invariants).
    pub fn recount(&self) -> u64 {
        self.values.values().map(Payload::nbytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn payload(n: usize) -> Payload {
        Payload::single(Bytes::from(vec![0u8; n]))
    }

    #[test]
    fn keeps_within_the_budget_and_counts_what_it_drops() {
        let mut k = Kept::default();
        assert!(k.keep(1, &payload(60), 100));
        assert!(!k.keep(2, &payload(60), 100), "over the budget");
        assert!(k.keep(3, &payload(40), 100));
        assert_eq!(k.bytes(), 100);
        assert!(k.keep(1, &payload(60), 100), "already kept");
        assert_eq!(k.bytes(), 100);
        k.drop(1);
        k.drop(1);
        assert_eq!(k.bytes(), 40);
        assert_eq!(k.recount(), 40);
        assert!(k.contains(3) && !k.contains(1) && k.get(2).is_none());
    }
}
