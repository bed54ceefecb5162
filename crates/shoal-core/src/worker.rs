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
    /// Resources it offers: name, total, and how much its assigned tasks hold.
    pub resources: Vec<Resource>,
    /// When it was last heard from (the core's clock).
    pub last_seen: f64,
    /// Short of memory: it starts nothing, so it is sent nothing.
    pub paused: bool,
    /// Being retired (see [`crate::retire`]): sent no new task.
    pub retiring: bool,
    /// Why it said it leaves (it restarts), if it did.
    pub leaving: Option<String>,
}

/// One kind of abstract resource on a worker.
#[derive(Debug, Clone)]
pub(crate) struct Resource {
    pub name: std::sync::Arc<str>,
    pub total: f64,
    pub used: f64,
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
            resources: info
                .resources
                .iter()
                .filter(|(_, n)| n.is_finite() && *n > 0.0)
                .map(|(name, n)| Resource {
                    name: name.as_str().into(),
                    total: *n,
                    used: 0.0,
                })
                .collect(),
            address: info.data_address.as_str().into(),
            info,
            last_seen: 0.0,
            paused: false,
            retiring: false,
            leaving: None,
        }
    }

    /// Whether it takes no new task (paused, or being retired).
    pub fn closed(&self) -> bool {
        self.paused || self.retiring
    }

    /// Whether `needs` are free here now.
    pub fn fits(&self, needs: &[(std::sync::Arc<str>, f64)]) -> bool {
        needs.iter().all(|(name, n)| {
            self.resources
                .iter()
                .any(|r| *r.name == **name && r.total - r.used >= *n - 1e-9)
        })
    }

    /// Takes (`sign` 1) or gives back (`sign` -1) `needs`.
    pub fn hold(&mut self, needs: &[(std::sync::Arc<str>, f64)], sign: f64) {
        for (name, n) in needs {
            if let Some(r) = self.resources.iter_mut().find(|r| *r.name == **name) {
                r.used = (r.used + sign * n).max(0.0);
            }
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
