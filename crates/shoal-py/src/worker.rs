//! The worker runtime for Python executor threads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use shoal_proto::{Payload, RunResponse};
use shoal_worker::{MemoryPolicy, PacerHooks, WorkerConfig, WorkerRuntime as Runtime};

use crate::types::ControlItem;

/// Dask's memory target, spill, pause and terminate fractions.
type Fractions = (Option<f64>, Option<f64>, Option<f64>, Option<f64>);

use crate::frames::Frames;
use crate::types::ExecutorTask;

/// The Rust half of a worker process: scheduler link, data store and data
/// server. Python executor threads pull tasks from it.
#[pyclass(module = "shoal._engine", frozen)]
pub struct WorkerRuntime {
    inner: Arc<Runtime>,
    /// `tcp://` or `tls://`, for the addresses it shows.
    scheme: &'static str,
}

#[pymethods]
impl WorkerRuntime {
    /// `memory_limit` is in bytes (0: none); `fractions` are Dask's
    /// memory target, spill, pause and terminate fractions of it (None:
    /// that step is off); spilled files go under `spill_root`.
    /// `whole_process`: this process is the worker's alone, so its resident
    /// memory may pause or restart it; `kill_on_leave`: a restart for
    /// memory ends the process (a supervisor starts it again).
    #[new]
    #[pyo3(signature = (scheduler, nthreads=1, name=None, listen_host=None, listen_ports=(0, 0), timeout=30.0, memory_limit=0, max_threads=0, resources=Vec::new(), token=None, tls=None, fractions=(None, None, None, None), spill_root=None, whole_process=false, kill_on_leave=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        scheduler: String,
        nthreads: u32,
        name: Option<String>,
        listen_host: Option<String>,
        listen_ports: (u16, u16),
        timeout: f64,
        memory_limit: u64,
        max_threads: u32,
        resources: Vec<(String, f64)>,
        token: Option<&str>,
        tls: crate::types::TlsArg,
        fractions: Fractions,
        spill_root: Option<std::path::PathBuf>,
        whole_process: bool,
        kill_on_leave: bool,
    ) -> PyResult<Self> {
        let (target, spill, pause, terminate) = fractions;
        for f in [target, spill, pause, terminate].into_iter().flatten() {
            if !(f > 0.0 && f.is_finite()) {
                return Err(PyValueError::new_err(format!(
                    "memory fractions must be above 0, not {f}"
                )));
            }
        }
        let config = WorkerConfig {
            scheduler,
            nthreads,
            name,
            listen_host,
            listen_ports,
            connect_timeout: Duration::from_secs_f64(timeout.max(0.001)),
            memory: MemoryPolicy {
                limit: memory_limit,
                target,
                spill,
                pause,
                terminate,
                whole_process,
            },
            spill_root: spill_root.unwrap_or_else(std::env::temp_dir),
            kill_on_leave,
            max_threads,
            resources,
            security: crate::types::security(token, tls)?,
        };
        let scheme = config.security.tls.scheme();
        let inner = py
            .detach(move || Runtime::start(config))
            .map_err(|e| PyOSError::new_err(e.to_string()))?;
        // Entering the interpreter applies the reference drops queued while
        // it was not held (results dropped by the store off its threads).
        inner.set_release(Arc::new(|| {
            let _ = Python::try_attach(|_| ());
        }));
        Ok(WorkerRuntime { inner, scheme })
    }

    /// Where this worker's data server listens, `tcp://host:port` (or
    /// `tls://`).
    #[getter]
    fn address(&self) -> String {
        shoal_proto::addr::in_scheme(self.scheme, self.inner.address())
    }

    /// This worker's name.
    #[getter]
    fn name(&self) -> String {
        self.inner.name().to_string()
    }

    /// The scheduler's address, `tcp://host:port` (or `tls://`).
    #[getter]
    fn scheduler(&self) -> String {
        shoal_proto::addr::in_scheme(self.scheme, self.inner.scheduler())
    }

    /// Why this worker left to restart (its memory), or None.
    #[getter]
    fn leaving(&self) -> Option<String> {
        self.inner.leaving()
    }

    /// Task `id`'s function and arguments are loaded: it runs now.
    fn begin(&self, id: u64) {
        self.inner.begin(id);
    }

    /// Closes (True) or opens the gate for tasks around a preload import.
    fn set_importing(&self, on: bool) {
        self.inner.set_importing(on);
    }

    /// Bytes of results held here: (in memory, spilled to disk).
    fn stored_bytes(&self, py: Python<'_>) -> (u64, u64) {
        py.detach(|| self.inner.stored_bytes())
    }

    /// How many tasks run at once here while they compute.
    #[getter]
    fn nthreads(&self) -> u32 {
        self.inner.nthreads()
    }

    /// Blocks (without the GIL) until a task is ready; None at shutdown.
    fn next_task(&self, py: Python<'_>) -> Option<ExecutorTask> {
        let inner = self.inner.clone();
        py.detach(move || inner.next_task())
            .map(|a| ExecutorTask::new(py, a))
    }

    /// Stores a result and reports it. `holds_futures`: the caller keeps
    /// futures alive for this result until `next_control` says it was freed.
    ///
    /// This and every other call that takes the data store's lock release
    /// the GIL first: a held result is serialized (for a peer, or to spill)
    /// while that lock is held, and needs the GIL.
    #[pyo3(signature = (id, key, frames, type_name, duration, holds_futures=false))]
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        py: Python<'_>,
        id: u64,
        key: String,
        frames: Frames,
        type_name: String,
        duration: f64,
        holds_futures: bool,
    ) {
        let value = Payload { frames: frames.0 }.into();
        py.detach(|| {
            self.inner
                .finish(id, key, value, type_name, duration, holds_futures)
        });
    }

    /// Stores a result as the object itself, estimated at `nbytes` in
    /// memory, and reports it: it is serialized only if it must leave this
    /// process (see `shoal/worker/held.py` for which results qualify).
    #[allow(clippy::too_many_arguments)]
    fn finish_held(
        &self,
        py: Python<'_>,
        id: u64,
        key: String,
        value: Py<PyAny>,
        nbytes: u64,
        type_name: String,
        duration: f64,
    ) {
        let value = crate::held::held_value(value, nbytes);
        py.detach(|| {
            self.inner
                .finish(id, key, value, type_name, duration, false)
        });
    }

    /// Whether the stored result `key` is still here; if so, its freeing
    /// will come through `next_control` (`ControlItem.Freed`).
    fn watch(&self, py: Python<'_>, key: &str) -> bool {
        py.detach(|| self.inner.watch(key))
    }

    /// Task `id` leaves the worker's slots while it waits on other tasks
    /// (start an executor thread to take its place).
    fn secede(&self, id: u64) {
        self.inner.secede(id);
    }

    /// Task `id` counts against the worker's slots again (without
    /// waiting for a free one).
    fn rejoin(&self, id: u64) {
        self.inner.rejoin(id);
    }

    /// The next control work, waiting up to `timeout` seconds; None on
    /// timeout, and `ControlItem.Closed` once the worker is closed.
    fn next_control(&self, py: Python<'_>, timeout: f64) -> Option<ControlItem> {
        let inner = self.inner.clone();
        let t = Duration::from_secs_f64(timeout.max(0.0));
        let for_wait = inner.clone();
        match py.detach(move || for_wait.next_control(t)) {
            Some(item) => Some(item.into()),
            None => inner.is_closed().then_some(ControlItem::Closed {}),
        }
    }

    fn reply_value(&self, id: u64, frames: Frames) {
        self.inner
            .reply_run(id, RunResponse::Value(Payload { frames: frames.0 }));
    }

    /// Answers `Client.run` call `id` with what it raised.
    fn reply_error(&self, id: u64, error: crate::types::TaskError) -> PyResult<()> {
        self.inner
            .reply_run(id, RunResponse::Raised(error.into_raised()?));
        Ok(())
    }

    /// Reports that a task raised `error`; `retryable=False` when its retry
    /// filter says the error is final.
    #[pyo3(signature = (id, error, retryable=true))]
    fn fail(&self, id: u64, error: crate::types::TaskError, retryable: bool) -> PyResult<()> {
        self.inner.fail(id, error.into_raised()?, retryable);
        Ok(())
    }

    /// Task `id` raised `Reschedule`: the scheduler places it again.
    fn reschedule(&self, id: u64) {
        self.inner.reschedule(id);
    }

    /// The executor that took task `id` handed it to the event loop: it no
    /// longer holds a thread.
    fn hand_off(&self, id: u64) {
        self.inner.hand_off(id);
    }

    /// Lets the worker run more tasks at once while its tasks wait on I/O
    /// (see the pacer in `shoal-worker`). `spawn()` starts one more executor
    /// thread; `cancel(ids)` stops handed-off tasks the scheduler cancelled;
    /// `preload(modules)` imports modules in the background.
    fn start_pacer(&self, spawn: Py<PyAny>, cancel: Py<PyAny>, preload: Py<PyAny>) -> PyResult<()> {
        let hooks = PacerHooks {
            probe_gil: Box::new(|| {
                let start = Instant::now();
                Python::attach(|_| {});
                start.elapsed()
            }),
            spawn_executor: Box::new(move || {
                Python::attach(|py| {
                    if let Err(e) = spawn.call0(py) {
                        e.print(py);
                    }
                })
            }),
            cancel_detached: Box::new(move |ids| {
                Python::attach(|py| {
                    if let Err(e) = cancel.call1(py, (ids,)) {
                        e.print(py);
                    }
                })
            }),
            preload: Box::new(move |modules| {
                Python::attach(|py| {
                    if let Err(e) = preload.call1(py, (modules,)) {
                        e.print(py);
                    }
                })
            }),
        };
        self.inner
            .start_pacer(hooks)
            .map_err(|e| PyOSError::new_err(e.to_string()))
    }

    /// Whether tasks on this worker need the CPU (queued, or computing).
    fn busy(&self) -> bool {
        self.inner.busy()
    }

    /// The pickled function with this hash.
    fn function(&self, hash: u64) -> Option<Bytes> {
        self.inner.function(hash)
    }

    fn close(&self, py: Python<'_>) {
        py.detach(|| self.inner.close());
    }

    /// Blocks (without the GIL) until the scheduler connection has ended.
    fn wait_closed(&self, py: Python<'_>) {
        let inner = self.inner.clone();
        py.detach(move || inner.wait_closed());
    }
}

/// The machine's physical memory in bytes.
#[pyfunction]
pub fn total_memory() -> u64 {
    shoal_worker::total_memory()
}

/// Exits this process as soon as stdin closes (the parent's lifeline).
#[pyfunction]
pub fn exit_on_stdin_eof() {
    shoal_worker::lifeline::exit_on_stdin_eof();
}

/// Has the kernel kill this process when its parent dies; exits now if the
/// parent is not `expected_parent` any more.
#[pyfunction]
#[pyo3(signature = (expected_parent=None))]
pub fn die_with_parent(expected_parent: Option<u32>) {
    shoal_worker::lifeline::die_with_parent(expected_parent);
}
