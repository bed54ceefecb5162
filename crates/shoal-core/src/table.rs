//! The tasks the core knows, by id: slots in chunks, no hashing and no
//! allocation per task.
//!
//! A task id is the task's slot (low 32 bits) and the sequence number it was
//! added under (high 32 bits), which the task keeps. So:
//! - ids grow in submission order, which the ready queue uses to break ties
//!   (see [`submitted_before`]);
//! - a freed slot is reused by a later task under a new id, and a lookup by
//!   the old id finds nothing, because the slot's task carries another
//!   sequence number (a worker reporting on a task forgotten meanwhile is
//!   told apart from the task now in that slot).
//!
//! Slots come in chunks of [`CHUNK`]. A new chunk is made only when every
//! chunk is full, and a chunk is freed when its last task goes (one empty
//! chunk is kept for the next task), so the table's memory follows the
//! tasks alive, never more than the most that were alive at once.

use std::cmp::Ordering;

use shoal_proto::TaskId;

use crate::task::Task;

const CHUNK_BITS: u32 = 10;
/// Slots per chunk.
pub(crate) const CHUNK: usize = 1 << CHUNK_BITS;

struct Chunk {
    slots: Box<[Option<Task>]>,
    /// Free slots of this chunk, the next to use last.
    free: Vec<u16>,
    /// Whether the chunk is listed in [`TaskTable::open`].
    open: bool,
}

impl Chunk {
    fn new() -> Box<Chunk> {
        Box::new(Chunk {
            slots: (0..CHUNK).map(|_| None).collect(),
            free: (0..CHUNK as u16).rev().collect(),
            open: false,
        })
    }

    fn live(&self) -> usize {
        CHUNK - self.free.len()
    }
}

#[derive(Default)]
pub(crate) struct TaskTable {
    chunks: Vec<Option<Box<Chunk>>>,
    /// The chunks with a free slot (every one of them, each once); new
    /// tasks go to the last.
    open: Vec<u32>,
    /// Indexes of freed chunks, for the next chunk made.
    vacant: Vec<u32>,
    /// An empty chunk kept for reuse.
    spare: Option<Box<Chunk>>,
    /// The sequence number of the latest id given out.
    seq: u32,
    len: usize,
}

/// The id of the task added under sequence number `seq` in slot `i` of
/// chunk `c` (the inverse of [`split`]).
fn join(seq: u32, c: usize, i: usize) -> TaskId {
    (u64::from(seq) << 32) | ((c as u64) << CHUNK_BITS) | i as u64
}

fn split(id: TaskId) -> (u32, usize, usize) {
    let slot = id as u32 as usize;
    ((id >> 32) as u32, slot >> CHUNK_BITS, slot & (CHUNK - 1))
}

/// Whether `a` was added before `b` (their sequence numbers compared as
/// serial numbers: correct across the wrap of the 32-bit counter while the
/// two are fewer than 2³¹ submissions apart).
pub(crate) fn submitted_before(a: TaskId, b: TaskId) -> Ordering {
    let (sa, sb) = ((a >> 32) as u32, (b >> 32) as u32);
    (sa.wrapping_sub(sb) as i32).cmp(&0)
}

impl TaskTable {
    /// The id the next task gets, with its slot held for it: pass both to
    /// [`TaskTable::fill`] before anything else is added.
    pub fn reserve(&mut self) -> TaskId {
        let c = match self.open.last() {
            Some(&c) => c as usize,
            None => self.new_chunk(),
        };
        let Some(ch) = self.chunk_mut(c) else {
            unreachable!("an open chunk exists");
        };
        let Some(i) = ch.free.pop() else {
            unreachable!("an open chunk has a free slot");
        };
        if ch.free.is_empty() {
            ch.open = false;
            self.open.pop();
        }
        self.seq = self.seq.wrapping_add(1);
        if self.seq == 0 {
            self.seq = 1; // id 0 is never a task's
        }
        self.len += 1;
        join(self.seq, c, usize::from(i))
    }

