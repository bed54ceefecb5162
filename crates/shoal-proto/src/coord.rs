//! Requests a client makes of the scheduler and waits on: coordination
//! between tasks and clients, held by the scheduler (queues,
//! variables, locks, semaphores, events, published datasets and
//! publish/subscribe), and questions about where data is. Clients ask with `ClientToScheduler::Coord` and get
//! one `SchedulerToClient::CoordReply` per request — at once, when the
//! request can be granted (a lock freed, an item put), or when its timeout
//! ends.

use serde::{Deserialize, Serialize};

use crate::messages::Payload;

/// A pickled value the scheduler keeps, and the keys of the futures inside
/// it: while it is held, those results are kept too.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Held {
    pub value: Payload,
    pub keys: Vec<String>,
}

/// One row of a metadata subtree sent flat (`SetMetadata`, `Metadata`):
/// its path below the subtree's root (empty for the root itself) and a
/// leaf's pickled value, or `None` for a dict. Rows come in pre-order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaEntry {
    pub path: Vec<String>,
    pub value: Option<Payload>,
}

/// One coordination request. Names are per kind: a queue and a lock may
/// share a name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CoordOp {
    /// Creates the queue if needed (`maxsize` 0: unbounded; the first
    /// creator's bound stands). Answered `Done`.
    QueueCreate { name: String, maxsize: u32 },
    /// Waits while the queue is full. Answered `Done`.
    QueuePut { name: String, item: Held },
    /// `count` 0: every item there now, without waiting; otherwise waits
    /// for `count` items. Answered `Items`.
    QueueGet { name: String, count: u32 },
    /// Answered `Count`.
    QueueSize { name: String },
    /// Answered `Done`.
    VariableSet { name: String, item: Held },
    /// Waits until the variable is set. Answered `Items` (one).
    VariableGet { name: String },
    /// Answered `Done`.
    VariableDelete { name: String },
    /// Takes one of the semaphore's `max_leases` leases (the first acquirer's
    /// count stands) as `lease`; waits while none is free. Answered `Done`.
    /// A lease is returned when its client disconnects.
    Acquire {
        name: String,
        max_leases: u32,
        lease: u64,
    },
    /// Answered `Flag` (false if `lease` was not held).
    Release { name: String, lease: u64 },
    /// Leases of the semaphore held now. Answered `Count`.
    Leases { name: String },
    /// Holds `count` of the named locks at once as `lease`, waiting until
    /// that many are free. Answered `Done`.
    MultiAcquire {
        names: Vec<String>,
        count: u32,
        lease: u64,
    },
    /// Answered `Flag` (false if `lease` held nothing).
    MultiRelease { lease: u64 },
    /// Whether any of these multi-locks is held. Answered `Flag`.
    MultiLocked { names: Vec<String> },
    /// Answered `Done`.
    EventSet { name: String },
    /// Answered `Done`.
    EventClear { name: String },
    /// Waits until the event is set. Answered `Done`.
    EventWait { name: String },
    /// Answered `Flag`.
    EventIsSet { name: String },
    /// Fails with `Exists` if the name is taken and `replace` is false.
    /// Answered `Done`.
    DatasetPublish {
        name: String,
        item: Held,
        replace: bool,
    },
    /// Answered `Items` (one), or `Missing`.
    DatasetGet { name: String },
    /// Answered `Names`.
    DatasetList,
    /// Answered `Done`, or `Missing`.
    DatasetDelete { name: String },
    /// Starts delivering the topic's messages to this client as
    /// `Published { sub }`. Answered `Done`.
    Subscribe { topic: String, sub: u64 },
    /// Answered `Done`.
    Unsubscribe { sub: u64 },
    /// Sends a message to every subscriber of the topic now. Answered
    /// `Count` (how many got it).
    Publish { topic: String, message: Payload },
    /// Keeps `event` (a pickled `(time, message)`) under each of `topics`
    /// of the structured event log and sends it to their subscribers as
    /// `Published`. Answered `Done`.
    LogEvent { topics: Vec<String>, event: Payload },
    /// The events a topic of the log keeps, oldest first. Answered `Items`
    /// (values without keys).
    GetEvents { topic: String },
    /// The event log's topics that have events. Answered `Names`.
    EventTopics,
    /// Delivers the new events of a topic of the log to this client as
    /// `Published { sub }` (`Unsubscribe { sub }` ends it). Answered `Done`.
    SubscribeEvents { topic: String, sub: u64 },
    /// Sets the metadata at `path` (not empty) to the subtree `entries`
    /// describe; values on the way become dicts. Answered `Done`, or
    /// `Invalid` for rows that describe no tree.
    SetMetadata {
        path: Vec<String>,
        entries: Vec<MetaEntry>,
    },
    /// The metadata at `path`. Answered `Metadata`, or `Missing`.
    GetMetadata { path: Vec<String> },
    /// Keep these tasks until they finish, even if no client wants them
    /// any more. Answered `Done`.
    FireAndForget { keys: Vec<String> },
    /// Which workers hold each of these keys (every key in memory if
    /// empty). Answered `Map` (key -> worker data addresses).
    WhoHas { keys: Vec<String> },
    /// The keys each worker holds. Answered `Map` (worker -> keys).
    HasWhat,
    /// The keys assigned to each worker and not finished. Answered `Map`.
    Processing,
    /// What task `key` runs, to run it again in the client
    /// (`recreate_task_locally`): answered with `Items` of three values,
    /// the pickled function, the pickled arguments, and the dependencies'
    /// keys (one UTF-8 frame each).
    TaskCall { key: String },
    /// Copies each key in memory onto more workers until `n` of the
    /// workers matching `workers` (names, hosts or addresses; every worker
    /// if empty) hold it, all of them if `n` is 0, and drops copies beyond
    /// `n` there. Each round, at most `branching` new workers per holder
    /// fetch from the holders. Answered `Done` when every copy asked for
    /// was made or could not be, `Invalid` for a key the scheduler does not
    /// know.
    Replicate {
        keys: Vec<String>,
        n: u32,
        workers: Vec<String>,
        branching: u32,
    },
    /// The scheduler's kept transitions of the tasks named `keys`, oldest
    /// first. Answered `Story`.
    Story { keys: Vec<String> },
    /// Moves results between the workers `workers` names (every worker if
    /// empty) until each holds about the same bytes of results: `keys` (all
    /// results if empty) move from the fullest workers to the emptiest.
    /// Answered `Done` when every move was made or failed, `Invalid` for a
    /// key the scheduler does not know, `Missing` when `workers` names no
    /// connected worker.
    Rebalance {
        keys: Vec<String>,
        workers: Vec<String>,
    },
    /// Retires the workers `workers` names (names, hosts or addresses), or
    /// if none, the `n` holding the least: each takes no new task, its
    /// results that no other worker holds are copied to workers that stay,
    /// then it is told to close. Answered `Names` (the addresses of the
    /// workers told to close) once all are; a worker whose data has
    /// nowhere to go stays and is not named.
    RetireWorkers { workers: Vec<String>, n: u32 },
    /// How many workers the scheduler would like to finish the work it has
    /// in `target_ms` milliseconds (Dask's `adaptive_target`). Answered
    /// `Count`.
    AdaptiveTarget { target_ms: u32 },
}

