//! The scheduler's record of one task, kept small: a million of them must
//! fit in a few hundred megabytes.

use bytes::Bytes;
use shoal_proto::{ClientId, FuncHash, Payload, TaskError, TaskId, WorkerId};

/// Where a task is in its life. See ARCHITECTURE.md for the diagram.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TaskState {
    /// Known (its spec is kept) but neither computed, queued nor held anywhere.
    Released,
    /// Needed, waiting for `waiting_on` dependencies to reach memory.
    Waiting,
    /// Needed, every dependency in memory, queued for a worker.
    Ready,
    /// Sent to `worker`; `started` once the worker said an executor took it.
    Assigned { worker: WorkerId, started: bool },
    /// The result is held by these workers.
    Memory { holders: Vec<WorkerId> },
    /// Failed; `Task::error` says why.
    Erred,
}

/// The tasks depending on one task: most have exactly one, stored inline
/// (and the rare list is boxed, so this takes 16 bytes, not 24).
#[derive(Debug, Default)]
pub(crate) enum Dependents {
    #[default]
    None,
    One(TaskId),
    // Boxed on purpose: a thin pointer keeps every task's record small.
    #[allow(clippy::box_collection)]
    Many(Box<Vec<TaskId>>),
}

impl Dependents {
    pub fn push(&mut self, id: TaskId) {
        *self = match std::mem::take(self) {
            Dependents::None => Dependents::One(id),
            Dependents::One(a) => Dependents::Many(Box::new(vec![a, id])),
            Dependents::Many(mut v) => {
                v.push(id);
                Dependents::Many(v)
            }
        };
    }

    pub fn remove(&mut self, id: TaskId) {
        match self {
            Dependents::One(a) if *a == id => *self = Dependents::None,
            Dependents::Many(v) => {
                if let Some(pos) = v.iter().position(|x| *x == id) {
                    v.swap_remove(pos);
                }
                if v.len() == 1 {
                    *self = Dependents::One(v[0]);
                }
            }
            _ => {}
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Dependents::None)
    }

    pub fn len(&self) -> usize {
        match self {
            Dependents::None => 0,
            Dependents::One(_) => 1,
            Dependents::Many(v) => v.len(),
        }
    }

