//! Every message of the protocol. Keys are the user-visible task names
//! (strings); `TaskId`s are the scheduler's compact handles, used only on the
//! scheduler <-> worker link.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The scheduler's handle for a task on the scheduler <-> worker link.
pub type TaskId = u64;

/// How often a client says it is still there (`ClientToScheduler::Heartbeat`).
pub const CLIENT_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);
/// The scheduler's handle for a connected worker.
pub type WorkerId = u64;
/// The scheduler's handle for a connected client.
pub type ClientId = u64;
/// A function's identity: a hash of its pickled bytes.
pub type FuncHash = u64;

/// `func` of a task whose "result" is its own argument payload (scatter).
pub const LITERAL_FUNC: FuncHash = 0;

/// A serialized Python value: pickle protocol 5, frame 0 is the pickle stream
/// and frames 1.. are its out-of-band buffers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Payload {
    pub frames: Vec<Bytes>,
}

impl Payload {
    /// A payload made of one frame.
    pub fn single(frame: Bytes) -> Self {
        Payload {
            frames: vec![frame],
        }
    }

    /// Total size of all frames in bytes.
    pub fn nbytes(&self) -> u64 {
        self.frames.iter().map(|f| f.len() as u64).sum()
    }
}

/// The first request on every connection to the scheduler, read once the
/// caller proved it holds the token ([`crate::handshake`]): who calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub role: Role,
}

/// What kind of peer says hello.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Role {
    Client {
        name: String,
    },
    Worker(WorkerInfo),
    /// A data connection carried by the scheduler to the data server of
    /// its worker at `to` (a client that can reach only the scheduler:
    /// Dask's `direct_to_workers=False`). Once `Welcome::Relay` is back,
    /// the connection is the worker's: its own handshake follows, end to
    /// end.
    Relay {
        to: String,
    },
}

/// What a worker tells the scheduler about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Human-readable name (defaults to the data address).
    pub name: String,
    /// Address of the worker's data server, `host:port`.
    pub data_address: String,
    pub nthreads: u32,
    /// Total memory of the worker's machine in bytes.
    pub memory: u64,
    pub pid: u32,
    pub host: String,
    /// Abstract resources it offers (`"GPU"`, 2.0), as in Dask.
    #[serde(default)]
    pub resources: Vec<(String, f64)>,
}

/// A worker as the scheduler sees it now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub info: WorkerInfo,
    /// Results held.
    pub stored: u64,
    /// Tasks assigned and not finished.
    pub assigned: u64,
    /// Its last health report (memory: rss, managed, spilled).
    #[serde(default)]
    pub metrics: WorkerMetrics,
    /// Short of memory: it starts no task.
    #[serde(default)]
    pub paused: bool,
}

/// The scheduler's answer to `Hello`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Welcome {
    Client {
        id: ClientId,
        /// Where the scheduler's dashboard listens (`host:port`), if it runs.
        #[serde(default)]
        dashboard: Option<String>,
    },
    Worker {
        id: WorkerId,
    },
    /// The scheduler reached the worker: from here on the bytes are the
    /// worker's.
    Relay,
    Refused {
        reason: String,
    },
}

/// A pickled function, sent once per client connection and cached by hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDef {
    pub hash: FuncHash,
    pub name: String,
    pub bytes: Bytes,
}

/// One task as the client describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub key: String,
    /// Function hash, or `LITERAL_FUNC` for data whose value is `args`.
    pub func: FuncHash,
    /// Pickled `(args, kwargs)`; futures inside refer to `deps` by key.
    pub args: Payload,
    /// Keys this task needs; each is earlier in the same batch or already known.
    pub deps: Vec<String>,
    /// Whether the submitting client holds a future for this key.
    pub wanted: bool,
    /// Its options: an index into its [`Submission`]'s `options`.
    pub options: u32,
}

