//! Workers and clients that fall silent.
//!
//! A worker reports its health twice a second. One not heard from for
//! `worker_ttl` seconds — stopped, paused in a debugger, cut off by a
//! network partition with its connection still open — is declared dead, as
//! if its connection had dropped: its tasks run again elsewhere, results
//! only it held are computed again where still needed, and it is told to
//! leave. Whatever it sends afterwards is ignored: it is no longer one of
//! the core's workers.
//!
//! A client says it is there every second (`Heartbeat`), from its network
//! thread (a client busy in Python still says it). One not heard from for
//! `lease_timeout` seconds loses the leases of its locks and semaphores,
//! which go to whoever waits for them, as Dask's leases expire. One not
//! heard from for `client_timeout` seconds — a stopped process, a machine
//! that slept or vanished — is removed as if its connection had closed:
//! its futures are released, and what was queued for it is dropped with
//! its connection. It is told why first (`Removed`), so a client that
//! comes back says so instead of hanging.

use shoal_proto::{ClientId, Removal, SchedulerToClient, SchedulerToWorker, WorkerId};

use crate::core::Core;
use crate::events::Command;

impl Core {
    /// Notes that worker `w` was heard from now.
    pub(crate) fn heard_from(&mut self, w: WorkerId) {
        if let Some(worker) = self.workers.get_mut(&w) {
            worker.last_seen = self.now;
        }
        if let Some(ttl) = self.config.worker_ttl {
            self.check_silence_by(self.now + ttl);
        }
    }

    /// Notes that client `c` was heard from now.
    pub(crate) fn heard_from_client(&mut self, c: ClientId) {
        if let Some(client) = self.clients.get_mut(&c) {
            client.last_seen = self.now;
            client.silent = false;
        }
        for timeout in [self.config.lease_timeout, self.config.client_timeout]
            .into_iter()
            .flatten()
        {
            self.check_silence_by(self.now + timeout);
        }
    }

    /// Makes sure silence is looked for at `at` at the latest.
    fn check_silence_by(&mut self, at: f64) {
        if self.silence_check.is_none_or(|planned| at < planned) {
            self.silence_check = Some(at);
            self.wake_at(at);
        }
    }

    /// Declares dead the workers silent for `worker_ttl` seconds, and
    /// releases the leases of clients silent for `lease_timeout`. Called
    /// before every scheduling pass.
    pub(crate) fn check_silence(&mut self, out: &mut Vec<Command>) {
        if self.silence_check.is_none_or(|at| self.now < at) {
            return;
        }
        let now = self.now;
        if let Some(ttl) = self.config.worker_ttl {
            let silent: Vec<WorkerId> = self
                .workers
                .iter()
                .filter(|(_, w)| now - w.last_seen >= ttl)
                .map(|(&id, _)| id)
                .collect();
            for w in silent {
                let address = &self.workers[&w].info.data_address;
                tracing::warn!("worker {address} sent nothing for {ttl} s: removing it and running its tasks elsewhere");
                out.push(Command::ToWorker(w, SchedulerToWorker::Shutdown));
                self.worker_lost(w, out);
            }
        }
        if let Some(timeout) = self.config.lease_timeout {
            let silent: Vec<ClientId> = self
                .watched_clients()
                .filter(|(_, last_seen)| now - last_seen >= timeout)
                .map(|(c, _)| c)
                .collect();
            for c in silent {
                tracing::info!("client {c} sent nothing for {timeout} s: its locks and semaphores go to others");
                if let Some(client) = self.clients.get_mut(&c) {
                    client.silent = true;
                }
                self.release_leases_of(c, out);
            }
        }
        if let Some(timeout) = self.config.client_timeout {
            let gone: Vec<(ClientId, f64)> = self
                .connected_clients()
                .filter(|(_, last_seen)| now - last_seen >= timeout)
                .collect();
            for (c, last_seen) in gone {
                tracing::warn!("client {c} sent nothing for {timeout} s: removing it and releasing its futures");
                let silent_for = now - last_seen;
                out.push(Command::RemoveClient(
                    c,
                    SchedulerToClient::Removed(Removal::Silent {
                        seconds: silent_for,
                    }),
                ));
                self.client_gone(c, out);
            }
        }
        self.plan_silence_check();
        self.free_unneeded(out);
    }

    /// Clients whose silence is watched for their leases, with when each
    /// was last heard from: connected ones not already found silent.
    fn watched_clients(&self) -> impl Iterator<Item = (ClientId, f64)> + '_ {
        self.clients_heard(|s| !s.silent)
    }

    /// Every connected client, with when it was last heard from.
    fn connected_clients(&self) -> impl Iterator<Item = (ClientId, f64)> + '_ {
        self.clients_heard(|_| true)
    }

    /// The clients `keep` keeps (never the scheduler's own), with when each
    /// was last heard from.
    fn clients_heard<'a>(
        &'a self,
        keep: impl Fn(&crate::core::ClientState) -> bool + 'a,
    ) -> impl Iterator<Item = (ClientId, f64)> + 'a {
        self.clients
            .iter()
            .filter(move |(c, s)| **c != crate::coord::COORD_CLIENT && keep(s))
            .map(|(&c, s)| (c, s.last_seen))
    }

    /// Asks to be woken when the worker (or client) heard from longest ago
    /// would have been silent for `worker_ttl` (or `lease_timeout`).
    fn plan_silence_check(&mut self) {
        let workers = self.config.worker_ttl.map_or(f64::INFINITY, |ttl| {
            self.workers
                .values()
                .map(|w| w.last_seen + ttl)
                .fold(f64::INFINITY, f64::min)
        });
        let leases = self.config.lease_timeout.map_or(f64::INFINITY, |t| {
            self.watched_clients()
                .map(|(_, last_seen)| last_seen + t)
                .fold(f64::INFINITY, f64::min)
        });
        let clients = self.config.client_timeout.map_or(f64::INFINITY, |t| {
            self.connected_clients()
                .map(|(_, last_seen)| last_seen + t)
                .fold(f64::INFINITY, f64::min)
        });
        let at = workers.min(leases).min(clients);
        self.silence_check = at.is_finite().then_some(at);
        if let Some(at) = self.silence_check {
            self.wake_at(at);
        }
    }
}
