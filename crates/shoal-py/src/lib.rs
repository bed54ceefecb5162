//! `shoal._engine`: the Rust engine as seen from Python.
//!
//! Every call that may block (waiting for results, for work, for a process)
//! detaches from the interpreter first, so other Python threads keep running
//! and no engine thread ever waits for the GIL.

use pyo3::prelude::*;

mod alloc;
mod client;
mod conversion;
mod logs;
mod pool;
mod scheduler;
mod worker;

pub(crate) use conversion::{cluster, coord, frames, graph, held, pickle, types};

#[global_allocator]
static ALLOCATOR: alloc::EngineAlloc = alloc::EngineAlloc;

/// `host:port` from `tcp://host:port`, `tls://host:port` or `host:port`.
#[pyfunction]
fn strip_scheme(address: &str) -> &str {
    shoal_proto::addr::strip_scheme(address)
}

/// The scheme of addresses with TLS on (`"tls://"`) or off (`"tcp://"`).
#[pyfunction]
fn scheme(tls: bool) -> &'static str {
    shoal_proto::addr::scheme(tls)
}

/// `address` with `scheme` (`"tcp://"` or `"tls://"`) in place of any it has.
#[pyfunction]
fn in_scheme(scheme: &str, address: &str) -> String {
    shoal_proto::addr::in_scheme(scheme, address)
}

/// A 64-bit hash of `data`, used to name functions.
#[pyfunction]
fn hash_bytes(data: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(data)
}

/// A 128-bit hex token of a function hash, its pickled arguments and the
/// keys of its inputs (which the arguments name by position only), used
/// for the keys of pure tasks.
#[pyfunction]
#[pyo3(signature = (func, frames, deps = Vec::new()))]
fn token(func: u64, frames: frames::Frames, deps: Vec<String>) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&func.to_le_bytes());
    for f in &frames.0 {
        h.update(&(f.len() as u64).to_le_bytes());
        h.update(f);
    }
    // Each part is preceded by its length, and the inputs by a count a
    // frame's length never takes: no two calls hash the same bytes.
    h.update(&u64::MAX.to_le_bytes());
    for d in &deps {
        h.update(&(d.len() as u64).to_le_bytes());
        h.update(d.as_bytes());
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

#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    logs::init();
    m.add_function(wrap_pyfunction!(logs::recent_logs, m)?)?;
    m.add_function(wrap_pyfunction!(logs::log_line, m)?)?;
    m.add_function(wrap_pyfunction!(hash_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(graph::node_order, m)?)?;
    m.add_function(wrap_pyfunction!(strip_scheme, m)?)?;
    m.add_function(wrap_pyfunction!(in_scheme, m)?)?;
    m.add_function(wrap_pyfunction!(scheme, m)?)?;
    m.add_function(wrap_pyfunction!(token, m)?)?;
    m.add_function(wrap_pyfunction!(temporary_certificates, m)?)?;
    m.add_function(wrap_pyfunction!(worker::exit_on_stdin_eof, m)?)?;
    m.add_function(wrap_pyfunction!(worker::die_with_parent, m)?)?;
    m.add_function(wrap_pyfunction!(worker::total_memory, m)?)?;
    m.add_function(wrap_pyfunction!(scheduler::run_scheduler, m)?)?;
    m.add_function(wrap_pyfunction!(scheduler::dashboard_asset, m)?)?;
    m.add_function(wrap_pyfunction!(scheduler::key_prefix, m)?)?;
    m.add_class::<scheduler::Scheduler>()?;
    m.add_class::<scheduler::SchedulerConfig>()?;
    m.add_class::<client::ClientCore>()?;
    m.add_class::<client::CompletionQueue>()?;
    m.add_class::<worker::WorkerRuntime>()?;
    m.add_class::<pool::WorkerPool>()?;
    m.add("RESTART_EXIT_CODE", pool::RESTART_EXIT_CODE)?;
    m.add_class::<types::FunctionDef>()?;
    m.add_class::<types::TaskSpec>()?;
    m.add_class::<graph::GraphPart>()?;
    m.add_class::<pickle::CallPickler>()?;
    m.add_class::<types::TaskOptions>()?;
    m.add(
        "ClosedClientError",
        m.py().get_type::<client::ClosedClientError>(),
    )?;
    m.add_class::<types::ExecutorTask>()?;
    m.add_class::<types::ControlItem>()?;
    m.add_class::<types::Outcome>()?;
    m.add_class::<types::TaskError>()?;
    m.add_class::<frames::Frame>()?;
    m.add_class::<coord::Coord>()?;
    m.add_class::<coord::Answer>()?;
    m.add_class::<coord::RunAnswer>()?;
    m.add_class::<coord::StoryRecord>()?;
    m.add_class::<cluster::WorkerInfo>()?;
    m.add_class::<cluster::WorkerState>()?;
    m.add_class::<cluster::LimitState>()?;
    m.add_class::<cluster::Identity>()?;
    m.add("INLINE_LIMIT", shoal_worker::INLINE_LIMIT)?;
    m.add("MAX_SPEC_BYTES", frames::MAX_SPEC_BYTES)?;
    m.add("LITERAL_FUNC", shoal_proto::LITERAL_FUNC)?;
    m.add("MAX_LIMITS_PER_TASK", shoal_proto::MAX_LIMITS_PER_TASK)?;
    Ok(())
}