/// The options of tasks, sent once per submission and shared by every task
/// that names them (a `map` of a million tasks sends one).
///
/// Every field has a default (its zero), and a name this struct does not
/// have is refused rather than ignored: `shoal-py` builds these from the
/// Python parser's fields by name, so a new option is a field here, the
/// scheduler code that honours it and a line in `shoal.core.options`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskOptions {
    pub priority: i32,
    pub retries: u32,
    /// Worker names or data addresses the task may run on (empty: any).
    pub workers: Vec<String>,
    /// Whether `workers` is a preference: when none of them is connected,
    /// the task may run anywhere (Dask's `allow_other_workers`).
    pub loose: bool,
    /// Seconds before the first retry (0: at once, as in Dask); each later
    /// retry waits twice as long, with jitter, up to `retry_max_delay`
    /// (0: no cap).
    pub retry_delay: f64,
    pub retry_max_delay: f64,
    /// Names of cluster-wide limits the task counts against (at most
    /// [`MAX_LIMITS_PER_TASK`]).
    pub limits: Vec<String>,
    /// Abstract resources (`"GPU"`, 1.0) the task holds on its worker while
    /// it is there; it goes only where they are free. Amounts are finite
    /// and above zero.
    pub resources: Vec<(String, f64)>,
}

/// The most limits one task may count against.
pub const MAX_LIMITS_PER_TASK: usize = 16;

/// Tasks and the options they refer to by index.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Submission {
    pub options: Vec<TaskOptions>,
    pub tasks: Vec<TaskSpec>,
}

impl Submission {
    /// The options of `spec` (the defaults for an index past the end,
    /// which only a client breaking the protocol sends).
    pub fn options_of(&self, spec: &TaskSpec) -> &TaskOptions {
        static DEFAULT: std::sync::OnceLock<TaskOptions> = std::sync::OnceLock::new();
        self.options
            .get(spec.options as usize)
            .unwrap_or_else(|| DEFAULT.get_or_init(TaskOptions::default))
    }
}

/// A cluster-wide limit on tasks tagged with its name: at most
/// `concurrency` running at once, and/or at most `rate` starts per second
/// with bursts of `burst`. `None` means no bound of that kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimitSpec {
    pub name: String,
    pub concurrency: Option<u32>,
    pub rate: Option<f64>,
    pub burst: Option<f64>,
}

/// A limit and how busy it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimitStatus {
    pub spec: LimitSpec,
    /// Tagged tasks on workers now.
    pub running: u32,
    /// Tagged tasks ready but held back by the limit.
    pub waiting: u32,
}

/// Why a task failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TaskError {
    /// The user's function raised. `exception` is the pickled exception (empty
    /// if it could not be pickled), `traceback` the formatted remote traceback.
    Raised {
        exception: Payload,
        type_name: String,
        message: String,
        traceback: String,
    },
    /// The task was running on `attempts` workers that all died.
    KilledWorker {
        key: String,
        last_worker: String,
        attempts: u32,
        /// Why the last worker left, if it said (memory), else empty.
        #[serde(default)]
        cause: String,
    },
}

/// Client -> scheduler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientToScheduler {
    Functions(Vec<FunctionDef>),
    /// Part of a graph too large for one message; its tasks are kept (not
    /// released early) until the `Submit` that completes it.
    SubmitPart(Submission),
    /// Tasks (the last part of a graph, or a whole one). A message is
    /// self-contained: a task that is not wanted and that no task in the
    /// message (or an earlier part) depends on is dropped at once.
    Submit(Submission),
    /// The client no longer holds futures for these keys: it disowns them.
    Disown(Vec<String>),
    /// Third-party modules the client has imported: workers import them
    /// ahead of need, so the first task that uses one does not pay a cold
    /// import on the user's clock.
    Preload(Vec<String>),
    /// A file (`.py`, `.egg`, `.zip`) for every worker, now and later, to
    /// save and import (`Client.upload_file`).
    Upload {
        name: String,
        data: Bytes,
    },
    /// A pickled worker plugin (`Client.register_plugin`) for every worker
    /// that joins from now on (the client installs it on the workers there
    /// now itself); replaces the plugin of the same name.
    RegisterPlugin {
        name: String,
        plugin: Payload,
    },
    /// Forget the plugin of this name: joining workers no longer get it.
    UnregisterPlugin {
        name: String,
    },
    /// Creates or changes a limit (it applies at once).
    SetLimit(LimitSpec),
    /// Ask about the cluster; answered with `Identity`.
    Identify,
    /// Nothing but "still here", every [`CLIENT_HEARTBEAT`]: a client that
    /// falls silent loses its locks' and semaphores' leases.
    Heartbeat,
    /// Ask for finished tasks from position `since` of the task stream (at
    /// most `limit`, the newest); answered with `TaskStream`.
    GetTaskStream {
        since: u64,
        limit: u32,
    },
    /// The client holds futures for these keys, which it did not submit
    /// (found in a result, a queue, a variable): keep them for it, and tell
    /// it where they are.
    Want(Vec<String>),
    /// A request answered by one `CoordReply` with the same `req`; the
    /// scheduler answers `TimedOut` after `timeout` seconds if it could not
    /// grant it by then (`None`: wait as long as it takes).
    Coord {
        req: u64,
        op: crate::coord::CoordOp,
        timeout: Option<f64>,
    },
    /// The client cancelled these keys (it no longer wants them, as with
    /// `Disown`): the scheduler also cancels, for this client, the keys that
    /// depend on them which only this client wants, telling it with
    /// `KeyCancelled`, as Dask does.
    Cancel(Vec<String>),
    /// Compute these erred keys again, with the erred tasks upstream of them
    /// (`Future.retry`); the scheduler says `KeyLost` for each it retries.
    Retry(Vec<String>),
    /// Stop the scheduler and every worker.
    Shutdown,
}

