//! The values that cross the boundary between the engine and Python, as
//! classes with named fields: a function, a task spec, a task handed to an
//! executor, an outcome, and a task error.

use bytes::Bytes;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::frames::Frames;
use shoal_client::Outcome as CoreOutcome;
use shoal_proto::{Payload, TaskError as CoreError};

/// A pickled function: its hash (its identity), a short name, its bytes.
#[pyclass(module = "shoal._engine", frozen, get_all)]
#[derive(Clone)]
pub struct FunctionDef {
    pub hash: u64,
    pub name: String,
    pub data: Bytes,
}

#[pymethods]
impl FunctionDef {
    #[new]
    fn new(hash: u64, name: String, data: Bytes) -> Self {
        FunctionDef { hash, name, data }
    }

    fn __repr__(&self) -> String {
        format!(
            "FunctionDef(hash={:#018x}, name={:?}, {} bytes)",
            self.hash,
            self.name,
            self.data.len()
        )
    }
}

impl FunctionDef {
    pub fn to_core(&self) -> shoal_proto::FunctionDef {
        shoal_proto::FunctionDef {
            hash: self.hash,
            name: self.name.clone(),
            bytes: self.data.clone(),
        }
    }
}

/// One task as the client describes it to the scheduler.
#[pyclass(module = "shoal._engine", frozen, get_all)]
pub struct TaskSpec {
    /// The task's key (its name in the cluster).
    pub key: String,
    /// The function's hash, or `LITERAL_FUNC` for data whose value is `frames`.
    pub func: u64,
    /// The pickled `(args, kwargs)` (or value), pickle protocol 5 frames.
    pub frames: Frames,
    /// Keys of the tasks whose results this one needs.
    pub deps: Vec<String>,
    /// Whether the client will hold a future for this key.
    pub wanted: bool,
    /// Its options: an index into the options sent with it.
    pub options: u32,
}

#[pymethods]
impl TaskSpec {
    #[new]
    #[pyo3(signature = (key, func, frames, deps=Vec::new(), wanted=true, options=0))]
    fn new(
        key: String,
        func: u64,
        frames: Frames,
        deps: Vec<String>,
        wanted: bool,
        options: u32,
    ) -> PyResult<Self> {
        let frames = frames.for_spec(&key)?;
        Ok(TaskSpec {
            key,
            func,
            frames,
            deps,
            wanted,
            options,
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "TaskSpec(key={:?}, func={:#018x}, deps={:?}, wanted={}, options={})",
            self.key, self.func, self.deps, self.wanted, self.options
        )
    }
}

impl TaskSpec {
    pub fn to_core(&self) -> shoal_proto::TaskSpec {
        shoal_proto::TaskSpec {
            key: self.key.clone(),
            func: self.func,
            args: Payload {
                frames: self.frames.0.clone(),
            },
            deps: self.deps.clone(),
            wanted: self.wanted,
            options: self.options,
        }
    }
}

/// Options shared by the tasks that name them: the wire's
/// `shoal_proto::TaskOptions` itself, built field by field from keyword
/// arguments named as its fields (so a new option needs no code here).
/// Made by `shoal.core.options.Options.engine`, which checks the values; a
/// name the wire does not have, or a value of the wrong type, is refused.
#[pyclass(module = "shoal._engine", frozen)]
#[derive(Clone)]
pub struct TaskOptions(pub shoal_proto::TaskOptions);

#[pymethods]
impl TaskOptions {
    #[new]
    #[pyo3(signature = (**fields))]
    fn new(fields: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        match fields {
            None => Ok(TaskOptions(shoal_proto::TaskOptions::default())),
            Some(fields) => pythonize::depythonize(fields)
                .map(TaskOptions)
                .map_err(|e| PyValueError::new_err(format!("bad task options: {e}"))),
        }
    }

    /// The fields as a dict (what the scheduler receives).
    fn fields<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        pythonize::pythonize(py, &self.0)
            .map_err(|e| PyValueError::new_err(format!("task options: {e}")))
    }

    fn __repr__(&self) -> String {
        format!("{:?}", self.0)
    }
}

