//! The core's invariants, checked from the outside.
//!
//! [`Core::check_invariants`] recounts everything the handlers maintain
//! incrementally and compares. The core's tests call it after every event,
//! and debug builds of the scheduler call it after every scheduling pass, so
//! a handler that forgets a book-keeping step fails where it happens instead
//! of as a hang much later.

use rustc_hash::FxHashSet;
use shoal_proto::TaskId;

use crate::core::Core;
use crate::stats::Bucket;
use crate::task::TaskState;

/// A broken invariant: what and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scheduler invariant broken: {0}")]
pub struct InvariantViolation(pub String);

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(InvariantViolation(format!($($fmt)+)));
        }
    };
}

impl Core {
    /// Checks every invariant of the scheduler state. Costs a walk over all
    /// tasks and workers: for tests and debug builds.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        self.check_tasks()?;
        self.check_workers()?;
        self.check_clients()?;
        self.check_limits()?;
        self.check_stats()?;
        self.check_coord()?;
        self.check_kept()?;
        ensure!(
            self.blocking_funcs
                .iter()
                .all(|&f| self.functions.contains(f)),
            "a function known to block was never sent by a client"
        );
        self.check_functions()?;
        ensure!(
            self.to_check.is_empty(),
            "{} need checks left over after an event",
            self.to_check.len()
        );
        Ok(())
    }

    /// Every function is kept while a task names it or a connected client
    /// sent it, and no longer.
    fn check_functions(&self) -> Result<(), InvariantViolation> {
        let mut named: rustc_hash::FxHashMap<shoal_proto::FuncHash, u32> = Default::default();
        for t in self.tasks.values() {
            if t.func != shoal_proto::LITERAL_FUNC {
                *named.entry(t.func).or_default() += 1;
            }
        }
        let mut seen = 0;
        for (hash, tasks, senders) in self.functions.counts() {
            seen += 1;
            ensure!(
                named.get(&hash).copied().unwrap_or(0) == tasks,
                "function {hash:#x} counts {tasks} tasks, {} name it",
                named.get(&hash).copied().unwrap_or(0)
            );
            ensure!(
                tasks > 0 || !senders.is_empty(),
                "function {hash:#x} is kept with no task and no client"
            );
            ensure!(
                senders.iter().all(|c| self.clients.contains_key(c)),
                "function {hash:#x} is kept for a client that is gone"
            );
        }
        ensure!(
            seen >= named.len(),
            "tasks name functions the table does not count"
        );
        Ok(())
    }

    /// Kept copies belong to tasks in memory, within the budget, counted
    /// right.
    fn check_kept(&self) -> Result<(), InvariantViolation> {
        for id in self.kept.ids() {
            let ok = matches!(
                self.tasks.get(&id).map(|t| &t.state),
                Some(TaskState::Memory { .. })
            );
            ensure!(ok, "a copy of task {id} is kept, but it is not in memory");
        }
        ensure!(
            self.kept.bytes() == self.kept.recount() && self.kept.bytes() <= self.config.keep_bytes,
            "kept copies count {} bytes, hold {} (budget {})",
            self.kept.bytes(),
            self.kept.recount(),
            self.config.keep_bytes
        );
        Ok(())
    }

    /// The dashboard's counts per prefix and state match the tasks.
    fn check_stats(&self) -> Result<(), InvariantViolation> {
        let slots = self.stats.check_slots();
        ensure!(slots.is_ok(), "{}", slots.unwrap_err());
        let names = self.stats.prefix_names();
        let mut counts = vec![[0u64; 6]; names.len()];
        for t in self.tasks.values() {
            ensure!(
                (t.prefix as usize) < names.len(),
                "{} has an unknown prefix",
                t.key()
            );
            ensure!(
                *names[t.prefix as usize] == *crate::stats::key_prefix(t.key()),
                "{} is counted under prefix {}",
                t.key(),
                names[t.prefix as usize]
            );
            counts[t.prefix as usize][Bucket::of(&t.state) as usize] += 1;
        }
        for (p, c) in self.stats.prefixes().iter().zip(&counts) {
            let s = &p.states;
            let have = [
                s.released,
                s.waiting,
                s.queued,
                s.processing,
                s.memory,
                s.erred,
            ];
            ensure!(
                have == *c,
                "prefix {} counts {have:?} tasks by state, but there are {c:?}",
                p.name
            );
        }
        Ok(())
    }

    fn check_tasks(&self) -> Result<(), InvariantViolation> {
        let queued: FxHashSet<TaskId> = self.ready.iter().map(|e| e.id()).collect();
        for (id, t) in self.tasks.iter() {
            let key = t.key();
            ensure!(self.id_of(key) == Some(id), "{key} is not found by its key");
            // Graph edges are symmetric.
            for d in t.deps() {
                let Some(dt) = self.tasks.get(&d) else {
                    return Err(InvariantViolation(format!(
                        "{key} depends on forgotten task {d}"
                    )));
                };
                ensure!(
                    dt.dependents.iter().any(|x| x == id),
                    "{key} is missing from the dependents of {}",
                    dt.key()
                );
            }
            for d in t.dependents.iter() {
                let Some(dt) = self.tasks.get(&d) else {
                    return Err(InvariantViolation(format!(
                        "{key} lists forgotten dependent {d}"
                    )));
                };
                ensure!(
                    dt.deps().any(|x| x == id),
                    "{} is listed as a dependent of {key} but does not depend on it",
                    dt.key()
                );
            }
            // Pending tasks count in their inputs' need, and only they do.
            ensure!(
                t.counted_pending == t.is_pending(),
                "{key} is {:?} but counted_pending is {}",
                t.state,
                t.counted_pending
            );
            let recount = t
                .dependents
                .iter()
                .filter(|d| self.tasks[d].counted_pending)
                .count() as u32;
            ensure!(
                recount == t.pending_dependents,
                "{key} has {recount} pending dependents but counts {}",
                t.pending_dependents
            );
            // Nothing unneeded is kept busy, and nothing unneeded and
            // unreferenced is kept at all.
            if !t.is_needed() {
                ensure!(
                    matches!(t.state, TaskState::Released | TaskState::Erred),
                    "{key} is {:?} though nobody needs it",
                    t.state
                );
                ensure!(
                    !t.dependents.is_empty(),
                    "{key} is kept though nobody needs it and nothing depends on it"
                );
            }
            match &t.state {
                TaskState::Waiting => {
                    let missing = self.missing_inputs(id);
                    ensure!(missing > 0, "{key} waits with every input in memory");
                    ensure!(
                        missing == t.waiting_on,
                        "{key} waits on {} inputs but {missing} are missing",
                        t.waiting_on
                    );
                    // Each missing input is being computed or will be:
                    // otherwise nothing ever wakes this task.
                    for d in t.deps() {
                        let dt = &self.tasks[&d];
                        ensure!(
                            matches!(
                                dt.state,
                                TaskState::Memory { .. }
                                    | TaskState::Waiting
                                    | TaskState::Ready
                                    | TaskState::Assigned { .. }
                            ),
                            "{key} waits on {}, which is {:?} and will not be computed",
                            dt.key(),
                            dt.state
                        );
                    }
                }
                TaskState::Ready => {
                    ensure!(
                        self.missing_inputs(id) == 0,
                        "{key} is ready with inputs missing"
                    );
                    let limited = self.limits.values().any(|l| l.waiting.contains(&id));
                    ensure!(
                        queued.contains(&id) || self.held.contains(&id) || limited,
                        "{key} is ready but neither queued, waiting to retry nor held by a limit"
                    );
                }
                TaskState::Assigned { worker, .. } => {
                    // Its inputs may have been lost since: the worker then
                    // reports them missing.
                    let on_worker = self
                        .workers
                        .get(worker)
                        .is_some_and(|w| w.assigned.contains(&id));
                    ensure!(on_worker, "{key} is assigned to {worker}, which lacks it");
                }
                TaskState::Memory { holders } => {
                    ensure!(
                        !holders.is_empty() || self.kept.contains(id),
                        "{key} is in memory nowhere"
                    );
                    for h in holders {
                        let holds = self.workers.get(h).is_some_and(|w| w.holds.contains(&id));
                        ensure!(holds, "{key} names holder {h}, which does not hold it");
                    }
                }
                TaskState::Erred => {
                    ensure!(t.error().is_some(), "{key} erred without an error");
                }
                TaskState::Released => {}
            }
        }
        Ok(())
    }

    /// Inputs of `id` not in memory.
    fn missing_inputs(&self, id: TaskId) -> u32 {
        self.tasks[&id]
            .deps()
            .filter(|d| !matches!(self.tasks[d].state, TaskState::Memory { .. }))
            .count() as u32
    }

    fn check_workers(&self) -> Result<(), InvariantViolation> {
        for (&wid, w) in &self.workers {
            for id in &w.assigned {
                let ok = matches!(
                    self.tasks.get(id).map(|t| &t.state),
                    Some(TaskState::Assigned { worker, .. }) if *worker == wid
                );
                ensure!(
                    ok,
                    "worker {wid} lists task {id}, which is not assigned to it"
                );
            }
            for id in &w.holds {
                let ok = matches!(
                    self.tasks.get(id).map(|t| &t.state),
                    Some(TaskState::Memory { holders }) if holders.contains(&wid)
                );
                ensure!(ok, "worker {wid} holds task {id}, whose holders omit it");
            }
            ensure!(
                w.stealing.is_subset(&w.assigned),
                "worker {wid} is asked to give back tasks it was not assigned"
            );
            for r in &w.resources {
                let held: f64 = w
                    .assigned
                    .iter()
                    .flat_map(|id| self.tasks[id].resources())
                    .filter(|(name, _)| *name == r.name)
                    .map(|(_, n)| n)
                    .sum();
                ensure!(
                    (held - r.used).abs() < 1e-6 && r.used <= r.total + 1e-6,
                    "worker {wid} counts {} of {} used (of {}) but its tasks hold {held}",
                    r.used,
                    r.name,
                    r.total
                );
            }
        }
        for (rid, r) in &self.replications {
            for (key, ws) in &r.in_flight {
                ensure!(
                    !ws.is_empty(),
                    "replication {rid:?} waits on nobody for {key}"
                );
                for w in ws {
                    ensure!(
                        self.workers.contains_key(w),
                        "replication {rid:?} waits for a copy of {key} from worker {w}, which is gone"
                    );
                }
            }
        }
        for (id, (w, key)) in &self.orphans {
            ensure!(
                self.workers.contains_key(w),
                "task {id} ({key}) waits for its end on worker {w}, which is gone"
            );
        }
        for (rid, r) in &self.rebalances {
            ensure!(
                !r.moves.is_empty(),
                "rebalance {rid:?} has no move left but was not answered"
            );
            for (key, (_, to)) in &r.moves {
                ensure!(
                    self.workers.contains_key(to),
                    "rebalance {rid:?} waits for a copy of {key} on worker {to}, which is gone"
                );
            }
        }
        self.check_retirements().map_err(InvariantViolation)?;
        Ok(())
    }

    /// Each limit's running count is the number of assigned tasks holding
    /// one of its slots.
    pub(crate) fn check_limits(&self) -> Result<(), InvariantViolation> {
        for (name, limit) in &self.limits {
            let recount = self
                .tasks
                .values()
                .filter(|t| {
                    t.extra
                        .as_ref()
                        .is_some_and(|e| e.holds_limits && e.limits.contains(name))
                })
                .count() as u32;
            ensure!(
                recount == limit.running,
                "limit {name} counts {} running but {recount} tasks hold it",
                limit.running
            );
        }
        for t in self.tasks.values() {
            if t.extra.as_ref().is_some_and(|e| e.holds_limits) {
                ensure!(
                    matches!(t.state, TaskState::Assigned { .. }),
                    "{} holds limit slots but is {:?}",
                    t.key(),
                    t.state
                );
            }
        }
        Ok(())
    }

    fn check_clients(&self) -> Result<(), InvariantViolation> {
        for (&c, cs) in &self.clients {
            for id in &cs.wants {
                let ok = self.tasks.get(id).is_some_and(|t| t.wanted_by.contains(&c));
                ensure!(ok, "client {c} wants task {id}, which does not list it");
            }
        }
        for (id, t) in self.tasks.iter() {
            for c in t.wanted_by.iter() {
                let ok = self.clients.get(c).is_some_and(|cs| cs.wants.contains(&id));
                ensure!(
                    ok,
                    "{} is wanted by client {c}, which does not want it",
                    t.key()
                );
            }
        }
        Ok(())
    }
}