/// The answer to one `CoordOp`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CoordReply {
    Done,
    Items(Vec<Held>),
    Count(u64),
    Flag(bool),
    Names(Vec<String>),
    Map(Vec<(String, Vec<String>)>),
    /// The request's timeout ended first; nothing was changed.
    TimedOut,
    /// A metadata subtree, flat (see [`MetaEntry`]).
    Metadata(Vec<MetaEntry>),
    /// No dataset (or metadata) of that name.
    Missing,
    /// A dataset of that name exists.
    Exists,
    /// The request cannot be served (a bad argument); the message says why.
    Invalid(String),
    /// The value refers to futures whose keys the scheduler does not know
    /// (released or cancelled): nothing was changed.
    UnknownKeys(Vec<String>),
    /// Transitions (the answer to `Story`), with the scheduler's clock now
    /// (seconds since it started, as the entries' times).
    Story {
        now: f64,
        entries: Vec<StoryEntry>,
    },
}

/// One transition of a task on the scheduler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoryEntry {
    pub key: String,
    /// The state it left and the one it entered (Dask's names).
    pub start: String,
    pub finish: String,
    /// The kind of event that caused it (`task-finished`, `worker-lost`, ...).
    pub stimulus: String,
    /// When, by the scheduler's clock (seconds since it started).
    pub time: f64,
}
