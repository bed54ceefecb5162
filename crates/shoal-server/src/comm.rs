//! Routing of the core's commands to connections.

use std::collections::HashMap;

use shoal_core::Command;
use shoal_proto::{ClientId, SchedulerToClient, SchedulerToWorker, WorkerId};
use tokio::sync::mpsc::UnboundedSender;

/// Where the core's commands go. The server implements it over connection
/// queues; tests can implement it over vectors.
pub trait Comm {
    fn to_worker(&mut self, w: WorkerId, msg: SchedulerToWorker);
    fn to_client(&mut self, c: ClientId, msg: SchedulerToClient);
}

/// Sends each message to the writer task of its connection.
#[derive(Default)]
pub struct ConnectionComm {
    pub workers: HashMap<WorkerId, UnboundedSender<SchedulerToWorker>>,
    pub clients: HashMap<ClientId, UnboundedSender<SchedulerToClient>>,
}

impl Comm for ConnectionComm {
    fn to_worker(&mut self, w: WorkerId, msg: SchedulerToWorker) {
        if let Some(tx) = self.workers.get(&w) {
            // A closed queue means the worker is going away; its loss event
            // is already on its way to the core.
            let _ = tx.send(msg);
        }
    }

    fn to_client(&mut self, c: ClientId, msg: SchedulerToClient) {
        if let Some(tx) = self.clients.get(&c) {
            let _ = tx.send(msg);
        }
    }
}

/// Delivers commands; returns true if the core asked to shut down.
pub fn route(comm: &mut impl Comm, commands: &mut Vec<Command>) -> bool {
    let mut shutdown = false;
    for cmd in commands.drain(..) {
        match cmd {
            Command::ToWorker(w, m) => comm.to_worker(w, m),
            Command::ToClient(c, m) => comm.to_client(c, m),
            Command::Shutdown => shutdown = true,
        }
    }
    shutdown
}
