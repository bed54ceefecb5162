//! State shared between the networking thread and executor threads.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use shoal_proto::{FuncHash, FunctionKinds, Payload, TaskId, WorkerToScheduler};
use tokio::sync::mpsc::UnboundedSender;

use crate::control::ControlQueue;
use crate::data_store::DataStore;
use crate::staged::Staged;
use crate::tasks::{Ended, Tasks};

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

/// How many queued tasks `take_runnable` looks through for one that may
/// start beyond the base slots.
const SCAN_LIMIT: usize = 256;

/// Results up to this size travel with the completion message.
pub const INLINE_LIMIT: u64 = 64 * 1024;

/// What the network thread and the executor threads share.
pub(crate) struct Shared {
    pub state: Mutex<State>,
    /// Signalled when work arrives, room to run it opens, or the worker
    /// closes (executor threads wait on it).
    pub work: Condvar,
    /// Signalled when work arrives or the worker closes (the pacer waits on
    /// it while idle).
    pub pace: Condvar,
    /// Messages to the scheduler.
    pub out: UnboundedSender<WorkerToScheduler>,
    /// Work for the Python side that is not a task (see `control`).
    pub control: Mutex<ControlQueue>,
    /// Signalled when control work arrives or the worker closes.
    pub control_ready: Condvar,
    /// The cluster's secret and TLS (see `WorkerConfig::security`).
    pub security: shoal_proto::Security,
    /// Results held here. Locked after `state` when both are needed, never
    /// before; spilling writes to disk under this lock only.
    pub store: Mutex<DataStore>,
    /// Why this worker restarts, once it decided to (see `memory`).
    pub leaving: Mutex<Option<String>>,
    /// Bytes being fetched from peers at once (see [`FetchBudget`]).
    pub fetches: FetchBudget,
    /// Frees what this process let go of but cannot free itself yet (see
    /// [`crate::WorkerRuntime::set_release`]).
    pub release: Mutex<Option<Release>>,
    /// Values scattered straight here, until the scheduler claims them.
    pub staged: Mutex<Staged>,
    /// Whether the scheduler said the join is complete (`Joined`).
    pub joined: tokio::sync::watch::Sender<bool>,
}

/// See [`crate::WorkerRuntime::set_release`].
pub type Release = Arc<dyn Fn() + Send + Sync>;

/// How many bytes of inputs a worker fetches from peers at once: a queue of
/// tasks whose inputs live elsewhere must not pull them all into memory at
/// the same moment (Dask's `distributed.worker.memory.transfer`, a tenth of
/// the memory limit).
pub(crate) struct FetchBudget {
    /// Permits are KiB.
    sem: tokio::sync::Semaphore,
    total: u32,
}

impl FetchBudget {
    /// A budget of `bytes` (at least 1 MiB).
    pub fn new(bytes: u64) -> Self {
        let total = u32::try_from((bytes / 1024).max(1024)).unwrap_or(u32::MAX >> 4);
        FetchBudget {
            sem: tokio::sync::Semaphore::new(total as usize),
            total,
        }
    }

    /// Waits until `nbytes` more may be fetched (a value larger than the
    /// whole budget waits for all of it); the room is given back when the
    /// permit is dropped.
    pub async fn take(&self, nbytes: u64) -> Option<tokio::sync::SemaphorePermit<'_>> {
        let kib = u32::try_from(nbytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total);
        self.sem.acquire_many(kib).await.ok()
    }
}

impl Shared {
    pub fn new(
        state: State,
        out: UnboundedSender<WorkerToScheduler>,
        security: shoal_proto::Security,
        store: DataStore,
        fetch_bytes: u64,
    ) -> Self {
        Shared {
            state: Mutex::new(state),
            work: Condvar::new(),
            pace: Condvar::new(),
            out,
            control: Mutex::new(ControlQueue::default()),
            control_ready: Condvar::new(),
            security,
            store: Mutex::new(store),
            leaving: Mutex::new(None),
            fetches: FetchBudget::new(fetch_bytes),
            release: Mutex::new(None),
            staged: Mutex::new(Staged::default()),
            joined: tokio::sync::watch::channel(false).0,
        }
    }