/// Scheduler -> client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SchedulerToClient {
    /// A wanted key is in memory. `inline` carries small results.
    KeyMemory {
        key: String,
        nbytes: u64,
        type_name: String,
        inline: Option<Payload>,
        holders: Vec<String>,
    },
    KeyErred {
        key: String,
        error: TaskError,
    },
    /// A wanted key's data was lost and is being computed again.
    KeyLost {
        key: String,
    },
    /// The key was cancelled for this client because a key it depends on
    /// was (see `ClientToScheduler::Cancel`).
    KeyCancelled {
        key: String,
    },
    /// The answer to `Identify`.
    Identity {
        workers: Vec<WorkerStatus>,
        /// How many tasks the scheduler remembers.
        tasks: u64,
        #[serde(default)]
        limits: Vec<LimitStatus>,
        /// The scheduler's id and when it started (seconds since the epoch).
        #[serde(default)]
        scheduler_id: String,
        #[serde(default)]
        started: f64,
    },
    /// The answer to `GetTaskStream`: the tasks, and the position to ask
    /// from next.
    TaskStream {
        records: Vec<TaskRecord>,
        next: u64,
    },
    /// The answer to `Coord { req, .. }`.
    CoordReply {
        req: u64,
        reply: crate::coord::CoordReply,
    },
    /// A message published to a topic this client subscribed to as `sub`.
    Published {
        sub: u64,
        message: Payload,
    },
    WorkerAdded(WorkerInfo),
    WorkerRemoved {
        data_address: String,
    },
    ShuttingDown,
    /// The scheduler removed this client, for the reason given: its
    /// futures were released, its leases freed, and its connection closes
    /// after this message.
    Removed(Removal),
}

/// Why the scheduler removed a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Removal {
    /// It heard nothing from it for this many seconds.
    Silent { seconds: f64 },
    /// It read so slowly that this many bytes of messages waited for it.
    Slow { queued: u64 },
}

impl std::fmt::Display for Removal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Removal::Silent { seconds } => write!(
                f,
                "nothing was heard from it for {seconds:.0} s (a stopped or suspended process; \
                 Dask's distributed.comm.timeouts.tcp)"
            ),
            Removal::Slow { queued } => write!(
                f,
                "it read its messages so slowly that {} MiB of them waited for it",
                queued >> 20
            ),
        }
    }
}

/// A task that ran, as the task stream records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub key: String,
    /// The key's prefix (its function's name).
    pub name: String,
    /// The worker's data address.
    pub worker: String,
    pub timing: Timing,
    /// False if it raised.
    pub ok: bool,
    pub nbytes: u64,
}

/// Where a dependency's data can be fetched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DepLocation {
    pub key: String,
    pub holders: Vec<String>,
    /// The value itself, when the scheduler has a copy and the worker is
    /// not known to hold one (small results, see the core's `kept`).
    #[serde(default)]
    pub inline: Option<Payload>,
    /// Its size in bytes, as its worker reported it (0 if unknown): what
    /// fetching it will hold in memory.
    #[serde(default)]
    pub nbytes: u64,
}

