//! The scheduler state and the dispatch of events to their handlers.
//!
//! Handlers live by stimulus family: [`crate::client_events`] for what
//! clients send, [`crate::worker_events`] for what workers send, and
//! [`crate::lifecycle`] for the task life cycle they share, where every
//! change of a task's state goes through one function. Every handler appends
//! commands to `out`; none performs I/O. Cascades (freeing a chain of
//! intermediates, failing every dependent of an erred task) run on explicit
//! worklists, so a graph a million tasks deep never recurses.

use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};
use shoal_proto::{ClientId, FuncHash, TaskId, WorkerId};

use crate::events::{Command, Event};
use crate::keys::KeyIndex;
use crate::placement::ReadyEntry;
use crate::task::TaskState;
use crate::worker::Worker;

/// Tunables of the scheduler.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// A task errs with `KilledWorker` once more workers than this died
    /// while running it (Dask's `distributed.scheduler.allowed-failures`).
    pub allowed_failures: u32,
    /// How much queued work (in seconds of estimated run time) a worker should
    /// hold beyond its running tasks so it never idles waiting for us.
    pub queue_target: f64,
    /// Upper bound on queued tasks per worker thread (256: a thread of
    /// 10 µs tasks then holds 2.5 ms of work, and stays busy while the
    /// scheduler takes in a part of a graph).
    pub max_queued_per_thread: u32,
    /// Finished tasks remembered for the task stream (0: none).
    pub task_stream_len: usize,
    /// The scheduler's id and start time (seconds since the epoch), as
    /// clients are told; the shell sets them.
    pub id: String,
    pub started: f64,
    /// A worker not heard from for this many seconds is declared dead
    /// (Dask's `distributed.scheduler.worker-ttl`); never if None.
    pub worker_ttl: Option<f64>,
    /// A client not heard from for this many seconds loses the leases of
    /// the locks and semaphores it holds (Dask's
    /// `distributed.scheduler.locks.lease-timeout`); never if None.
    pub lease_timeout: Option<f64>,
    /// A client not heard from for this many seconds is removed as if its
    /// connection had closed: its futures released, its leases freed,
    /// what was queued for it dropped (Dask's
    /// `distributed.comm.timeouts.tcp`, after which it calls an
    /// unresponsive connection dead); never if None.
    pub client_timeout: Option<f64>,
    /// Bytes of small results (those workers send along, at most 64 KiB
    /// each) the scheduler keeps a copy of while they are in memory, so a
    /// worker's death does not lose them (see [`crate::small_results`]); 0 keeps none.
    pub keep_bytes: u64,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            allowed_failures: 3,
            queue_target: 0.005,
            max_queued_per_thread: 256,
            task_stream_len: crate::stats::DEFAULT_STREAM_LEN,
            id: String::new(),
            started: 0.0,
            worker_ttl: Some(300.0),
            lease_timeout: Some(30.0),
            client_timeout: Some(30.0),
            keep_bytes: crate::small_results::DEFAULT_KEEP_BYTES,
        }
    }
}

/// A task's state as seen from outside the core (for tests and diagnostics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStateKind {
    Released,
    Waiting,
    Ready,
    Assigned(WorkerId),
    Memory,
    Erred,
}

#[derive(Default)]
pub(crate) struct ClientState {
    pub wants: FxHashSet<TaskId>,
    /// Tasks of a graph still arriving in parts, pinned until it is whole.
    pub staged: Vec<TaskId>,
    /// When it was last heard from (the core's clock).
    pub last_seen: f64,
    /// Silent past the lease timeout: its leases were released (until it
    /// speaks again, it is not checked).
    pub silent: bool,
}

