//! Moving results so workers hold about the same bytes (`Client.rebalance`).
//!
//! `CoordOp::Rebalance` plans every move at once from what the core knows:
//! the bytes of results each eligible worker holds. While the fullest worker
//! holds more than the emptiest, the largest result the fullest could give
//! that is smaller than the gap between them moves (a move of `s` bytes
//! across a gap `g` narrows it only if `s < g`), so the plan ends with every
//! worker within one result of the others. Each move is a `Fetch` by the
//! recipient from the sender; once the recipient reports the copy, the
//! sender's copy is dropped as `replicate` drops extra copies (kept if a
//! task assigned to the sender reads it).
//! The request is answered `Done` when every fetch was answered.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;
use shoal_proto::{CoordReply, DepLocation, SchedulerToWorker, TaskId, WorkerId};

use crate::coord::{reply, WaitId};
use crate::core::Core;
use crate::events::Command;
use crate::task::TaskState;

/// One `rebalance` request in progress: the moves not answered yet, by
/// key, each `(sender, recipient)`.
#[derive(Debug, Default)]
pub(crate) struct Rebalance {
    pub moves: FxHashMap<String, (WorkerId, WorkerId)>,
}

/// Every rebalance in progress, by the request that started it.
pub(crate) type Rebalances = BTreeMap<WaitId, Rebalance>;

impl Core {
    /// Starts `CoordOp::Rebalance` for request `id`: `keys` (all results in
    /// memory if empty) among the workers `workers` names (all if empty).
    pub(crate) fn rebalance(
        &mut self,
        id: WaitId,
        keys: Vec<String>,
        workers: Vec<String>,
        out: &mut Vec<Command>,
    ) {
        if let Some(key) = keys.iter().find(|k| self.id_of(k).is_none()) {
            let why = format!("the scheduler does not know key {key}");
            return reply(out, id, CoordReply::Invalid(why));
        }
        if !workers.is_empty() && !self.workers.values().any(|w| w.matches(&workers)) {
            return reply(out, id, CoordReply::Missing);
        }
        let plan = self.plan_moves(&keys, &workers);
        if plan.is_empty() {
            return reply(out, id, CoordReply::Done);
        }
        let mut fetches: BTreeMap<WorkerId, Vec<DepLocation>> = BTreeMap::new();
        let mut r = Rebalance::default();
        for (task, from, to) in plan {
            let t = &self.tasks[&task];
            let key = t.key().to_string();
            fetches.entry(to).or_default().push(DepLocation {
                key: key.clone(),
                holders: self.addresses(&[from]),
                inline: None,
                nbytes: t.nbytes,
            });
            r.moves.insert(key, (from, to));
        }
        for (w, deps) in fetches {
            out.push(Command::ToWorker(w, SchedulerToWorker::Fetch { deps }));
        }
        self.rebalances.insert(id, r);
    }

    /// The moves `(task, sender, recipient)` that even out the bytes held
    /// (see the module).
    fn plan_moves(&self, keys: &[String], names: &[String]) -> Vec<(TaskId, WorkerId, WorkerId)> {
        let eligible: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| !w.retiring && w.matches(names))
            .map(|(&id, _)| id)
            .collect();
        if eligible.len() < 2 {
            return Vec::new();
        }
        let chosen: Option<BTreeSet<TaskId>> =
            (!keys.is_empty()).then(|| keys.iter().filter_map(|k| self.id_of(k)).collect());
        let mut load: BTreeMap<WorkerId, u64> = BTreeMap::new();
        // What each worker could give: (bytes, task), the largest last.
        let mut givable: BTreeMap<WorkerId, BTreeSet<(u64, TaskId)>> = BTreeMap::new();
        for &w in &eligible {
            let mut bytes = 0u64;
            let mut can = BTreeSet::new();
            for &task in &self.workers[&w].holds {
                let Some(t) = self.tasks.get(&task) else {
                    continue;
                };
                if !matches!(t.state, TaskState::Memory { .. }) {
                    continue;
                }
                bytes = bytes.saturating_add(t.nbytes);
                if t.nbytes > 0 && chosen.as_ref().is_none_or(|c| c.contains(&task)) {
                    can.insert((t.nbytes, task));
                }
            }
            load.insert(w, bytes);
            givable.insert(w, can);
        }
        let mut plan = Vec::new();
        let most = givable.values().map(BTreeSet::len).sum::<usize>();
        while plan.len() < most {
            let Some((&from, &high)) = load
                .iter()
                .max_by_key(|(w, b)| (**b, std::cmp::Reverse(**w)))
            else {
                break;
            };
            let Some((&to, &low)) = load.iter().min_by_key(|(w, b)| (**b, **w)) else {
                break;
            };
            let gap = high - low;
            let lacks = |task: &TaskId| {
                !matches!(&self.tasks[task].state,
                    TaskState::Memory { holders } if holders.contains(&to))
            };
            let Some(can) = givable.get_mut(&from) else {
                break;
            };
            // The largest result under the gap that the recipient lacks.
            let pick = can
                .range(..(gap, 0))
                .rev()
                .find(|(_, task)| lacks(task))
                .copied();
            let Some((bytes, task)) = pick else {
                break;
            };
            can.remove(&(bytes, task));
            if let Some(b) = load.get_mut(&from) {
                *b -= bytes;
            }
            if let Some(b) = load.get_mut(&to) {
                *b += bytes;
            }
            plan.push((task, from, to));
        }
        plan
    }

    /// Worker `w` reports copies it fetched (`true`) or could not (`false`):
    /// a move it finished frees the sender's copy.
    pub(crate) fn rebalance_fetched(
        &mut self,
        w: WorkerId,
        answered: &[(String, bool)],
        out: &mut Vec<Command>,
    ) {
        let mut finished = Vec::new();
        let mut drops = Vec::new();
        for (rid, r) in self.rebalances.iter_mut() {
            for (key, ok) in answered {
                if let Some(&(from, to)) = r.moves.get(key) {
                    if to == w {
                        r.moves.remove(key);
                        if *ok {
                            drops.push((key.clone(), from));
                        }
                    }
                }
            }
            if r.moves.is_empty() {
                finished.push(*rid);
            }
        }
        for (key, from) in drops {
            let Some(id) = self.id_of(&key) else {
                continue;
            };
            // The sender's copy goes once another holds one (and, as any
            // dropped copy, stays if a task assigned there reads it).
            let shared = matches!(&self.tasks[&id].state,
                TaskState::Memory { holders } if holders.len() > 1 && holders.contains(&from));
            if shared {
                self.drop_copies(id, &[from], 1);
            }
        }
        for rid in finished {
            self.rebalances.remove(&rid);
            reply(out, rid, CoordReply::Done);
        }
    }

    /// Worker `w` is gone: the moves to it will not be answered.
    pub(crate) fn rebalance_worker_lost(&mut self, w: WorkerId, out: &mut Vec<Command>) {
        let mut finished = Vec::new();
        for (rid, r) in self.rebalances.iter_mut() {
            r.moves.retain(|_, (_, to)| *to != w);
            if r.moves.is_empty() {
                finished.push(*rid);
            }
        }
        for rid in finished {
            self.rebalances.remove(&rid);
            reply(out, rid, CoordReply::Done);
        }
    }

    /// A client left: its rebalances end (moves already asked for finish).
    pub(crate) fn rebalance_client_gone(&mut self, c: shoal_proto::ClientId) {
        self.rebalances.retain(|(rc, _), _| *rc != c);
    }
}
