//! What goes into the core and what comes out of it.

use shoal_proto::{
    ClientId, ClientToScheduler, SchedulerToClient, SchedulerToWorker, WorkerId, WorkerInfo,
    WorkerToScheduler,
};

/// A stimulus for the core.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    ClientConnected(ClientId),
    ClientDisconnected(ClientId),
    FromClient(ClientId, ClientToScheduler),
    WorkerConnected(WorkerId, WorkerInfo),
    WorkerLost(WorkerId),
    FromWorker(WorkerId, WorkerToScheduler),
}

/// An instruction for the I/O shell.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    ToWorker(WorkerId, SchedulerToWorker),
    ToClient(ClientId, SchedulerToClient),
    /// Tell this client it was removed (`SchedulerToClient::Removed`),
    /// then close its connection without reading anything more from it.
    RemoveClient(ClientId, SchedulerToClient),
    /// Stop the scheduler: tell every worker and client, then close.
    Shutdown,
}
