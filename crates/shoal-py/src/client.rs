//! The client core for Python.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pyo3::exceptions::{PyConnectionError, PyKeyError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use shoal_client::{ClientConfig, ClientError};
use shoal_proto::addr::in_scheme;
use shoal_proto::Payload;

use crate::cluster::{Identity, WorkerInfo};
use crate::frames::Frames;
use crate::types::{FunctionDef, Outcome, TaskError, TaskOptions, TaskSpec};

pyo3::create_exception!(
    _engine,
    ClosedClientError,
    PyRuntimeError,
    "A call needed a client that is closed (or closing)."
);

fn to_py_err(e: ClientError) -> PyErr {
    match e {
        ClientError::Closed => ClosedClientError::new_err(e.to_string()),
        ClientError::Connect { .. }
        | ClientError::Refused { .. }
        | ClientError::Disconnected(_)
        | ClientError::Removed(_) => PyConnectionError::new_err(e.to_string()),
        ClientError::UnknownKey(_) => PyKeyError::new_err(e.to_string()),
        _ => PyRuntimeError::new_err(e.to_string()),
    }
}

fn timeout(t: Option<f64>) -> Option<Duration> {
    t.map(|s| Duration::from_secs_f64(s.max(0.0)))
}

/// How often a blocked call looks for Ctrl-C.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// Runs `wait(slice)` in slices without the GIL, checking for signals (so
/// Ctrl-C interrupts a long wait) until it reports true or `timeout` passes.
fn wait_interruptibly(
    py: Python<'_>,
    timeout: Option<Duration>,
    wait: impl Fn(Duration) -> Result<bool, ClientError> + Sync,
) -> PyResult<bool> {
    let got = poll_interruptibly(py, timeout, |slice| Ok(wait(slice)?.then_some(())))?;
    Ok(got.is_some())
}

/// Runs `poll(slice)` in slices without the GIL, checking for signals
/// between them, until it returns something or `timeout` passes (`None`).
fn poll_interruptibly<T: Send>(
    py: Python<'_>,
    timeout: Option<Duration>,
    poll: impl Fn(Duration) -> Result<Option<T>, ClientError> + Sync,
) -> PyResult<Option<T>> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let slice = match deadline {
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .min(SIGNAL_CHECK),
            None => SIGNAL_CHECK,
        };
        if let Some(got) = py.detach(|| poll(slice)).map_err(to_py_err)? {
            return Ok(Some(got));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
        py.check_signals()?;
    }
}

/// Keys in the order they complete.
#[pyclass(module = "shoal._engine", frozen)]
pub struct CompletionQueue {
    pub inner: Arc<shoal_client::CompletionQueue>,
}

#[pymethods]
impl CompletionQueue {
    #[new]
    fn new() -> Self {
        CompletionQueue {
            inner: Arc::default(),
        }
    }

    /// The next completed key, waiting up to `timeout` seconds (forever if
    /// None); None on timeout.
    #[pyo3(signature = (timeout=None))]
    fn pop(&self, py: Python<'_>, timeout: Option<f64>) -> Option<String> {
        let t = self::timeout(timeout);
        let q = self.inner.clone();
        py.detach(move || q.pop(t))
    }

    /// Every completed key, without waiting.
    fn drain(&self) -> Vec<String> {
        self.inner.drain()
    }

    /// Adds a key (used to wake a reader).
    fn push(&self, key: String) {
        self.inner.push(key);
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }
}

/// A connection to a scheduler and the table of keys this process holds.
#[pyclass(module = "shoal._engine", frozen)]
pub struct ClientCore {
    inner: Arc<shoal_client::ClientCore>,
    /// `tcp://` or `tls://`, for the addresses it shows.
    scheme: &'static str,
}

#[pymethods]
impl ClientCore {
    #[new]
    #[pyo3(signature = (address, timeout=10.0, name="client".to_string(), token=None, tls=None))]
    fn new(
        py: Python<'_>,
        address: String,
        timeout: f64,
        name: String,
        token: Option<&str>,
        tls: crate::types::TlsArg,
    ) -> PyResult<Self> {
        let security = crate::types::security(token, tls)?;
        let scheme = security.tls.scheme();
        let config = ClientConfig {
            address,
            name,
            connect_timeout: Duration::from_secs_f64(timeout.max(0.001)),
            security,
        };
        let core = py
            .detach(move || shoal_client::ClientCore::connect(config))
            .map_err(to_py_err)?;
        Ok(ClientCore {
            inner: Arc::new(core),
            scheme,
        })
    }

