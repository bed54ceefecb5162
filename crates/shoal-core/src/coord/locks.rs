//! Semaphores (a lock is a semaphore of one lease), multi-locks and events.
//! A lease belongs to the client connection that took it: when that client
//! goes — a worker's client dies with its worker — its leases are returned.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use shoal_proto::{ClientId, CoordReply};

use super::{reply, Parked, WaitId};
use crate::core::Core;
use crate::events::Command;

/// A semaphore: at most `max_leases` leases held at once.
#[derive(Debug)]
pub(crate) struct Semaphore {
    pub max_leases: u32,
    /// Leases held: (client, lease id).
    pub holders: Vec<(ClientId, u64)>,
    /// Requests waiting for a lease, in arrival order.
    pub waiters: VecDeque<WaitId>,
}

/// Named locks taken several at a time: each name is held by at most one
/// lease.
#[derive(Debug, Default)]
pub(crate) struct MultiLocks {
    /// The lease holding each name.
    pub owner: FxHashMap<String, (ClientId, u64)>,
    /// What each lease holds.
    pub held: FxHashMap<(ClientId, u64), Vec<String>>,
    /// Requests waiting, in arrival order, with the names they may take
    /// and how many of them they need.
    pub waiters: VecDeque<(WaitId, Vec<String>, u32)>,
}

impl MultiLocks {
    /// Returns what lease `lease` of client `c` holds; false if nothing.
    pub fn release(&mut self, c: ClientId, lease: u64) -> bool {
        match self.held.remove(&(c, lease)) {
            Some(names) => {
                for n in names {
                    self.owner.remove(&n);
                }
                true
            }
            None => false,
        }
    }

    /// The first `count` free names among `names`, if there are that many.
    fn free_names(&self, names: &[String], count: u32) -> Option<Vec<String>> {
        let mut free = Vec::new();
        for n in names {
            if free.len() == count as usize {
                break;
            }
            if !self.owner.contains_key(n) && !free.contains(n) {
                free.push(n.clone());
            }
        }
        (free.len() == count as usize).then_some(free)
    }

    fn take(&mut self, holder: (ClientId, u64), names: Vec<String>) {
        for n in &names {
            self.owner.insert(n.clone(), holder);
        }
        self.held.entry(holder).or_default().extend(names);
    }
}

/// An event: waiters are answered when it is set.
#[derive(Debug, Default)]
pub(crate) struct Event {
    pub set: bool,
    pub waiters: VecDeque<WaitId>,
}

impl Core {
    pub(super) fn acquire(
        &mut self,
        id: WaitId,
        name: String,
        max_leases: u32,
        lease: u64,
        out: &mut Vec<Command>,
    ) -> Option<Parked> {
        let s = self
            .coord
            .semaphores
            .entry(name.clone())
            .or_insert_with(|| Semaphore {
                max_leases: max_leases.max(1),
                holders: Vec::new(),
                waiters: VecDeque::new(),
            });
        // Waiters leave the list when they time out or their client goes
        // (`forget_waiter`): every one listed is still waiting.
        if s.waiters.is_empty() && s.holders.len() < s.max_leases as usize {
            s.holders.push((id.0, lease));
            reply(out, id, CoordReply::Done);
            None
        } else {
            s.waiters.push_back(id);
            Some(Parked::Acquire { name, lease })
        }
    }

    /// A parked request stopped waiting (timed out, or its client left):
    /// a semaphore's waiter leaves its list, so polling with
    /// `acquire(blocking=False)` never piles up waiters to scan.
    pub(super) fn forget_waiter(&mut self, id: WaitId, what: &Parked) {
        if let Parked::Acquire { name, .. } = what {
            if let Some(s) = self.coord.semaphores.get_mut(name) {
                s.waiters.retain(|w| *w != id);
            }
        }
    }

