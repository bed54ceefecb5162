//! Coordination requests and answers for Python, as typed classes:
//! Python builds a [`Coord`] variant (`Coord.QueuePut(name=..., value=...,
//! keys=...)`) and gets back an [`Answer`] variant; this module is the one
//! place they are converted to and from the wire's `CoordOp`/`CoordReply`.

use std::time::Duration;

use pyo3::prelude::*;
use shoal_proto::{CoordOp, CoordReply, Held, MetaEntry, Payload, RunResponse};

use crate::frames::Frames;
use crate::types::TaskError;

/// A coordination request (see `shoal_proto::CoordOp` for what each does).
/// Values held by the scheduler travel as pickle frames plus the keys of
/// the futures inside them.
#[pyclass(module = "shoal._engine", frozen)]
#[derive(Clone)]
pub enum Coord {
    #[pyo3(constructor = (name, maxsize=0))]
    QueueCreate {
        name: String,
        maxsize: u32,
    },
    #[pyo3(constructor = (name, value, keys=Vec::new()))]
    QueuePut {
        name: String,
        value: Frames,
        keys: Vec<String>,
    },
    #[pyo3(constructor = (name, count=0))]
    QueueGet {
        name: String,
        count: u32,
    },
    QueueSize {
        name: String,
    },
    #[pyo3(constructor = (name, value, keys=Vec::new()))]
    VariableSet {
        name: String,
        value: Frames,
        keys: Vec<String>,
    },
    VariableGet {
        name: String,
    },
    VariableDelete {
        name: String,
    },
    Acquire {
        name: String,
        max_leases: u32,
        lease: u64,
    },
    Release {
        name: String,
        lease: u64,
    },
    Leases {
        name: String,
    },
    MultiAcquire {
        names: Vec<String>,
        count: u32,
        lease: u64,
    },
    MultiRelease {
        lease: u64,
    },
    MultiLocked {
        names: Vec<String>,
    },
    EventSet {
        name: String,
    },
    EventClear {
        name: String,
    },
    EventWait {
        name: String,
    },
    EventIsSet {
        name: String,
    },
    #[pyo3(constructor = (name, value, keys=Vec::new(), replace=false))]
    DatasetPublish {
        name: String,
        value: Frames,
        keys: Vec<String>,
        replace: bool,
    },
    DatasetGet {
        name: String,
    },
    DatasetList {},
    DatasetDelete {
        name: String,
    },
    Subscribe {
        topic: String,
        sub: u64,
    },
    Unsubscribe {
        sub: u64,
    },
    Publish {
        topic: String,
        message: Frames,
    },
    LogEvent {
        topics: Vec<String>,
        event: Frames,
    },
    GetEvents {
        topic: String,
    },
    EventTopics {},
    SubscribeEvents {
        topic: String,
        sub: u64,
    },
    /// `entries`: the value's rows, `(path below it, frames of a leaf or
    /// None for a dict)` in pre-order (see `shoal_proto::MetaEntry`).
    SetMetadata {
        path: Vec<String>,
        entries: Vec<(Vec<String>, Option<Frames>)>,
    },
    GetMetadata {
        path: Vec<String>,
    },
    FireAndForget {
        keys: Vec<String>,
    },
    WhoHas {
        keys: Vec<String>,
    },
    HasWhat {},
    Processing {},
    TaskCall {
        key: String,
    },
    #[pyo3(constructor = (keys, n=0, workers=Vec::new(), branching=2))]
    Replicate {
        keys: Vec<String>,
        n: u32,
        workers: Vec<String>,
        branching: u32,
    },
    Story {
        keys: Vec<String>,
    },
    #[pyo3(constructor = (keys=Vec::new(), workers=Vec::new()))]
    Rebalance {
        keys: Vec<String>,
        workers: Vec<String>,
    },
    #[pyo3(constructor = (workers=Vec::new(), n=0))]
    RetireWorkers {
        workers: Vec<String>,
        n: u32,
    },
    AdaptiveTarget {
        target_ms: u32,
    },
}

fn held(value: Frames, keys: Vec<String>) -> Held {
    Held {
        value: Payload { frames: value.0 },
        keys,
    }
}

