//! The coordination state's invariants (part of `Core::check_invariants`).

use rustc_hash::FxHashMap;
use shoal_proto::{Held, TaskId};

use super::{Parked, COORD_CLIENT};
use crate::core::Core;
use crate::invariants::InvariantViolation;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(InvariantViolation(format!($($fmt)+)));
        }
    };
}

impl Core {
    /// Every parked request is listed by the object it waits on; the keys
    /// the scheduler wants as [`COORD_CLIENT`] are exactly those of the
    /// values it holds, counted once per value; no semaphore has more
    /// leases out than it allows; each multi-lock name has one owner, which
    /// lists it.
    pub(crate) fn check_coord(&self) -> Result<(), InvariantViolation> {
        let c = &self.coord;
        c.event_log.check().map_err(InvariantViolation)?;
        let mut counts: FxHashMap<TaskId, u32> = FxHashMap::default();
        let mut count = |item: &Held| -> Result<(), InvariantViolation> {
            for k in &item.keys {
                let id = self.id_of(k);
                ensure!(id.is_some(), "a held value refers to the forgotten key {k}");
                if let Some(id) = id {
                    *counts.entry(id).or_insert(0) += 1;
                }
            }
            Ok(())
        };
        for q in c.queues.values() {
            for item in &q.items {
                count(item)?;
            }
        }
        for item in c.variables.values().chain(c.datasets.values()) {
            count(item)?;
        }
        for (id, p) in &c.parked {
            let listed = match p {
                Parked::QueueGet { name, .. } => {
                    c.queues.get(name).is_some_and(|q| q.getters.contains(id))
                }
                Parked::QueuePut { name, item } => {
                    count(item)?;
                    c.queues.get(name).is_some_and(|q| q.putters.contains(id))
                }
                Parked::VariableGet { name } => {
                    c.variable_waiters.get(name).is_some_and(|w| w.contains(id))
                }
                Parked::Acquire { name, .. } => c
                    .semaphores
                    .get(name)
                    .is_some_and(|s| s.waiters.contains(id)),
                Parked::MultiAcquire { .. } => c.multi.waiters.iter().any(|(w, _, _)| w == id),
                Parked::EventWait { name } => {
                    c.events.get(name).is_some_and(|e| e.waiters.contains(id))
                }
            };
            ensure!(
                listed,
                "parked request {id:?} ({p:?}) is not listed where it waits"
            );
        }
        for (name, s) in &c.semaphores {
            for w in &s.waiters {
                ensure!(
                    matches!(c.parked.get(w), Some(Parked::Acquire { name: n, .. }) if n == name),
                    "{w:?} is listed as waiting for semaphore {name} but does not wait for it"
                );
            }
        }
        for &id in &c.fire_and_forget {
            let done = self.tasks.get(&id).is_none_or(|t| {
                matches!(
                    t.state,
                    crate::task::TaskState::Memory { .. } | crate::task::TaskState::Erred
                )
            });
            ensure!(!done, "task {id} is held to finish, but it is done");
        }
        for &id in &c.fire_and_forget {
            *counts.entry(id).or_insert(0) += 1;
        }
        ensure!(
            counts == c.held_keys,
            "held key counts {:?} differ from a recount {:?}",
            c.held_keys,
            counts
        );
        let wants = &self.clients[&COORD_CLIENT].wants;
        ensure!(
            wants.len() == counts.len() && counts.keys().all(|id| wants.contains(id)),
            "the scheduler wants {} keys for held values, not the {} they refer to",
            wants.len(),
            counts.len()
        );
        for (name, s) in &c.semaphores {
            ensure!(
                s.holders.len() <= s.max_leases as usize,
                "semaphore {name} has {} of {} leases out",
                s.holders.len(),
                s.max_leases
            );
        }
        for (name, owner) in &c.multi.owner {
            let listed = c.multi.held.get(owner).is_some_and(|n| n.contains(name));
            ensure!(
                listed,
                "multi-lock {name} is owned by a lease that does not list it"
            );
        }
        let held: usize = c.multi.held.values().map(|n| n.len()).sum();
        ensure!(
            held == c.multi.owner.len(),
            "multi-lock leases list {held} names, {} are owned",
            c.multi.owner.len()
        );
        Ok(())
    }
}
