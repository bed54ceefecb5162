//! Work stealing: moving queued tasks from busy workers to idle ones.
//!
//! Workers hold a few queued tasks beyond their threads so they never wait
//! for the scheduler. When one of those queues sits behind a long task while
//! another worker has nothing to do, the scheduler asks the busy worker to
//! give tasks back (`Steal`). The worker answers with the ones that had not
//! started (`GaveBack`); only those are scheduled again, so a task never runs
//! twice. One request is in flight at a time.

use shoal_proto::{SchedulerToWorker, TaskId, WorkerId};

use crate::core::Core;
use crate::events::Command;
use crate::task::TaskState;

/// A worker with queued tasks beyond its free threads: how many too many,
/// and its queued tasks.
struct Victim {
    surplus: usize,
    worker: WorkerId,
    queued: Vec<TaskId>,
}

impl Core {
    /// Asks busy workers for queued tasks when some worker is idle.
    pub(crate) fn balance(&mut self, out: &mut Vec<Command>) {
        if self.workers.values().any(|w| w.steal_requests > 0) {
            return;
        }
        let mut budget: usize = self
            .workers
            .values()
            .filter(|w| w.assigned.is_empty() && !w.closed())
            .map(|w| w.capacity.max(1) as usize)
            .sum();
        if budget == 0 {
            return;
        }
        let mut victims: Vec<Victim> = Vec::new();
        for (&wid, w) in &self.workers {
            let mut queued = Vec::new();
            let mut running = 0usize;
            for id in &w.assigned {
                let t = &self.tasks[id];
                match t.state {
                    TaskState::Assigned { started: true, .. } => running += 1,
                    _ if t.movable() && !w.stealing.contains(id) => queued.push(*id),
                    _ => {}
                }
            }
            // A paused or retiring worker starts nothing new: all it holds
            // queued may move.
            let free_threads = if w.closed() {
                0
            } else {
                (w.capacity as usize).saturating_sub(running)
            };
            let surplus = queued.len().saturating_sub(free_threads);
            if surplus > 0 {
                victims.push(Victim {
                    surplus,
                    worker: wid,
                    queued,
                });
            }
        }
        victims.sort_by(|a, b| b.surplus.cmp(&a.surplus).then(a.worker.cmp(&b.worker)));
        for Victim {
            surplus,
            worker: wid,
            mut queued,
        } in victims
        {
            if budget == 0 {
                break;
            }
            let n = surplus.div_ceil(2).min(budget);
            // The ones the victim would run last (ids follow submission order).
            queued.sort_unstable_by(|a, b| crate::table::submitted_before(*b, *a));
            let ids: Vec<TaskId> = queued.into_iter().take(n).collect();
            let w = self.workers.get_mut(&wid).expect("victim exists");
            w.stealing.extend(ids.iter().copied());
            w.steal_requests += 1;
            budget -= ids.len();
            out.push(Command::ToWorker(wid, SchedulerToWorker::Steal { ids }));
        }
    }

    /// A worker gave tasks back: queue them again.
    pub(crate) fn gave_back(&mut self, w: WorkerId, ids: Vec<TaskId>, out: &mut Vec<Command>) {
        if let Some(wk) = self.workers.get_mut(&w) {
            wk.steal_requests = wk.steal_requests.saturating_sub(1);
            // The tasks not given back have started; they stay.
            wk.stealing.clear();
        }
        for id in ids {
            if self.is_assigned_to(id, w) {
                self.forget_assignment(w, id);
                self.reschedule(id, out);
            }
        }
    }
}
