//! Results kept on the worker as Python objects (see
//! `shoal_worker::value`): the object, and its serialization when it must
//! leave the process.

use std::any::Any;
use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use shoal_proto::Payload;
use shoal_worker::{Held, HeldObject, Value};

use crate::frames::Frames;

/// A task's result kept as the object it returned.
pub struct PyHeld {
    object: Py<PyAny>,
    /// Its frames, once made: every peer that asks gets the same ones (a
    /// split partition read by several tasks elsewhere is pickled once,
    /// as it was when every result was pickled on return). Frames are
    /// mostly views of the object's own buffers, so keeping them costs
    /// little memory. Callers wait here without the GIL (see
    /// `shoal_worker::value`), so waiting on this lock cannot deadlock
    /// with a thread that holds it while it pickles.
    frames: Mutex<Option<Payload>>,
}

/// `shoal.core.serialize.dumps`, looked up once.
static DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

impl HeldObject for PyHeld {
    fn serialize(&self) -> Result<Payload, String> {
        let mut made = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(frames) = made.as_ref() {
            return Ok(frames.clone());
        }
        let frames = self.pickle()?;
        *made = Some(frames.clone());
        Ok(frames)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl PyHeld {
    fn pickle(&self) -> Result<Payload, String> {
        Python::attach(|py| {
            let dumps = DUMPS.get_or_try_init(py, || {
                Ok::<_, PyErr>(
                    py.import("shoal.core.serialize")?
                        .getattr("dumps")?
                        .unbind(),
                )
            });
            let frames = dumps
                .and_then(|f| f.bind(py).call1((self.object.bind(py),)))
                .and_then(|f| f.extract::<Frames>());
            frames
                .map(|f| Payload { frames: f.0 })
                .map_err(|e| e.to_string())
        })
    }
}

/// `object`, estimated at `nbytes` in memory, as a stored value.
pub fn held_value(object: Py<PyAny>, nbytes: u64) -> Value {
    Value::Held(Held {
        object: std::sync::Arc::new(PyHeld {
            object,
            frames: Mutex::new(None),
        }),
        nbytes,
    })
}

/// The Python object of a held value. Every held value in this process
/// is made by [`held_value`], so the downcast always succeeds (the `None`
/// arm only keeps this free of a panic).
pub fn held_object(py: Python<'_>, held: &Held) -> Py<PyAny> {
    match held.object.as_any().downcast_ref::<PyHeld>() {
        Some(h) => h.object.clone_ref(py),
        None => py.None(),
    }
}
