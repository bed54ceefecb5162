//! How many workers the scheduler would like (`CoordOp::AdaptiveTarget`),
//! for a cluster that scales itself (`cluster.adapt`), as Dask's
//! `Scheduler.adaptive_target`: enough threads to get through the work
//! waiting and running in `target_duration` seconds at the mean task time
//! seen so far, at least one worker while there is any work, and never
//! more workers than tasks.

use crate::core::Core;

/// The task time assumed before any task has finished (Dask's
/// `distributed.scheduler.default-task-durations` fallback).
const UNKNOWN_DURATION: f64 = 0.5;

impl Core {
    pub(crate) fn adaptive_target(&self, target_duration: f64) -> u64 {
        let assigned: usize = self.workers.values().map(|w| w.assigned.len()).sum();
        let work = self.ready.len() + assigned;
        if work == 0 {
            return 0;
        }
        let threads: u32 = self.workers.values().map(|w| w.info.nthreads.max(1)).sum();
        let per_worker = if self.workers.is_empty() {
            1.0
        } else {
            f64::from(threads) / self.workers.len() as f64
        };
        let duration = self.mean_duration.unwrap_or(UNKNOWN_DURATION);
        let seconds = work as f64 * duration;
        let wanted = (seconds / (target_duration.max(1e-3) * per_worker)).ceil() as u64;
        let most = (work as f64 / per_worker).ceil() as u64;
        wanted.clamp(1, most.max(1))
    }
}
