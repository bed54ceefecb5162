//! A stored value: pickled frames, or an object the executor made and this
//! worker keeps as it is.
//!
//! A result that stays on the worker that computed it (most of a dask
//! collection's intermediates: a shuffle's split partitions, an array's
//! blocks) never needs its bytes. As in Dask, such a result is kept as the
//! live object ([`Held`]) and read by the tasks here as it is; it is
//! serialized only when it has to leave: a peer or a client asks for it, or
//! it is spilled to disk. The executor decides which results qualify (only
//! values whose serialization cannot fail: see `shoal/worker/held.py`), and
//! the embedding crate provides the object and its serializer through
//! [`HeldObject`], so this crate knows nothing of Python.
//!
//! Serializing a held object may need the interpreter's lock: whoever calls
//! [`Value::to_payload`] may hold the store's lock, so no thread may wait
//! for the store's lock while it holds the interpreter's (the Python
//! bindings release it first).

use std::any::Any;
use std::sync::Arc;

use shoal_proto::Payload;

/// An object kept as it is, and how to serialize it.
pub trait HeldObject: Send + Sync + 'static {
    /// The object's pickle frames; an error says why they could not be made.
    fn serialize(&self) -> Result<Payload, String>;
    /// The embedding crate's own type, to hand the object to a task.
    fn as_any(&self) -> &dyn Any;
}

/// A kept object, with the bytes it is estimated to take in memory.
#[derive(Clone)]
pub struct Held {
    pub object: Arc<dyn HeldObject>,
    pub nbytes: u64,
}

/// A value in the worker's store.
#[derive(Clone)]
pub enum Value {
    Frames(Payload),
    Held(Held),
}

impl Value {
    /// Bytes it takes in memory: its frames', or the held object's estimate.
    pub fn nbytes(&self) -> u64 {
        match self {
            Value::Frames(p) => p.nbytes(),
            Value::Held(h) => h.nbytes,
        }
    }

    /// Its frames, serializing a held object (which stays as it is).
    pub fn to_payload(&self) -> Result<Payload, String> {
        match self {
            Value::Frames(p) => Ok(p.clone()),
            Value::Held(h) => h.object.serialize(),
        }
    }
}

impl PartialEq for Value {
    /// Equal frames, or the same held object.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Frames(a), Value::Frames(b)) => a == b,
            (Value::Held(a), Value::Held(b)) => Arc::ptr_eq(&a.object, &b.object),
            _ => false,
        }
    }
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Frames(p) => write!(f, "Frames({} bytes)", p.nbytes()),
            Value::Held(h) => write!(f, "Held(~{} bytes)", h.nbytes),
        }
    }
}

impl From<Payload> for Value {
    fn from(p: Payload) -> Self {
        Value::Frames(p)
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A held object for tests: serializes to fixed frames, or fails.

    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub struct Fake {
        pub frames: Option<Payload>,
        pub serialized: AtomicUsize,
    }

    impl HeldObject for Fake {
        fn serialize(&self) -> Result<Payload, String> {
            self.serialized.fetch_add(1, Ordering::SeqCst);
            self.frames.clone().ok_or_else(|| "cannot".to_string())
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    /// A held value of `nbytes` that serializes to `frames` (None: fails).
    pub fn held(frames: Option<Payload>, nbytes: u64) -> (Value, Arc<Fake>) {
        let fake = Arc::new(Fake {
            frames,
            serialized: AtomicUsize::new(0),
        });
        let value = Value::Held(Held {
            object: fake.clone(),
            nbytes,
        });
        (value, fake)
    }
}
