//! The cluster as a client sees it, for Python: workers, their state, and
//! limits, as classes with named fields (`ClientCore.workers()` and
//! `ClientCore.identify()`). Addresses carry their scheme (`tcp://`).

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use shoal_proto::addr::in_scheme;

/// A connected worker.
#[pyclass(module = "shoal._engine", frozen, get_all)]
#[derive(Clone)]
pub struct WorkerInfo {
    pub name: String,
    /// Its data server, `tcp://host:port` (or `tls://`).
    pub address: String,
    pub nthreads: u32,
    /// Its memory limit in bytes (the machine's memory if it has none).
    pub memory: u64,
    pub pid: u32,
    pub host: String,
    /// Abstract resources it offers (`"GPU"`, 2.0).
    pub resources: Vec<(String, f64)>,
}

#[pymethods]
impl WorkerInfo {
    fn __repr__(&self) -> String {
        format!(
            "WorkerInfo(name={:?}, address={:?}, nthreads={})",
            self.name, self.address, self.nthreads
        )
    }
}

impl WorkerInfo {
    pub fn new(scheme: &str, w: shoal_proto::WorkerInfo) -> Self {
        WorkerInfo {
            name: w.name,
            address: in_scheme(scheme, &w.data_address),
            nthreads: w.nthreads,
            memory: w.memory,
            pid: w.pid,
            host: w.host,
            resources: w.resources,
        }
    }
}

/// A worker and what the scheduler knows of it now.
#[pyclass(module = "shoal._engine", frozen, get_all)]
pub struct WorkerState {
    pub info: Py<WorkerInfo>,
    /// Results it holds.
    pub stored: u64,
    /// Tasks assigned to it and not finished.
    pub assigned: u64,
    /// From its last health report: resident memory, bytes of results in
    /// memory and spilled to disk.
    pub rss: u64,
    pub managed: u64,
    pub spilled: u64,
    /// Short of memory: it starts no task.
    pub paused: bool,
}

/// A cluster-wide limit and its use now.
#[pyclass(module = "shoal._engine", frozen, get_all)]
pub struct LimitState {
    pub name: String,
    pub concurrency: Option<u32>,
    pub rate: Option<f64>,
    pub burst: Option<f64>,
    /// Tasks counting against it on workers now.
    pub running: u32,
    /// Tasks ready but held back by it.
    pub waiting: u32,
}

/// The scheduler's answer to `identify`.
#[pyclass(module = "shoal._engine", frozen, get_all)]
pub struct Identity {
    pub workers: Vec<Py<WorkerState>>,
    /// How many tasks the scheduler remembers.
    pub tasks: u64,
    pub limits: Vec<Py<LimitState>>,
}

impl Identity {
    pub fn new(
        py: Python<'_>,
        scheme: &str,
        workers: Vec<shoal_proto::WorkerStatus>,
        tasks: u64,
        limits: Vec<shoal_proto::LimitStatus>,
    ) -> PyResult<Self> {
        let workers = workers
            .into_iter()
            .map(|w| {
                Py::new(
                    py,
                    WorkerState {
                        info: Py::new(py, WorkerInfo::new(scheme, w.info))?,
                        stored: w.stored,
                        assigned: w.assigned,
                        rss: w.metrics.rss,
                        managed: w.metrics.managed,
                        spilled: w.metrics.spilled,
                        paused: w.paused,
                    },
                )
            })
            .collect::<PyResult<Vec<_>>>()?;
        let limits = limits
            .into_iter()
            .map(|l| {
                Py::new(
                    py,
                    LimitState {
                        name: l.spec.name,
                        concurrency: l.spec.concurrency,
                        rate: l.spec.rate,
                        burst: l.spec.burst,
                        running: l.running,
                        waiting: l.waiting,
                    },
                )
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok(Identity {
            workers,
            tasks,
            limits,
        })
    }
}

/// One task of the task stream, in Dask's record format (a dict: `key`,
/// `name`, `worker`, `thread`, `status`, `nbytes`, `startstops`,
/// `metadata`), as `Client.get_task_stream` returns them.
pub fn task_record<'py>(
    py: Python<'py>,
    scheme: &str,
    r: shoal_proto::TaskRecord,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("key", r.key)?;
    d.set_item("name", r.name)?;
    d.set_item("worker", in_scheme(scheme, &r.worker))?;
    d.set_item("thread", r.timing.thread)?;
    d.set_item("status", if r.ok { "OK" } else { "error" })?;
    d.set_item("nbytes", r.nbytes)?;
    let span = PyDict::new(py);
    span.set_item("action", "compute")?;
    span.set_item("start", r.timing.start)?;
    span.set_item("stop", r.timing.stop)?;
    d.set_item("startstops", PyTuple::new(py, [span])?)?;
    d.set_item("metadata", PyDict::new(py))?;
    Ok(d)
}