/// A task handed to an executor thread, with everything needed to run it.
#[pyclass(module = "shoal._engine", frozen, get_all)]
pub struct ExecutorTask {
    /// The scheduler's id for this task (pass it back to `finish`/`fail`).
    pub id: u64,
    pub key: String,
    /// The function's hash.
    pub func: u64,
    /// The pickled function the first time this worker hands it out, else
    /// None (executors cache functions by hash).
    pub function: Option<Bytes>,
    /// The pickled `(args, kwargs)`.
    pub args: Frames,
    /// The task's inputs in the order of its dependencies (the order its
    /// arguments name them by): `(key, frames)`, with None for frames
    /// where the value is kept here as an object (see `held`).
    pub deps: Vec<(String, Option<Frames>)>,
    /// The inputs kept here as objects: `(key, value)` pairs; None if
    /// there are none (the common case stays cheap: no list is made).
    pub held: Option<Vec<(String, Py<PyAny>)>>,
}

#[pymethods]
impl ExecutorTask {
    fn __repr__(&self) -> String {
        let deps: Vec<&str> = self.deps.iter().map(|(k, _)| k.as_str()).collect();
        format!(
            "ExecutorTask(id={}, key={:?}, func={:#018x}, deps={:?})",
            self.id, self.key, self.func, deps
        )
    }
}

impl ExecutorTask {
    /// The task an executor runs for `a`.
    pub fn new(py: Python<'_>, a: shoal_worker::Assignment) -> Self {
        let mut deps = Vec::with_capacity(a.deps.len());
        let mut held = Vec::new();
        for (k, v) in a.deps {
            match v {
                shoal_worker::Value::Frames(p) => deps.push((k, Some(Frames(p.frames)))),
                shoal_worker::Value::Held(h) => {
                    held.push((k.clone(), crate::held::held_object(py, &h)));
                    deps.push((k, None));
                }
            }
        }
        ExecutorTask {
            id: a.id,
            key: a.key,
            func: a.func,
            function: a.function,
            args: Frames(a.args.frames),
            deps,
            held: (!held.is_empty()).then_some(held),
        }
    }
}

/// Why a task failed: it raised (`TaskError.Raised`), or the workers
/// running it kept dying (`TaskError.Killed`).
#[pyclass(module = "shoal._engine", frozen, from_py_object)]
#[derive(Clone)]
pub enum TaskError {
    Raised {
        /// The exception's type name.
        type_name: String,
        message: String,
        /// The formatted remote traceback ("" if none).
        traceback: String,
        /// The pickled exception (empty if it could not be pickled).
        exception: Frames,
    },
    Killed {
        key: String,
        /// The last worker that died running it (with its scheme).
        last_worker: String,
        /// How many workers died running it.
        attempts: u32,
        /// Why the last worker left, if it said (memory), else "".
        cause: String,
    },
}

#[pymethods]
impl TaskError {
    pub(crate) fn __repr__(&self) -> String {
        match self {
            TaskError::Killed {
                key,
                last_worker,
                attempts,
                ..
            } => format!(
                "TaskError.Killed(key={key:?}, last_worker={last_worker:?}, attempts={attempts})"
            ),
            TaskError::Raised {
                type_name, message, ..
            } => format!("TaskError.Raised(type_name={type_name:?}, message={message:?})"),
        }
    }
}

impl TaskError {
    /// The error a worker reports for what its task (or `Client.run` call)
    /// raised; a worker has nothing else to report.
    pub fn into_raised(self) -> PyResult<CoreError> {
        match self {
            TaskError::Raised {
                type_name,
                message,
                traceback,
                exception,
            } => Ok(CoreError::Raised {
                exception: Payload {
                    frames: exception.0,
                },
                type_name,
                message,
                traceback,
            }),
            TaskError::Killed { .. } => Err(pyo3::exceptions::PyValueError::new_err(
                "a worker reports only what a task raised (TaskError.Raised)",
            )),
        }
    }
}