    /// A chunk of free slots (the spare, or a new one), listed as open.
    fn new_chunk(&mut self) -> usize {
        let mut chunk = self.spare.take().unwrap_or_else(Chunk::new);
        chunk.open = true;
        let c = match self.vacant.pop() {
            Some(c) => {
                self.chunks[c as usize] = Some(chunk);
                c as usize
            }
            None => {
                self.chunks.push(Some(chunk));
                self.chunks.len() - 1
            }
        };
        self.open.push(c as u32);
        c
    }

    /// Puts `task` in the slot reserved for `id`.
    pub fn fill(&mut self, id: TaskId, mut task: Task) {
        let (seq, c, i) = split(id);
        task.seq = seq;
        if let Some(ch) = self.chunk_mut(c) {
            debug_assert!(ch.slots[i].is_none(), "slot {i} of chunk {c} was reserved");
            ch.slots[i] = Some(task);
        }
    }

    fn chunk(&self, c: usize) -> Option<&Chunk> {
        self.chunks.get(c)?.as_deref()
    }

    fn chunk_mut(&mut self, c: usize) -> Option<&mut Chunk> {
        self.chunks.get_mut(c)?.as_deref_mut()
    }

    pub fn get(&self, id: &TaskId) -> Option<&Task> {
        let (seq, c, i) = split(*id);
        self.chunk(c)?.slots[i].as_ref().filter(|t| t.seq == seq)
    }

    pub fn get_mut(&mut self, id: &TaskId) -> Option<&mut Task> {
        let (seq, c, i) = split(*id);
        self.chunk_mut(c)?.slots[i]
            .as_mut()
            .filter(|t| t.seq == seq)
    }

    /// The task in `slot` (the low 32 bits of its id), with its id.
    pub fn at_slot(&self, slot: u32) -> Option<(TaskId, &Task)> {
        let (_, c, i) = split(u64::from(slot));
        let t = self.chunk(c)?.slots[i].as_ref()?;
        Some((join(t.seq, c, i), t))
    }

    pub fn contains_key(&self, id: &TaskId) -> bool {
        self.get(id).is_some()
    }

    /// Removes the task `id`; its slot goes to a later task.
    pub fn remove(&mut self, id: &TaskId) -> Option<Task> {
        let (seq, c, i) = split(*id);
        let ch = self.chunks.get_mut(c)?.as_deref_mut()?;
        if ch.slots[i].as_ref()?.seq != seq {
            return None;
        }
        let task = ch.slots[i].take();
        ch.free.push(i as u16);
        let (emptied, listed) = (ch.live() == 0, ch.open);
        ch.open = true;
        self.len -= 1;
        if emptied {
            // Free the chunk, or keep it as the spare.
            self.open.retain(|&o| o as usize != c);
            self.vacant.push(c as u32);
            if let Some(mut chunk) = self.chunks[c].take() {
                if self.spare.is_none() {
                    chunk.open = false;
                    chunk.free.sort_unstable_by(|a, b| b.cmp(a));
                    self.spare = Some(chunk);
                }
            }
        } else if !listed {
            self.open.push(c as u32);
        }
        task
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Every task with its id, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (TaskId, &Task)> + '_ {
        self.chunks.iter().enumerate().flat_map(|(c, ch)| {
            ch.iter().flat_map(move |ch| {
                ch.slots.iter().enumerate().filter_map(move |(i, t)| {
                    let t = t.as_ref()?;
                    Some((join(t.seq, c, i), t))
                })
            })
        })
    }

    pub fn values(&self) -> impl Iterator<Item = &Task> + '_ {
        self.iter().map(|(_, t)| t)
    }

    /// Chunks allocated (the spare included), for tests of the memory kept.
    #[cfg(test)]
    fn chunks_held(&self) -> usize {
        self.chunks.iter().flatten().count() + usize::from(self.spare.is_some())
    }
}

