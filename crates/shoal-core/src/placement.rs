//! Choosing which ready task runs where.
//!
//! Ready tasks wait in one priority queue: higher `priority` first, then
//! tasks with inputs before tasks without (roots), then submission order.
//! Taking a ready task that consumes results before making new ones is what
//! keeps memory flat, as Dask's scheduler does by holding root tasks back:
//! the step that reads two freshly made blocks runs as soon as they exist,
//! instead of after every other block of the matrix is made.
//!
//! Each worker accepts its threads' worth of running tasks plus a window of
//! queued ones sized from the mean task duration, so a worker with short
//! tasks never idles for a round trip while one with long tasks does not
//! hoard work that an idle peer could run.

use std::cmp::Ordering;

use shoal_proto::{ComputeTask, DepLocation, SchedulerToWorker, TaskId, WorkerId};

use crate::core::Core;
use crate::events::Command;
use crate::task::{Task, TaskState};
use crate::worker::Worker;

/// An entry of the ready queue. Stale entries (the task moved on) are skipped
/// when popped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadyEntry {
    priority: i32,
    /// Whether the task reads results (has inputs): before roots.
    consumes: bool,
    /// Task ids grow in submission order (see [`crate::table`]), so they
    /// double as the sequence.
    id: TaskId,
}

impl ReadyEntry {
    pub fn of(t: &Task, id: TaskId) -> Self {
        ReadyEntry {
            priority: t.priority,
            consumes: t.has_deps(),
            id,
        }
    }

    pub fn id(&self) -> TaskId {
        self.id
    }
}

impl Ord for ReadyEntry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| self.consumes.cmp(&other.consumes))
            .then_with(|| crate::table::submitted_before(other.id, self.id))
    }
}

impl PartialOrd for ReadyEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Bytes a second the scheduler assumes a result moves between workers at
/// (Dask's `distributed.scheduler.bandwidth`): it weighs moving a task's
/// inputs against waiting for the worker that holds them.
pub const BANDWIDTH: f64 = 100e6;

impl Core {
    /// Queued tasks a worker may hold per thread beyond the running one.
    pub(crate) fn queued_per_thread(&self) -> u32 {
        match self.mean_duration {
            None => 1,
            Some(d) if d <= 0.0 => self.config.max_queued_per_thread,
            Some(d) => {
                let n = (self.config.queue_target / d).ceil();
                n.clamp(1.0, self.config.max_queued_per_thread as f64) as u32
            }
        }
    }

    /// Tasks a worker may hold: what it can run at once (its capacity,
    /// which grows past its threads while its tasks wait on I/O) plus a
    /// queue of `per_thread` for each.
    fn slots(&self, w: &Worker, per_thread: u32) -> usize {
        let n = w.capacity as usize;
        n * (1 + per_thread as usize)
    }

    /// Hands ready tasks to workers with free slots. Call after every batch
    /// of events.
    pub fn schedule(&mut self, out: &mut Vec<Command>) {
        self.story.stimulus = crate::story::Stimulus::Schedule;
        self.expire_waits(out);
        self.check_silence(out);
        if !self.retirements.is_empty() {
            self.pump_retirements(out);
        }
        if self.workers.is_empty() {
            return;
        }
        self.wake_limited();
        let per_thread = self.queued_per_thread();
        let mut free: usize = self
            .workers
            .values()
            .filter(|w| !w.closed())
            .map(|w| self.slots(w, per_thread).saturating_sub(w.assigned.len()))
            .sum();
        let mut deferred = Vec::new();
        while free > 0 {
            let Some(entry) = self.ready.pop() else {
                break;
            };
            let id = entry.id;
            match self.tasks.get(&id) {
                Some(t) if t.state == TaskState::Ready => {}
                _ => continue,
            }
            match self.pick_worker(id, per_thread) {
                // A limit may hold it back: then it waits in that limit.
                Some(w) if self.admit(id) => {
                    self.assign(id, w, out);
                    free -= 1;
                }
                Some(_) => {}
                None => deferred.push(entry),
            }
        }
        self.ready.extend(deferred);
        self.balance(out);
    }

