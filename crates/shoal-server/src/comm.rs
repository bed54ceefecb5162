//! Routing of the core's commands to connections.

use std::collections::HashMap;

use shoal_core::Command;
use shoal_proto::{ClientId, SchedulerToClient, SchedulerToWorker, WorkerId};
use tokio::sync::mpsc::UnboundedSender;

/// The outgoing queue of every connection; each is drained by that
/// connection's writer task.
#[derive(Default)]
pub(crate) struct Connections {
    pub workers: HashMap<WorkerId, UnboundedSender<SchedulerToWorker>>,
    pub clients: HashMap<ClientId, UnboundedSender<SchedulerToClient>>,
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
                Command::Shutdown => shutdown = true,
            }
        }
        shutdown
    }

    /// Tells every peer the scheduler is going, and drops the queues so
    /// writers end after their last message.
    pub fn say_goodbye(&mut self) {
        for tx in self.workers.values() {
            let _ = tx.send(SchedulerToWorker::Shutdown);
        }
        for tx in self.clients.values() {
            let _ = tx.send(SchedulerToClient::ShuttingDown);
        }
        self.workers.clear();
        self.clients.clear();
    }
}
