//! What workers send, and workers joining and leaving.
//!
//! Worker reports can be stale: a result for a task that was reassigned, a
//! failure from a worker the task was taken from, an answer to a steal that
//! raced a finish. Each handler checks that the report still speaks for the
//! task before acting on it.

use shoal_proto::{
    Payload, SchedulerToClient, SchedulerToWorker, TaskError, TaskId, Timing, WorkerId, WorkerInfo,
    WorkerToScheduler,
};

use crate::core::Core;
use crate::events::Command;
use crate::stats::Ran;
use crate::task::TaskState;
use crate::worker::Worker;

/// Seconds before retry number `n` (from 1): `first` doubled each time, at
/// most `most`, scaled by a jitter in [0.5, 1) that spreads retries of
/// tasks that failed together (drawn from the task and attempt, so the core
/// stays deterministic).
pub(crate) fn backoff_delay(first: f64, most: f64, n: u32, id: TaskId) -> f64 {
    let full = (first * 2f64.powi(n.saturating_sub(1).min(60) as i32)).min(most);
    let h = xxhash_rust::xxh3::xxh3_64(&[id.to_le_bytes(), u64::from(n).to_le_bytes()].concat());
    let jitter = 0.5 + 0.5 * (h >> 11) as f64 / (1u64 << 53) as f64;
    full * jitter
}

/// The most tasks one worker may claim to run at once.
pub const MAX_CAPACITY: u32 = 100_000;

impl Core {
    pub(crate) fn worker_joined(&mut self, w: WorkerId, info: WorkerInfo, out: &mut Vec<Command>) {
        for c in self.clients.keys() {
            out.push(Command::ToClient(
                *c,
                SchedulerToClient::WorkerAdded(info.clone()),
            ));
        }
        for (name, data) in &self.uploads {
            out.push(Command::ToWorker(
                w,
                SchedulerToWorker::Upload {
                    name: name.clone(),
                    data: data.clone(),
                },
            ));
        }
        for (name, plugin) in &self.plugins {
            out.push(Command::ToWorker(
                w,
                SchedulerToWorker::Plugin {
                    name: name.clone(),
                    plugin: plugin.clone(),
                },
            ));
        }
        if !self.preload.is_empty() {
            out.push(Command::ToWorker(
                w,
                SchedulerToWorker::Preload {
                    modules: self.preload.clone(),
                },
            ));
        }
        if let Some(kinds) = self.known_kinds() {
            out.push(Command::ToWorker(w, SchedulerToWorker::Learnt(kinds)));
        }
        out.push(Command::ToWorker(w, SchedulerToWorker::Joined));
        self.workers.insert(w, Worker::new(info));
        self.heard_from(w);
    }

    pub(crate) fn worker_message(
        &mut self,
        w: WorkerId,
        msg: WorkerToScheduler,
        out: &mut Vec<Command>,
    ) {
        if !self.workers.contains_key(&w) {
            // A report that overtook the worker's loss (or came from a
            // worker declared dead): nothing speaks for it.
            return;
        }
        self.heard_from(w);
        match msg {
            WorkerToScheduler::TaskStarted { ids } => {
                for id in ids {
                    if let Some(t) = self.tasks.get_mut(&id) {
                        if let TaskState::Assigned { worker, started } = &mut t.state {
                            if *worker == w {
                                *started = true;
                            }
                        }
                    }
                }
            }
            WorkerToScheduler::TaskFinished {
                id,
                nbytes,
                type_name,
                inline,
                duration,
                timing,
            } => {
                let ran = Ran {
                    ok: true,
                    duration,
                    nbytes,
                    timing,
                };
                self.orphan_ended(w, id, true);
                self.task_finished(w, id, &type_name, inline, ran, out)
            }
            WorkerToScheduler::TaskFailed {
                id,
                error,
                retryable,
                timing,
            } => {
                self.orphan_ended(w, id, false);
                self.task_failed(w, id, error, retryable, timing, out)
            }
            WorkerToScheduler::TaskRescheduled { id, timing } => {
                self.orphan_ended(w, id, false);
                self.task_rescheduled(w, id, timing, out)
            }
            WorkerToScheduler::Metrics(m) => {
                if let Some(worker) = self.workers.get_mut(&w) {
                    worker.metrics = m;
                }
            }
            WorkerToScheduler::MissingDeps { id, keys } => self.missing_deps(w, id, keys, out),
            WorkerToScheduler::Fetched { keys, missing } => self.fetched(w, keys, missing, out),
            WorkerToScheduler::GaveBack { ids } => self.gave_back(w, ids, out),
            WorkerToScheduler::Paused { paused } => {
                if let Some(worker) = self.workers.get_mut(&w) {
                    worker.paused = paused;
                }
            }
            WorkerToScheduler::Learnt(kinds) => self.learnt(w, kinds, out),
            WorkerToScheduler::Lost { keys } => self.copies_lost(w, keys, out),
            WorkerToScheduler::Leaving { reason } => {
                if let Some(worker) = self.workers.get_mut(&w) {
                    worker.leaving = Some(reason);
                    // It starts nothing more; its connection closes next.
                    worker.paused = true;
                }
            }
            WorkerToScheduler::Capacity { slots } => {
                if let Some(worker) = self.workers.get_mut(&w) {
                    // Zero while every thread runs a task the scheduler
                    // cancelled (it still runs); never absurdly many.
                    worker.capacity = slots.min(MAX_CAPACITY);
                }
            }
        }
    }

