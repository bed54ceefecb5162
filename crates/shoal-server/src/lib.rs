//! The shoal scheduler server.
//!
//! A single tokio thread runs everything: an accept loop, a reader and a
//! writer task per connection, and the core task that owns the
//! [`shoal_core::Core`]. Readers turn frames into events; the core task drains
//! every event that is already queued, applies them, schedules once, and hands
//! the resulting commands to the writers, which drain their queues into one
//! frame per write. There are no timers on the data path.

mod comm;
pub mod dashboard;
mod server;

pub use dashboard::{parse_address, DashboardAddress};
pub use server::{run_blocking, start, Options, ServerError, ServerHandle};
