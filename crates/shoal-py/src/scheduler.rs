//! The scheduler, in-process or stand-alone.

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;

/// A scheduler running on its own thread inside this process.
#[pyclass(module = "shoal._engine", frozen)]
pub struct Scheduler {
    handle: parking_lot::Mutex<Option<shoal_server::ServerHandle>>,
    address: String,
}

#[pymethods]
impl Scheduler {
    #[new]
    #[pyo3(signature = (host="127.0.0.1", port=0))]
    fn new(py: Python<'_>, host: &str, port: u16) -> PyResult<Self> {
        let host = host.to_string();
        let handle = py
            .detach(move || shoal_server::start(&host, port))
            .map_err(|e| PyOSError::new_err(e.to_string()))?;
        let address = shoal_proto::addr::with_scheme(&handle.address().to_string());
        Ok(Scheduler {
            handle: parking_lot::Mutex::new(Some(handle)),
            address,
        })
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

/// Runs a scheduler on this thread until a client shuts it down. Calls
/// `on_ready(address)` once it listens.
#[pyfunction]
pub fn run_scheduler(py: Python<'_>, host: String, port: u16, on_ready: Py<PyAny>) -> PyResult<()> {
    py.detach(move || {
        shoal_server::run_blocking(&host, port, |addr| {
            Python::attach(|py| {
                if let Err(e) =
                    on_ready.call1(py, (shoal_proto::addr::with_scheme(&addr.to_string()),))
                {
                    e.print(py);
                }
            });
        })
    })
    .map_err(|e| PyOSError::new_err(e.to_string()))
}
