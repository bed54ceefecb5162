//! The life cycle of a task, shared by every handler.
//!
//! [`Core::transition`] is the only place a task's state changes; it checks
//! the move against the table of legal ones. The rest of this file decides
//! *which* move to make: activating a needed task and its inputs, failing a
//! task and everything downstream, taking in a result, losing one, and
//! freeing what nobody needs.

use shoal_proto::{SchedulerToClient, SchedulerToWorker, TaskError, TaskId, WorkerId};

use crate::core::Core;
use crate::events::Command;
use crate::placement::ReadyEntry;
use crate::stats::Bucket;
use crate::story::Phase;
use crate::task::TaskState;

/// Whether a task may move from `from` to `to`.
///
/// ```text
/// Released -> Waiting | Ready | Erred             activated, or an input erred
/// Waiting  -> Ready | Released | Erred | Memory   inputs arrived; not needed; failed; a late result
/// Ready    -> Assigned | Waiting | Released | Erred | Memory
/// Assigned -> Memory | Erred | Waiting | Ready | Released
/// Memory   -> Released                           freed, or its last copy lost
/// Erred    -> Released                          retried (`Future.retry`)
/// ```
pub(crate) fn legal(from: &TaskState, to: &TaskState) -> bool {
    use TaskState::*;
    matches!(
        (from, to),
        (Released, Waiting | Ready | Erred)
            | (Waiting, Ready | Released | Erred | Memory { .. })
            | (
                Ready,
                Assigned { .. } | Waiting | Released | Erred | Memory { .. }
            )
            | (
                Assigned { .. },
                Memory { .. } | Erred | Waiting | Ready | Released
            )
            | (Memory { .. } | Erred, Released)
    )
}

impl Core {
    /// Moves task `id` to state `to`: the one place task state is written.
    pub(crate) fn transition(&mut self, id: TaskId, to: TaskState) {
        let t = self
            .tasks
            .get_mut(&id)
            .expect("a task in transition exists");
        debug_assert!(
            legal(&t.state, &to),
            "illegal transition of {}: {:?} -> {:?}",
            t.key(),
            t.state,
            to
        );
        if to == TaskState::Ready && !self.held.contains(&id) {
            self.ready.push(ReadyEntry::of(t, id));
        }
        // The worker a task leaves or joins, for what it holds there.
        let (leaves, takes) = match (&t.state, &to) {
            (TaskState::Assigned { .. }, TaskState::Assigned { .. }) => (None, None),
            (TaskState::Assigned { worker, .. }, _) => (Some(*worker), None),
            (_, TaskState::Assigned { worker, .. }) => (None, Some(*worker)),
            _ => (None, None),
        };
        let leaves_memory =
            matches!(t.state, TaskState::Memory { .. }) && !matches!(to, TaskState::Memory { .. });
        let has_resources = !t.resources().is_empty();
        let done = matches!(to, TaskState::Memory { .. } | TaskState::Erred);
        self.stats
            .moved(t.prefix, Bucket::of(&t.state), Bucket::of(&to));
        self.story
            .record(t.key(), Phase::of(&t.state), Phase::of(&to), self.now);
        t.state = to;
        if let Some(w) = leaves {
            self.release_limits(id);
            if has_resources {
                self.hold_resources(id, w, -1.0);
            }
        }
        if let (Some(w), true) = (takes, has_resources) {
            self.hold_resources(id, w, 1.0);
        }
        if done {
            self.forget_fired(id);
        }
        if leaves_memory {
            self.kept.drop(id);
        }
    }

    /// Takes (`sign` 1) or gives back (-1) task `id`'s resources on worker `w`.
    fn hold_resources(&mut self, id: TaskId, w: WorkerId, sign: f64) {
        if let Some(worker) = self.workers.get_mut(&w) {
            worker.hold(self.tasks[&id].resources(), sign);
        }
    }

    /// The workers holding `id`'s result (empty unless in memory).
    pub(crate) fn holders(&self, id: TaskId) -> Vec<WorkerId> {
        match &self.tasks[&id].state {
            TaskState::Memory { holders } => holders.clone(),
            _ => Vec::new(),
        }
    }