impl From<Coord> for CoordOp {
    fn from(c: Coord) -> CoordOp {
        match c {
            Coord::QueueCreate { name, maxsize } => CoordOp::QueueCreate { name, maxsize },
            Coord::QueuePut { name, value, keys } => CoordOp::QueuePut {
                name,
                item: held(value, keys),
            },
            Coord::QueueGet { name, count } => CoordOp::QueueGet { name, count },
            Coord::QueueSize { name } => CoordOp::QueueSize { name },
            Coord::VariableSet { name, value, keys } => CoordOp::VariableSet {
                name,
                item: held(value, keys),
            },
            Coord::VariableGet { name } => CoordOp::VariableGet { name },
            Coord::VariableDelete { name } => CoordOp::VariableDelete { name },
            Coord::Acquire {
                name,
                max_leases,
                lease,
            } => CoordOp::Acquire {
                name,
                max_leases,
                lease,
            },
            Coord::Release { name, lease } => CoordOp::Release { name, lease },
            Coord::Leases { name } => CoordOp::Leases { name },
            Coord::MultiAcquire {
                names,
                count,
                lease,
            } => CoordOp::MultiAcquire {
                count,
                names,
                lease,
            },
            Coord::MultiRelease { lease } => CoordOp::MultiRelease { lease },
            Coord::MultiLocked { names } => CoordOp::MultiLocked { names },
            Coord::EventSet { name } => CoordOp::EventSet { name },
            Coord::EventClear { name } => CoordOp::EventClear { name },
            Coord::EventWait { name } => CoordOp::EventWait { name },
            Coord::EventIsSet { name } => CoordOp::EventIsSet { name },
            Coord::DatasetPublish {
                name,
                value,
                keys,
                replace,
            } => CoordOp::DatasetPublish {
                replace,
                item: held(value, keys),
                name,
            },
            Coord::DatasetGet { name } => CoordOp::DatasetGet { name },
            Coord::DatasetList {} => CoordOp::DatasetList,
            Coord::DatasetDelete { name } => CoordOp::DatasetDelete { name },
            Coord::Subscribe { topic, sub } => CoordOp::Subscribe { topic, sub },
            Coord::Unsubscribe { sub } => CoordOp::Unsubscribe { sub },
            Coord::Publish { topic, message } => CoordOp::Publish {
                topic,
                message: Payload { frames: message.0 },
            },
            Coord::LogEvent { topics, event } => CoordOp::LogEvent {
                topics,
                event: Payload { frames: event.0 },
            },
            Coord::GetEvents { topic } => CoordOp::GetEvents { topic },
            Coord::EventTopics {} => CoordOp::EventTopics,
            Coord::SubscribeEvents { topic, sub } => CoordOp::SubscribeEvents { topic, sub },
            Coord::SetMetadata { path, entries } => CoordOp::SetMetadata {
                path,
                entries: entries
                    .into_iter()
                    .map(|(path, value)| MetaEntry {
                        path,
                        value: value.map(|f| Payload { frames: f.0 }),
                    })
                    .collect(),
            },
            Coord::GetMetadata { path } => CoordOp::GetMetadata { path },
            Coord::FireAndForget { keys } => CoordOp::FireAndForget { keys },
            Coord::WhoHas { keys } => CoordOp::WhoHas { keys },
            Coord::HasWhat {} => CoordOp::HasWhat,
            Coord::Processing {} => CoordOp::Processing,
            Coord::TaskCall { key } => CoordOp::TaskCall { key },
            Coord::Replicate {
                keys,
                n,
                workers,
                branching,
            } => CoordOp::Replicate {
                n,
                keys,
                workers,
                branching,
            },
            Coord::Story { keys } => CoordOp::Story { keys },
            Coord::Rebalance { keys, workers } => CoordOp::Rebalance { keys, workers },
            Coord::RetireWorkers { workers, n } => CoordOp::RetireWorkers { n, workers },
            Coord::AdaptiveTarget { target_ms } => CoordOp::AdaptiveTarget { target_ms },
        }
    }
}

