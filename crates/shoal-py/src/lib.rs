//! `shoal._engine`: the Rust engine as seen from Python.
//!
//! Every call that may block (waiting for results, for work, for a process)
//! detaches from the interpreter first, so other Python threads keep running
//! and no engine thread ever waits for the GIL.

use pyo3::prelude::*;

mod client;
mod coord;
mod pool;
mod scheduler;
mod types;
mod worker;

/// A 64-bit hash of `data`, used to name functions.
#[pyfunction]
fn hash_bytes(data: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(data)
}

/// A 128-bit hex token of a function hash and its pickled arguments, used
/// for the keys of pure tasks.
#[pyfunction]
fn token(func: u64, frames: Vec<bytes::Bytes>) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&func.to_le_bytes());
    for f in &frames {
        h.update(&(f.len() as u64).to_le_bytes());
        h.update(f);
    }
    format!("{:032x}", h.digest128())
}

/// A new CA and one certificate it signed for every role of a cluster,
/// `(ca_pem, cert_pem, key_pem)` (`Security.temporary()`).
#[pyfunction]
fn temporary_certificates() -> PyResult<(String, String, String)> {
    shoal_proto::tls::temporary().map_err(|e| {
        pyo3::exceptions::PyRuntimeError::new_err(format!("could not make certificates: {e}"))
    })
}

/// Sends the engine's log lines to stderr: warnings a user can act on by
/// default, more with `SHOAL_LOG` (a level such as `debug`, or a filter such
/// as `shoal_server=debug`). An expected event — a worker killed, a peer
/// disconnecting — is logged below the default level, so it stays quiet.
fn init_logging() {
    let filter = std::env::var("SHOAL_LOG").unwrap_or_default();
    let filter = tracing_subscriber::EnvFilter::try_new(if filter.is_empty() {
        "warn"
    } else {
        filter.as_str()
    })
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    init_logging();
    m.add_function(wrap_pyfunction!(hash_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(token, m)?)?;
    m.add_function(wrap_pyfunction!(temporary_certificates, m)?)?;
    m.add_function(wrap_pyfunction!(worker::exit_on_stdin_eof, m)?)?;
    m.add_function(wrap_pyfunction!(worker::die_with_parent, m)?)?;
    m.add_function(wrap_pyfunction!(worker::total_memory, m)?)?;
    m.add_function(wrap_pyfunction!(scheduler::run_scheduler, m)?)?;
    m.add_function(wrap_pyfunction!(scheduler::dashboard_asset, m)?)?;
    m.add_function(wrap_pyfunction!(scheduler::key_prefix, m)?)?;
    m.add_class::<scheduler::Scheduler>()?;
    m.add_class::<client::ClientCore>()?;
    m.add_class::<client::CompletionQueue>()?;
    m.add_class::<worker::WorkerRuntime>()?;
    m.add_class::<pool::WorkerPool>()?;
    m.add_class::<types::FunctionDef>()?;
    m.add_class::<types::TaskSpec>()?;
    m.add_class::<types::ExecutorTask>()?;
    m.add_class::<types::Outcome>()?;
    m.add_class::<types::TaskError>()?;
    m.add("INLINE_LIMIT", shoal_worker::INLINE_LIMIT)?;
    m.add("LITERAL_FUNC", shoal_proto::LITERAL_FUNC)?;
    Ok(())
}
