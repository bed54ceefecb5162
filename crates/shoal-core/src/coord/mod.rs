//! Coordination objects the scheduler holds for clients and tasks: queues,
//! variables, published datasets (`store`), semaphores, multi-locks and
//! events (`locks`), and publish/subscribe topics.
//!
//! Every request gets exactly one reply. A request that cannot be granted
//! now is *parked* under its `(client, req)` id with an optional deadline;
//! the object keeps the ids of its parked requests in arrival order and
//! skips ids that are no longer parked (timed out, or their client left),
//! so nothing is removed from the middle of a queue. Pickled values may
//! carry futures: while the scheduler holds such a value, it wants their
//! keys as the pseudo-client [`COORD_CLIENT`]; a client that receives the
//! value wants them before the scheduler lets go.

mod check;
mod event_log;
mod held_values;
mod locks;
mod metadata;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use rustc_hash::FxHashMap;
use shoal_proto::{ClientId, CoordOp, CoordReply, Held, SchedulerToClient, TaskId};

use crate::core::Core;
use crate::events::Command;

pub(crate) use event_log::EventLog;
pub use event_log::EVENTS_PER_TOPIC;
pub(crate) use held_values::Queue;
pub(crate) use locks::{Event, MultiLocks, Semaphore};

/// The client id under which the scheduler itself keeps keys that values it
/// holds refer to. Connections are numbered from 1.
pub const COORD_CLIENT: ClientId = 0;

/// A parked request's id: the client and its request number.
pub(crate) type WaitId = (ClientId, u64);

/// What a parked request waits for.
#[derive(Debug)]
pub(crate) enum Parked {
    QueueGet { name: String, count: u32 },
    QueuePut { name: String, item: Held },
    VariableGet { name: String },
    Acquire { name: String, lease: u64 },
    MultiAcquire { lease: u64 },
    EventWait { name: String },
}

/// All coordination state.
#[derive(Default)]
pub(crate) struct Coord {
    pub queues: FxHashMap<String, Queue>,
    pub variables: FxHashMap<String, Held>,
    /// Requests waiting for a variable to be set, by name.
    pub variable_waiters: FxHashMap<String, VecDeque<WaitId>>,
    pub datasets: std::collections::BTreeMap<String, Held>,
    pub semaphores: FxHashMap<String, Semaphore>,
    pub multi: MultiLocks,
    pub events: FxHashMap<String, Event>,
    /// The structured event log (`log_event`), its topics apart from
    /// pub/sub's.
    pub event_log: EventLog,
    /// `set_metadata`/`get_metadata`'s tree.
    pub metadata: metadata::Metadata,
    /// Subscribers of each topic, and the topic of each subscription.
    pub topics: FxHashMap<String, Vec<WaitId>>,
    pub subscriptions: FxHashMap<WaitId, String>,
    /// Parked requests.
    pub parked: FxHashMap<WaitId, Parked>,
    /// Deadlines of parked requests (microseconds), soonest first.
    pub deadlines: BinaryHeap<Reverse<(u64, ClientId, u64)>>,
    /// How many held values refer to each task (a fire-and-forget task
    /// counts once more).
    pub held_keys: FxHashMap<TaskId, u32>,
    /// Tasks kept until they finish (`fire_and_forget`).
    pub fire_and_forget: rustc_hash::FxHashSet<TaskId>,
}