    /// Makes a released task (and, transitively, its released dependencies)
    /// waiting or ready. Does nothing to tasks in any other state.
    pub(crate) fn activate(&mut self, root: TaskId, out: &mut Vec<Command>) {
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            match self.tasks.get(&id) {
                Some(t) if t.state == TaskState::Released => {}
                _ => continue,
            }
            if let Some(err) = self.first_erred_dep(id) {
                self.fail(id, err, out);
                continue;
            }
            let waiting = self.count_missing_deps(id, &mut stack);
            self.set_waiting_or_ready(id, waiting);
            self.set_counted_pending(id, true);
        }
    }

    /// Counts dependencies not in memory, pushing released ones on `stack`.
    fn count_missing_deps(&self, id: TaskId, stack: &mut Vec<TaskId>) -> u32 {
        let mut waiting = 0;
        for d in self.tasks[&id].deps() {
            match self.tasks[&d].state {
                TaskState::Memory { .. } => {}
                TaskState::Released => {
                    waiting += 1;
                    stack.push(d);
                }
                _ => waiting += 1,
            }
        }
        waiting
    }

    fn first_erred_dep(&self, id: TaskId) -> Option<TaskError> {
        self.tasks[&id].deps().find_map(|d| {
            let dt = &self.tasks[&d];
            (dt.state == TaskState::Erred).then(|| dt.error().cloned())?
        })
    }

    fn set_waiting_or_ready(&mut self, id: TaskId, waiting: u32) {
        self.tasks.get_mut(&id).expect("task exists").waiting_on = waiting;
        let to = if waiting == 0 {
            TaskState::Ready
        } else {
            TaskState::Waiting
        };
        self.transition(id, to);
    }

    /// Puts an assigned task back in the queue (its worker died, it is
    /// retried, or it was given back), keeping it counted as pending so its
    /// inputs stay put.
    pub(crate) fn reschedule(&mut self, id: TaskId, out: &mut Vec<Command>) {
        if let Some(err) = self.first_erred_dep(id) {
            self.fail(id, err, out);
            return;
        }
        let mut stack = Vec::new();
        let waiting = self.count_missing_deps(id, &mut stack);
        self.set_waiting_or_ready(id, waiting);
        for d in stack {
            self.activate(d, out);
        }
    }

    /// Keeps dependencies' `pending_dependents` in step with whether `id` is
    /// pending. Dependencies that stop being needed are queued for a check.
    fn set_counted_pending(&mut self, id: TaskId, on: bool) {
        let t = self.tasks.get_mut(&id).expect("task exists");
        if t.counted_pending == on {
            return;
        }
        t.counted_pending = on;
        for i in 0..self.tasks[&id].deps_len as usize {
            let d = self.tasks[&id].dep(i);
            let dt = self.tasks.get_mut(&d).expect("dependency exists");
            if on {
                dt.pending_dependents += 1;
            } else {
                dt.pending_dependents -= 1;
                if dt.pending_dependents == 0 {
                    self.to_check.push(d);
                }
            }
        }
    }

    /// Computes the erred tasks `roots` again, with the erred tasks upstream
    /// of them: each is released, its error forgotten and its clients told
    /// it is pending again (`KeyLost`); then those still needed are
    /// activated. Tasks in any other state are left as they are.
    pub(crate) fn retry(&mut self, roots: &[TaskId], out: &mut Vec<Command>) {
        let mut stack = roots.to_vec();
        let mut seen = std::collections::HashSet::new();
        let mut released = Vec::new();
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            match self.tasks.get(&id) {
                Some(t) if t.state == TaskState::Erred => stack.extend(t.deps()),
                _ => continue,
            }
            released.push(id);
            self.transition(id, TaskState::Released);
            let t = self.tasks.get_mut(&id).expect("task exists");
            t.clear_error();
            for &c in &t.wanted_by {
                out.push(Command::ToClient(
                    c,
                    SchedulerToClient::KeyLost {
                        key: t.key().to_string(),
                    },
                ));
            }
            self.to_check.push(id);
        }
        // Every one that is still needed runs (a failed input someone
        // wants, even if the key retried is not wanted itself).
        for id in released {
            if self.tasks.get(&id).is_some_and(|t| t.is_needed()) {
                self.activate(id, out);
            }
        }
    }

    /// Marks `root` and every pending task downstream of it as erred.
    pub(crate) fn fail(&mut self, root: TaskId, error: TaskError, out: &mut Vec<Command>) {
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            let Some(t) = self.tasks.get(&id) else {
                continue;
            };
            if id != root && !t.is_pending() {
                continue;
            }
            if t.state == TaskState::Erred {
                continue;
            }
            self.unassign(id);
            self.transition(id, TaskState::Erred);
            let t = self.tasks.get_mut(&id).expect("task exists");
            t.set_error(error.clone());
            for &c in &t.wanted_by {
                out.push(Command::ToClient(
                    c,
                    SchedulerToClient::KeyErred {
                        key: t.key().to_string(),
                        error: error.clone(),
                    },
                ));
            }
            stack.extend(t.dependents.iter());
            self.set_counted_pending(id, false);
            self.to_check.push(id);
        }
    }

    /// If `id` is assigned, forgets the assignment and tells the worker to
    /// drop it (a no-op for the worker if it already ran).
    pub(crate) fn unassign(&mut self, id: TaskId) {
        let t = &self.tasks[&id];
        if let TaskState::Assigned { worker, started } = t.state {
            if let Some(w) = self.workers.get_mut(&worker) {
                w.assigned.remove(&id);
                w.stealing.remove(&id);
                self.to_cancel.entry(worker).or_default().push(id);
                if started {
                    // It runs on: its end will be reported (see `orphans`).
                    self.orphans.insert(id, (worker, t.key().into()));
                }
            }
        }
    }

    /// The result of `id` now lives on `w`.
    pub(crate) fn finished(&mut self, w: WorkerId, id: TaskId, nbytes: u64, type_name: &str) {
        let type_name = self.intern(type_name);
        self.transition(id, TaskState::Memory { holders: vec![w] });
        let t = self.tasks.get_mut(&id).expect("task exists");
        t.nbytes = nbytes;
        t.type_name = type_name;
        if let Some(worker) = self.workers.get_mut(&w) {
            worker.holds.insert(id);
        }
        self.set_counted_pending(id, false);
        for i in 0..self.tasks[&id].dependents.len() {
            let d = self.tasks[&id].dependents.get(i);
            let dt = self.tasks.get_mut(&d).expect("dependent exists");
            if dt.state == TaskState::Waiting {
                dt.waiting_on -= 1;
                if dt.waiting_on == 0 {
                    self.transition(d, TaskState::Ready);
                }
            }
        }
        self.to_check.push(id);
    }

    /// The last copy of `id`'s result is gone. Dependents that counted on it
    /// wait again, and the task is computed anew if anyone needs it.
    pub(crate) fn lost(&mut self, id: TaskId, out: &mut Vec<Command>) {
        self.transition(id, TaskState::Released);
        for i in 0..self.tasks[&id].dependents.len() {
            let d = self.tasks[&id].dependents.get(i);
            let dt = self.tasks.get_mut(&d).expect("dependent exists");
            match dt.state {
                TaskState::Waiting => dt.waiting_on += 1,
                TaskState::Ready => {
                    dt.waiting_on = 1;
                    self.transition(d, TaskState::Waiting);
                }
                _ => {}
            }
        }
        let t = &self.tasks[&id];
        if t.is_needed() {
            for &c in &t.wanted_by {
                out.push(Command::ToClient(
                    c,
                    SchedulerToClient::KeyLost {
                        key: t.key().to_string(),
                    },
                ));
            }
            self.activate(id, out);
        } else {
            self.to_check.push(id);
        }
    }

    /// Frees (on the workers) or forgets every task whose need may have
    /// dropped, then flushes the batched `Free` and `Cancel` messages.
    pub(crate) fn free_unneeded(&mut self, out: &mut Vec<Command>) {
        while let Some(id) = self.to_check.pop() {
            let Some(t) = self.tasks.get(&id) else {
                continue;
            };
            if t.is_needed() {
                continue;
            }
            match &t.state {
                TaskState::Memory { holders } => {
                    for &w in holders {
                        if let Some(worker) = self.workers.get_mut(&w) {
                            worker.holds.remove(&id);
                            self.to_free.entry(w).or_default().push(t.key().to_string());
                        }
                    }
                    self.transition(id, TaskState::Released);
                }
                TaskState::Waiting | TaskState::Ready | TaskState::Assigned { .. } => {
                    self.unassign(id);
                    self.transition(id, TaskState::Released);
                    self.set_counted_pending(id, false);
                }
                TaskState::Released | TaskState::Erred => {}
            }
            if self.tasks[&id].dependents.is_empty() {
                self.forget(id);
            }
        }
        self.flush_worker_batches(out);
    }

    /// Removes a task nobody wants and nothing depends on.
    fn forget(&mut self, id: TaskId) {
        let Some(t) = self.tasks.remove(&id) else {
            return;
        };
        self.stats.removed(t.prefix, Bucket::of(&t.state));
        self.story
            .record(t.key(), Phase::of(&t.state), Phase::Forgotten, self.now);
        self.held.remove(&id);
        self.keys.remove(t.key(), id);
        if self.functions.task_forgotten(t.func) {
            self.function_dropped(t.func);
        }
        for d in t.deps() {
            if let Some(dt) = self.tasks.get_mut(&d) {
                dt.dependents.remove(id);
                if dt.dependents.is_empty() {
                    self.to_check.push(d);
                }
            }
        }
    }

    fn flush_worker_batches(&mut self, out: &mut Vec<Command>) {
        for (w, keys) in std::mem::take(&mut self.to_free) {
            if self.workers.contains_key(&w) {
                out.push(Command::ToWorker(w, SchedulerToWorker::Free { keys }));
            }
        }
        for (w, ids) in std::mem::take(&mut self.to_cancel) {
            if self.workers.contains_key(&w) {
                out.push(Command::ToWorker(w, SchedulerToWorker::Cancel { ids }));
            }
        }
    }
}