    /// Takes no new task while `paused` (memory is short), and says so to
    /// the scheduler when that changes.
    pub fn set_paused(&self, paused: bool) {
        let mut st = self.state.lock();
        if st.paused == paused || st.closed {
            return;
        }
        st.paused = paused;
        drop(st);
        if paused {
            tracing::debug!("paused: memory is short");
        } else {
            tracing::debug!("resumed");
            self.work.notify_all();
        }
        let _ = self.out.send(WorkerToScheduler::Paused { paused });
    }

    /// Leaves the cluster to restart, for `reason`: the scheduler is told
    /// why in the last message this worker sends it.
    pub fn leave(&self, reason: String) {
        *self.leaving.lock() = Some(reason.clone());
        let _ = self.out.send(WorkerToScheduler::Leaving { reason });
    }

    pub fn close(&self) {
        self.state.lock().closed = true;
        // Nothing here is asked for again: free it, remove spilled files.
        self.store.lock().close();
        self.work.notify_all();
        self.pace.notify_all();
        // Calls nobody will run get no answer: their requesters see the
        // connection close.
        let mut control = self.control.lock();
        control.closed = true;
        control.waiting.clear();
        drop(control);
        self.control_ready.notify_all();
    }
}

pub(crate) struct State {
    /// Every task assigned here and not ended, by phase (see `tasks`).
    pub tasks: Tasks,
    pub functions: HashMap<FuncHash, Bytes>,
    /// Functions already handed to an executor.
    pub delivered: HashSet<FuncHash>,
    /// The worker's thread count: what it runs at once when tasks compute.
    pub nthreads: u32,
    /// How many tasks may run on threads at once now (see `pacer`).
    pub allowed: u32,
    /// Executor threads started.
    pub threads: u32,
    /// The most executor threads the pacer may start.
    pub max_threads: u32,
    /// Functions whose tasks were seen blocked (waiting with the GIL free):
    /// only their tasks run beyond `nthreads`. Others — computing, or not
    /// seen yet — share the `nthreads` base slots.
    pub blocking: HashSet<FuncHash>,
    /// Modules to import ahead of need, not yet handed to the Python layer.
    pub preload: Vec<String>,
    /// Memory is short: no task starts (see `memory`).
    pub paused: bool,
    /// A preload import runs: no task starts until it ends.
    pub importing: bool,
    pub closed: bool,
}

impl State {
    pub fn new(nthreads: u32, max_threads: u32) -> State {
        let nthreads = nthreads.max(1);
        State {
            tasks: Tasks::default(),
            functions: HashMap::new(),
            delivered: HashSet::new(),
            nthreads,
            allowed: nthreads,
            threads: nthreads,
            max_threads: max_threads.max(nthreads),
            blocking: HashSet::new(),
            preload: Vec::new(),
            paused: false,
            importing: false,
            closed: false,
        }
    }

    /// Running tasks of functions not known to block: they use base slots.
    pub fn computing(&self) -> u32 {
        self.tasks.computing(&self.blocking)
    }

    /// Starts the first queued task that may start now: any task while a
    /// base slot is free, else only tasks of functions known to block.
    pub fn take_runnable(&mut self) -> Option<ReadyTask> {
        self.tasks.start(self.nthreads, &self.blocking, SCAN_LIMIT)
    }

    /// The task is no longer running here (finished or failed). A task
    /// that computed most of its time in a slot marks its function
    /// computing (a seceded task's thread clock says nothing of it).
    /// The slots to report to the scheduler: those tasks may use now
    /// (`allowed`), plus the seceded tasks' (which hold none), less those
    /// held by tasks it cancelled that still run.
    pub fn capacity(&self) -> u32 {
        (self.allowed + self.tasks.seceded()).saturating_sub(self.tasks.ghosts())
    }

    /// Ends task `id`; also returns its function if the task showed it
    /// computes after all (it was known to block): no longer known so.
    pub fn done(&mut self, id: TaskId) -> (Ended, Option<FuncHash>) {
        let ended = self.tasks.end(id);
        let mut unlearnt = None;
        if let (true, Some(r)) = (ended.freed_slot, &ended.ran) {
            if r.computed_most() && self.blocking.remove(&r.func) {
                unlearnt = Some(r.func);
            }
        }
        (ended, unlearnt)
    }

    /// What other workers learnt about functions.
    pub fn learn(&mut self, kinds: FunctionKinds) {
        self.blocking.extend(kinds.blocking);
        for f in kinds.computing {
            self.blocking.remove(&f);
        }
    }
}