impl Core {
    /// Handles one `Coord` request of client `c`.
    pub(crate) fn coord_request(
        &mut self,
        c: ClientId,
        req: u64,
        op: CoordOp,
        timeout: Option<f64>,
        out: &mut Vec<Command>,
    ) {
        let id = (c, req);
        let parked = match op {
            CoordOp::QueueCreate { name, maxsize } => {
                self.coord
                    .queues
                    .entry(name)
                    .or_insert_with(|| Queue::new(maxsize));
                reply(out, id, CoordReply::Done);
                None
            }
            CoordOp::QueuePut { name, item } => self.queue_put(id, name, item, out),
            CoordOp::QueueGet { name, count } => self.queue_get(id, name, count, out),
            CoordOp::QueueSize { name } => {
                let n = self.coord.queues.get(&name).map_or(0, |q| q.items.len());
                reply(out, id, CoordReply::Count(n as u64));
                None
            }
            CoordOp::VariableSet { name, item } => {
                self.variable_set(id, name, item, out);
                None
            }
            CoordOp::VariableGet { name } => self.variable_get(id, name, out),
            CoordOp::VariableDelete { name } => {
                if let Some(old) = self.coord.variables.remove(&name) {
                    self.unhold(&old);
                }
                reply(out, id, CoordReply::Done);
                None
            }
            CoordOp::DatasetPublish {
                name,
                item,
                replace,
            } => {
                self.dataset_publish(id, name, item, replace, out);
                None
            }
            CoordOp::DatasetGet { name } => {
                match self.coord.datasets.get(&name).cloned() {
                    Some(item) => self.deliver(id, vec![item], out),
                    None => reply(out, id, CoordReply::Missing),
                }
                None
            }
            CoordOp::DatasetList => {
                let names = self.coord.datasets.keys().cloned().collect();
                reply(out, id, CoordReply::Names(names));
                None
            }
            CoordOp::DatasetDelete { name } => {
                match self.coord.datasets.remove(&name) {
                    Some(old) => {
                        self.unhold(&old);
                        reply(out, id, CoordReply::Done);
                    }
                    None => reply(out, id, CoordReply::Missing),
                }
                None
            }
            CoordOp::Acquire {
                name,
                max_leases,
                lease,
            } => self.acquire(id, name, max_leases, lease, out),
            CoordOp::Release { name, lease } => {
                self.release(id, &name, lease, out);
                None
            }
            CoordOp::Leases { name } => {
                let n = self
                    .coord
                    .semaphores
                    .get(&name)
                    .map_or(0, |s| s.holders.len());
                reply(out, id, CoordReply::Count(n as u64));
                None
            }
            CoordOp::MultiAcquire {
                names,
                count,
                lease,
            } => self.multi_acquire(id, names, count, lease, out),
            CoordOp::MultiRelease { lease } => {
                let held = self.coord.multi.release(c, lease);
                reply(out, id, CoordReply::Flag(held));
                self.pump_multi(out);
                None
            }
            CoordOp::MultiLocked { names } => {
                let locked = names.iter().any(|n| self.coord.multi.owner.contains_key(n));
                reply(out, id, CoordReply::Flag(locked));
                None
            }
            CoordOp::EventSet { name } => {
                self.event_set(&name, out);
                reply(out, id, CoordReply::Done);
                None
            }
            CoordOp::EventClear { name } => {
                self.coord.events.entry(name).or_default().set = false;
                reply(out, id, CoordReply::Done);
                None
            }
            CoordOp::EventWait { name } => {
                let ev = self.coord.events.entry(name.clone()).or_default();
                if ev.set {
                    reply(out, id, CoordReply::Done);
                    None
                } else {
                    ev.waiters.push_back(id);
                    Some(Parked::EventWait { name })
                }
            }
            CoordOp::EventIsSet { name } => {
                let set = self.coord.events.get(&name).is_some_and(|e| e.set);
                reply(out, id, CoordReply::Flag(set));
                None
            }
            CoordOp::Subscribe { topic, sub } => {
                let s = (c, sub);
                if self.coord.subscriptions.insert(s, topic.clone()).is_none() {
                    self.coord.topics.entry(topic).or_default().push(s);
                }
                reply(out, id, CoordReply::Done);
                None
            }
            CoordOp::Unsubscribe { sub } => {
                self.unsubscribe((c, sub));
                reply(out, id, CoordReply::Done);
                None
            }
            CoordOp::Publish { topic, message } => {
                let subs = self
                    .coord
                    .topics
                    .get(&topic)
                    .map_or(&[][..], |v| v.as_slice());
                for &(to, sub) in subs {
                    out.push(Command::ToClient(
                        to,
                        SchedulerToClient::Published {
                            sub,
                            message: message.clone(),
                        },
                    ));
                }
                reply(out, id, CoordReply::Count(subs.len() as u64));
                None
            }
            CoordOp::LogEvent { topics, event } => {
                for (to, sub) in self.coord.event_log.log(&topics, &event) {
                    out.push(Command::ToClient(
                        to,
                        SchedulerToClient::Published {
                            sub,
                            message: event.clone(),
                        },
                    ));
                }
                reply(out, id, CoordReply::Done);
                None
            }
            CoordOp::GetEvents { topic } => {
                let items = self
                    .coord
                    .event_log
                    .events(&topic)
                    .into_iter()
                    .map(|value| Held {
                        value,
                        keys: Vec::new(),
                    })
                    .collect();
                reply(out, id, CoordReply::Items(items));
                None
            }
            CoordOp::EventTopics => {
                reply(out, id, CoordReply::Names(self.coord.event_log.topics()));
                None
            }
            CoordOp::SubscribeEvents { topic, sub } => {
                self.coord.event_log.subscribe(topic, (c, sub));
                reply(out, id, CoordReply::Done);
                None
            }
            CoordOp::SetMetadata { path, entries } => {
                let answer = match self.coord.metadata.set(&path, entries) {
                    Ok(()) => CoordReply::Done,
                    Err(why) => CoordReply::Invalid(why),
                };
                reply(out, id, answer);
                None
            }
            CoordOp::GetMetadata { path } => {
                let answer = match self.coord.metadata.get(&path) {
                    Some(entries) => CoordReply::Metadata(entries),
                    None => CoordReply::Missing,
                };
                reply(out, id, answer);
                None
            }
            CoordOp::FireAndForget { keys } => {
                self.fire_and_forget(&keys);
                reply(out, id, CoordReply::Done);
                None
            }
            CoordOp::WhoHas { keys } => {
                let map = self.who_has(keys);
                reply(out, id, CoordReply::Map(map));
                None
            }
            CoordOp::HasWhat => {
                let map = self.keys_by_worker(|w| &w.holds);
                reply(out, id, CoordReply::Map(map));
                None
            }
            CoordOp::Processing => {
                let map = self.keys_by_worker(|w| &w.assigned);
                reply(out, id, CoordReply::Map(map));
                None
            }
            CoordOp::TaskCall { key } => {
                let answer = self.task_call(&key);
                reply(out, id, answer);
                None
            }
            CoordOp::Replicate {
                keys,
                n,
                workers,
                branching,
            } => {
                self.replicate(id, keys, n, workers, branching, out);
                None
            }
            CoordOp::Story { keys } => {
                let entries = self.story_of(&keys);
                reply(
                    out,
                    id,
                    CoordReply::Story {
                        now: self.now,
                        entries,
                    },
                );
                None
            }
            CoordOp::Rebalance { keys, workers } => {
                self.rebalance(id, keys, workers, out);
                None
            }
            CoordOp::RetireWorkers { workers, n } => {
                self.retire_workers(id, workers, n, out);
                None
            }
            CoordOp::AdaptiveTarget { target_ms } => {
                let n = self.adaptive_target(f64::from(target_ms) / 1000.0);
                reply(out, id, CoordReply::Count(n));
                None
            }
        };
        let Some(p) = parked else { return };
        let queue = match &p {
            Parked::QueueGet { name, .. } => Some(name.clone()),
            _ => None,
        };
        self.coord.parked.insert(id, p);
        if let Some(name) = queue {
            self.pump_queue(&name, out);
        }
        if self.coord.parked.contains_key(&id) {
            self.arm_timeout(id, timeout, out);
        }
    }