    #[getter]
    fn address(&self) -> String {
        in_scheme(self.scheme, self.inner.address())
    }

    /// The dashboard's URL, `http://host:port`, or None if the scheduler
    /// runs none.
    #[getter]
    fn dashboard(&self) -> Option<String> {
        self.inner
            .dashboard_address()
            .map(|a| format!("http://{a}"))
    }

    /// Tasks that ran, from position `since` of the scheduler's task stream
    /// (at most `limit`, the newest), in Dask's record format; and the
    /// position to ask from next.
    #[pyo3(signature = (since=0, limit=100_000, timeout=10.0))]
    fn task_stream<'py>(
        &self,
        py: Python<'py>,
        since: u64,
        limit: u32,
        timeout: f64,
    ) -> PyResult<(Vec<Bound<'py, PyDict>>, u64)> {
        let inner = &self.inner;
        let (records, next) = py
            .detach(|| inner.task_stream(since, limit, Duration::from_secs_f64(timeout.max(0.0))))
            .map_err(to_py_err)?;
        let dicts = records
            .into_iter()
            .map(|r| crate::cluster::task_record(py, self.scheme, r))
            .collect::<PyResult<Vec<_>>>()?;
        Ok((dicts, next))
    }

    /// Sends functions, the options the tasks refer to by index, and the
    /// task specs; every wanted spec adds a reference to its key. With
    /// `last` given they are one part of a graph sent in parts, the last
    /// one or not; returns the bytes of functions and arguments sent.
    #[pyo3(signature = (functions, options, tasks, last=None))]
    fn submit(
        &self,
        functions: Vec<PyRef<'_, FunctionDef>>,
        options: Vec<PyRef<'_, TaskOptions>>,
        tasks: Vec<PyRef<'_, TaskSpec>>,
        last: Option<bool>,
    ) -> PyResult<u64> {
        let functions: Vec<_> = functions.iter().map(|f| f.to_core()).collect();
        let options = options.iter().map(|o| o.0.clone()).collect();
        let tasks: Vec<_> = tasks.iter().map(|t| t.to_core()).collect();
        let size = functions.iter().map(|f| f.bytes.len() as u64).sum::<u64>()
            + tasks.iter().map(|t| t.args.nbytes()).sum::<u64>();
        match last {
            None => self.inner.submit(functions, options, tasks),
            Some(last) => self.inner.submit_part(functions, options, tasks, last),
        }
        .map_err(to_py_err)?;
        Ok(size)
    }

    /// Sends one part of a graph (see `submit`'s `last`), read from its
    /// nodes by `GraphPart`, with the functions this client has not sent
    /// yet; returns its bytes of those functions and of arguments.
    fn submit_graph_part(
        &self,
        mut part: PyRefMut<'_, crate::graph::GraphPart>,
        options: Vec<PyRef<'_, TaskOptions>>,
        last: bool,
    ) -> PyResult<u64> {
        let py = part.py();
        let (functions, tasks) = part.take(py, |hash| !self.inner.has_function(hash))?;
        let size = part.nbytes + functions.iter().map(|f| f.bytes.len() as u64).sum::<u64>();
        let options = options.iter().map(|o| o.0.clone()).collect();
        // It may wait for the network thread to send earlier parts.
        let inner = &self.inner;
        py.detach(|| inner.submit_part(functions, options, tasks, last))
            .map_err(to_py_err)?;
        Ok(size)
    }

    /// Asks every worker, now and later, to import these modules in the
    /// background.
    fn preload(&self, modules: Vec<String>) {
        self.inner.preload(modules);
    }

    /// Whether the function with this hash was already sent.
    fn has_function(&self, hash: u64) -> bool {
        self.inner.has_function(hash)
    }

    /// Adds a reference to a key this client holds.
    fn add_ref(&self, key: &str) -> PyResult<()> {
        self.inner.add_ref(key).map_err(to_py_err)
    }

    /// Drops a reference; the last one disowns the key.
    fn drop_ref(&self, key: &str) {
        self.inner.drop_ref(key);
    }

    fn cancel(&self, keys: Vec<String>) {
        self.inner.cancel(&keys);
    }

    /// Sends a file for every worker, now and later, to save and import.
    fn upload(&self, name: String, data: &[u8]) {
        self.inner.upload(name, Bytes::copy_from_slice(data));
    }

    /// Sends a pickled worker plugin for every worker that joins from now
    /// on; `None` forgets the plugin of that name.
    #[pyo3(signature = (name, plugin))]
    fn register_plugin(&self, name: String, plugin: Option<Frames>) {
        let plugin = plugin.map(|f| shoal_proto::Payload { frames: f.0 });
        self.inner.register_plugin(name, plugin);
    }

    /// Why this client can no longer reach the scheduler, if it cannot.
    fn broken(&self) -> Option<String> {
        self.inner.broken().map(|e| e.to_string())
    }

    /// Every key this client holds.
    fn keys(&self) -> Vec<String> {
        self.inner.keys()
    }

    /// Computes these erred keys again (with the erred tasks upstream).
    fn retry(&self, keys: Vec<String>) {
        self.inner.retry(&keys);
    }

    /// How many futures of this client hold `key` (0 if none).
    fn refcount(&self, key: &str) -> u32 {
        self.inner.refcount(key)
    }

    /// "pending", "finished", "error", "cancelled", or None if unknown.
    fn status(&self, key: &str) -> Option<&'static str> {
        self.inner.status(key).map(|s| s.as_str())
    }

    /// `(type_name, nbytes)` of a finished key.
    fn result_info(&self, key: &str) -> Option<(String, u64)> {
        self.inner.result_info(key)
    }

    /// The error of an erred key.
    fn error(&self, key: &str) -> Option<TaskError> {
        self.inner.error(key).map(|e| TaskError::from(&e))
    }

    fn watch(&self, keys: Vec<String>, queue: &CompletionQueue) {
        self.inner.watch(&keys, &queue.inner);
    }

    /// Waits until every key is done; False on timeout.
    #[pyo3(signature = (keys, timeout=None))]
    fn wait(&self, py: Python<'_>, keys: Vec<String>, timeout: Option<f64>) -> PyResult<bool> {
        let inner = &self.inner;
        wait_interruptibly(py, self::timeout(timeout), |t| inner.wait(&keys, Some(t)))
    }

    /// Waits until every key is done or one of them erred; the erred key,
    /// or None when every key is done without an error.
    fn first_error(&self, py: Python<'_>, keys: Vec<String>) -> PyResult<Option<String>> {
        let inner = &self.inner;
        let got = poll_interruptibly(py, None, |slice| inner.first_error(&keys, Some(slice)))?;
        Ok(got.flatten())
    }

    /// Waits for every key and returns one `Outcome` per key, or None on
    /// timeout.
    #[pyo3(signature = (keys, timeout=None, direct=true))]
    fn gather(
        &self,
        py: Python<'_>,
        keys: Vec<String>,
        timeout: Option<f64>,
        direct: bool,
    ) -> PyResult<Option<Vec<Outcome>>> {
        let inner = &self.inner;
        let t = self::timeout(timeout);
        let start = Instant::now();
        if !wait_interruptibly(py, t, |slice| inner.wait(&keys, Some(slice)))? {
            return Ok(None);
        }
        let left = t.map(|t| t.saturating_sub(start.elapsed()));
        let outcomes = py
            .detach(|| inner.gather(&keys, left, direct))
            .map_err(to_py_err)?;
        Ok(outcomes.map(|o| o.into_iter().map(Outcome::from).collect()))
    }

    /// Asks the scheduler for its workers and their state, how many tasks
    /// it remembers, and its limits.
    #[pyo3(signature = (timeout=10.0))]
    fn identify(&self, py: Python<'_>, timeout: f64) -> PyResult<Identity> {
        let inner = &self.inner;
        let (workers, tasks, limits) = py
            .detach(|| inner.identify(Duration::from_secs_f64(timeout.max(0.0))))
            .map_err(to_py_err)?;
        Identity::new(py, self.scheme, workers, tasks, limits)
    }

    /// Creates or changes a cluster-wide limit.
    #[pyo3(signature = (name, concurrency=None, rate=None, burst=None))]
    fn set_limit(
        &self,
        name: String,
        concurrency: Option<u32>,
        rate: Option<f64>,
        burst: Option<f64>,
    ) -> PyResult<()> {
        self.inner
            .set_limit(shoal_proto::LimitSpec {
                name,
                concurrency,
                rate,
                burst,
            })
            .map_err(to_py_err)
    }

    /// Addresses (`tcp://...`) of the workers holding a finished key.
    fn who_has(&self, key: &str) -> Vec<String> {
        self.inner
            .who_has(key)
            .into_iter()
            .map(|a| in_scheme(self.scheme, &a))
            .collect()
    }

    /// The connected workers.
    fn workers(&self) -> Vec<WorkerInfo> {
        self.inner
            .workers()
            .into_iter()
            .map(|w| WorkerInfo::new(self.scheme, w))
            .collect()
    }

    /// Waits until `n` workers are connected and none of `without`
    /// (addresses) is; False on timeout.
    #[pyo3(signature = (n, timeout=None, without=Vec::new()))]
    fn wait_for_workers(
        &self,
        py: Python<'_>,
        n: usize,
        timeout: Option<f64>,
        without: Vec<String>,
    ) -> PyResult<bool> {
        let inner = &self.inner;
        wait_interruptibly(py, self::timeout(timeout), |t| {
            inner.wait_for_workers(n, &without, Some(t))
        })
    }

    /// Sends a coordination request and waits for the scheduler's
    /// answer. The scheduler answers `Answer.TimedOut` after `timeout`
    /// seconds if it could not grant the request by then.
    #[pyo3(signature = (op, timeout=None))]
    fn request(
        &self,
        py: Python<'_>,
        op: PyRef<'_, crate::coord::Coord>,
        timeout: Option<f64>,
    ) -> PyResult<crate::coord::Answer> {
        let op = shoal_proto::CoordOp::from((*op).clone());
        let req = self.inner.request(op, timeout).map_err(to_py_err)?;
        let inner = &self.inner;
        // The scheduler answers every request (`TimedOut` at its timeout),
        // so this waits without a deadline of its own.
        let reply = poll_interruptibly(py, None, |slice| inner.wait_reply(req, slice))?
            .ok_or_else(|| PyRuntimeError::new_err("no answer from the scheduler"))?;
        Ok(reply.into())
    }

    /// The next message of subscription `sub`, waiting up to `timeout`
    /// seconds (forever if None); None on timeout.
    #[pyo3(signature = (sub, timeout=None))]
    fn next_published(
        &self,
        py: Python<'_>,
        sub: u64,
        timeout: Option<f64>,
    ) -> PyResult<Option<Frames>> {
        let inner = &self.inner;
        let got = poll_interruptibly(py, self::timeout(timeout), |slice| {
            inner.next_published(sub, slice)
        })?;
        Ok(got.map(|m| Frames(m.frames)))
    }

    /// How many messages of subscription `sub` are waiting.
    fn buffered(&self, sub: u64) -> usize {
        self.inner.buffered(sub)
    }

    /// `(id, started)`: the scheduler's id and start time.
    fn scheduler_identity(&self) -> (String, f64) {
        self.inner.scheduler_identity()
    }

    /// Sends values straight to workers' data servers, all at once:
    /// `puts` is `[(worker address, [(key, frames)])]`; returns, per
    /// worker, why it did not take them (None: it did). Submit each key
    /// as a literal with no frames restricted to its worker, so the
    /// worker keeps it.
    #[pyo3(signature = (puts, timeout, direct=true))]
    fn put_on_workers(
        &self,
        py: Python<'_>,
        puts: Vec<(String, Vec<(String, Frames)>)>,
        timeout: f64,
        direct: bool,
    ) -> Vec<Option<String>> {
        let puts = puts
            .into_iter()
            .map(|(w, items)| {
                let items = items
                    .into_iter()
                    .map(|(k, f)| (k, Payload { frames: f.0 }))
                    .collect();
                (w, items)
            })
            .collect();
        let inner = self.inner.clone();
        let t = Duration::from_secs_f64(timeout.max(0.0));
        py.detach(move || inner.put_on_workers(puts, t, direct))
    }

    /// Runs a pickled call on each worker (by address) at once; returns
    /// each worker's address and answer.
    #[pyo3(signature = (workers, call, timeout=None, direct=true))]
    fn run_on_workers(
        &self,
        py: Python<'_>,
        workers: Vec<String>,
        call: Frames,
        timeout: Option<f64>,
        direct: bool,
    ) -> PyResult<Vec<(String, crate::coord::RunAnswer)>> {
        let inner = self.inner.clone();
        let answers = py.detach(move || {
            inner.run_on_workers(
                workers,
                Payload { frames: call.0 },
                crate::coord::duration(timeout),
                direct,
            )
        });
        Ok(answers
            .into_iter()
            .map(|(w, res)| {
                (
                    in_scheme(self.scheme, &w),
                    crate::coord::RunAnswer::new(res),
                )
            })
            .collect())
    }

    fn shutdown_cluster(&self) {
        self.inner.shutdown_cluster();
    }

    fn close(&self, py: Python<'_>) {
        let inner = self.inner.clone();
        py.detach(move || inner.close());
    }
}
