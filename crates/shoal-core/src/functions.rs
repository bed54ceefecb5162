//! The pickled functions clients sent, kept while something may still run
//! them.
//!
//! A client sends each function once per connection and then names it by
//! its hash, so the scheduler must keep a function while its sender is
//! connected; past that, only while a task refers to it. A function with
//! neither is dropped: a scheduler that runs for weeks does not keep every
//! lambda a notebook ever sent. Workers that were sent a function keep
//! their copy (`Worker::functions`), so a client that connects again and
//! sends it anew is not sent it again.
//!
//! The first definition of a hash is the one kept: a later client whose
//! function has the same hash and other bytes cannot replace it (the
//! scheduler's log says so), so no client changes what another client's
//! tasks run by accident. The hash (XXH3, 64 bits) is not a defence
//! against a client that collides on purpose; such a client holds the
//! cluster's token, and any token holder can run any code on the workers
//! already.

use rustc_hash::FxHashMap;
use shoal_proto::{ClientId, FuncHash, FunctionDef, LITERAL_FUNC};

/// Functions by hash, with who may still need each.
#[derive(Default)]
pub(crate) struct FunctionTable {
    entries: FxHashMap<FuncHash, Entry>,
}

#[derive(Default)]
struct Entry {
    /// None while tasks name a function no client sent (they fail).
    def: Option<FunctionDef>,
    /// Connected clients that sent it.
    senders: Vec<ClientId>,
    /// Tasks that name it.
    tasks: u32,
}

impl Entry {
    fn unused(&self) -> bool {
        self.senders.is_empty() && self.tasks == 0
    }
}

/// A client sent other bytes under the hash of a function kept already.
#[derive(Debug)]
pub(crate) struct Conflict {
    pub hash: FuncHash,
    pub kept: String,
    pub sent: String,
}

impl FunctionTable {
    /// Client `c` sent `def`: kept unless another definition of its hash
    /// is.
    pub(crate) fn sent(&mut self, c: ClientId, def: FunctionDef) -> Result<(), Conflict> {
        let entry = self.entries.entry(def.hash).or_default();
        if !entry.senders.contains(&c) {
            entry.senders.push(c);
        }
        match &entry.def {
            None => {
                entry.def = Some(def);
                Ok(())
            }
            Some(kept) if kept.bytes == def.bytes => Ok(()),
            Some(kept) => Err(Conflict {
                hash: def.hash,
                kept: kept.name.clone(),
                sent: def.name,
            }),
        }
    }

    pub(crate) fn get(&self, hash: FuncHash) -> Option<&FunctionDef> {
        self.entries.get(&hash)?.def.as_ref()
    }

    pub(crate) fn contains(&self, hash: FuncHash) -> bool {
        self.get(hash).is_some()
    }

    /// A task naming `hash` was made.
    pub(crate) fn task_added(&mut self, hash: FuncHash) {
        if hash != LITERAL_FUNC {
            self.entries.entry(hash).or_default().tasks += 1;
        }
    }

    /// A task naming `hash` was forgotten; true if the function was
    /// dropped with it.
    pub(crate) fn task_forgotten(&mut self, hash: FuncHash) -> bool {
        let Some(entry) = self.entries.get_mut(&hash) else {
            return false;
        };
        entry.tasks = entry.tasks.saturating_sub(1);
        if entry.unused() {
            self.entries.remove(&hash);
            return true;
        }
        false
    }

    /// Client `c` is gone; returns the functions dropped with it.
    pub(crate) fn client_gone(&mut self, c: ClientId) -> Vec<FuncHash> {
        let mut dropped = Vec::new();
        self.entries.retain(|&hash, entry| {
            entry.senders.retain(|&s| s != c);
            let keep = !entry.unused();
            if !keep {
                dropped.push(hash);
            }
            keep
        });
        dropped
    }

    /// Functions kept with a definition.
    pub(crate) fn count(&self) -> usize {
        self.entries.values().filter(|e| e.def.is_some()).count()
    }

    /// Each entry's hash, task count and senders, for the invariants.
    pub(crate) fn counts(&self) -> impl Iterator<Item = (FuncHash, u32, &[ClientId])> {
        self.entries
            .iter()
            .map(|(&h, e)| (h, e.tasks, e.senders.as_slice()))
    }
}
