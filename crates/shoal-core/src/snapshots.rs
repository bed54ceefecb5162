//! Read-only views of the core for the dashboard and diagnostics. Building
//! one costs O(task prefixes + workers + limits), never O(tasks).

use serde::Serialize;
use shoal_proto::{LimitStatus, WorkerId, WorkerMetrics};

use crate::core::Core;
use crate::stats::{PrefixStats, StateCounts, TaskEvent};

/// One worker as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerView {
    pub id: WorkerId,
    pub name: String,
    pub address: String,
    pub host: String,
    pub pid: u32,
    pub nthreads: u32,
    /// Memory the worker may use (its share of the machine), in bytes.
    pub memory_limit: u64,
    /// Tasks it may run at once now (grows while its tasks wait on I/O).
    pub capacity: u32,
    /// Tasks sent to it and not finished, and results it holds.
    pub assigned: u64,
    pub stored: u64,
    /// Its own last report.
    pub metrics: WorkerMetrics,
    /// `"running"`, `"paused"` while it is short of memory, or
    /// `"closing_gracefully"` while it is retired.
    pub status: &'static str,
}

/// Everything the dashboard's pages show, at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub tasks: StateCounts,
    pub prefixes: Vec<PrefixStats>,
    pub workers: Vec<WorkerView>,
    pub limits: Vec<LimitStatus>,
    /// Computations that ended, successfully or not, since the start.
    pub completed: u64,
    pub failed: u64,
    pub clients: usize,
}

impl Core {
    /// The dashboard's view of the scheduler now.
    pub fn snapshot(&self) -> Snapshot {
        let mut prefixes = self.stats.prefixes();
        prefixes.retain(|p| !p.name.is_empty());
        let (completed, failed) = self.stats.ran_totals();
        Snapshot {
            tasks: self.stats.totals(),
            completed,
            failed,
            prefixes,
            workers: self
                .workers
                .iter()
                .map(|(&id, w)| WorkerView {
                    id,
                    name: w.info.name.clone(),
                    address: w.info.data_address.clone(),
                    host: w.info.host.clone(),
                    pid: w.info.pid,
                    nthreads: w.info.nthreads,
                    memory_limit: w.info.memory,
                    capacity: w.capacity,
                    assigned: w.assigned.len() as u64,
                    stored: w.holds.len() as u64,
                    metrics: w.metrics.clone(),
                    status: if w.retiring {
                        "closing_gracefully"
                    } else if w.paused {
                        "paused"
                    } else {
                        "running"
                    },
                })
                .collect(),
            limits: self.limit_status(),
            clients: self.clients.len() - 1, // not the scheduler's own (coord)
        }
    }

    /// Finished tasks from stream position `since` on (at most `limit`, the
    /// newest), and the position to ask from next.
    pub fn task_stream(&self, since: u64, limit: usize) -> (Vec<TaskEvent>, u64) {
        self.stats.stream_since(since, limit)
    }
}
