//! The shoal scheduler core: a pure state machine.
//!
//! [`Core`] receives [`Event`]s (a client submitted tasks, a worker finished
//! one, a worker was lost, ...) and answers with [`Command`]s (send this task
//! to that worker, tell that client its key is ready). It performs no I/O,
//! reads no clock and spawns nothing, so every transition can be driven and
//! checked from unit tests. The server crate wraps it in a thin tokio shell.

mod adaptive;
mod client_events;
mod coord;
mod core;
mod events;
mod function_kinds;
mod functions;
mod invariants;
mod keys;
mod lifecycle;
mod limits;
mod placement;
mod rebalance;
mod replicas;
mod retire;
mod small_results;
mod snapshots;
mod stats;
mod steal;
mod story;
mod table;
mod task;
mod worker;
mod worker_events;
mod worker_ttl;

pub use crate::core::{Core, CoreConfig, TaskStateKind};
pub use coord::{COORD_CLIENT, EVENTS_PER_TOPIC};
pub use events::{Command, Event};
pub use invariants::InvariantViolation;
pub use small_results::DEFAULT_KEEP_BYTES;
pub use snapshots::{Snapshot, WorkerView};
pub use stats::{
    key_prefix, PrefixStats, StateCounts, TaskEvent, DEFAULT_STREAM_LEN, PREFIXES_KEPT,
};