/// A task handed to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputeTask {
    pub id: TaskId,
    pub key: String,
    pub func: FuncHash,
    pub args: Payload,
    pub deps: Vec<DepLocation>,
    pub priority: i32,
}

/// Scheduler -> worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SchedulerToWorker {
    /// Functions the worker has not been sent yet; always precede their tasks.
    Functions(Vec<FunctionDef>),
    Compute(ComputeTask),
    /// Drop these tasks if they have not started.
    Cancel {
        ids: Vec<TaskId>,
    },
    /// Give these tasks back if they have not started (answered by `GaveBack`).
    Steal {
        ids: Vec<TaskId>,
    },
    /// Drop this data from the worker's store.
    Free {
        keys: Vec<String>,
    },
    /// What the cluster knows about functions: another worker learnt it,
    /// or (for a joining worker) everything known.
    Learnt(FunctionKinds),
    /// Import these modules in the background while idle (see
    /// `ClientToScheduler::Preload`).
    Preload {
        modules: Vec<String>,
    },
    /// Everything a joining worker must have before it serves clients (its
    /// uploads and plugins) was sent: `Client.run` calls that reach the
    /// worker straight from a client wait for this, so they find the
    /// plugins installed, as in Dask.
    Joined,
    /// Fetch a copy of each of these results from its holders and keep it
    /// (`Client.replicate`); answered by `Fetched`.
    Fetch {
        deps: Vec<DepLocation>,
    },
    /// Save this file and make it importable (see `ClientToScheduler::Upload`).
    Upload {
        name: String,
        data: Bytes,
    },
    /// Install this pickled worker plugin (see
    /// `ClientToScheduler::RegisterPlugin`).
    Plugin {
        name: String,
        plugin: Payload,
    },
    Shutdown,
}

fn retry_by_default() -> bool {
    true
}

/// When and where a task ran, by the worker's clock: seconds since the
/// epoch, and the id of the thread that started it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    pub start: f64,
    pub stop: f64,
    pub thread: u64,
}

/// A worker's health, sent every half second or so.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerMetrics {
    /// CPU use of the process since the last report, in percent of one core.
    pub cpu: f64,
    /// Resident memory of the process in bytes.
    pub rss: u64,
    /// Bytes of results the worker holds in memory.
    pub managed: u64,
    /// Bytes of results it spilled to disk.
    #[serde(default)]
    pub spilled: u64,
    /// Tasks running and waiting to run on the worker.
    pub running: u32,
    pub queued: u32,
}

/// What workers learnt about functions by watching their tasks run: those
/// whose tasks wait on the outside world (the network, a sleep, a
/// subprocess) with the CPU idle, and those whose tasks compute. Shared
/// cluster-wide through the scheduler, so a worker that never ran a task
/// of a function, or joined later, knows it from the first task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionKinds {
    pub blocking: Vec<FuncHash>,
    pub computing: Vec<FuncHash>,
}

impl FunctionKinds {
    /// Only that these functions block.
    pub fn blocks(blocking: Vec<FuncHash>) -> Self {
        FunctionKinds {
            blocking,
            computing: Vec::new(),
        }
    }

