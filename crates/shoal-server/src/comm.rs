//! Routing of the core's commands to connections.

use std::collections::HashMap;
use std::sync::Arc;

use shoal_core::Command;
use shoal_proto::{ClientId, SchedulerToClient, SchedulerToWorker, WorkerId};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The outgoing queue of every connection; each is drained by that
/// connection's writer task.
#[derive(Default)]
pub(crate) struct Connections {
    pub workers: HashMap<WorkerId, UnboundedSender<SchedulerToWorker>>,
    pub clients: HashMap<ClientId, UnboundedSender<SchedulerToClient>>,
    /// Each client connection's "stop reading" signal (see
    /// [`Command::RemoveClient`]).
    pub closers: HashMap<ClientId, Arc<Notify>>,
    /// Every connection's writer task (workers and clients share one
    /// numbering), awaited at shutdown so goodbyes are delivered.
    pub writers: HashMap<u64, JoinHandle<()>>,
}

impl Connections {
    /// Delivers the core's commands; returns true if it asked to shut down.
    pub fn route(&mut self, commands: &mut Vec<Command>) -> bool {
        let mut shutdown = false;
        for cmd in commands.drain(..) {
            // A closed queue means the peer is going away; its loss event is
            // already on its way to the core.
            match cmd {
                Command::ToWorker(w, m) => {
                    if let Some(tx) = self.workers.get(&w) {
                        let _ = tx.send(m);
                    }
                }
                Command::ToClient(c, m) => {
                    if let Some(tx) = self.clients.get(&c) {
                        let _ = tx.send(m);
                    }
                }
                Command::RemoveClient(c, m) => {
                    // The writer ends after this last message (what was
                    // queued before it goes first; nothing is queued after
                    // it), and the reader stops at once.
                    if let Some(tx) = self.clients.remove(&c) {
                        let _ = tx.send(m);
                    }
                    if let Some(closer) = self.closers.remove(&c) {
                        closer.notify_one();
                    }
                    self.writers.remove(&c);
                }
                Command::Shutdown => shutdown = true,
            }
        }
        shutdown
    }

    /// Forgets a client whose connection closed.
    pub fn client_gone(&mut self, c: ClientId) {
        self.clients.remove(&c);
        self.closers.remove(&c);
        self.writers.remove(&c);
    }

    /// Forgets a worker whose connection closed.
    pub fn worker_gone(&mut self, w: WorkerId) {
        self.workers.remove(&w);
        self.writers.remove(&w);
    }

    /// Tells every peer the scheduler is going, and drops the queues so
    /// writers end after their last message; returns the writers.
    pub fn say_goodbye(&mut self) -> Vec<JoinHandle<()>> {
        for tx in self.workers.values() {
            let _ = tx.send(SchedulerToWorker::Shutdown);
        }
        for tx in self.clients.values() {
            let _ = tx.send(SchedulerToClient::ShuttingDown);
        }
        self.workers.clear();
        self.clients.clear();
        self.closers.clear();
        self.writers.drain().map(|(_, w)| w).collect()
    }
}
