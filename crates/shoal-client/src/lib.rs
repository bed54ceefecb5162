//! The shoal client core.
//!
//! [`ClientCore`] owns the connection to the scheduler (on its own tokio
//! thread) and a table of the keys the user holds futures for: how many
//! futures point at each, whether it is pending, finished or erred, and the
//! result when it came inline. Callers block in [`ClientCore::wait`] or
//! [`ClientCore::gather`] without holding any lock the network thread needs;
//! large results are fetched straight from the worker that holds them.

mod core;
mod queue;
mod table;

pub use crate::core::{ClientConfig, ClientCore, ClientError, Outcome};
pub use queue::CompletionQueue;
pub use table::KeyStatus;
