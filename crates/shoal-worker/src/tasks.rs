//! The life of a task on this worker: one phase per task, changed only by
//! [`Tasks::transition`], which allows exactly the moves of this table.
//! No I/O, no locks and no clocks of its own: the runtime calls it under
//! the state lock and acts on what it returns (wake an executor, tell the
//! scheduler).
//!
//! ```text
//!            assign          inputs_local       start
//!   (none) ─────────▶ Fetching ─────────▶ Queued ─────▶ Running ◀──┐
//!                        │                  │            │  secede  │ rejoin
//!                        │ give_back,       │ give_back, │          ▼
//!                        │ cancel,          │ cancel     │        Seceded
//!                        │ inputs_lost      │            │ end      │ end
//!                        ▼                  ▼            ▼          ▼
//!                                       (gone)
//! ```
//!
//! * **Fetching**: assigned; inputs on their way from peers.
//! * **Queued**: every input is here; waiting for an executor slot.
//! * **Running**: on an executor thread, holding one of the worker's slots.
//! * **Seceded**: still running but holding no slot: the task called
//!   `secede` to wait on other tasks, or its coroutine was handed to the
//!   event loop.
//!
//! A task the scheduler steals before it starts is *given back*; one it
//! cancels before it starts is dropped; one cancelled while it runs keeps
//! running and is marked, so a handed-off coroutine can be stopped. A task
//! that ends while it held a slot frees that slot: the caller must wake an
//! executor then, or a task queued behind it may wait for ever (see
//! [`Ended::freed_slot`]).

use std::collections::{BinaryHeap, HashMap, HashSet};

use shoal_proto::{FuncHash, TaskId};

use crate::pacer::Running;
use crate::state::ReadyTask;

/// Where a task is in its life on this worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Fetching,
    Queued,
    Running,
    Seceded,
}

/// A move [`Tasks::transition`] may make, with what the new phase holds.
enum Move {
    Fetching,
    Queued(ReadyTask),
    /// Into a slot, with the clock of its start.
    Start(Running),
    Seceded,
    /// Back into a slot, with the clock it had.
    Rejoin,
    Gone,
}

/// What [`Tasks::end`] found.
#[derive(Debug)]
pub(crate) struct Ended {
    /// How the task ran, if it ran here.
    pub ran: Option<Running>,
    /// It held a slot, which is free now: wake an executor.
    pub freed_slot: bool,
}

/// Every task assigned to this worker and not yet ended, by phase.
#[derive(Default)]
pub(crate) struct Tasks {
    /// Fetching and Queued tasks; a Queued one holds its queue sequence
    /// number (entries in `queue` with another number are stale).
    waiting: HashMap<TaskId, Option<u64>>,
    /// Queued tasks by priority, then arrival. Holds stale entries of tasks
    /// that left the queue without starting; `start` skips them and
    /// `forget_stale` drops them when they outnumber the live ones.
    queue: BinaryHeap<ReadyTask>,
    queued: usize,
    /// Tasks holding a slot.
    running: HashMap<TaskId, Running>,
    /// Tasks running without a slot.
    seceded: HashMap<TaskId, Running>,
    /// Running or seceded tasks the scheduler cancelled.
    cancelled: HashSet<TaskId>,
    seq: u64,
}

impl Tasks {
    /// The task's phase, or `None` if it is not (or no longer) here.
    pub fn phase(&self, id: TaskId) -> Option<Phase> {
        if let Some(w) = self.waiting.get(&id) {
            Some(if w.is_some() {
                Phase::Queued
            } else {
                Phase::Fetching
            })
        } else if self.running.contains_key(&id) {
            Some(Phase::Running)
        } else if self.seceded.contains_key(&id) {
            Some(Phase::Seceded)
        } else {
            None
        }
    }

