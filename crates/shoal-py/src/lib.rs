//! `shoal._engine`: the Rust engine as seen from Python.
//!
//! Every call that may block (waiting for results, for work, for a process)
//! detaches from the interpreter first, so other Python threads keep running
//! and no engine thread ever waits for the GIL.

use pyo3::prelude::*;

mod client;
mod convert;
mod pool;
mod scheduler;
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

/// Sends the engine's log lines at `level` and above (e.g. "info") to stderr.
#[pyfunction]
fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(hash_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(token, m)?)?;
    m.add_function(wrap_pyfunction!(init_logging, m)?)?;
    m.add_function(wrap_pyfunction!(worker::exit_on_stdin_eof, m)?)?;
    m.add_function(wrap_pyfunction!(worker::die_with_parent, m)?)?;
    m.add_function(wrap_pyfunction!(worker::total_memory, m)?)?;
    m.add_function(wrap_pyfunction!(scheduler::run_scheduler, m)?)?;
    m.add_class::<scheduler::Scheduler>()?;
    m.add_class::<client::ClientCore>()?;
    m.add_class::<client::CompletionQueue>()?;
    m.add_class::<worker::WorkerRuntime>()?;
    m.add_class::<pool::WorkerPool>()?;
    m.add("INLINE_LIMIT", shoal_worker::INLINE_LIMIT)?;
    m.add("LITERAL_FUNC", shoal_proto::LITERAL_FUNC)?;
    Ok(())
}