    /// The `i`th dependent; `i < len()`.
    pub fn get(&self, i: usize) -> TaskId {
        match self {
            Dependents::One(a) => *a,
            Dependents::Many(v) => v[i],
            Dependents::None => unreachable!("no dependents"),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = TaskId> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

/// What few tasks have, kept out of line.
#[derive(Debug, Default)]
pub(crate) struct Extra {
    /// Worker names or addresses the task may run on (empty: any).
    pub restrictions: Box<[String]>,
    pub error: Option<TaskError>,
    /// Retries wait: seconds before the first, and at most.
    pub backoff: Option<(f64, f64)>,
    /// How many times the task was retried.
    pub retried: u32,
    /// The worker its last attempt failed on: a retry goes to another
    /// worker as free, if there is one (the failure may be that worker's).
    pub failed_on: Option<WorkerId>,
    /// Cluster-wide limits it counts against.
    pub limits: Box<[std::sync::Arc<str>]>,
    /// Whether it holds a slot of each of `limits` (while assigned).
    pub holds_limits: bool,
    /// Resources it takes on its worker while assigned there.
    pub resources: Box<[(std::sync::Arc<str>, f64)]>,
    /// Whether `restrictions` may be ignored when no such worker is connected.
    pub loose: bool,
}

pub(crate) struct Task {
    /// The ids of its dependencies (`u64`s, little-endian), the key's
    /// bytes, then the pickled arguments packed (see [`pack`]): one
    /// allocation for all three.
    pub blob: Box<[u8]>,
    pub deps_len: u32,
    pub key_len: u32,
    /// The sequence number in the task's id (see [`crate::table`]).
    pub seq: u32,
    pub func: FuncHash,
    /// Tasks that depend on this one and are not forgotten.
    pub dependents: Dependents,
    pub state: TaskState,
    pub wanted_by: Box<[ClientId]>,
    pub extra: Option<Box<Extra>>,
    pub nbytes: u64,
    /// In `Waiting`: how many dependencies are not yet in memory.
    pub waiting_on: u32,
    /// How many dependents are waiting, ready or assigned.
    pub pending_dependents: u32,
    pub priority: i32,
    pub retries_left: u32,
    /// How many workers died while running this task.
    pub attempts: u32,
    /// Index of the result's type name in the core's table.
    pub type_name: u32,
    /// Whether this task counts in its dependencies' `pending_dependents`.
    pub counted_pending: bool,
    /// Kept until the rest of its graph has arrived (see `SubmitPart`).
    pub pinned: bool,
    /// Its key's prefix in the core's statistics.
    pub prefix: u32,
}

impl Task {
    /// Waiting, ready or assigned: someone will produce this task's result.
    pub fn is_pending(&self) -> bool {
        matches!(
            self.state,
            TaskState::Waiting | TaskState::Ready | TaskState::Assigned { .. }
        )
    }

    /// Someone still needs the result: a client, a pending dependent, or a
    /// graph still arriving.
    pub fn is_needed(&self) -> bool {
        !self.wanted_by.is_empty() || self.pending_dependents > 0 || self.pinned
    }

    /// The blob of a task named `key` with these dependencies and argument
    /// frames, with the `deps_len` and `key_len` to store beside it.
    pub fn blob(deps: &[TaskId], key: &str, frames: &[Bytes]) -> (Box<[u8]>, u32, u32) {
        let mut blob = Vec::with_capacity(8 * deps.len() + key.len() + packed_len(frames));
        for d in deps {
            blob.extend_from_slice(&d.to_le_bytes());
        }
        blob.extend_from_slice(key.as_bytes());
        pack_into(frames, &mut blob);
        (blob.into_boxed_slice(), deps.len() as u32, key.len() as u32)
    }

    fn key_start(&self) -> usize {
        8 * self.deps_len as usize
    }

    pub fn key(&self) -> &str {
        let start = self.key_start();
        // Copied from a `String`, so it is valid UTF-8.
        std::str::from_utf8(&self.blob[start..start + self.key_len as usize]).unwrap_or_default()
    }

    /// The arguments as a payload to send.
    pub fn payload(&self) -> Payload {
        unpack(&self.blob[self.key_start() + self.key_len as usize..])
    }

    /// The tasks whose results it needs, in the order the client named them.
    pub fn deps(&self) -> Deps<'_> {
        Deps(self.blob[..self.key_start()].chunks_exact(8))
    }

    /// The `i`th dependency; `i < deps().len()`.
    pub fn dep(&self, i: usize) -> TaskId {
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.blob[8 * i..8 * i + 8]);
        TaskId::from_le_bytes(word)
    }

    pub fn has_deps(&self) -> bool {
        self.deps_len > 0
    }

    pub fn restrictions(&self) -> &[String] {
        self.extra.as_ref().map_or(&[], |e| &e.restrictions)
    }

    /// Whether `restrictions` may be ignored when no such worker is connected.
    pub fn loose(&self) -> bool {
        self.extra.as_ref().is_some_and(|e| e.loose)
    }

    pub fn resources(&self) -> &[(std::sync::Arc<str>, f64)] {
        self.extra.as_ref().map_or(&[], |e| &e.resources)
    }

    /// Whether it may move to any other worker (work stealing): it has no
    /// worker restrictions and needs no resources.
    pub fn movable(&self) -> bool {
        self.extra
            .as_ref()
            .is_none_or(|e| e.restrictions.is_empty() && e.resources.is_empty())
    }

    pub fn error(&self) -> Option<&TaskError> {
        self.extra.as_ref()?.error.as_ref()
    }

    pub fn set_error(&mut self, error: TaskError) {
        self.extra.get_or_insert_with(Box::default).error = Some(error);
    }

    pub fn clear_error(&mut self) {
        if let Some(extra) = self.extra.as_mut() {
            extra.error = None;
        }
    }
}

/// A task's dependencies (see [`Task::deps`]).
#[derive(Clone)]
pub(crate) struct Deps<'a>(std::slice::ChunksExact<'a, u8>);

