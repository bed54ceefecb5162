//! The shoal worker runtime.
//!
//! A worker process runs one [`WorkerRuntime`]: a tokio thread that holds the
//! scheduler connection, serves stored results to peers and clients, and
//! fetches the inputs of assigned tasks. Executor threads (Python threads in
//! a shoal worker) pull work with [`WorkerRuntime::next_task`], which blocks
//! without holding any lock the networking side needs, and report back with
//! [`WorkerRuntime::finish`] or [`WorkerRuntime::fail`]. The networking side
//! never waits for an executor.

mod allocator;
pub mod control;
mod data_store;
mod health;
pub mod lifeline;
pub mod memory;
mod net;
pub mod pacer;
mod runtime;
mod spill;
mod staged;
mod state;
mod tasks;
pub mod value;

pub use control::Control;
pub use memory::MemoryPolicy;
pub use pacer::PacerHooks;
pub use runtime::{total_memory, Assignment, WorkerConfig, WorkerError, WorkerRuntime};
pub use state::INLINE_LIMIT;
pub use value::{Held, HeldObject, Value};