/// The scheduler state machine.
pub struct Core {
    pub(crate) config: CoreConfig,
    pub(crate) tasks: crate::table::TaskTable,
    pub(crate) keys: KeyIndex,
    pub(crate) workers: BTreeMap<WorkerId, Worker>,
    pub(crate) clients: BTreeMap<ClientId, ClientState>,
    pub(crate) functions: crate::functions::FunctionTable,
    /// Functions a worker saw block on the outside world (see
    /// [`crate::function_kinds`]).
    pub(crate) blocking_funcs: FxHashSet<FuncHash>,
    /// Modules every worker imports ahead of need, in the order named.
    pub(crate) preload: Vec<String>,
    /// Files every worker saves and imports (`Client.upload_file`), by name;
    /// a later upload of a name replaces the earlier one.
    pub(crate) uploads: Vec<(String, bytes::Bytes)>,
    /// Worker plugins, by name in registration order, for joining workers.
    pub(crate) plugins: Vec<(String, shoal_proto::Payload)>,
    /// Result type names, shared between tasks (`Task::type_name` indexes).
    pub(crate) type_names: Vec<Arc<str>>,
    type_index: FxHashMap<Arc<str>, u32>,
    pub(crate) ready: BinaryHeap<ReadyEntry>,
    /// Exponential moving average of task run times, once any is known.
    pub(crate) mean_duration: Option<f64>,
    /// Tasks whose need may have dropped: free or forget them.
    pub(crate) to_check: Vec<TaskId>,
    /// Keys to free, per worker, gathered into one message each.
    pub(crate) to_free: BTreeMap<WorkerId, Vec<String>>,
    /// Tasks to cancel, per worker.
    pub(crate) to_cancel: BTreeMap<WorkerId, Vec<TaskId>>,
    /// Tasks taken back from a worker while they ran there, with that
    /// worker and the key its result will be stored under: the run still
    /// ends with a report, and if the task is forgotten by then, the result
    /// is freed there by key (the report names only the id).
    pub(crate) orphans: FxHashMap<TaskId, (WorkerId, Box<str>)>,
    /// The time the shell last passed in ([`Core::advance`]), in seconds.
    pub(crate) now: f64,
    /// Tasks whose retry waits: when ready they stay out of the queue.
    pub(crate) held: rustc_hash::FxHashSet<TaskId>,
    /// When each held task may run (microseconds), soonest first; id 0 is a
    /// plain wake-up (a limit's next token).
    pub(crate) timers: BinaryHeap<std::cmp::Reverse<(u64, TaskId)>>,
    /// Cluster-wide limits by name.
    pub(crate) limits: FxHashMap<Arc<str>, crate::limits::Limit>,
    /// The earliest plain wake-up (id 0) in `timers`, if any: a later one
    /// need not be added.
    wake: Option<u64>,
    /// Counts per task prefix and the task stream (see [`crate::stats`]).
    pub(crate) stats: crate::stats::Stats,
    /// Queues, variables, locks, events, datasets, topics (see
    /// [`crate::coord`]).
    pub(crate) coord: crate::coord::Coord,
    /// `replicate` requests in progress (see [`crate::replicas`]).
    pub(crate) replications: crate::replicas::Replications,
    /// The latest transitions (see [`crate::story`]).
    pub(crate) story: crate::story::Story,
    /// `rebalance` requests in progress (see [`crate::rebalance`]).
    pub(crate) rebalances: crate::rebalance::Rebalances,
    /// `retire_workers` requests in progress (see [`crate::retire`]).
    pub(crate) retirements: crate::retire::Retirements,
    /// When to look for silent workers next (see [`crate::silence`]).
    pub(crate) silence_check: Option<f64>,
    /// Clients gone, whose messages still on their way are ignored (see
    /// [`crate::client_events::GoneClients`]).
    pub(crate) gone_clients: crate::client_events::GoneClients,
    /// Copies of small results (see [`crate::small_results`]).
    pub(crate) kept: crate::small_results::Kept,
}

impl Default for Core {
    fn default() -> Self {
        Core::new(CoreConfig::default())
    }
}

impl Core {
    pub fn new(config: CoreConfig) -> Self {
        Core {
            stats: crate::stats::Stats::new(config.task_stream_len),
            config,
            tasks: crate::table::TaskTable::default(),
            keys: KeyIndex::default(),
            workers: BTreeMap::new(),
            clients: BTreeMap::new(),
            functions: Default::default(),
            blocking_funcs: FxHashSet::default(),
            preload: Vec::new(),
            uploads: Vec::new(),
            plugins: Vec::new(),
            type_names: Vec::new(),
            type_index: FxHashMap::default(),
            ready: BinaryHeap::new(),
            mean_duration: None,
            to_check: Vec::new(),
            to_free: BTreeMap::new(),
            to_cancel: BTreeMap::new(),
            orphans: FxHashMap::default(),
            now: 0.0,
            held: rustc_hash::FxHashSet::default(),
            timers: BinaryHeap::new(),
            limits: FxHashMap::default(),
            wake: None,
            coord: Default::default(),
            replications: Default::default(),
            rebalances: Default::default(),
            story: Default::default(),
            retirements: Default::default(),
            silence_check: None,
            gone_clients: Default::default(),
            kept: Default::default(),
        }
        .with_coordinator()
    }

    /// The scheduler holds keys for values it keeps as a client of its own.
    fn with_coordinator(mut self) -> Self {
        self.clients
            .insert(crate::coord::COORD_CLIENT, ClientState::default());
        self
    }

    /// Tells the core the time (seconds on any clock that does not go
    /// back). Retries whose wait is over join the ready queue; call
    /// [`Core::schedule`] after.
    pub fn advance(&mut self, now: f64) {
        self.story.stimulus = crate::story::Stimulus::Timer;
        if now > self.now {
            self.now = now;
        }
        let due = (self.now * 1e6) as u64;
        while let Some(std::cmp::Reverse((at, id))) = self.timers.peek().copied() {
            if at > due {
                break;
            }
            self.timers.pop();
            if id == 0 && self.wake == Some(at) {
                self.wake = None;
            }
            if self.held.remove(&id) {
                if let Some(t) = self.tasks.get(&id) {
                    if t.state == TaskState::Ready {
                        self.ready.push(ReadyEntry::of(t, id));
                    }
                }
            }
        }
    }

