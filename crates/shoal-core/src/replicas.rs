//! Extra copies of results.
//!
//! A worker that fetched a result from another worker (a task's input, or
//! at our request) reports it with `Fetched`; the core then counts it as a
//! holder, so the copy is used for placement, listed by `who_has`, kept if
//! the first holder dies, and freed with the key. A copy reported for a key
//! that is no longer in memory is freed at once.
//!
//! `Client.replicate` (`CoordOp::Replicate`) asks workers to fetch copies
//! until enough workers hold each key. It runs per key in rounds, like a
//! tree: each round asks at most `branching` new workers per current holder
//! to fetch (each from a different holder first), and the next round
//! starts once every fetch of the last one was answered. A key is done when
//! it has its copies, no eligible worker is left to ask, or it left memory;
//! the request is answered `Done` when every key is done.

use std::collections::BTreeMap;

use rustc_hash::{FxHashMap, FxHashSet};
use shoal_proto::{CoordReply, DepLocation, SchedulerToWorker, TaskId, WorkerId};

use crate::coord::{reply, WaitId};
use crate::core::Core;
use crate::events::Command;
use crate::task::TaskState;

/// One `replicate` request in progress.
#[derive(Debug)]
pub(crate) struct Replication {
    /// Keys not done yet.
    keys: Vec<String>,
    /// Copies wanted among the eligible workers; `None`: all of them.
    target: Option<usize>,
    /// Which workers may hold copies (see `Worker::matches`).
    workers: Vec<String>,
    branching: usize,
    /// Workers asked to fetch each key and not answered yet, by key (a
    /// key may be forgotten and submitted again meanwhile); no empty lists.
    pub in_flight: FxHashMap<String, Vec<WorkerId>>,
    /// Workers whose fetch of each key failed: not asked again.
    failed: FxHashMap<String, Vec<WorkerId>>,
}

/// Every replication in progress, by the request that started it.
pub(crate) type Replications = BTreeMap<WaitId, Replication>;

impl Core {
    /// Starts `CoordOp::Replicate` for request `id`.
    pub(crate) fn replicate(
        &mut self,
        id: WaitId,
        keys: Vec<String>,
        n: u32,
        workers: Vec<String>,
        branching: u32,
        out: &mut Vec<Command>,
    ) {
        if branching == 0 {
            let why = "branching_factor must be at least 1".to_string();
            return reply(out, id, CoordReply::Invalid(why));
        }
        if let Some(key) = keys.iter().find(|k| self.id_of(k).is_none()) {
            let why = format!("the scheduler does not know key {key}");
            return reply(out, id, CoordReply::Invalid(why));
        }
        if !workers.is_empty() && !self.workers.values().any(|w| w.matches(&workers)) {
            let why = format!("workers={workers:?} names no connected worker");
            return reply(out, id, CoordReply::Invalid(why));
        }
        let mut keys = keys;
        keys.sort_unstable();
        keys.dedup();
        let r = Replication {
            keys,
            target: (n > 0).then_some(n as usize),
            workers,
            branching: branching as usize,
            in_flight: FxHashMap::default(),
            failed: FxHashMap::default(),
        };
        self.replications.insert(id, r);
        self.pump_replication(id, out);
    }

    /// Worker `w` reports copies it fetched, and the ones it could not get.
    pub(crate) fn fetched(
        &mut self,
        w: WorkerId,
        keys: Vec<String>,
        missing: Vec<String>,
        out: &mut Vec<Command>,
    ) {
        let mut answered = Vec::with_capacity(keys.len() + missing.len());
        for key in keys {
            let kept = self.id_of(&key).is_some_and(|id| self.add_holder(id, w));
            if !kept {
                // Freed (or lost) meanwhile: the copy is not wanted.
                self.to_free.entry(w).or_default().push(key.clone());
            }
            answered.push((key, kept));
        }
        answered.extend(missing.into_iter().map(|k| (k, false)));
        self.retire_fetched(w, &answered);
        self.rebalance_fetched(w, &answered, out);
        let mut touched = Vec::new();
        for (rid, r) in self.replications.iter_mut() {
            let mut any = false;
            for (key, ok) in &answered {
                if take(&mut r.in_flight, key, w) {
                    any = true;
                    if !ok {
                        r.failed.entry(key.clone()).or_default().push(w);
                    }
                }
            }
            if any {
                touched.push(*rid);
            }
        }
        for rid in touched {
            self.pump_replication(rid, out);
        }
    }

    /// Worker `w` is gone: its fetches will not be answered.
    pub(crate) fn replicas_worker_lost(&mut self, w: WorkerId, out: &mut Vec<Command>) {
        let mut touched = Vec::new();
        for (rid, r) in self.replications.iter_mut() {
            let mut any = false;
            r.in_flight.retain(|_, ws| {
                any |= ws.contains(&w);
                ws.retain(|x| *x != w);
                !ws.is_empty()
            });
            if any {
                touched.push(*rid);
            }
        }
        for rid in touched {
            self.pump_replication(rid, out);
        }
    }

    /// A client left: its replications end (copies already asked for still
    /// arrive and count).
    pub(crate) fn replicas_client_gone(&mut self, c: shoal_proto::ClientId) {
        self.replications.retain(|(rc, _), _| *rc != c);
    }

