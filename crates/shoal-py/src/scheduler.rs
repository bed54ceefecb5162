//! The scheduler, in-process or stand-alone.

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;

/// A scheduler running on its own thread inside this process.
#[pyclass(module = "shoal._engine", frozen)]
pub struct Scheduler {
    handle: parking_lot::Mutex<Option<shoal_server::ServerHandle>>,
    address: String,
    dashboard: Option<String>,
}

/// The dashboard's bind address from a Dask-style spelling (None: no dashboard).
fn dashboard_at(
    spec: Option<&str>,
    host: &str,
) -> PyResult<Option<shoal_server::DashboardAddress>> {
    spec.map(|s| shoal_server::parse_address(s, host).map_err(PyValueError::new_err))
        .transpose()
}

/// How long the scheduler waits on silent peers, in seconds (None: for
/// ever): a worker before declaring it dead, a client before freeing its
/// leases, and before removing it.
struct Silences {
    worker_ttl: Option<f64>,
    lease_timeout: Option<f64>,
    client_timeout: Option<f64>,
}

impl Silences {
    fn check(&self) -> PyResult<()> {
        if self.worker_ttl.is_some_and(|t| !t.is_finite() || t <= 0.0) {
            return Err(PyValueError::new_err(
                "worker_ttl must be a positive number of seconds, or None for never",
            ));
        }
        let heartbeat = shoal_proto::CLIENT_HEARTBEAT.as_secs_f64();
        for (name, t) in [
            ("lease_timeout", self.lease_timeout),
            ("client_timeout", self.client_timeout),
        ] {
            if t.is_some_and(|t| !t.is_finite() || t < 3.0 * heartbeat) {
                return Err(PyValueError::new_err(format!(
                    "{name} must be at least {} seconds (clients say they are there every {heartbeat} s), or None for never",
                    3.0 * heartbeat
                )));
            }
        }
        Ok(())
    }
}

/// The server's options from Python's arguments.
fn options(
    dashboard: Option<&str>,
    host: &str,
    silences: Silences,
    allowed_failures: u32,
    token: Option<&str>,
    tls: crate::types::TlsArg,
) -> PyResult<shoal_server::Options> {
    let security = crate::types::security(token, tls)?;
    security.tls.can_serve().map_err(|e| {
        PyValueError::new_err(format!(
            "bad TLS options: {e} (tls_scheduler_cert and tls_scheduler_key, or --tls-cert and --tls-key)"
        ))
    })?;
    silences.check()?;
    Ok(shoal_server::Options {
        dashboard: dashboard_at(dashboard, host)?,
        worker_ttl: silences.worker_ttl,
        lease_timeout: silences.lease_timeout,
        client_timeout: silences.client_timeout,
        allowed_failures,
        security,
    })
}

/// `http://host:port` for a bound dashboard.
fn dashboard_url(addr: std::net::SocketAddr) -> String {
    format!("http://{addr}")
}

/// Where and how a scheduler runs, checked once, for a `Scheduler` in this
/// process and for `run_scheduler` alike.
#[pyclass(module = "shoal._engine", frozen)]
pub struct SchedulerConfig {
    host: String,
    port: u16,
    options: shoal_server::Options,
}

#[pymethods]
impl SchedulerConfig {
    /// `dashboard` is where the dashboard listens (`":8787"`, `"host:port"`;
    /// a taken port moves on to the next free one), or None for none;
    /// `worker_ttl` the seconds of silence after which a worker is declared
    /// dead (None: never); `lease_timeout` the seconds of silence after
    /// which a client's locks and semaphores go to others (None: never);
    /// `client_timeout` the seconds of silence after which a client is
    /// removed, its futures released (None: never); `allowed_failures` how
    /// many workers may die running a task before it errs with
    /// `KilledWorker`; `token` the secret every client and worker must
    /// present (None: none).
    #[new]
    #[pyo3(signature = (host="127.0.0.1", port=0, dashboard=None, worker_ttl=Some(300.0), allowed_failures=3, token=None, tls=None, lease_timeout=Some(30.0), client_timeout=Some(30.0)))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        host: &str,
        port: u16,
        dashboard: Option<&str>,
        worker_ttl: Option<f64>,
        allowed_failures: u32,
        token: Option<&str>,
        tls: crate::types::TlsArg,
        lease_timeout: Option<f64>,
        client_timeout: Option<f64>,
    ) -> PyResult<Self> {
        let silences = Silences {
            worker_ttl,
            lease_timeout,
            client_timeout,
        };
        Ok(SchedulerConfig {
            host: host.to_string(),
            port,
            options: options(dashboard, host, silences, allowed_failures, token, tls)?,
        })
    }
}

#[pymethods]
impl Scheduler {
    /// Starts a scheduler on a thread of its own, as `config` says.
    #[new]
    fn new(py: Python<'_>, config: &SchedulerConfig) -> PyResult<Self> {
        let options = config.options.clone();
        let scheme = options.security.tls.scheme();
        let (host, port) = (config.host.clone(), config.port);
        let handle = py
            .detach(move || shoal_server::start(&host, port, options))
            .map_err(|e| PyOSError::new_err(e.to_string()))?;
        let address = shoal_proto::addr::in_scheme(scheme, &handle.address().to_string());
        Ok(Scheduler {
            dashboard: handle.dashboard_address().map(dashboard_url),
            handle: parking_lot::Mutex::new(Some(handle)),
            address,
        })
    }

    /// The dashboard's URL, `http://host:port`, if it runs.
    #[getter]
    fn dashboard(&self) -> Option<String> {
        self.dashboard.clone()
    }

    #[getter]
    fn address(&self) -> String {
        self.address.clone()
    }

    /// Tells every worker and client to go and stops the scheduler thread.
    fn stop(&self, py: Python<'_>) {
        let handle = self.handle.lock().take();
        if let Some(mut h) = handle {
            py.detach(move || h.stop());
        }
    }
}

/// Runs a scheduler on this thread, as `config` says, until a client
/// shuts it down. Calls `on_ready(address, dashboard_url_or_None)` once it
/// listens.
#[pyfunction]
pub fn run_scheduler(
    py: Python<'_>,
    config: &SchedulerConfig,
    on_ready: Py<PyAny>,
) -> PyResult<()> {
    let options = config.options.clone();
    let scheme = options.security.tls.scheme();
    let (host, port) = (config.host.clone(), config.port);
    py.detach(move || {
        shoal_server::run_blocking(&host, port, options, |addr, board| {
            Python::attach(|py| {
                let args = (
                    shoal_proto::addr::in_scheme(scheme, &addr.to_string()),
                    board.map(dashboard_url),
                );
                if let Err(e) = on_ready.call1(py, args) {
                    e.print(py);
                }
            });
        })
    })
    .map_err(|e| PyOSError::new_err(e.to_string()))
}

/// A file of the dashboard's pages (`dashboard.js`, `style.css`, ...), as
/// bundled into the engine; None for an unknown name.
#[pyfunction]
pub fn dashboard_asset(name: &str) -> Option<&'static str> {
    shoal_server::dashboard::asset(name)
}

/// The prefix of a task key (its function's name), as the scheduler groups
/// tasks: `inc-5f4e...` -> `inc`.
#[pyfunction]
pub fn key_prefix(key: &str) -> &str {
    shoal_core::key_prefix(key)
}