    /// A run that was taken back from worker `w` ended there (`stored`: with
    /// a result it keeps): if its task is forgotten meanwhile, nobody will
    /// ever free that result by key, so it is freed now.
    fn orphan_ended(&mut self, w: WorkerId, id: TaskId, stored: bool) {
        let Some((worker, key)) = self.orphans.remove(&id) else {
            return;
        };
        if stored && worker == w && !self.tasks.contains_key(&id) {
            self.to_free.entry(w).or_default().push(key.into());
        }
    }

    fn task_finished(
        &mut self,
        w: WorkerId,
        id: TaskId,
        type_name: &str,
        inline: Option<Payload>,
        ran: Ran,
        out: &mut Vec<Command>,
    ) {
        let nbytes = ran.nbytes;
        let Some(t) = self.tasks.get_mut(&id) else {
            // Forgotten meanwhile: the worker should not keep the result.
            return;
        };
        match &mut t.state {
            TaskState::Memory { holders } => {
                if !holders.contains(&w) {
                    // A second run of a task whose result another worker
                    // already gave (a superseded assignment that ran on):
                    // refused, as Dask refuses a stale run id. An impure
                    // task's second value would differ from the first, and
                    // holders of one key must hold one value.
                    let key = t.key().to_string();
                    if let Some(worker) = self.workers.get(&w) {
                        tracing::info!(
                            "refused a stale result of {key} from {}: the task's result is already held elsewhere",
                            worker.address
                        );
                    }
                    self.to_free.entry(w).or_default().push(key);
                }
                return;
            }
            TaskState::Released | TaskState::Erred => {
                let key = t.key().to_string();
                self.to_free.entry(w).or_default().push(key);
                return;
            }
            TaskState::Assigned { worker, .. } if *worker == w => {
                self.forget_assignment(w, id);
            }
            // Computed again elsewhere, or a recomputation raced an old
            // assignment: the result is valid, so take it.
            TaskState::Assigned { .. } => self.unassign(id),
            TaskState::Waiting | TaskState::Ready => {}
        }
        self.note_duration(ran.duration);
        self.record_ran(w, id, &ran);
        self.finished(w, id, nbytes, type_name);
        if let Some(value) = &inline {
            self.kept.keep(id, value, self.config.keep_bytes);
        }
        let t = &self.tasks[&id];
        if !t.wanted_by.is_empty() {
            let holders = self.addresses(&[w]);
            for &c in &t.wanted_by {
                out.push(Command::ToClient(
                    c,
                    SchedulerToClient::KeyMemory {
                        key: t.key().to_string(),
                        nbytes,
                        type_name: type_name.to_string(),
                        inline: inline.clone(),
                        holders: holders.clone(),
                    },
                ));
            }
        }
    }

    /// Counts a computation of `id` that ended on `w`, for the dashboard.
    fn record_ran(&mut self, w: WorkerId, id: TaskId, ran: &Ran) {
        if let (Some(t), Some(worker)) = (self.tasks.get(&id), self.workers.get(&w)) {
            self.stats.ran(t.key(), t.prefix, &worker.address, ran);
        }
    }

    fn note_duration(&mut self, d: f64) {
        if !d.is_finite() || d < 0.0 {
            return;
        }
        self.mean_duration = Some(match self.mean_duration {
            None => d,
            Some(m) => 0.9 * m + 0.1 * d,
        });
    }

    fn task_failed(
        &mut self,
        w: WorkerId,
        id: TaskId,
        error: TaskError,
        retryable: bool,
        timing: Option<Timing>,
        out: &mut Vec<Command>,
    ) {
        if !self.attempt_ended(w, id, timing) {
            return;
        }
        let t = self.tasks.get_mut(&id).expect("an assigned task exists");
        if t.retries_left > 0 && retryable {
            t.retries_left -= 1;
            t.extra.get_or_insert_with(Box::default).failed_on = Some(w);
            if let Some(delay) = t.extra.as_mut().and_then(|e| {
                let (first, most) = e.backoff?;
                e.retried += 1;
                Some(backoff_delay(first, most, e.retried, id))
            }) {
                self.hold_until(id, self.now + delay);
            }
            self.reschedule(id, out);
        } else {
            self.fail(id, error, out);
        }
    }

    /// The task asked to be placed again (`Reschedule`): not a failure.
    fn task_rescheduled(
        &mut self,
        w: WorkerId,
        id: TaskId,
        timing: Option<Timing>,
        out: &mut Vec<Command>,
    ) {
        if self.attempt_ended(w, id, timing) {
            self.reschedule(id, out);
        }
    }

