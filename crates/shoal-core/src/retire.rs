//! Retiring workers gracefully: `Client.retire_workers`, and a cluster
//! scaling down.
//!
//! A retiring worker is sent no new task, and what it has queued may be
//! taken back (as from a paused worker). Every result only it holds is
//! copied to a worker that stays (with `Fetch`, as `replicate` does; small
//! results the scheduler keeps need no copy). Once it holds nothing unique
//! and runs nothing, it is told to close (`Shutdown`). A worker whose data
//! has nowhere to go (no other worker, or three failed copies of a key)
//! is not retired, as in Dask. The request is answered with the addresses
//! of the workers told to close.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use shoal_proto::{CoordReply, DepLocation, SchedulerToWorker, TaskId, WorkerId};

use crate::coord::{reply, WaitId};
use crate::core::Core;
use crate::events::Command;
use crate::task::TaskState;

/// Failed copies of one key after which its worker is not retired.
const MAX_COPY_FAILURES: u32 = 3;

/// One `retire_workers` request in progress.
#[derive(Debug, Default)]
pub(crate) struct Retirement {
    /// Workers being retired and not yet told to close, with their
    /// addresses (to answer even if one disconnects first).
    pending: Vec<(WorkerId, String)>,
    /// Addresses of the workers told to close (or gone meanwhile).
    done: Vec<String>,
    /// Keys being copied off a retiring worker, and to which worker.
    pub in_flight: FxHashMap<String, WorkerId>,
    /// Failed copies per key.
    failures: FxHashMap<String, u32>,
}

/// Every retirement in progress, by the request that started it.
pub(crate) type Retirements = BTreeMap<WaitId, Retirement>;

impl Core {
    /// Starts `CoordOp::RetireWorkers`: the workers `names` match (names,
    /// hosts or addresses), or else the `n` holding the least.
    pub(crate) fn retire_workers(
        &mut self,
        id: WaitId,
        names: Vec<String>,
        n: u32,
        out: &mut Vec<Command>,
    ) {
        let mut open: Vec<(usize, usize, WorkerId)> = self
            .workers
            .iter()
            .filter(|(_, w)| !w.retiring)
            .filter(|(_, w)| names.is_empty() || w.matches(&names))
            .map(|(&wid, w)| (w.holds.len(), w.assigned.len(), wid))
            .collect();
        open.sort_unstable();
        if names.is_empty() {
            open.truncate(n as usize);
        }
        if open.is_empty() {
            return reply(out, id, CoordReply::Names(Vec::new()));
        }
        let mut r = Retirement::default();
        for (_, _, wid) in open {
            let w = self.workers.get_mut(&wid).expect("a listed worker exists");
            w.retiring = true;
            r.pending.push((wid, w.info.data_address.clone()));
        }
        self.retirements.insert(id, r);
        self.pump_retirement(id, out);
    }

    /// Moves every retirement on (after each batch of events).
    pub(crate) fn pump_retirements(&mut self, out: &mut Vec<Command>) {
        let ids: Vec<WaitId> = self.retirements.keys().copied().collect();
        for id in ids {
            self.pump_retirement(id, out);
        }
    }

    /// Worker `w` answered copies: they no longer wait.
    pub(crate) fn retire_fetched(&mut self, w: WorkerId, answered: &[(String, bool)]) {
        for r in self.retirements.values_mut() {
            for (key, ok) in answered {
                if r.in_flight.get(key) == Some(&w) {
                    r.in_flight.remove(key);
                    if !ok {
                        *r.failures.entry(key.clone()).or_default() += 1;
                    }
                }
            }
        }
    }

    /// Worker `w` is gone: copies it was asked for will not come.
    pub(crate) fn retire_worker_lost(&mut self, w: WorkerId) {
        for r in self.retirements.values_mut() {
            r.in_flight.retain(|_, to| *to != w);
        }
    }