    /// Moves replication `rid` on: starts the next round of every key whose
    /// last round was answered, and answers the request once all are done.
    fn pump_replication(&mut self, rid: WaitId, out: &mut Vec<Command>) {
        let Some(mut r) = self.replications.remove(&rid) else {
            return;
        };
        let eligible: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, wk)| wk.matches(&r.workers))
            .map(|(&w, _)| w)
            .collect();
        let mut fetches: BTreeMap<WorkerId, Vec<DepLocation>> = BTreeMap::new();
        let keys = std::mem::take(&mut r.keys);
        for key in keys {
            if r.in_flight.contains_key(&key)
                || self.next_round(&mut r, &key, &eligible, &mut fetches)
            {
                r.keys.push(key);
            }
        }
        for (w, deps) in fetches {
            out.push(Command::ToWorker(w, SchedulerToWorker::Fetch { deps }));
        }
        if r.keys.is_empty() {
            reply(out, rid, CoordReply::Done);
        } else {
            self.replications.insert(rid, r);
        }
    }

    /// Starts the next round of copies of `id` (adding the fetches to
    /// `fetches`), or drops copies beyond the target; false if the key is
    /// done.
    fn next_round(
        &mut self,
        r: &mut Replication,
        key: &str,
        eligible: &[WorkerId],
        fetches: &mut BTreeMap<WorkerId, Vec<DepLocation>>,
    ) -> bool {
        let Some(id) = self.id_of(key) else {
            return false;
        };
        let t = &self.tasks[&id];
        let TaskState::Memory { holders } = &t.state else {
            return false;
        };
        let have: Vec<WorkerId> = holders
            .iter()
            .copied()
            .filter(|h| eligible.contains(h))
            .collect();
        let target = r.target.unwrap_or(eligible.len()).min(eligible.len());
        if have.len() > target {
            self.drop_copies(id, &have, have.len() - target);
            return false;
        }
        let failed = r.failed.get(key).map_or(&[][..], |v| v.as_slice());
        let mut candidates: Vec<WorkerId> = eligible
            .iter()
            .copied()
            .filter(|w| !holders.contains(w) && !failed.contains(w))
            .collect();
        // The emptiest workers first.
        candidates.sort_by_key(|w| (self.workers[w].holds.len(), *w));
        // With no holder left, a kept copy is the source: it travels in the
        // request.
        let inline = if holders.is_empty() {
            self.kept.get(id).cloned()
        } else {
            None
        };
        let sources = self.addresses(holders);
        let seeds = sources.len() + usize::from(inline.is_some());
        let count = (target - have.len())
            .min(r.branching.saturating_mul(seeds))
            .min(candidates.len());
        if count == 0 {
            return false;
        }
        let asked = &mut r.in_flight.entry(key.to_string()).or_default();
        for (i, &w) in candidates.iter().take(count).enumerate() {
            let mut from = sources.clone();
            if !sources.is_empty() {
                from.rotate_left(i % sources.len());
            }
            fetches.entry(w).or_default().push(DepLocation {
                key: key.to_string(),
                holders: from,
                inline: inline.clone(),
                nbytes: self.tasks[&id].nbytes,
            });
            asked.push(w);
        }
        true
    }

    /// Counts worker `w` as a holder of `id` if it is in memory; false if
    /// it is not (the copy is then not wanted).
    pub(crate) fn add_holder(&mut self, id: TaskId, w: WorkerId) -> bool {
        let Some(TaskState::Memory { holders }) = self.tasks.get_mut(&id).map(|t| &mut t.state)
        else {
            return false;
        };
        if !holders.contains(&w) {
            holders.push(w);
            if let Some(worker) = self.workers.get_mut(&w) {
                worker.holds.insert(id);
            }
        }
        true
    }

    /// Frees `extra` of the copies of `id` held by `have`, keeping copies
    /// that a task assigned to their worker is about to read.
    pub(crate) fn drop_copies(&mut self, id: TaskId, have: &[WorkerId], extra: usize) {
        let t = &self.tasks[&id];
        let reading: FxHashSet<WorkerId> = t
            .dependents
            .iter()
            .filter_map(|d| match self.tasks.get(&d).map(|dt| &dt.state) {
                Some(TaskState::Assigned { worker, .. }) => Some(*worker),
                _ => None,
            })
            .collect();
        let key = t.key().to_string();
        let gone: Vec<WorkerId> = have
            .iter()
            .rev()
            .copied()
            .filter(|w| !reading.contains(w))
            .take(extra)
            .collect();
        if let Some(TaskState::Memory { holders }) = self.tasks.get_mut(&id).map(|t| &mut t.state) {
            holders.retain(|h| !gone.contains(h));
        }
        for w in gone {
            if let Some(worker) = self.workers.get_mut(&w) {
                worker.holds.remove(&id);
            }
            self.to_free.entry(w).or_default().push(key.clone());
        }
    }
}

/// Removes `w` from the workers asked to fetch `key`; whether it was there.
fn take(in_flight: &mut FxHashMap<String, Vec<WorkerId>>, key: &str, w: WorkerId) -> bool {
    let Some(ws) = in_flight.get_mut(key) else {
        return false;
    };
    let Some(i) = ws.iter().position(|x| *x == w) else {
        return false;
    };
    ws.swap_remove(i);
    if ws.is_empty() {
        in_flight.remove(key);
    }
    true
}
