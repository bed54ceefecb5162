//! Pickle frames across the boundary, without copies.
//!
//! Python hands the engine a value's frames (pickle protocol 5: the stream,
//! then its out-of-band buffers) as `bytes` or as `memoryview`s of the
//! producing objects' memory (a numpy array, a pandas block); the engine
//! keeps a reference to the object and reads its memory in place, so a
//! buffer goes from the object to the socket uncopied. Frames going the
//! other way become [`Frame`] objects that expose the engine's buffer
//! through Python's buffer protocol, so a value is rebuilt over the bytes
//! as they arrived from the socket.
//!
//! This module is the only place frames are converted.

use std::ffi::c_int;
use std::ptr::NonNull;

use bytes::Bytes;
use pyo3::exceptions::{PyBufferError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyMemoryView};

/// Frames smaller than this are handed to Python as `bytes` (a copy costs
/// less than an object around a buffer); larger ones as [`Frame`]s.
const SHARE_ABOVE: usize = 64 * 1024;

/// A value's pickle frames, converted from and to Python without copying
/// their contents.
#[derive(Clone, Debug, Default)]
pub struct Frames(pub Vec<Bytes>);

/// The most bytes of pickled arguments a task spec may carry: specs travel
/// to the scheduler inside messages (at most 2 GiB each), large values do
/// not (they are scattered, and tasks take their futures).
pub const MAX_SPEC_BYTES: usize = 1 << 30;

impl Frames {
    /// The frames, if they fit in a task spec; else a `ValueError` saying
    /// what to do instead.
    pub fn for_spec(self, key: &str) -> PyResult<Self> {
        let n: usize = self.0.iter().map(|f| f.len()).sum();
        if n > MAX_SPEC_BYTES {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "the arguments of task {key} are {:.1} GiB pickled, more than the 1 GiB a \
                 task may carry to the scheduler: scatter large values first \
                 (future = client.scatter(value)) and pass the future",
                n as f64 / (1u64 << 30) as f64
            )));
        }
        Ok(self)
    }
}

impl From<Vec<Bytes>> for Frames {
    fn from(v: Vec<Bytes>) -> Self {
        Frames(v)
    }
}

/// A read-only buffer of the engine's memory, as Python sees it: a
/// bytes-like object (`memoryview(frame)`, `len`, `bytes(frame)`) that
/// keeps the memory alive for as long as anything refers to it.
#[pyclass(module = "shoal._engine", frozen)]
pub struct Frame {
    data: Bytes,
}

#[pymethods]
impl Frame {
    /// Fills `view` with this frame's memory, read-only.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("no view to fill"));
        }
        if flags & ffi::PyBUF_WRITABLE == ffi::PyBUF_WRITABLE {
            return Err(PyBufferError::new_err("a frame is read-only"));
        }
        let data = &slf.get().data;
        let len = isize::try_from(data.len())
            .map_err(|_| PyBufferError::new_err("a frame larger than the address space"))?;
        // SAFETY: `view` is the caller's buffer to fill; the memory stays
        // valid while `view.obj` (a new reference to this frame, which
        // owns the bytes and never changes them) is alive.
        let filled = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                data.as_ptr() as *mut std::ffi::c_void,
                len,
                1,
                flags,
            )
        };
        if filled == 0 {
            Ok(())
        } else {
            Err(PyErr::fetch(slf.py()))
        }
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}

    fn __len__(&self) -> usize {
        self.data.len()
    }

    /// Where the memory lies. Two frames with the same address share one
    /// buffer while either is alive (a cache of values built over frames
    /// keys on it).
    #[getter]
    fn address(&self) -> usize {
        self.data.as_ptr() as usize
    }

    fn __repr__(&self) -> String {
        format!("Frame({} bytes)", self.data.len())
    }
}

/// Memory owned by a Python object that holds its own export of it (a
/// `bytes`, a `memoryview`, a [`Frame`]): valid while the object lives.
struct Borrowed {
    _owner: Py<PyAny>,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the memory is not changed or freed while `owner` is alive, and
// dropping `owner` off the interpreter is deferred by pyo3 to the next
// thread that attaches.
unsafe impl Send for Borrowed {}
unsafe impl Sync for Borrowed {}

impl AsRef<[u8]> for Borrowed {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: see the type's comment.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

/// One frame from Python: the memory of a `bytes`, `memoryview` or
/// [`Frame`] as it is; anything else bytes-like is copied.
fn frame_of(obj: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if let Ok(frame) = obj.cast::<Frame>() {
        return Ok(frame.get().data.clone());
    }
    let holds_its_export = obj.is_instance_of::<PyBytes>() || obj.is_instance_of::<PyMemoryView>();
    let mut view = std::mem::MaybeUninit::<ffi::Py_buffer>::uninit();
    // SAFETY: a simple (contiguous, byte) buffer request; released below.
    if unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), view.as_mut_ptr(), ffi::PyBUF_SIMPLE) } != 0 {
        let _ = PyErr::take(obj.py());
        return Err(PyTypeError::new_err(format!(
            "a frame must be a contiguous bytes-like object, not {}",
            obj.get_type().name()?
        )));
    }
    // SAFETY: filled by the successful call above.
    let mut view = unsafe { view.assume_init() };
    let len = usize::try_from(view.len).unwrap_or(0);
    let bytes = match NonNull::new(view.buf as *mut u8) {
        Some(ptr) if holds_its_export && len > 0 => Bytes::from_owner(Borrowed {
            _owner: obj.clone().unbind(),
            ptr,
            len,
        }),
        Some(ptr) if len > 0 => {
            // SAFETY: the export is held until the release below.
            Bytes::copy_from_slice(unsafe { std::slice::from_raw_parts(ptr.as_ptr(), len) })
        }
        _ => Bytes::new(),
    };
    // SAFETY: releases the export taken above, once.
    unsafe { ffi::PyBuffer_Release(&mut view) };
    Ok(bytes)
}

impl<'a, 'py> FromPyObject<'a, 'py> for Frames {
    type Error = PyErr;

    fn extract(obj: pyo3::Borrowed<'a, 'py, PyAny>) -> Result<Self, Self::Error> {
        let mut out = Vec::new();
        for item in obj.try_iter()? {
            out.push(frame_of(&item?)?);
        }
        Ok(Frames(out))
    }
}

/// One frame for Python: `bytes` when small, else a [`Frame`] over the
/// engine's memory.
fn to_python<'py>(py: Python<'py>, data: &Bytes) -> PyResult<Bound<'py, PyAny>> {
    if data.len() < SHARE_ABOVE {
        return Ok(PyBytes::new(py, data).into_any());
    }
    Ok(Bound::new(py, Frame { data: data.clone() })?.into_any())
}

impl<'py> IntoPyObject<'py> for &Frames {
    type Target = PyList;
    type Output = Bound<'py, PyList>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> Result<Self::Output, Self::Error> {
        let items = self
            .0
            .iter()
            .map(|f| to_python(py, f))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }
}

impl<'py> IntoPyObject<'py> for Frames {
    type Target = PyList;
    type Output = Bound<'py, PyList>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> Result<Self::Output, Self::Error> {
        (&self).into_pyobject(py)
    }
}
