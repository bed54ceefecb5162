//! The scheduler's record of one connected worker.

use rustc_hash::FxHashSet;
use shoal_proto::{FuncHash, TaskId, WorkerInfo, WorkerMetrics};

pub(crate) struct Worker {
    pub info: WorkerInfo,
    /// `info.data_address`, shared with the task stream's events.
    pub address: std::sync::Arc<str>,
    /// Tasks sent to this worker and not finished.
    pub assigned: FxHashSet<TaskId>,
    /// Tasks whose result this worker holds.
    pub holds: FxHashSet<TaskId>,
    /// Functions already sent to this worker.
    pub functions: FxHashSet<FuncHash>,
    /// Assigned tasks we asked this worker to give back, awaiting its answer.
    pub stealing: FxHashSet<TaskId>,
    /// `Steal` requests sent to this worker and not answered.
    pub steal_requests: u32,
    /// How many tasks it can run at once, as it last reported (at first its
    /// thread count).
    pub capacity: u32,
    /// Its last health report.
    pub metrics: WorkerMetrics,
}

impl Worker {
    pub fn new(info: WorkerInfo) -> Self {
        Worker {
            assigned: FxHashSet::default(),
            holds: FxHashSet::default(),
            functions: FxHashSet::default(),
            stealing: FxHashSet::default(),
            steal_requests: 0,
            capacity: info.nthreads.max(1),
            metrics: WorkerMetrics::default(),
            address: info.data_address.as_str().into(),
            info,
        }
    }

    /// Whether a task restricted to `names` (worker names, hosts, or data
    /// addresses with or without `tcp://`) may run here.
    pub fn matches(&self, names: &[String]) -> bool {
        names.is_empty()
            || names.iter().any(|n| {
                let n = shoal_proto::addr::strip_scheme(n);
                n == self.info.name || n == self.info.data_address || n == self.info.host
            })
    }
}