impl From<&CoreError> for TaskError {
    fn from(e: &CoreError) -> Self {
        match e {
            CoreError::Raised {
                exception,
                type_name,
                message,
                traceback,
            } => TaskError::Raised {
                type_name: type_name.clone(),
                message: message.clone(),
                traceback: traceback.clone(),
                exception: Frames(exception.frames.clone()),
            },
            CoreError::KilledWorker {
                key,
                last_worker,
                attempts,
                cause,
            } => TaskError::Killed {
                key: key.clone(),
                last_worker: shoal_proto::addr::with_scheme(last_worker),
                attempts: *attempts,
                cause: cause.clone(),
            },
        }
    }
}

/// What a key came to: its value (`Outcome.Value`, the pickled
/// `frames`), its error (`Outcome.Error`), or its cancellation
/// (`Outcome.Cancelled`).
#[pyclass(module = "shoal._engine", frozen)]
pub enum Outcome {
    Value { frames: Frames },
    Error { error: TaskError },
    Cancelled {},
}

#[pymethods]
impl Outcome {
    fn __repr__(&self) -> String {
        match self {
            Outcome::Value { frames } => format!("Outcome.Value({} frames)", frames.0.len()),
            Outcome::Error { error } => format!("Outcome.Error({})", error.__repr__()),
            Outcome::Cancelled {} => "Outcome.Cancelled()".to_string(),
        }
    }
}

impl From<CoreOutcome> for Outcome {
    fn from(o: CoreOutcome) -> Self {
        match o {
            CoreOutcome::Value(p) => Outcome::Value {
                frames: Frames(p.frames),
            },
            CoreOutcome::Error(e) => Outcome::Error {
                error: TaskError::from(&e),
            },
            CoreOutcome::Cancelled => Outcome::Cancelled {},
        }
    }
}

/// A token from Python (None: no token); a bad one is a `ValueError`.
pub(crate) fn token(text: Option<&str>) -> PyResult<shoal_proto::Token> {
    match text {
        None => Ok(shoal_proto::Token::none()),
        Some(t) => shoal_proto::Token::new(t)
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("bad token: {e}"))),
    }
}

/// TLS from Python: `(ca_pem, cert_pem, key_pem, mutual)`, or None for
/// plain TCP.
pub(crate) type TlsArg = Option<(Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>, bool)>;

/// The token and TLS of a process from Python's arguments; bad ones are a
/// `ValueError` naming what is wrong.
pub(crate) fn security(token: Option<&str>, tls: TlsArg) -> PyResult<shoal_proto::Security> {
    let tls = match tls {
        None => shoal_proto::Tls::off(),
        Some((ca, cert, key, mutual)) => shoal_proto::Tls::new(&shoal_proto::TlsPem {
            ca: Some(ca),
            cert,
            key,
            mutual,
        })
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("bad TLS options: {e}")))?,
    };
    Ok(shoal_proto::Security {
        token: self::token(token)?,
        tls,
    })
}

/// Work for a worker's Python side that is not a task.
#[pyclass(module = "shoal._engine", frozen)]
pub enum ControlItem {
    /// A `Client.run` call: answer it with `reply_value`/`reply_error`.
    Run { id: u64, call: Frames },
    /// Results whose futures (held in the results) may go now.
    Freed { keys: Vec<String> },
    /// A file for `upload_file` to save and import.
    Upload { name: String, data: Bytes },
    /// A pickled worker plugin to install (`Client.register_plugin`).
    Plugin { name: String, plugin: Frames },
    /// What the scheduler sent as the worker joined came before this (its
    /// plugins are installed once it is taken): tasks may start.
    Joined {},
    /// The worker closed: the control thread ends.
    Closed {},
}

impl From<shoal_worker::Control> for ControlItem {
    fn from(c: shoal_worker::Control) -> Self {
        match c {
            shoal_worker::Control::Run { id, call } => ControlItem::Run {
                id,
                call: Frames(call.frames),
            },
            shoal_worker::Control::Freed(keys) => ControlItem::Freed { keys },
            shoal_worker::Control::Upload { name, data } => ControlItem::Upload { name, data },
            shoal_worker::Control::Plugin { name, plugin } => ControlItem::Plugin {
                name,
                plugin: Frames(plugin.frames),
            },
            shoal_worker::Control::Joined => ControlItem::Joined {},
        }
    }
}