    /// A parked request waits until it can be granted or its timeout ends
    /// (a timeout of 0 or less ends at once).
    fn arm_timeout(&mut self, id: WaitId, timeout: Option<f64>, out: &mut Vec<Command>) {
        let Some(t) = timeout else { return };
        if t.is_nan() || t <= 0.0 {
            if let Some(what) = self.coord.parked.remove(&id) {
                self.unpark_timed_out(id, what, out);
            }
            return;
        }
        let at = self.now + t.min(MAX_TIMEOUT);
        self.coord
            .deadlines
            .push(Reverse(((at * 1e6).ceil() as u64, id.0, id.1)));
        self.wake_at(at);
    }

    /// Answers parked requests whose deadline has passed. Called before
    /// every scheduling pass.
    pub(crate) fn expire_waits(&mut self, out: &mut Vec<Command>) {
        let due = (self.now * 1e6) as u64;
        while let Some(Reverse((at, c, req))) = self.coord.deadlines.peek().copied() {
            if at > due {
                break;
            }
            self.coord.deadlines.pop();
            if let Some(what) = self.coord.parked.remove(&(c, req)) {
                self.unpark_timed_out((c, req), what, out);
            }
        }
    }

    fn unpark_timed_out(&mut self, id: WaitId, what: Parked, out: &mut Vec<Command>) {
        // An item that could not be put goes back to nobody: let its keys go.
        if let Parked::QueuePut { item, .. } = &what {
            self.unhold(item);
        }
        self.forget_waiter(id, &what);
        reply(out, id, CoordReply::TimedOut);
    }