    /// When the core next needs [`Core::advance`] (a retry's wait ends), if
    /// ever.
    pub fn next_wakeup(&self) -> Option<f64> {
        self.timers
            .peek()
            .map(|std::cmp::Reverse((at, _))| *at as f64 / 1e6)
    }

    /// Asks the shell to wake the core at `at` (seconds).
    pub(crate) fn wake_at(&mut self, at: f64) {
        // Rounded up, and at least a microsecond on: time must pass.
        let at = ((at * 1e6).ceil() as u64).max((self.now * 1e6) as u64 + 1);
        if self.wake.is_some_and(|w| w <= at) {
            return; // an earlier wake-up is already due
        }
        self.wake = Some(at);
        self.timers.push(std::cmp::Reverse((at, 0)));
    }

    /// Keeps task `id` out of the ready queue until `at` (seconds).
    pub(crate) fn hold_until(&mut self, id: TaskId, at: f64) {
        self.held.insert(id);
        self.timers.push(std::cmp::Reverse(((at * 1e6) as u64, id)));
    }

    /// Applies one event. Call [`Core::schedule`] after a batch of events.
    pub fn handle(&mut self, event: Event, out: &mut Vec<Command>) {
        self.story.stimulus = crate::story::stimulus_of(&event);
        match event {
            Event::ClientConnected(c) => {
                self.clients.entry(c).or_default();
                self.heard_from_client(c);
            }
            Event::ClientDisconnected(c) => self.client_gone(c, out),
            Event::FromClient(c, _) if self.gone_clients.contains(c) => {
                tracing::debug!("client {c} is gone: its message is ignored");
            }
            Event::FromClient(c, msg) => {
                self.heard_from_client(c);
                self.client_message(c, msg, out)
            }
            Event::WorkerConnected(w, info) => self.worker_joined(w, info, out),
            Event::WorkerLost(w) => self.worker_lost(w, out),
            Event::FromWorker(w, msg) => self.worker_message(w, msg, out),
        }
        self.free_unneeded(out);
    }

    // ----- introspection -------------------------------------------------

    /// The scheduler's id for the task named `key`.
    pub fn id_of(&self, key: &str) -> Option<TaskId> {
        self.keys.get(key, |slot| {
            self.tasks.at_slot(slot).map(|(id, t)| (id, t.key()))
        })
    }

    /// The state of the task named `key`, if the scheduler knows it.
    pub fn state_of(&self, key: &str) -> Option<TaskStateKind> {
        let t = self.tasks.get(&self.id_of(key)?)?;
        Some(match &t.state {
            TaskState::Released => TaskStateKind::Released,
            TaskState::Waiting => TaskStateKind::Waiting,
            TaskState::Ready => TaskStateKind::Ready,
            TaskState::Assigned { worker, .. } => TaskStateKind::Assigned(*worker),
            TaskState::Memory { .. } => TaskStateKind::Memory,
            TaskState::Erred => TaskStateKind::Erred,
        })
    }

    /// How many tasks the scheduler remembers.
    /// Slots of the per-prefix table, used and free (see `stats.rs`).
    pub fn prefix_slots(&self) -> usize {
        self.stats.prefix_slots()
    }

    /// The functions the scheduler keeps now (see `functions.rs`).
    pub fn function_count(&self) -> usize {
        self.functions.count()
    }

    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    /// Which workers hold the result of `key`.
    pub fn holders_of(&self, key: &str) -> Vec<WorkerId> {
        match self.id_of(key).and_then(|id| self.tasks.get(&id)) {
            Some(t) => match &t.state {
                TaskState::Memory { holders } => holders.clone(),
                _ => Vec::new(),
            },
            None => Vec::new(),
        }
    }

    /// How many tasks are assigned to worker `w`.
    pub fn assigned_to(&self, w: WorkerId) -> usize {
        self.workers.get(&w).map_or(0, |w| w.assigned.len())
    }

    // ----- shared helpers --------------------------------------------------

    /// One shared copy of each result type name.
    pub(crate) fn intern(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.type_index.get(name) {
            return i;
        }
        let n: Arc<str> = Arc::from(name);
        let i = self.type_names.len() as u32;
        self.type_names.push(n.clone());
        self.type_index.insert(n, i);
        i
    }

    /// Whether a connected worker's data server is at `addr` (with or
    /// without a scheme): the only places the scheduler carries a client's
    /// data connection to.
    pub fn has_worker_at(&self, addr: &str) -> bool {
        let addr = shoal_proto::addr::strip_scheme(addr);
        self.workers
            .values()
            .any(|w| shoal_proto::addr::strip_scheme(&w.info.data_address) == addr)
    }

    /// Data addresses of these workers (those still connected).
    pub(crate) fn addresses(&self, holders: &[WorkerId]) -> Vec<String> {
        holders
            .iter()
            .filter_map(|w| self.workers.get(w).map(|w| w.info.data_address.clone()))
            .collect()
    }
}
