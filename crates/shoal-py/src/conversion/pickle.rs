//! A call's arguments pickled without Python's pickler, for the common
//! form: positional arguments that are numbers, short texts and bytes,
//! `None`, booleans, and the inputs of the task (futures and delayed
//! values). `delayed(add)(x, y)` in a loop of a million calls spends most
//! of its time in `pickle.dumps` calling back into Python for each input;
//! here the same bytes come out in one pass.
//!
//! The bytes are exactly those the general path makes
//! (`shoal.core.serialize.dumps_args`: `pickle.dumps(((*args,), {}),
//! protocol=5)`, each input reduced to `shoal.core.refs.ref(i)`, without
//! the frame header of a small pickle), memo included, so a pure call's
//! key does not depend on the path taken; anything else declines (`None`)
//! and the general path runs. The tests hold the two paths to the same
//! bytes.

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyList, PyString, PyTuple, PyType};

// The opcodes used (pickle protocol 5, `Lib/pickletools.py` documents each).
const PROTO: u8 = 0x80;
const STOP: u8 = b'.';
const NONE: u8 = b'N';
const NEWTRUE: u8 = 0x88;
const NEWFALSE: u8 = 0x89;
const BININT: u8 = b'J';
const BININT1: u8 = b'K';
const BININT2: u8 = b'M';
const BINFLOAT: u8 = b'G';
const SHORT_BINUNICODE: u8 = 0x8c;
const BINUNICODE: u8 = b'X';
const SHORT_BINBYTES: u8 = b'C';
const BINBYTES: u8 = b'B';
const EMPTY_TUPLE: u8 = b')';
const TUPLE1: u8 = 0x85;
const TUPLE2: u8 = 0x86;
const TUPLE3: u8 = 0x87;
const MARK: u8 = b'(';
const TUPLE: u8 = b't';
const EMPTY_DICT: u8 = b'}';
const MEMOIZE: u8 = 0x94;
const BINGET: u8 = b'h';
const LONG_BINGET: u8 = b'j';
const STACK_GLOBAL: u8 = 0x93;
const REDUCE: u8 = b'R';

/// The general path strips the 9-byte frame header only from pickles
/// shorter than this (`shoal.core.serialize._unframed`).
const UNFRAMED_BELOW: usize = 4096;
const FRAME_HEADER: usize = 9;

/// Calls with more arguments are left to the pickler (the memo here is a
/// list searched in order).
const MAX_ARGS: usize = 64;

/// Pickles the arguments of calls (see the module's description).
#[pyclass(module = "shoal._engine", frozen)]
pub struct CallPickler {
    /// `shoal.core.refs.ref`, what an input reduces to.
    reference: Py<PyAny>,
    /// Its `__module__` and `__qualname__`, the very objects the pickler
    /// saves (and memoizes by identity).
    module: Py<PyString>,
    name: Py<PyString>,
    /// The classes whose instances are inputs (they reduce to
    /// `reference(i)`: see `shoal.core.serialize.reduce_dependency`).
    input_types: Vec<Py<PyType>>,
}

#[pymethods]
impl CallPickler {
    #[new]
    fn new(reference: Bound<'_, PyAny>, input_types: Vec<Bound<'_, PyType>>) -> PyResult<Self> {
        let py = reference.py();
        let module = reference
            .getattr(intern!(py, "__module__"))?
            .cast_into::<PyString>()?;
        let name = reference
            .getattr(intern!(py, "__qualname__"))?
            .cast_into::<PyString>()?;
        Ok(CallPickler {
            reference: reference.unbind(),
            module: module.unbind(),
            name: name.unbind(),
            input_types: input_types.into_iter().map(Bound::unbind).collect(),
        })
    }

    /// The pickle of `(args, {})` and the inputs found in `args` (each
    /// once, in the order met), or None for arguments of any other form.
    fn dumps<'py>(
        &self,
        args: &Bound<'py, PyTuple>,
    ) -> PyResult<Option<(Bound<'py, PyBytes>, Bound<'py, PyList>)>> {
        let n = args.len();
        if n > MAX_ARGS {
            return Ok(None);
        }
        let py = args.py();
        let mut w = Writer::default();
        let inputs = PyList::empty(py);
        w.out.extend_from_slice(&[PROTO, 5]);
        if n == 0 {
            w.out.push(EMPTY_TUPLE);
        } else {
            if n > 3 {
                w.out.push(MARK);
            }
            for a in args.iter() {
                if !self.save(&mut w, &a, Some(&inputs))? {
                    return Ok(None);
                }
            }
            w.out.push(match n {
                1 => TUPLE1,
                2 => TUPLE2,
                3 => TUPLE3,
                _ => TUPLE,
            });
            w.memoize(None);
        }
        w.out.push(EMPTY_DICT);
        w.memoize(None);
        w.out.push(TUPLE2);
        w.memoize(None);
        w.out.push(STOP);
        Ok(w.finish(py).map(|data| (data, inputs)))
    }

    /// The pickle of one number, text, bytes value, None or boolean (a
    /// task's result, most often), or None for a value of any other kind.
    fn dumps_value<'py>(&self, value: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let mut w = Writer::default();
        w.out.extend_from_slice(&[PROTO, 5]);
        if !self.save(&mut w, value, None)? {
            return Ok(None);
        }
        w.out.push(STOP);
        Ok(w.finish(value.py()))
    }
}

