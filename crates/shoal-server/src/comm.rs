//! Routing of the core's commands to connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use shoal_core::Command;
use shoal_proto::{ClientId, Removal, SchedulerToClient, SchedulerToWorker, WorkerId};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The most bytes of messages (by [`SchedulerToClient::weight`]) that may
/// wait for one client: past it the client reads too slowly to keep up
/// and is removed, rather than the scheduler's memory growing without
/// bound.
pub(crate) const MAX_CLIENT_QUEUE: u64 = 256 << 20;

/// A client connection's outgoing queue, the bytes waiting in it (its
/// writer takes off what it sends), and the signal that stops its reader.
pub(crate) struct ClientQueue {
    pub tx: UnboundedSender<SchedulerToClient>,
    pub queued: Arc<AtomicU64>,
    pub closer: Arc<Notify>,
}

/// The outgoing queue of every connection; each is drained by that
/// connection's writer task.
pub(crate) struct Connections {
    pub workers: HashMap<WorkerId, UnboundedSender<SchedulerToWorker>>,
    pub clients: HashMap<ClientId, ClientQueue>,
    /// Every connection's writer task (workers and clients share one
    /// numbering), awaited at shutdown so goodbyes are delivered.
    pub writers: HashMap<u64, JoinHandle<()>>,
    /// See [`MAX_CLIENT_QUEUE`].
    pub max_client_queue: u64,
    /// Clients removed here for reading too slowly, for the core to hear of.
    slow: Vec<ClientId>,
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            workers: HashMap::new(),
            clients: HashMap::new(),
            writers: HashMap::new(),
            max_client_queue: MAX_CLIENT_QUEUE,
            slow: Vec::new(),
        }
    }
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
                Command::ToClient(c, m) => self.send_to_client(c, m),
                Command::RemoveClient(c, m) => self.remove_client(c, m),
                Command::Shutdown => shutdown = true,
            }
        }
        shutdown
    }

    /// Queues `m` for client `c`, unless that fills its queue past the bound.
    fn send_to_client(&mut self, c: ClientId, m: SchedulerToClient) {
        let Some(q) = self.clients.get(&c) else {
            return;
        };
        let weight = m.weight();
        let queued = q.queued.fetch_add(weight, Ordering::Relaxed) + weight;
        if queued <= self.max_client_queue {
            let _ = q.tx.send(m);
            return;
        }
        tracing::warn!(
            "client {c} reads too slowly ({} MiB of messages wait for it): removing it",
            queued >> 20
        );
        self.remove_client(c, SchedulerToClient::Removed(Removal::Slow { queued }));
        self.slow.push(c);
    }

    /// Sends a client its last message, then closes its connection: the
    /// writer ends after this message (what was queued before it goes
    /// first), and the reader stops at once.
    fn remove_client(&mut self, c: ClientId, last: SchedulerToClient) {
        if let Some(q) = self.clients.remove(&c) {
            let _ = q.tx.send(last);
            q.closer.notify_one();
        }
        self.writers.remove(&c);
    }

    /// The clients removed for reading too slowly since last asked: the
    /// core must let them go as if their connections had closed.
    pub fn take_slow(&mut self) -> Vec<ClientId> {
        std::mem::take(&mut self.slow)
    }

    /// Forgets a client whose connection closed.
    pub fn client_gone(&mut self, c: ClientId) {
        self.clients.remove(&c);
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
        for q in self.clients.values() {
            let _ = q.tx.send(SchedulerToClient::ShuttingDown);
        }
        self.workers.clear();
        self.clients.clear();
        self.writers.drain().map(|(_, w)| w).collect()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use shoal_proto::Payload;
    use tokio::sync::mpsc::unbounded_channel;

    use super::*;

    fn memory(key: &str, bytes: usize) -> Command {
        Command::ToClient(
            1,
            SchedulerToClient::KeyMemory {
                key: key.into(),
                nbytes: bytes as u64,
                type_name: "bytes".into(),
                inline: Some(Payload::single(Bytes::from(vec![0u8; bytes]))),
                holders: vec![],
            },
        )
    }

    #[test]
    fn a_client_that_does_not_read_is_removed_once_its_queue_is_full() {
        let mut conns = Connections {
            max_client_queue: 1 << 20,
            ..Connections::default()
        };
        let (tx, mut rx) = unbounded_channel();
        let closer = Arc::new(Notify::new());
        let queue = ClientQueue {
            tx,
            queued: Arc::new(AtomicU64::new(0)),
            closer: closer.clone(),
        };
        conns.clients.insert(1, queue);
        // Nothing reads: 15 messages of 64 KiB fit, the 16th does not.
        let mut out: Vec<Command> = (0..16).map(|i| memory(&i.to_string(), 64 << 10)).collect();
        conns.route(&mut out);
        assert_eq!(conns.take_slow(), vec![1]);
        assert!(!conns.clients.contains_key(&1));
        let mut got = Vec::new();
        while let Ok(m) = rx.try_recv() {
            got.push(m);
        }
        assert_eq!(got.len(), 16, "15 values, then why it was removed");
        assert!(matches!(
            got.last(),
            Some(SchedulerToClient::Removed(Removal::Slow { .. }))
        ));
        // Later messages for it go nowhere, and it is removed once.
        conns.route(&mut vec![memory("late", 10)]);
        assert!(conns.take_slow().is_empty());
    }
}
