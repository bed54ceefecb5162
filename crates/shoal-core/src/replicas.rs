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

use rustc_hash::FxHashSet;
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
    /// Fetches asked for and not answered, by key (a key may be forgotten
    /// and submitted again meanwhile).
    pub in_flight: FxHashSet<(String, WorkerId)>,
    /// Fetches that failed: not asked again.
    failed: FxHashSet<(String, WorkerId)>,
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
        let mut keys = keys;
        keys.sort_unstable();
        keys.dedup();
        let r = Replication {
            keys,
            target: (n > 0).then_some(n as usize),
            workers,
            branching: branching as usize,
            in_flight: FxHashSet::default(),
            failed: FxHashSet::default(),
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
            let id = self.id_of(&key);
            let t = id.and_then(|id| Some((id, self.tasks.get_mut(&id)?)));
            match t {
                Some((id, t)) if matches!(t.state, TaskState::Memory { .. }) => {
                    if let TaskState::Memory { holders } = &mut t.state {
                        if !holders.contains(&w) {
                            holders.push(w);
                            if let Some(worker) = self.workers.get_mut(&w) {
                                worker.holds.insert(id);
                            }
                        }
                    }
                    answered.push((key, true));
                }
                // Freed (or lost) meanwhile: the copy is not wanted.
                _ => {
                    self.to_free.entry(w).or_default().push(key.clone());
                    answered.push((key, false));
                }
            }
        }
        answered.extend(missing.into_iter().map(|k| (k, false)));
        let mut touched = Vec::new();
        for (rid, r) in self.replications.iter_mut() {
            let mut any = false;
            for (key, ok) in &answered {
                let fetch = (key.clone(), w);
                if r.in_flight.remove(&fetch) {
                    any = true;
                    if !ok {
                        r.failed.insert(fetch);
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
            let before = r.in_flight.len();
            r.in_flight.retain(|&(_, x)| x != w);
            if r.in_flight.len() != before {
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
            if r.in_flight.iter().any(|(k, _)| *k == key)
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
        let mut candidates: Vec<WorkerId> = eligible
            .iter()
            .copied()
            .filter(|w| !holders.contains(w) && !r.failed.contains(&(key.to_string(), *w)))
            .collect();
        // The emptiest workers first.
        candidates.sort_by_key(|w| (self.workers[w].holds.len(), *w));
        let count = (target - have.len())
            .min(r.branching.saturating_mul(holders.len()))
            .min(candidates.len());
        if count == 0 {
            return false;
        }
        let sources = self.addresses(holders);
        for (i, &w) in candidates.iter().take(count).enumerate() {
            let mut from = sources.clone();
            from.rotate_left(i % sources.len());
            fetches.entry(w).or_default().push(DepLocation {
                key: key.to_string(),
                holders: from,
            });
            r.in_flight.insert((key.to_string(), w));
        }
        true
    }

    /// Frees `extra` of the copies of `id` held by `have`, keeping copies
    /// that a task assigned to their worker is about to read.
    fn drop_copies(&mut self, id: TaskId, have: &[WorkerId], extra: usize) {
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
