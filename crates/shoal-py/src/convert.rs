//! Conversions between protocol values and plain Python values.

use bytes::Bytes;
use pyo3::prelude::*;
use shoal_proto::{Payload, TaskError};

/// A task error as a tuple:
/// `("raised", exception_frames, type_name, message, traceback)` or
/// `("killed", key, last_worker, attempts)`.
pub fn error_to_py<'py>(py: Python<'py>, e: &TaskError) -> PyResult<Bound<'py, PyAny>> {
    Ok(match e {
        TaskError::Raised {
            exception,
            type_name,
            message,
            traceback,
        } => (
            "raised",
            exception.frames.clone(),
            type_name.as_str(),
            message.as_str(),
            traceback.as_str(),
        )
            .into_pyobject(py)?
            .into_any(),
        TaskError::KilledWorker {
            key,
            last_worker,
            attempts,
        } => ("killed", key.as_str(), last_worker.as_str(), *attempts)
            .into_pyobject(py)?
            .into_any(),
    })
}

pub fn payload(frames: Vec<Bytes>) -> Payload {
    Payload { frames }
}
