//! State shared between the networking thread and executor threads.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use shoal_proto::{FuncHash, Payload, TaskId, WorkerToScheduler};
use tokio::sync::mpsc::UnboundedSender;

/// A task whose inputs are all local, waiting for an executor.
pub(crate) struct ReadyTask {
    pub id: TaskId,
    pub key: String,
    pub func: FuncHash,
    pub args: Payload,
    pub deps: Vec<String>,
    pub priority: i32,
    pub seq: u64,
}

impl PartialEq for ReadyTask {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for ReadyTask {}
impl PartialOrd for ReadyTask {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ReadyTask {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// Results up to this size travel with the completion message.
pub const INLINE_LIMIT: u64 = 64 * 1024;

/// What the network thread and the executor threads share.
pub(crate) struct Shared {
    pub state: Mutex<State>,
    /// Signalled when work arrives or the worker closes.
    pub work: Condvar,
    /// Messages to the scheduler.
    pub out: UnboundedSender<WorkerToScheduler>,
}

impl Shared {
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.work.notify_all();
    }
}

#[derive(Default)]
pub(crate) struct State {
    pub ready: BinaryHeap<ReadyTask>,
    /// Results held by this worker, by key.
    pub store: HashMap<String, Payload>,
    pub functions: HashMap<FuncHash, Bytes>,
    /// Functions already handed to an executor.
    pub delivered: HashSet<FuncHash>,
    /// Tasks the scheduler took back before they started.
    pub cancelled: HashSet<TaskId>,
    /// Tasks assigned here and not yet finished (queued, fetching or running).
    pub active: HashSet<TaskId>,
    /// Tasks an executor has taken.
    pub running: HashSet<TaskId>,
    pub seq: u64,
    pub closed: bool,
}