    /// The one place a task changes phase; `false` (and nothing changed)
    /// for a move the table does not allow from where the task is.
    fn transition(&mut self, id: TaskId, to: Move) -> bool {
        let from = self.phase(id);
        let allowed = matches!(
            (from, &to),
            (None, Move::Fetching)
                | (Some(Phase::Fetching), Move::Queued(_))
                | (Some(Phase::Queued), Move::Start(_))
                | (Some(Phase::Running), Move::Seceded)
                | (Some(Phase::Seceded), Move::Rejoin)
                | (Some(_), Move::Gone)
        );
        if !allowed {
            return false;
        }
        // Leave the old phase.
        let clock = match from {
            Some(Phase::Fetching) => self.waiting.remove(&id).map(|_| None),
            Some(Phase::Queued) => {
                self.queued -= 1;
                self.waiting.remove(&id).map(|_| None)
            }
            Some(Phase::Running) => self.running.remove(&id).map(Some),
            Some(Phase::Seceded) => self.seceded.remove(&id).map(Some),
            None => None,
        }
        .flatten();
        // Enter the new one.
        match to {
            Move::Fetching => {
                self.waiting.insert(id, None);
            }
            Move::Queued(mut t) => {
                self.seq += 1;
                t.seq = self.seq;
                self.waiting.insert(id, Some(self.seq));
                self.queued += 1;
                self.queue.push(t);
            }
            Move::Start(r) => {
                self.running.insert(id, r);
            }
            Move::Seceded => {
                if let Some(r) = clock {
                    self.seceded.insert(id, r);
                }
            }
            Move::Rejoin => {
                if let Some(r) = clock {
                    self.running.insert(id, r);
                }
            }
            Move::Gone => {
                self.cancelled.remove(&id);
                self.forget_stale();
            }
        }
        true
    }

    /// The scheduler assigned the task here; `false` if it already is.
    pub fn assign(&mut self, id: TaskId) -> bool {
        self.transition(id, Move::Fetching)
    }

    /// Every input of a fetching task is here: it joins the queue. `false`
    /// if it left meanwhile (given back or cancelled): drop it.
    pub fn inputs_local(&mut self, t: ReadyTask) -> bool {
        if self.phase(t.id) != Some(Phase::Fetching) {
            return false;
        }
        self.transition(t.id, Move::Queued(t))
    }

    /// Some input of the task could not be had: it leaves (the scheduler is
    /// told which).
    pub fn inputs_lost(&mut self, id: TaskId) {
        self.transition(id, Move::Gone);
    }

    /// The scheduler steals the task: `true` if it had not started, and is
    /// gone now (to be reported as given back).
    pub fn give_back(&mut self, id: TaskId) -> bool {
        matches!(self.phase(id), Some(Phase::Fetching | Phase::Queued))
            && self.transition(id, Move::Gone)
    }

    /// The scheduler cancels the task: dropped if it has not started,
    /// marked if it runs.
    pub fn cancel(&mut self, id: TaskId) {
        match self.phase(id) {
            Some(Phase::Fetching | Phase::Queued) => {
                self.transition(id, Move::Gone);
            }
            Some(Phase::Running | Phase::Seceded) => {
                self.cancelled.insert(id);
            }
            None => {}
        }
    }

    /// Starts the first queued task allowed to: any while fewer than
    /// `nthreads` slots run tasks not known to block, else only a task of a
    /// function in `blocking`. Looks through at most `scan` live entries.
    pub fn start(
        &mut self,
        nthreads: u32,
        blocking: &HashSet<FuncHash>,
        scan: usize,
    ) -> Option<ReadyTask> {
        let base_free = self.computing(blocking) < nthreads;
        let mut skipped = Vec::new();
        let mut found = None;
        while let Some(t) = self.queue.pop() {
            if self.waiting.get(&t.id) != Some(&Some(t.seq)) {
                continue; // stale: it left the queue
            }
            if base_free || blocking.contains(&t.func) {
                found = Some(t);
                break;
            }
            skipped.push(t);
            if skipped.len() >= scan {
                break;
            }
        }
        self.queue.extend(skipped);
        let t = found?;
        let moved = self.transition(t.id, Move::Start(Running::reading(t.func)));
        debug_assert!(moved);
        Some(t)
    }

    /// The task's executor calls its function now: the clock starts here.
    pub fn begin(&mut self, id: TaskId) {
        if let Some(r) = self.running.get_mut(&id) {
            *r = Running::now(r.func);
        }
    }

    /// The task gives up its slot while it keeps running; `true` if it held
    /// one (a slot is free now).
    pub fn secede(&mut self, id: TaskId) -> bool {
        self.transition(id, Move::Seceded)
    }

