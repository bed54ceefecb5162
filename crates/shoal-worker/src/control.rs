//! Work for the worker's Python side that is not a task: calls clients make
//! with `Client.run` (they arrive at the data server), and results freed by
//! the scheduler that the Python side keeps something for (futures inside
//! them, or their unpickled values).
//! One Python thread takes these with `WorkerRuntime::next_control`; the
//! networking side only queues them and never waits for it.

use std::collections::{HashMap, HashSet, VecDeque};

use shoal_proto::{Payload, RunResponse};
use tokio::sync::oneshot;

/// One piece of control work.
#[derive(Debug)]
pub enum Control {
    /// Run a pickled call and answer with [`WorkerRuntime::reply_run`](crate::WorkerRuntime::reply_run).
    Run { id: u64, call: Payload },
    /// These results were freed: let go of what was kept for them.
    Freed(Vec<String>),
    /// Save this file and make it importable (`Client.upload_file`).
    Upload { name: String, data: bytes::Bytes },
    /// Install this pickled worker plugin (`Client.register_plugin`).
    Plugin { name: String, plugin: Payload },
    /// Everything the scheduler sent as this worker joined (its plugins) is
    /// queued before this: once it is taken, tasks may start.
    Joined,
}

/// Control work waiting for the Python side, and calls waiting for answers.
#[derive(Default)]
pub(crate) struct ControlQueue {
    pub items: VecDeque<Control>,
    pub waiting: HashMap<u64, oneshot::Sender<RunResponse>>,
    pub next_id: u64,
    /// Stored results the Python side keeps something for (see
    /// `Control::Freed`).
    pub holding: HashSet<String>,
    /// Set when the worker closes.
    pub closed: bool,
}

impl ControlQueue {
    /// Queues a call; the receiver gets its answer.
    pub fn run(&mut self, call: Payload) -> oneshot::Receiver<RunResponse> {
        let (tx, rx) = oneshot::channel();
        self.next_id += 1;
        self.waiting.insert(self.next_id, tx);
        self.items.push_back(Control::Run {
            id: self.next_id,
            call,
        });
        rx
    }

    /// Notes freed results; true if the Python side kept something for any
    /// (work was queued).
    pub fn freed(&mut self, keys: &[String]) -> bool {
        if self.holding.is_empty() {
            return false;
        }
        let gone: Vec<String> = keys
            .iter()
            .filter(|k| self.holding.remove(*k))
            .cloned()
            .collect();
        if gone.is_empty() {
            return false;
        }
        self.items.push_back(Control::Freed(gone));
        true
    }
}