    pub(super) fn release(&mut self, id: WaitId, name: &str, lease: u64, out: &mut Vec<Command>) {
        let held = match self.coord.semaphores.get_mut(name) {
            Some(s) => match s.holders.iter().position(|h| *h == (id.0, lease)) {
                Some(i) => {
                    s.holders.swap_remove(i);
                    true
                }
                None => false,
            },
            None => false,
        };
        reply(out, id, CoordReply::Flag(held));
        self.pump_semaphore(name, out);
    }

    /// Grants free leases to waiting requests, in arrival order.
    fn pump_semaphore(&mut self, name: &str, out: &mut Vec<Command>) {
        loop {
            let Some(s) = self.coord.semaphores.get_mut(name) else {
                return;
            };
            if s.holders.len() >= s.max_leases as usize {
                return;
            }
            let Some(w) = s.waiters.pop_front() else {
                return;
            };
            if let Some(Parked::Acquire { lease, .. }) = self.coord.parked.remove(&w) {
                if let Some(s) = self.coord.semaphores.get_mut(name) {
                    s.holders.push((w.0, lease));
                }
                reply(out, w, CoordReply::Done);
            }
        }
    }

    pub(super) fn multi_acquire(
        &mut self,
        id: WaitId,
        names: Vec<String>,
        count: u32,
        lease: u64,
        out: &mut Vec<Command>,
    ) -> Option<Parked> {
        let mut distinct = names.clone();
        distinct.sort();
        distinct.dedup();
        if count as usize > distinct.len() {
            let msg = format!("cannot hold {count} of {} distinct locks", distinct.len());
            reply(out, id, CoordReply::Invalid(msg));
            return None;
        }
        let m = &mut self.coord.multi;
        if m.held.contains_key(&(id.0, lease)) {
            reply(
                out,
                id,
                CoordReply::Invalid("this MultiLock is held already".into()),
            );
            return None;
        }
        match m.free_names(&names, count) {
            Some(free) => {
                m.take((id.0, lease), free);
                reply(out, id, CoordReply::Done);
                None
            }
            None => {
                m.waiters.push_back((id, names, count));
                Some(Parked::MultiAcquire { lease })
            }
        }
    }

    /// Grants waiting multi-lock requests that can now hold what they need,
    /// in arrival order.
    pub(super) fn pump_multi(&mut self, out: &mut Vec<Command>) {
        let waiters = std::mem::take(&mut self.coord.multi.waiters);
        for (w, names, count) in waiters {
            let Some(Parked::MultiAcquire { lease }) = self.coord.parked.get(&w) else {
                continue; // timed out, or gone
            };
            let lease = *lease;
            match self.coord.multi.free_names(&names, count) {
                Some(free) => {
                    self.coord.parked.remove(&w);
                    self.coord.multi.take((w.0, lease), free);
                    reply(out, w, CoordReply::Done);
                }
                None => self.coord.multi.waiters.push_back((w, names, count)),
            }
        }
    }

    /// Returns every lease client `c` holds, and serves whoever waits.
    pub(crate) fn release_leases_of(&mut self, c: ClientId, out: &mut Vec<Command>) {
        let names: Vec<String> = self
            .coord
            .semaphores
            .iter_mut()
            .filter_map(|(name, s)| {
                let before = s.holders.len();
                s.holders.retain(|(hc, _)| *hc != c);
                (s.holders.len() != before).then(|| name.clone())
            })
            .collect();
        for name in names {
            self.pump_semaphore(&name, out);
        }
        let leases: Vec<(ClientId, u64)> = self
            .coord
            .multi
            .held
            .keys()
            .filter(|(hc, _)| *hc == c)
            .copied()
            .collect();
        if !leases.is_empty() {
            for (hc, lease) in leases {
                self.coord.multi.release(hc, lease);
            }
            self.pump_multi(out);
        }
    }

    pub(super) fn event_set(&mut self, name: &str, out: &mut Vec<Command>) {
        let ev = self.coord.events.entry(name.to_string()).or_default();
        ev.set = true;
        let waiters = std::mem::take(&mut ev.waiters);
        for w in waiters {
            if self.take_parked(w).is_some() {
                reply(out, w, CoordReply::Done);
            }
        }
    }
}