impl CallPickler {
    /// Writes one argument as the pickler would; false if it is of a kind
    /// left to the general path.
    fn save(
        &self,
        w: &mut Writer,
        a: &Bound<'_, PyAny>,
        inputs: Option<&Bound<'_, PyList>>,
    ) -> PyResult<bool> {
        let py = a.py();
        if a.is_none() {
            w.out.push(NONE);
        } else if let Ok(b) = a.cast_exact::<PyBool>() {
            w.out.push(if b.is_true() { NEWTRUE } else { NEWFALSE });
        } else if a.is_exact_instance_of::<PyInt>() {
            let Ok(v) = a.extract::<i32>() else {
                return Ok(false); // wider: LONG1, left to the pickler
            };
            w.int(v);
        } else if let Ok(f) = a.cast_exact::<PyFloat>() {
            w.out.push(BINFLOAT);
            w.out.extend_from_slice(&f.value().to_be_bytes());
        } else if let Ok(s) = a.cast_exact::<PyString>() {
            if !w.get(a.as_ptr()) {
                let Ok(text) = s.to_str() else {
                    return Ok(false); // lone surrogates
                };
                if text.len() >= UNFRAMED_BELOW {
                    return Ok(false);
                }
                w.sized(SHORT_BINUNICODE, BINUNICODE, text.as_bytes());
                w.memoize(Some(a.as_ptr()));
            }
        } else if let Ok(b) = a.cast_exact::<PyBytes>() {
            if !w.get(a.as_ptr()) {
                let data = b.as_bytes();
                if data.len() >= UNFRAMED_BELOW {
                    return Ok(false);
                }
                w.sized(SHORT_BINBYTES, BINBYTES, data);
                w.memoize(Some(a.as_ptr()));
            }
        } else if let Some(inputs) = inputs.filter(|_| self.is_input(a)) {
            // An input met before is a memo get; a new one is the next.
            if !w.get(a.as_ptr()) {
                inputs.append(a)?;
                let Ok(i) = i32::try_from(inputs.len() - 1) else {
                    return Ok(false);
                };
                self.save_reference(w, py)?;
                w.int(i);
                w.out.push(TUPLE1);
                w.memoize(None);
                w.out.push(REDUCE);
                w.memoize(Some(a.as_ptr()));
            }
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    /// `shoal.core.refs.ref` as `save_global` writes it: its module's and
    /// its name's texts (each memoized, or got from the memo), then the
    /// global itself, memoized.
    fn save_reference(&self, w: &mut Writer, py: Python<'_>) -> PyResult<()> {
        if w.get(self.reference.as_ptr()) {
            return Ok(());
        }
        for s in [&self.module, &self.name] {
            if !w.get(s.as_ptr()) {
                w.sized(
                    SHORT_BINUNICODE,
                    BINUNICODE,
                    s.bind(py).to_str()?.as_bytes(),
                );
                w.memoize(Some(s.as_ptr()));
            }
        }
        w.out.push(STACK_GLOBAL);
        w.memoize(Some(self.reference.as_ptr()));
        Ok(())
    }

    fn is_input(&self, a: &Bound<'_, PyAny>) -> bool {
        let t = a.get_type();
        self.input_types.iter().any(|c| t.is(c))
    }
}

/// The pickle being written, and its memo: the objects memoized so far
/// by identity (those that can come again: texts, bytes, inputs, the
/// global) and the count of memo entries.
#[derive(Default)]
struct Writer {
    out: Vec<u8>,
    memo: Vec<(*mut ffi::PyObject, u32)>,
    count: u32,
}

impl Writer {
    /// The pickle written, unless the general path would make other bytes:
    /// it keeps the frame header of a longer pickle, and ships by value
    /// anything that names `__main__`.
    fn finish<'py>(self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        if self.out.len() + FRAME_HEADER >= UNFRAMED_BELOW || contains(&self.out, b"__main__") {
            return None;
        }
        Some(PyBytes::new(py, &self.out))
    }

    fn memoize(&mut self, obj: Option<*mut ffi::PyObject>) {
        self.out.push(MEMOIZE);
        if let Some(p) = obj {
            self.memo.push((p, self.count));
        }
        self.count += 1;
    }

    /// Writes a memo get if `obj` is memoized already.
    fn get(&mut self, obj: *mut ffi::PyObject) -> bool {
        let Some(&(_, i)) = self.memo.iter().find(|(p, _)| *p == obj) else {
            return false;
        };
        match u8::try_from(i) {
            Ok(i) => self.out.extend_from_slice(&[BINGET, i]),
            Err(_) => {
                self.out.push(LONG_BINGET);
                self.out.extend_from_slice(&i.to_le_bytes());
            }
        }
        true
    }

    /// An integer of 32 bits or fewer, in the fewest bytes the pickler uses.
    fn int(&mut self, v: i32) {
        let b = v.to_le_bytes();
        if b[2] != 0 || b[3] != 0 {
            self.out.push(BININT);
            self.out.extend_from_slice(&b);
        } else if b[1] != 0 {
            self.out.extend_from_slice(&[BININT2, b[0], b[1]]);
        } else {
            self.out.extend_from_slice(&[BININT1, b[0]]);
        }
    }

    /// A text's or bytes' data of under 4 KiB (longer ones are left to
    /// the pickler) after its opcode and length: `short` with one byte of
    /// length up to 255, else `long` with four.
    fn sized(&mut self, short: u8, long: u8, data: &[u8]) {
        match u8::try_from(data.len()) {
            Ok(n) => self.out.extend_from_slice(&[short, n]),
            Err(_) => {
                self.out.push(long);
                self.out
                    .extend_from_slice(&(data.len() as u32).to_le_bytes());
            }
        }
        self.out.extend_from_slice(data);
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