    /// Only that these functions compute.
    pub fn computes(computing: Vec<FuncHash>) -> Self {
        FunctionKinds {
            blocking: Vec::new(),
            computing,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.blocking.is_empty() && self.computing.is_empty()
    }
}

/// Worker -> scheduler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WorkerToScheduler {
    TaskStarted {
        ids: Vec<TaskId>,
    },
    TaskFinished {
        id: TaskId,
        nbytes: u64,
        type_name: String,
        inline: Option<Payload>,
        duration: f64,
        #[serde(default)]
        timing: Option<Timing>,
    },
    TaskFailed {
        id: TaskId,
        error: TaskError,
        /// False if the task's retry filter says this error is final.
        #[serde(default = "retry_by_default")]
        retryable: bool,
        #[serde(default)]
        timing: Option<Timing>,
    },
    /// The task raised `Reschedule` (Dask's): not a failure; the scheduler
    /// places it again, its retries untouched.
    TaskRescheduled {
        id: TaskId,
        #[serde(default)]
        timing: Option<Timing>,
    },
    /// The worker's health (see [`WorkerMetrics`]).
    Metrics(WorkerMetrics),
    /// The answer to `Steal`: these tasks were given back and will not run here.
    GaveBack {
        ids: Vec<TaskId>,
    },
    /// How many tasks the worker can run at once now. It starts at its
    /// thread count and grows while its running tasks are blocked (on the
    /// network, a sleep, a subprocess) rather than using the CPU; the
    /// scheduler sizes the worker's window from it.
    Capacity {
        slots: u32,
    },
    /// The worker could not fetch these dependencies of task `id` from any holder.
    MissingDeps {
        id: TaskId,
        keys: Vec<String>,
    },
    /// The worker now keeps a copy of each of `keys`, fetched from another
    /// worker (for a task's inputs, or asked by `Fetch`), so the scheduler
    /// counts it as a holder and frees the copy with the key; it could not
    /// get `missing` (asked by `Fetch`) from any holder.
    Fetched {
        keys: Vec<String>,
        missing: Vec<String>,
    },
    /// Memory is short (above its pause fraction): the worker starts no
    /// task until it says `paused: false`, so send it none.
    Paused {
        paused: bool,
    },
    /// These results are gone from this worker (a spilled value's file
    /// could not be read back): it holds them no more, and one with no
    /// copy left is computed again.
    Lost {
        keys: Vec<String>,
    },
    /// What this worker learnt about functions since it last said
    /// (the scheduler passes it on to every other worker).
    Learnt(FunctionKinds),
    /// The worker's last message: it restarts, for `reason` (above its
    /// memory's terminate fraction). Tasks running on it count this death.
    Leaving {
        reason: String,
    },
}

/// A request for data to a worker's data server (from a peer worker or a
/// client).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetData {
    pub keys: Vec<String>,
    /// The asker is a process on this host that may read the worker's
    /// memory: large frames are announced by address instead of sent
    /// ([`DataHeader::at`], `crate::data`).
    #[serde(default)]
    pub direct: bool,
}

/// What a worker's data server is asked. Each request gets one answer:
/// `DataResponse` for `Get`, `RunResponse` for `Run`, `PutAck` for `Put`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PeerRequest {
    Get(GetData),
    /// Run a pickled call on the worker, outside its task slots
    /// (`Client.run`).
    Run {
        call: Payload,
    },
    /// Values a client scatters straight to this worker follow, in the
    /// layout of a [`DataResponse`] (`io::write_data`). The worker holds
    /// them until the scheduler asks it to keep them (a `Compute` of the
    /// key with `LITERAL_FUNC` and no frames); unclaimed ones expire.
    Put,
}

/// The answer to `PeerRequest::Put`: how many values the worker now holds
/// for the scheduler to claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutAck {
    pub held: u32,
}

/// The answer to `PeerRequest::Run`: the pickled return value, or what the
/// call raised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RunResponse {
    Value(Payload),
    Raised(TaskError),
}

/// The data server's answer: one entry per requested key, `None` if absent.
/// On the wire (see `io::write_data`) a frame holding [`DataHeader`], then
/// every value's frames as raw bytes, so no value is copied into or out of
/// a MessagePack buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct DataResponse {
    pub items: Vec<(String, Option<Payload>)>,
}

/// What precedes the raw bytes of a [`DataResponse`]: each key with the
/// lengths of its value's frames, `None` if absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataHeader {
    pub items: Vec<(String, Option<Vec<u64>>)>,
    /// Frames that are not among the raw bytes that follow: the asker
    /// copies each from the worker's memory at `addr`, then answers a
    /// [`DirectReply`]. In increasing (item, frame) order.
    #[serde(default)]
    pub at: Vec<DirectFrame>,
}

/// Where frame `frame` of item `item` of a [`DataHeader`] lies in the
/// memory of the worker that answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectFrame {
    pub item: u32,
    pub frame: u32,
    pub addr: u64,
}

/// The asker's answer to a [`DataHeader`] that announced frames by
/// address, and the worker's answer to `Done`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DirectReply {
    /// The asker copied them. The worker, which kept them in place until
    /// this arrived, answers `Done` in turn: only that answer makes the
    /// copies good (a worker that stopped waiting closed the connection
    /// instead).
    Done,
    /// The asker could not read them (the kernel refused): the worker
    /// sends their bytes after all, in order, as raw frames.
    Send,
}
