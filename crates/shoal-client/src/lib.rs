//! The shoal client core.
//!
//! [`ClientCore`] (in `api`) is the blocking API: submit, reference counts,
//! waits and gathers. The network thread (`net`) owns the connection to the
//! scheduler and applies its messages to the key table (`table`): how many
//! futures point at each key, whether it is pending, finished or erred, and
//! the result when it came inline. Callers block without holding any lock
//! the network thread needs; large results are fetched straight from the
//! worker that holds them.

mod api;
mod net;
mod queue;
mod table;

pub use api::{ClientConfig, ClientCore, ClientError, Outcome};
pub use queue::CompletionQueue;
pub use table::KeyStatus;