    /// A client left: its retirements stop (workers not yet told to close
    /// stay and take work again).
    pub(crate) fn retire_client_gone(&mut self, c: shoal_proto::ClientId) {
        let gone: Vec<WaitId> = self
            .retirements
            .keys()
            .filter(|(rc, _)| *rc == c)
            .copied()
            .collect();
        for id in gone {
            if let Some(r) = self.retirements.remove(&id) {
                for (w, _) in r.pending {
                    if let Some(worker) = self.workers.get_mut(&w) {
                        worker.retiring = false;
                    }
                }
            }
        }
    }

    fn pump_retirement(&mut self, rid: WaitId, out: &mut Vec<Command>) {
        let Some(mut r) = self.retirements.remove(&rid) else {
            return;
        };
        let mut recipients: Vec<(usize, WorkerId)> = self
            .workers
            .iter()
            .filter(|(_, w)| !w.retiring && !w.paused)
            .map(|(&wid, w)| (w.holds.len(), wid))
            .collect();
        recipients.sort_unstable();
        let mut fetches: BTreeMap<WorkerId, Vec<DepLocation>> = BTreeMap::new();
        let mut next = 0usize;
        let mut pending = Vec::new();
        for (w, address) in std::mem::take(&mut r.pending) {
            let Some(worker) = self.workers.get(&w) else {
                r.done.push(address);
                continue;
            };
            let unique = self.only_here(w);
            if unique.is_empty() && worker.assigned.is_empty() {
                out.push(Command::ToWorker(w, SchedulerToWorker::Shutdown));
                r.done.push(address);
                continue;
            }
            let stuck = unique.iter().any(|id| {
                r.failures.get(self.tasks[id].key()).copied().unwrap_or(0) >= MAX_COPY_FAILURES
            });
            if !unique.is_empty() && (recipients.is_empty() || stuck) {
                // Its data has nowhere to go: it stays.
                if let Some(worker) = self.workers.get_mut(&w) {
                    worker.retiring = false;
                }
                continue;
            }
            for id in unique {
                let key = self.tasks[&id].key().to_string();
                if r.in_flight.contains_key(&key) {
                    continue;
                }
                let (_, to) = recipients[next % recipients.len()];
                next += 1;
                fetches.entry(to).or_default().push(DepLocation {
                    key: key.clone(),
                    holders: vec![address.clone()],
                    inline: None,
                    nbytes: self.tasks[&id].nbytes,
                });
                r.in_flight.insert(key, to);
            }
            pending.push((w, address));
        }
        r.pending = pending;
        for (w, deps) in fetches {
            out.push(Command::ToWorker(w, SchedulerToWorker::Fetch { deps }));
        }
        if r.pending.is_empty() {
            reply(out, rid, CoordReply::Names(r.done));
        } else {
            self.retirements.insert(rid, r);
        }
    }

    /// Every worker a retirement waits on is marked retiring, and every
    /// copy it waits for comes to a connected worker.
    pub(crate) fn check_retirements(&self) -> Result<(), String> {
        for (rid, r) in &self.retirements {
            for (w, _) in &r.pending {
                if let Some(worker) = self.workers.get(w) {
                    if !worker.retiring {
                        return Err(format!(
                            "retirement {rid:?} waits on worker {w}, not retiring"
                        ));
                    }
                }
            }
            for (key, to) in &r.in_flight {
                if !self.workers.contains_key(to) {
                    return Err(format!(
                        "retirement {rid:?} waits for {key} on worker {to}, which is gone"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Results held by `w` and by no worker that stays, except small ones
    /// the scheduler keeps a copy of.
    fn only_here(&self, w: WorkerId) -> Vec<TaskId> {
        let Some(worker) = self.workers.get(&w) else {
            return Vec::new();
        };
        let mut ids: Vec<TaskId> = worker
            .holds
            .iter()
            .copied()
            .filter(|id| !self.kept.contains(*id))
            .filter(|id| match &self.tasks[id].state {
                TaskState::Memory { holders } => holders
                    .iter()
                    .all(|h| self.workers.get(h).is_none_or(|x| x.retiring)),
                _ => false,
            })
            .collect();
        ids.sort_unstable();
        ids
    }
}
