//! Values the scheduler keeps for clients: queues, variables and published
//! datasets.

use std::collections::VecDeque;

use shoal_proto::{CoordReply, Held};

use super::{reply, Parked, WaitId};
use crate::core::Core;
use crate::events::Command;

/// A first-in first-out queue of values, bounded by `maxsize` (0: not).
#[derive(Debug)]
pub(crate) struct Queue {
    pub maxsize: u32,
    pub items: VecDeque<Held>,
    /// Requests waiting for items, in arrival order.
    pub getters: VecDeque<WaitId>,
    /// Requests waiting for room, in arrival order (their items are parked
    /// with them).
    pub putters: VecDeque<WaitId>,
}

impl Queue {
    pub fn new(maxsize: u32) -> Self {
        Queue {
            maxsize,
            items: VecDeque::new(),
            getters: VecDeque::new(),
            putters: VecDeque::new(),
        }
    }

    fn has_room(&self) -> bool {
        self.maxsize == 0 || self.items.len() < self.maxsize as usize
    }
}

impl Core {
    pub(super) fn queue_put(
        &mut self,
        id: WaitId,
        name: String,
        item: Held,
        out: &mut Vec<Command>,
    ) -> Option<Parked> {
        if let Err(refused) = self.hold(&item) {
            reply(out, id, refused);
            return None;
        }
        let q = self
            .coord
            .queues
            .entry(name.clone())
            .or_insert_with(|| Queue::new(0));
        if q.has_room() && q.putters.is_empty() {
            q.items.push_back(item);
            reply(out, id, CoordReply::Done);
            self.pump_queue(&name, out);
            None
        } else {
            q.putters.push_back(id);
            Some(Parked::QueuePut { name, item })
        }
    }

    pub(super) fn queue_get(
        &mut self,
        id: WaitId,
        name: String,
        count: u32,
        out: &mut Vec<Command>,
    ) -> Option<Parked> {
        let q = self
            .coord
            .queues
            .entry(name.clone())
            .or_insert_with(|| Queue::new(0));
        if count == 0 {
            // Everything there now, without waiting.
            let items: Vec<Held> = q.items.drain(..).collect();
            self.hand_over(id, items, out);
            self.pump_queue(&name, out);
            return None;
        }
        // Parked first, then served by `pump_queue` if the items are there.
        q.getters.push_back(id);
        Some(Parked::QueueGet { name, count })
    }

    /// Gives items taken off a queue to `id`'s client; the queue's hold on
    /// their keys passes to it.
    fn hand_over(&mut self, id: WaitId, items: Vec<Held>, out: &mut Vec<Command>) {
        self.adopt(id.0, &items);
        for item in &items {
            self.unhold(item);
        }
        reply(out, id, CoordReply::Items(items));
    }

    /// Serves waiting getters and putters, in arrival order, while it can.
    pub(super) fn pump_queue(&mut self, name: &str, out: &mut Vec<Command>) {
        loop {
            let mut progressed = false;
            // The first live getter takes its items if they are all there.
            while let Some(&g) = self.coord.queues.get(name).and_then(|q| q.getters.front()) {
                let count = match self.coord.parked.get(&g) {
                    Some(Parked::QueueGet { count, .. }) => *count as usize,
                    _ => {
                        self.queue_mut(name).getters.pop_front(); // timed out, or gone
                        continue;
                    }
                };
                let q = self.queue_mut(name);
                if q.items.len() < count {
                    break;
                }
                let items: Vec<Held> = q.items.drain(..count).collect();
                q.getters.pop_front();
                self.coord.parked.remove(&g);
                self.hand_over(g, items, out);
                progressed = true;
            }
            // The first live putter adds its item if there is room.
            while let Some(&p) = self.coord.queues.get(name).and_then(|q| q.putters.front()) {
                if !self.queue_mut(name).has_room() {
                    break;
                }
                self.queue_mut(name).putters.pop_front();
                if let Some(Parked::QueuePut { item, .. }) = self.coord.parked.remove(&p) {
                    self.queue_mut(name).items.push_back(item);
                    reply(out, p, CoordReply::Done);
                    progressed = true;
                }
            }
            if !progressed {
                return;
            }
        }
    }

    fn queue_mut(&mut self, name: &str) -> &mut Queue {
        self.coord
            .queues
            .entry(name.to_string())
            .or_insert_with(|| Queue::new(0))
    }

    pub(super) fn variable_set(
        &mut self,
        id: WaitId,
        name: String,
        item: Held,
        out: &mut Vec<Command>,
    ) {
        if let Err(refused) = self.hold(&item) {
            reply(out, id, refused);
            return;
        }
        if let Some(old) = self.coord.variables.insert(name.clone(), item.clone()) {
            self.unhold(&old);
        }
        reply(out, id, CoordReply::Done);
        let waiters = self
            .coord
            .variable_waiters
            .remove(&name)
            .unwrap_or_default();
        for w in waiters {
            if self.take_parked(w).is_some() {
                self.deliver(w, vec![item.clone()], out);
            }
        }
    }

    pub(super) fn variable_get(
        &mut self,
        id: WaitId,
        name: String,
        out: &mut Vec<Command>,
    ) -> Option<Parked> {
        match self.coord.variables.get(&name).cloned() {
            Some(item) => {
                self.deliver(id, vec![item], out);
                None
            }
            None => {
                self.coord
                    .variable_waiters
                    .entry(name.clone())
                    .or_default()
                    .push_back(id);
                Some(Parked::VariableGet { name })
            }
        }
    }

    pub(super) fn dataset_publish(
        &mut self,
        id: WaitId,
        name: String,
        item: Held,
        replace: bool,
        out: &mut Vec<Command>,
    ) {
        if !replace && self.coord.datasets.contains_key(&name) {
            reply(out, id, CoordReply::Exists);
            return;
        }
        if let Err(refused) = self.hold(&item) {
            reply(out, id, refused);
            return;
        }
        if let Some(old) = self.coord.datasets.insert(name, item) {
            self.unhold(&old);
        }
        reply(out, id, CoordReply::Done);
    }
}