    /// Takes a parked request if `id` is still parked.
    pub(crate) fn take_parked(&mut self, id: WaitId) -> Option<Parked> {
        self.coord.parked.remove(&id)
    }

    /// A client left: its parked requests, leases and subscriptions go.
    pub(crate) fn coord_client_gone(&mut self, c: ClientId, out: &mut Vec<Command>) {
        let mine: Vec<WaitId> = self
            .coord
            .parked
            .keys()
            .filter(|(pc, _)| *pc == c)
            .copied()
            .collect();
        for id in mine {
            match self.coord.parked.remove(&id) {
                Some(Parked::QueuePut { item, .. }) => self.unhold(&item),
                Some(what) => self.forget_waiter(id, &what),
                None => {}
            }
        }
        let subs: Vec<WaitId> = self
            .coord
            .subscriptions
            .keys()
            .filter(|(sc, _)| *sc == c)
            .copied()
            .collect();
        for s in subs {
            self.unsubscribe(s);
        }
        self.coord.event_log.client_gone(c);
        self.release_leases_of(c, out);
    }

    fn unsubscribe(&mut self, s: WaitId) {
        if self.coord.event_log.unsubscribe(s) {
            return;
        }
        if let Some(topic) = self.coord.subscriptions.remove(&s) {
            if let Some(subs) = self.coord.topics.get_mut(&topic) {
                subs.retain(|x| *x != s);
                if subs.is_empty() {
                    self.coord.topics.remove(&topic);
                }
            }
        }
    }

    /// Checks that every key a value refers to is known, then keeps those
    /// tasks for as long as the value is held. If any is unknown nothing
    /// is held, and the reply names the unknown keys.
    pub(crate) fn hold(&mut self, item: &Held) -> Result<(), CoordReply> {
        let mut ids = Vec::with_capacity(item.keys.len());
        let mut unknown = Vec::new();
        for k in &item.keys {
            match self.id_of(k) {
                Some(id) => ids.push(id),
                None => unknown.push(k.clone()),
            }
        }
        if !unknown.is_empty() {
            return Err(CoordReply::UnknownKeys(unknown));
        }
        for id in ids {
            self.hold_id(id);
        }
        Ok(())
    }

    fn hold_id(&mut self, id: TaskId) {
        let n = self.coord.held_keys.entry(id).or_insert(0);
        *n += 1;
        if *n == 1 {
            self.want(COORD_CLIENT, id);
        }
    }

