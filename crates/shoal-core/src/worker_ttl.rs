//! Workers that fall silent.
//!
//! A worker reports its health twice a second. One not heard from for
//! `worker_ttl` seconds — stopped, paused in a debugger, cut off by a
//! network partition with its connection still open — is declared dead, as
//! if its connection had dropped: its tasks run again elsewhere, results
//! only it held are computed again where still needed, and it is told to
//! leave. Whatever it sends afterwards is ignored: it is no longer one of
//! the core's workers.

use shoal_proto::{SchedulerToWorker, WorkerId};

use crate::core::Core;
use crate::events::Command;

impl Core {
    /// Notes that worker `w` was heard from now.
    pub(crate) fn heard_from(&mut self, w: WorkerId) {
        if let Some(worker) = self.workers.get_mut(&w) {
            worker.last_seen = self.now;
        }
        if self.config.worker_ttl.is_some() && self.silence_check.is_none() {
            self.plan_silence_check();
        }
    }

    /// Declares dead the workers silent for `worker_ttl` seconds. Called
    /// before every scheduling pass.
    pub(crate) fn check_silence(&mut self, out: &mut Vec<Command>) {
        let Some(ttl) = self.config.worker_ttl else {
            return;
        };
        if self.silence_check.is_none_or(|at| self.now < at) {
            return;
        }
        let now = self.now;
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
        self.plan_silence_check();
        self.free_unneeded(out);
    }

    /// Asks to be woken when the worker heard from longest ago would have
    /// been silent for `worker_ttl`.
    fn plan_silence_check(&mut self) {
        let Some(ttl) = self.config.worker_ttl else {
            return;
        };
        let oldest = self
            .workers
            .values()
            .map(|w| w.last_seen)
            .fold(f64::INFINITY, f64::min);
        self.silence_check = oldest.is_finite().then_some(oldest + ttl);
        if let Some(at) = self.silence_check {
            self.wake_at(at);
        }
    }
}
