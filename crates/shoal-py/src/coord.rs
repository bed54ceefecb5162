//! Coordination requests and `Client.run` for Python: building requests
//! from plain arguments and turning answers into plain Python values.

use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use shoal_proto::{CoordOp, CoordReply, Held, Payload, RunResponse};

use crate::frames::Frames;
use crate::types::TaskError;

/// The arguments of one request, as Python passes them.
pub struct Args {
    pub name: String,
    pub value: Option<Frames>,
    pub keys: Vec<String>,
    pub number: u64,
    pub lease: u64,
    pub names: Vec<String>,
    pub flag: bool,
    /// Worker names or addresses (`replicate`).
    pub workers: Vec<String>,
    /// Copies per holder per round (`replicate`).
    pub branching: u32,
}

impl Args {
    fn held(&mut self) -> Held {
        Held {
            value: Payload {
                frames: self.value.take().unwrap_or_default().0,
            },
            keys: std::mem::take(&mut self.keys),
        }
    }

    fn number_u32(&self) -> PyResult<u32> {
        u32::try_from(self.number)
            .map_err(|_| PyValueError::new_err(format!("{} is too large", self.number)))
    }
}

/// Builds the request named `op`.
pub fn build(op: &str, mut a: Args) -> PyResult<CoordOp> {
    let name = std::mem::take(&mut a.name);
    Ok(match op {
        "queue_create" => CoordOp::QueueCreate {
            name,
            maxsize: a.number_u32()?,
        },
        "queue_put" => CoordOp::QueuePut {
            name,
            item: a.held(),
        },
        "queue_get" => CoordOp::QueueGet {
            name,
            count: a.number_u32()?,
        },
        "queue_size" => CoordOp::QueueSize { name },
        "variable_set" => CoordOp::VariableSet {
            name,
            item: a.held(),
        },
        "variable_get" => CoordOp::VariableGet { name },
        "variable_delete" => CoordOp::VariableDelete { name },
        "acquire" => CoordOp::Acquire {
            name,
            max_leases: a.number_u32()?,
            lease: a.lease,
        },
        "release" => CoordOp::Release {
            name,
            lease: a.lease,
        },
        "leases" => CoordOp::Leases { name },
        "multi_acquire" => CoordOp::MultiAcquire {
            count: a.number_u32()?,
            names: a.names,
            lease: a.lease,
        },
        "multi_release" => CoordOp::MultiRelease { lease: a.lease },
        "multi_locked" => CoordOp::MultiLocked { names: a.names },
        "event_set" => CoordOp::EventSet { name },
        "event_clear" => CoordOp::EventClear { name },
        "event_wait" => CoordOp::EventWait { name },
        "event_is_set" => CoordOp::EventIsSet { name },
        "dataset_publish" => CoordOp::DatasetPublish {
            replace: a.flag,
            item: a.held(),
            name,
        },
        "dataset_get" => CoordOp::DatasetGet { name },
        "dataset_list" => CoordOp::DatasetList,
        "dataset_delete" => CoordOp::DatasetDelete { name },
        "subscribe" => CoordOp::Subscribe {
            topic: name,
            sub: a.lease,
        },
        "unsubscribe" => CoordOp::Unsubscribe { sub: a.lease },
        "publish" => CoordOp::Publish {
            topic: name,
            message: a.held().value,
        },
        "fire_and_forget" => CoordOp::FireAndForget { keys: a.names },
        "who_has" => CoordOp::WhoHas { keys: a.names },
        "has_what" => CoordOp::HasWhat,
        "processing" => CoordOp::Processing,
        "task_call" => CoordOp::TaskCall { key: name },
        "replicate" => CoordOp::Replicate {
            n: a.number_u32()?,
            keys: a.names,
            workers: a.workers,
            branching: a.branching,
        },
        "retire_workers" => CoordOp::RetireWorkers {
            n: a.number_u32()?,
            workers: a.workers,
        },
        "adaptive_target" => CoordOp::AdaptiveTarget {
            target_ms: a.number_u32()?,
        },
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown coordination request {other:?}"
            )))
        }
    })
}

/// An answer as `(kind, value)`: `("done", None)`, `("items", [frames,
/// ...])`, `("count", n)`, `("flag", b)`, `("names", [...])`, `("map",
/// {name: [...]})` (worker addresses without `tcp://`), `("timeout", None)`,
/// `("missing", None)`, `("exists", None)` or `("invalid", message)`.
pub fn answer(py: Python<'_>, reply: CoordReply) -> PyResult<Bound<'_, PyTuple>> {
    let none = py.None().into_bound(py);
    let (kind, value): (&str, Bound<'_, PyAny>) = match reply {
        CoordReply::Done => ("done", none),
        CoordReply::Items(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(Frames(item.value.frames))?;
            }
            ("items", list.into_any())
        }
        CoordReply::Count(n) => ("count", n.into_pyobject(py)?.into_any()),
        CoordReply::Flag(b) => ("flag", b.into_pyobject(py)?.to_owned().into_any()),
        CoordReply::Names(names) => ("names", names.into_pyobject(py)?.into_any()),
        CoordReply::Map(entries) => {
            let d = PyDict::new(py);
            for (k, v) in entries {
                d.set_item(k, v)?;
            }
            ("map", d.into_any())
        }
        CoordReply::TimedOut => ("timeout", none),
        CoordReply::Missing => ("missing", none),
        CoordReply::Exists => ("exists", none),
        CoordReply::Invalid(msg) => ("invalid", msg.into_pyobject(py)?.into_any()),
    };
    PyTuple::new(py, [kind.into_pyobject(py)?.into_any(), value])
}

/// One worker's answer to `Client.run`: `("value", frames)`,
/// `("error", TaskError)`, or `("unreachable", message)`.
pub fn run_answer(
    py: Python<'_>,
    res: Result<RunResponse, String>,
) -> PyResult<Bound<'_, PyTuple>> {
    let (kind, value): (&str, Bound<'_, PyAny>) = match res {
        Ok(RunResponse::Value(p)) => ("value", Frames(p.frames).into_pyobject(py)?.into_any()),
        Ok(RunResponse::Raised(e)) => ("error", Bound::new(py, TaskError::from(&e))?.into_any()),
        Err(msg) => ("unreachable", msg.into_pyobject(py)?.into_any()),
    };
    PyTuple::new(py, [kind.into_pyobject(py)?.into_any(), value])
}

/// `None` or seconds as a duration.
pub fn duration(t: Option<f64>) -> Option<Duration> {
    t.map(|s| Duration::from_secs_f64(s.max(0.0)))
}