    fn unhold_id(&mut self, id: TaskId) {
        let Some(n) = self.coord.held_keys.get_mut(&id) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            self.coord.held_keys.remove(&id);
            self.unwant(COORD_CLIENT, id);
        }
    }

    /// The scheduler no longer holds `item`.
    pub(crate) fn unhold(&mut self, item: &Held) {
        for k in &item.keys {
            if let Some(id) = self.id_of(k) {
                self.unhold_id(id);
            }
        }
    }

    /// Keeps these tasks until they finish, whoever still wants them
    /// (`fire_and_forget`). Keys the scheduler does not know are skipped.
    fn fire_and_forget(&mut self, keys: &[String]) {
        for k in keys {
            let Some(id) = self.id_of(k) else { continue };
            let done = self.tasks.get(&id).is_none_or(|t| {
                matches!(
                    t.state,
                    crate::task::TaskState::Memory { .. } | crate::task::TaskState::Erred
                )
            });
            if !done && self.coord.fire_and_forget.insert(id) {
                self.hold_id(id);
            }
        }
    }

    /// Task `id` finished or failed: a fire-and-forget hold on it ends.
    /// Called from `transition`; cheap when nothing is held that way.
    pub(crate) fn forget_fired(&mut self, id: TaskId) {
        if !self.coord.fire_and_forget.is_empty() && self.coord.fire_and_forget.remove(&id) {
            self.unhold_id(id);
        }
    }

    /// Answers `id` with values: its client wants their keys from now on.
    pub(crate) fn deliver(&mut self, id: WaitId, items: Vec<Held>, out: &mut Vec<Command>) {
        self.adopt(id.0, &items);
        reply(out, id, CoordReply::Items(items));
    }

    /// Client `c` wants the keys the values refer to.
    pub(crate) fn adopt(&mut self, c: ClientId, items: &[Held]) {
        for k in items.iter().flat_map(|item| &item.keys) {
            if let Some(t) = self.id_of(k) {
                self.want(c, t);
            }
        }
    }

    fn who_has(&self, keys: Vec<String>) -> Vec<(String, Vec<String>)> {
        if keys.is_empty() {
            let mut all: Vec<(String, Vec<String>)> = self
                .tasks
                .values()
                .filter_map(|t| match &t.state {
                    crate::task::TaskState::Memory { holders } => {
                        Some((t.key().to_string(), self.addresses(holders)))
                    }
                    _ => None,
                })
                .collect();
            all.sort();
            return all;
        }
        keys.into_iter()
            .map(|k| {
                let holders = self.addresses(&self.holders_of(&k));
                (k, holders)
            })
            .collect()
    }

    /// For each worker (by data address), the keys of the tasks in one of
    /// its sets (`holds` or `assigned`), sorted.
    fn keys_by_worker(
        &self,
        set: impl Fn(&crate::worker::Worker) -> &rustc_hash::FxHashSet<TaskId>,
    ) -> Vec<(String, Vec<String>)> {
        self.workers
            .values()
            .map(|w| {
                let mut keys: Vec<String> = set(w)
                    .iter()
                    .filter_map(|id| self.tasks.get(id).map(|t| t.key().to_string()))
                    .collect();
                keys.sort();
                (w.info.data_address.clone(), keys)
            })
            .collect()
    }
}

/// The longest timeout honoured, in seconds (a year); longer waits are
/// capped to it.
const MAX_TIMEOUT: f64 = 365.0 * 86_400.0;

/// Queues the reply to request `id`.
pub(crate) fn reply(out: &mut Vec<Command>, id: WaitId, reply: CoordReply) {
    out.push(Command::ToClient(
        id.0,
        SchedulerToClient::CoordReply { req: id.1, reply },
    ));
}

impl Core {
    /// What task `key` runs (see `CoordOp::TaskCall`).
    fn task_call(&self, key: &str) -> CoordReply {
        let Some(t) = self.id_of(key).and_then(|id| self.tasks.get(&id)) else {
            return CoordReply::Missing;
        };
        if t.func == shoal_proto::LITERAL_FUNC {
            return CoordReply::Invalid(format!("{key} is data, not the result of a task"));
        }
        let Some(def) = self.functions.get(t.func) else {
            return CoordReply::Missing;
        };
        let frame = |b: bytes::Bytes| Held {
            value: shoal_proto::Payload { frames: vec![b] },
            keys: Vec::new(),
        };
        let deps = t
            .deps()
            .map(|d| bytes::Bytes::from(self.tasks[&d].key().to_string()))
            .collect();
        CoordReply::Items(vec![
            frame(def.bytes.clone()),
            Held {
                value: t.payload(),
                keys: Vec::new(),
            },
            Held {
                value: shoal_proto::Payload { frames: deps },
                keys: Vec::new(),
            },
        ])
    }
}