    /// The worker with a free slot (and the task's resources free) holding
    /// most of the task's input bytes, then the least loaded one, then one
    /// other than the worker the task last failed on. Worker
    /// restrictions hold unless they are loose and match no connected worker.
    /// `None` also when the inputs are better waited for than moved: the
    /// worker holding most of them has no free slot, but would start the
    /// task sooner than the missing bytes could travel (see
    /// [`BANDWIDTH`]).
    fn pick_worker(&self, id: TaskId, per_thread: u32) -> Option<WorkerId> {
        let t = &self.tasks[&id];
        let mut restrictions = t.restrictions();
        if t.loose() && !self.workers.values().any(|w| w.matches(restrictions)) {
            restrictions = &[];
        }
        let needs = t.resources();
        let failed_on = t.extra.as_ref().and_then(|e| e.failed_on);
        let mut best: Option<(WorkerId, u64, f64)> = None;
        // The eligible worker holding most input bytes, free slot or not.
        let mut holder: Option<(WorkerId, u64)> = None;
        for (&wid, w) in &self.workers {
            if w.closed() || !w.matches(restrictions) || !w.fits(needs) {
                continue;
            }
            let local: u64 = t
                .deps()
                .filter(|d| w.holds.contains(d))
                .map(|d| self.tasks[&d].nbytes.max(1))
                .sum();
            if holder.is_none_or(|(_, most)| local > most) {
                holder = Some((wid, local));
            }
            if w.assigned.len() >= self.slots(w, per_thread) {
                continue;
            }
            let load = w.assigned.len() as f64 / w.capacity.max(1) as f64;
            let better = match best {
                None => true,
                Some((bw, bl, bload)) => {
                    local > bl
                        || (local == bl
                            && (load < bload || (load == bload && Some(bw) == failed_on)))
                }
            };
            if better {
                best = Some((wid, local, load));
            }
        }
        let (wid, local, _) = best?;
        if let Some((h, most)) = holder {
            if h != wid && most > local {
                let moved = (most - local) as f64 / BANDWIDTH;
                if self.backlog(h) < moved {
                    return None;
                }
            }
        }
        Some(wid)
    }

    /// Seconds until worker `w` could start another task: the expected
    /// durations of the tasks it holds, over its threads. A task is
    /// expected to take what its prefix's completed tasks took on average
    /// (Dask's duration estimate), or the mean of all tasks before any of
    /// its prefix finished. A cluster-wide mean alone would let thousands
    /// of millisecond tasks (a shuffle's `getitem`s) make a queue of
    /// 40 ms sorts look free, and keep every sort waiting on one worker
    /// while another idles.
    fn backlog(&self, w: WorkerId) -> f64 {
        let w = &self.workers[&w];
        let fallback = self.mean_duration.unwrap_or(0.0);
        let queued: f64 = w
            .assigned
            .iter()
            .filter_map(|id| self.tasks.get(id))
            .map(|t| self.stats.mean_seconds(t.prefix).unwrap_or(fallback))
            .sum();
        queued / w.capacity.max(1) as f64
    }

    fn assign(&mut self, id: TaskId, w: WorkerId, out: &mut Vec<Command>) {
        self.transition(
            id,
            TaskState::Assigned {
                worker: w,
                started: false,
            },
        );
        let func = self.tasks[&id].func;
        let worker = self.workers.get_mut(&w).expect("picked worker exists");
        worker.assigned.insert(id);
        if func != shoal_proto::LITERAL_FUNC && worker.functions.insert(func) {
            if let Some(def) = self.functions.get(func) {
                out.push(Command::ToWorker(
                    w,
                    SchedulerToWorker::Functions(vec![def.clone()]),
                ));
            }
        }
        let t = &self.tasks[&id];
        let here = &self.workers[&w].holds;
        let mut inlined = Vec::new();
        let deps = t
            .deps()
            .map(|d| {
                let dt = &self.tasks[&d];
                // A kept copy travels with the task unless the worker has one.
                let inline = if here.contains(&d) {
                    None
                } else {
                    self.kept.get(d).cloned()
                };
                if inline.is_some() {
                    inlined.push(d);
                }
                DepLocation {
                    key: dt.key().to_string(),
                    holders: match &dt.state {
                        TaskState::Memory { holders } => self.addresses(holders),
                        _ => Vec::new(),
                    },
                    inline,
                    nbytes: dt.nbytes,
                }
            })
            .collect();
        out.push(Command::ToWorker(
            w,
            SchedulerToWorker::Compute(ComputeTask {
                id,
                key: t.key().to_string(),
                func: t.func,
                args: t.payload(),
                deps,
                priority: t.priority,
            }),
        ));
        // The worker stores what came along before it reads anything after
        // this message: it holds a copy from now on, and later tasks there
        // need none.
        for d in inlined {
            self.add_holder(d, w);
        }
    }
}