    /// An attempt of `id` on `w` ended without a result: forgets the
    /// assignment and records the run. False (and nothing done) for a stale
    /// report, of a task no longer assigned to `w`.
    fn attempt_ended(&mut self, w: WorkerId, id: TaskId, timing: Option<Timing>) -> bool {
        if !self.is_assigned_to(id, w) {
            return false;
        }
        self.forget_assignment(w, id);
        let ran = Ran {
            ok: false,
            duration: 0.0,
            nbytes: 0,
            timing,
        };
        self.record_ran(w, id, &ran);
        true
    }

    fn missing_deps(&mut self, w: WorkerId, id: TaskId, keys: Vec<String>, out: &mut Vec<Command>) {
        // Only the worker the task is assigned to speaks for it; an answer
        // about a task taken back since is stale.
        if !self.is_assigned_to(id, w) {
            return;
        }
        for key in keys {
            let Some(d) = self.id_of(&key) else {
                continue;
            };
            if !matches!(self.tasks[&d].state, TaskState::Memory { .. }) {
                continue;
            }
            let holders = self.holders(d);
            for h in holders {
                if let Some(worker) = self.workers.get_mut(&h) {
                    worker.holds.remove(&d);
                }
            }
            if self.kept.contains(d) {
                // The task gets the kept copy when it is assigned again.
                if let Some(TaskState::Memory { holders }) =
                    self.tasks.get_mut(&d).map(|t| &mut t.state)
                {
                    holders.clear();
                }
            } else {
                self.lost(d, out);
            }
        }
        self.forget_assignment(w, id);
        self.reschedule(id, out);
    }

    /// Worker `w` no longer has these results (a spill file it could not
    /// read back): it holds them no more, and a result with no copy left
    /// (nor a kept one) is computed again for whoever needs it.
    fn copies_lost(&mut self, w: WorkerId, keys: Vec<String>, out: &mut Vec<Command>) {
        for key in keys {
            let Some(id) = self.id_of(&key) else {
                continue;
            };
            if let Some(worker) = self.workers.get_mut(&w) {
                worker.holds.remove(&id);
            }
            self.copy_gone(id, w, out);
        }
    }

    /// Worker `w`'s copy of `id`'s result is gone: `w` is no longer among
    /// its holders, and a result with no copy left (nor a kept one) is lost.
    fn copy_gone(&mut self, id: TaskId, w: WorkerId, out: &mut Vec<Command>) {
        let Some(TaskState::Memory { holders }) = self.tasks.get_mut(&id).map(|t| &mut t.state)
        else {
            return;
        };
        let before = holders.len();
        holders.retain(|h| *h != w);
        if holders.len() < before && holders.is_empty() && !self.kept.contains(id) {
            self.lost(id, out);
        }
    }

    /// Whether `id` is assigned to worker `w` right now.
    pub(crate) fn is_assigned_to(&self, id: TaskId, w: WorkerId) -> bool {
        matches!(
            self.tasks.get(&id).map(|t| &t.state),
            Some(TaskState::Assigned { worker, .. }) if *worker == w
        )
    }

    /// Drops `id` from worker `w`'s books, without telling the worker.
    pub(crate) fn forget_assignment(&mut self, w: WorkerId, id: TaskId) {
        if let Some(wk) = self.workers.get_mut(&w) {
            wk.assigned.remove(&id);
            wk.stealing.remove(&id);
        }
    }

    pub(crate) fn worker_lost(&mut self, w: WorkerId, out: &mut Vec<Command>) {
        let Some(worker) = self.workers.remove(&w) else {
            return;
        };
        self.orphans.retain(|_, (ow, _)| *ow != w);
        let address = worker.info.data_address.clone();
        for c in self.clients.keys() {
            out.push(Command::ToClient(
                *c,
                SchedulerToClient::WorkerRemoved {
                    data_address: address.clone(),
                },
            ));
        }
        self.to_free.remove(&w);
        self.to_cancel.remove(&w);
        let mut held: Vec<TaskId> = worker.holds.into_iter().collect();
        held.sort_unstable();
        for id in held {
            self.copy_gone(id, w, out);
        }
        let mut assigned: Vec<TaskId> = worker.assigned.into_iter().collect();
        assigned.sort_unstable();
        for id in assigned {
            let t = self.tasks.get_mut(&id).expect("an assigned task exists");
            let TaskState::Assigned { started, .. } = t.state else {
                continue;
            };
            if started {
                t.attempts += 1;
            }
            // As in Dask: a task errs once more workers died running it
            // than `allowed_failures`.
            if t.attempts > self.config.allowed_failures {
                let error = TaskError::KilledWorker {
                    key: t.key().to_string(),
                    last_worker: address.clone(),
                    attempts: t.attempts,
                    cause: worker.leaving.clone().unwrap_or_default(),
                };
                self.fail(id, error, out);
            } else {
                self.reschedule(id, out);
            }
        }
        self.replicas_worker_lost(w, out);
        self.rebalance_worker_lost(w, out);
        self.retire_worker_lost(w);
    }
}