/// The scheduler's answer to a [`Coord`] request. `Map` entries name
/// workers by address without their scheme.
#[pyclass(module = "shoal._engine", frozen)]
pub enum Answer {
    Done {},
    /// Held values, as pickle frames.
    Items {
        items: Vec<Frames>,
    },
    Count {
        n: u64,
    },
    Flag {
        value: bool,
    },
    Names {
        names: Vec<String>,
    },
    Map {
        entries: Vec<(String, Vec<String>)>,
    },
    /// A metadata subtree: `(path below it, frames of a leaf or None for a
    /// dict)` rows in pre-order.
    Metadata {
        entries: Vec<(Vec<String>, Option<Frames>)>,
    },
    /// The request's timeout ended first; nothing was changed.
    TimedOut {},
    /// No dataset (or metadata) of that name.
    Missing {},
    /// A dataset of that name exists.
    Exists {},
    /// The request cannot be served; the message says why.
    Invalid {
        message: String,
    },
    /// The value refers to futures the scheduler does not know (released
    /// or cancelled); nothing was changed.
    UnknownKeys {
        keys: Vec<String>,
    },
    /// Transitions of tasks on the scheduler, oldest first, and the
    /// scheduler's clock now (seconds since it started, as their times).
    Story {
        now: f64,
        entries: Vec<StoryRecord>,
    },
}

/// One transition of a task on the scheduler (see `Client.story`).
#[pyclass(module = "shoal._engine", frozen, get_all, from_py_object)]
#[derive(Clone)]
pub struct StoryRecord {
    pub key: String,
    /// The state it left and the one it entered (Dask's names).
    pub start: String,
    pub finish: String,
    /// The kind of event that caused it.
    pub stimulus: String,
    /// When, by the scheduler's clock.
    pub time: f64,
}

impl From<CoordReply> for Answer {
    fn from(reply: CoordReply) -> Answer {
        match reply {
            CoordReply::Done => Answer::Done {},
            CoordReply::Items(items) => Answer::Items {
                items: items.into_iter().map(|h| Frames(h.value.frames)).collect(),
            },
            CoordReply::Count(n) => Answer::Count { n },
            CoordReply::Flag(value) => Answer::Flag { value },
            CoordReply::Names(names) => Answer::Names { names },
            CoordReply::Map(entries) => Answer::Map { entries },
            CoordReply::Metadata(entries) => Answer::Metadata {
                entries: entries
                    .into_iter()
                    .map(|e| (e.path, e.value.map(|v| Frames(v.frames))))
                    .collect(),
            },
            CoordReply::TimedOut => Answer::TimedOut {},
            CoordReply::Missing => Answer::Missing {},
            CoordReply::Exists => Answer::Exists {},
            CoordReply::Invalid(message) => Answer::Invalid { message },
            CoordReply::UnknownKeys(keys) => Answer::UnknownKeys { keys },
            CoordReply::Story { now, entries } => Answer::Story {
                now,
                entries: entries
                    .into_iter()
                    .map(|e| StoryRecord {
                        key: e.key,
                        start: e.start,
                        finish: e.finish,
                        stimulus: e.stimulus,
                        time: e.time,
                    })
                    .collect(),
            },
        }
    }
}

/// One worker's answer to `Client.run`.
#[pyclass(module = "shoal._engine", frozen)]
pub enum RunAnswer {
    /// The call returned: its pickled value.
    Value { frames: Frames },
    /// The call raised.
    Raised { error: TaskError },
    /// The worker could not be reached: why.
    Unreachable { message: String },
}

impl RunAnswer {
    pub fn new(res: Result<RunResponse, String>) -> RunAnswer {
        match res {
            Ok(RunResponse::Value(p)) => RunAnswer::Value {
                frames: Frames(p.frames),
            },
            Ok(RunResponse::Raised(e)) => RunAnswer::Raised {
                error: TaskError::from(&e),
            },
            Err(message) => RunAnswer::Unreachable { message },
        }
    }
}

/// `None` or seconds as a duration.
pub fn duration(t: Option<f64>) -> Option<Duration> {
    t.map(|s| Duration::from_secs_f64(s.max(0.0)))
}