impl std::ops::Index<&TaskId> for TaskTable {
    type Output = Task;

    fn index(&self, id: &TaskId) -> &Task {
        match self.get(id) {
            Some(t) => t,
            None => panic!("task {id:#x} is not in the table"),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::task::{Dependents, TaskState};

    /// A task with nothing in it but `func` (to tell tasks apart).
    pub(crate) fn task(n: u64) -> Task {
        Task {
            blob: Box::new([]),
            deps_len: 0,
            key_len: 0,
            seq: 0,
            func: n,
            dependents: Dependents::None,
            state: TaskState::Released,
            wanted_by: Box::new([]),
            extra: None,
            nbytes: 0,
            waiting_on: 0,
            pending_dependents: 0,
            priority: 0,
            retries_left: 0,
            attempts: 0,
            type_name: 0,
            counted_pending: false,
            pinned: false,
            prefix: 0,
        }
    }

    fn add(t: &mut TaskTable, n: u64) -> TaskId {
        let id = t.reserve();
        t.fill(id, task(n));
        id
    }

    #[test]
    fn ids_grow_and_find_their_task() {
        let mut t = TaskTable::default();
        let ids: Vec<TaskId> = (0..3000).map(|n| add(&mut t, n)).collect();
        assert!(ids.windows(2).all(|w| submitted_before(w[0], w[1]).is_lt()));
        assert!(ids.iter().all(|&id| id != 0));
        for (n, id) in ids.iter().enumerate() {
            assert_eq!(t[id].func, n as u64);
        }
        assert_eq!(t.len(), 3000);
        assert_eq!(t.iter().count(), 3000);
        assert!(t.iter().all(|(id, task)| ids[task.func as usize] == id));
    }

    #[test]
    fn a_stale_id_finds_nothing_after_its_slot_is_reused() {
        let mut t = TaskTable::default();
        let a = add(&mut t, 1);
        let _keep = add(&mut t, 2);
        assert_eq!(t.remove(&a).map(|x| x.func), Some(1));
        assert!(t.remove(&a).is_none());
        let b = add(&mut t, 3);
        assert_eq!(a as u32, b as u32, "the slot is reused");
        assert!(t.get(&a).is_none());
        assert!(t.get_mut(&a).is_none());
        assert!(t.remove(&a).is_none());
        assert_eq!(t[&b].func, 3);
        assert!(submitted_before(a, b).is_lt());
    }

    #[test]
    fn empty_chunks_are_freed() {
        let mut t = TaskTable::default();
        let ids: Vec<TaskId> = (0..10 * CHUNK as u64).map(|n| add(&mut t, n)).collect();
        assert_eq!(t.chunks_held(), 10);
        // Keep one task of the last chunk: the other nine chunks go, but
        // one is kept as the spare.
        for id in &ids[..ids.len() - 1] {
            t.remove(id);
        }
        assert_eq!(t.len(), 1);
        assert_eq!(t.chunks_held(), 2);
        assert_eq!(t[&ids[ids.len() - 1]].func, ids.len() as u64 - 1);
        // New tasks fill the held chunk, then the spare, then new chunks.
        let more: Vec<TaskId> = (0..3 * CHUNK as u64).map(|n| add(&mut t, n)).collect();
        assert_eq!(t.chunks_held(), 4);
        assert_eq!(t.len(), 3 * CHUNK + 1);
        for id in &more {
            assert!(t.get(id).is_some());
        }
    }

    #[test]
    fn ordering_survives_the_counter_wrapping() {
        let before = (u64::from(u32::MAX) << 32) | 5;
        let after = (1u64 << 32) | 7;
        assert!(submitted_before(before, after).is_lt());
        assert!(submitted_before(after, before).is_gt());
        assert!(submitted_before(after, after).is_eq());
    }
}
