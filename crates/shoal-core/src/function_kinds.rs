//! What workers learn about functions, shared cluster-wide.
//!
//! A worker's pacer learns that a function blocks (its tasks sleep on a
//! socket, a timer, a subprocess with the CPU idle) or computes (its tasks
//! use the CPU most of the time). Each worker used to learn that on its own,
//! so on a fresh cluster every worker spent a round of tasks finding out
//! what its peers already knew. Workers now report what they learn
//! (`Learnt`); the core keeps the functions known to block and passes each
//! change on to every other worker, and everything known to a worker that
//! joins. Only functions the core knows count, so a peer cannot grow the
//! set past the functions clients sent.

use shoal_proto::{FunctionKinds, SchedulerToWorker, WorkerId};

use crate::core::Core;
use crate::events::Command;

impl Core {
    /// Worker `from` learnt `kinds`: keep what is new and tell the others.
    pub(crate) fn learnt(&mut self, from: WorkerId, kinds: FunctionKinds, out: &mut Vec<Command>) {
        let mut news = FunctionKinds::default();
        for f in kinds.blocking {
            if self.functions.contains(f) && self.blocking_funcs.insert(f) {
                news.blocking.push(f);
            }
        }
        for f in kinds.computing {
            if self.blocking_funcs.remove(&f) {
                news.computing.push(f);
            }
        }
        if news.is_empty() {
            return;
        }
        for (&w, worker) in &self.workers {
            if w != from && !worker.closed() {
                out.push(Command::ToWorker(
                    w,
                    SchedulerToWorker::Learnt(news.clone()),
                ));
            }
        }
    }

    /// Function `f` is no longer kept: it is no longer known to block, and
    /// if a client sends it again it is sent to workers again (their
    /// engine replaces the bytes kept under its hash).
    pub(crate) fn function_dropped(&mut self, f: shoal_proto::FuncHash) {
        self.blocking_funcs.remove(&f);
        for worker in self.workers.values_mut() {
            worker.functions.remove(&f);
        }
    }

    /// Everything known, for a worker that joins; `None` if nothing is.
    pub(crate) fn known_kinds(&self) -> Option<FunctionKinds> {
        if self.blocking_funcs.is_empty() {
            return None;
        }
        let mut blocking: Vec<_> = self.blocking_funcs.iter().copied().collect();
        blocking.sort_unstable();
        Some(FunctionKinds::blocks(blocking))
    }
}