    /// A seceded task takes a slot again, even if none is free (it may hold
    /// what the task in that slot waits for); `false` if it had not seceded.
    pub fn rejoin(&mut self, id: TaskId) -> bool {
        self.transition(id, Move::Rejoin)
    }

    /// The task finished or failed.
    pub fn end(&mut self, id: TaskId) -> Ended {
        let freed_slot = self.running.contains_key(&id);
        let ran = self
            .running
            .get(&id)
            .or_else(|| self.seceded.get(&id))
            .copied();
        self.transition(id, Move::Gone);
        Ended { ran, freed_slot }
    }

    /// Seceded tasks the scheduler cancelled, each returned once (handed-off
    /// coroutines among them are stopped by the caller).
    pub fn take_cancelled_seceded(&mut self) -> Vec<TaskId> {
        let ids: Vec<TaskId> = self
            .cancelled
            .iter()
            .copied()
            .filter(|id| self.seceded.contains_key(id))
            .collect();
        for id in &ids {
            self.cancelled.remove(id);
        }
        ids
    }

    /// Tasks in slots.
    pub fn in_slots(&self) -> u32 {
        self.running.len() as u32
    }

    /// Tasks running without a slot.
    pub fn seceded(&self) -> u32 {
        self.seceded.len() as u32
    }

    /// Tasks in slots that the scheduler cancelled: their threads still
    /// run them (Python cannot stop a thread), but the scheduler no longer
    /// counts them, so the worker tells it of that many fewer slots.
    pub fn ghosts(&self) -> u32 {
        self.cancelled
            .iter()
            .filter(|id| self.running.contains_key(id))
            .count() as u32
    }

    /// Tasks waiting for a slot.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Whether any task is queued or running.
    pub fn has_work(&self) -> bool {
        self.queued > 0 || !self.running.is_empty() || !self.seceded.is_empty()
    }

    /// Tasks in slots whose function is not known to block.
    pub fn computing(&self, blocking: &HashSet<FuncHash>) -> u32 {
        self.running
            .values()
            .filter(|r| !blocking.contains(&r.func))
            .count() as u32
    }

    /// The functions of the queued tasks.
    pub fn queued_funcs(&self) -> impl Iterator<Item = FuncHash> + '_ {
        self.queue
            .iter()
            .filter(|t| self.waiting.get(&t.id) == Some(&Some(t.seq)))
            .map(|t| t.func)
    }

    /// The clocks of the tasks in slots (the pacer reads and updates them).
    pub fn running_mut(&mut self) -> impl Iterator<Item = &mut Running> {
        self.running.values_mut()
    }

    /// Drops stale queue entries once they outnumber the live ones, so the
    /// arguments of cancelled tasks are not held until the queue drains.
    fn forget_stale(&mut self) {
        if self.queue.len() > 2 * self.queued + 64 {
            let waiting = &self.waiting;
            self.queue
                .retain(|t| waiting.get(&t.id) == Some(&Some(t.seq)));
        }
    }

    /// Checks that the phases are consistent; panics with what is not.
    #[cfg(test)]
    pub fn validate(&self) {
        for id in self.running.keys() {
            assert!(!self.seceded.contains_key(id), "{id} in a slot and seceded");
            assert!(!self.waiting.contains_key(id), "{id} running and waiting");
        }
        for id in self.seceded.keys() {
            assert!(!self.waiting.contains_key(id), "{id} seceded and waiting");
        }
        for id in &self.cancelled {
            assert!(
                self.running.contains_key(id) || self.seceded.contains_key(id),
                "{id} marked cancelled but not running"
            );
        }
        let queued: Vec<(TaskId, u64)> = self
            .waiting
            .iter()
            .filter_map(|(id, s)| s.map(|s| (*id, s)))
            .collect();
        assert_eq!(queued.len(), self.queued, "queued count");
        for (id, seq) in queued {
            let entries = self
                .queue
                .iter()
                .filter(|t| t.id == id && t.seq == seq)
                .count();
            assert_eq!(entries, 1, "queued task {id} has {entries} queue entries");
        }
    }
}

#[cfg(test)]
#[path = "tasks_tests.rs"]
mod tests;