impl Iterator for Deps<'_> {
    type Item = TaskId;

    fn next(&mut self) -> Option<TaskId> {
        let mut word = [0u8; 8];
        word.copy_from_slice(self.0.next()?);
        Some(TaskId::from_le_bytes(word))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for Deps<'_> {}

fn packed_len(frames: &[Bytes]) -> usize {
    4 + 4 * frames.len() + frames.iter().map(|f| f.len()).sum::<usize>()
}

/// Packs frames into one allocation: a `u32` count, the `u32` lengths, then
/// the bytes.
#[cfg(test)]
pub(crate) fn pack(frames: &[Bytes]) -> Box<[u8]> {
    let mut out = Vec::with_capacity(packed_len(frames));
    pack_into(frames, &mut out);
    out.into_boxed_slice()
}

fn pack_into(frames: &[Bytes], out: &mut Vec<u8>) {
    out.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    for f in frames {
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
    }
    for f in frames {
        out.extend_from_slice(f);
    }
}

fn read_u32(b: &[u8], at: usize) -> usize {
    let mut word = [0u8; 4];
    word.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(word) as usize
}

/// The inverse of [`pack`].
pub(crate) fn unpack(packed: &[u8]) -> Payload {
    let n = read_u32(packed, 0);
    let mut at = 4 + 4 * n;
    let frames = (0..n)
        .map(|i| {
            let len = read_u32(packed, 4 + 4 * i);
            let f = Bytes::copy_from_slice(&packed[at..at + len]);
            at += len;
            f
        })
        .collect();
    Payload { frames }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips() {
        for frames in [
            vec![],
            vec![Bytes::from_static(b"")],
            vec![Bytes::from_static(b"abc"), Bytes::from(vec![7u8; 1000])],
        ] {
            let p = Payload {
                frames: frames.clone(),
            };
            assert_eq!(unpack(&pack(&frames)), p);
        }
    }

    #[test]
    fn a_task_record_stays_small() {
        // A million of them are held at once: every field added here costs
        // a megabyte per byte (see tests/memory.rs for the whole task).
        assert!(
            std::mem::size_of::<Task>() <= 144,
            "{}",
            std::mem::size_of::<Task>()
        );
        assert_eq!(std::mem::size_of::<Dependents>(), 16);
    }

    #[test]
    fn the_blob_holds_deps_key_and_arguments() {
        let frames = vec![Bytes::from_static(b"args"), Bytes::from_static(b"")];
        for deps in [vec![], vec![7u64, u64::MAX, 1 << 40]] {
            let (blob, deps_len, key_len) = Task::blob(&deps, "k-1", &frames);
            let t = Task {
                blob,
                deps_len,
                key_len,
                ..crate::table::tests::task(0)
            };
            assert_eq!(t.deps().collect::<Vec<_>>(), deps);
            assert_eq!(t.deps().len(), deps.len());
            assert_eq!(t.has_deps(), !deps.is_empty());
            assert_eq!(t.key(), "k-1");
            assert_eq!(t.payload().frames, frames);
        }
    }

    #[test]
    fn dependents_grow_and_shrink() {
        let mut d = Dependents::default();
        assert!(d.is_empty());
        d.push(1);
        d.push(2);
        d.push(3);
        assert_eq!(d.iter().collect::<Vec<_>>(), vec![1, 2, 3]);
        d.remove(2);
        d.remove(1);
        assert!(matches!(d, Dependents::One(3)));
        d.remove(3);
        assert!(d.is_empty());
    }
}
