//! The core driven by random event sequences, valid and stale alike:
//! duplicate, late and superseded worker reports, steals racing finishes,
//! workers lost, paused, leaving or falling silent (`worker_ttl`) with
//! retries, clients disowning keys while results arrive and other clients
//! leaving, graphs in parts, priorities, resources and worker restrictions,
//! locks held by clients that leave, copies fetched by workers and
//! `replicate` rounds answered late or never. The test environment checks
//! every invariant after each event; here we also check that the core never
//! loses track of work: once the workers report everything they were given,
//! every key client 1 still wants is in memory or erred, and client 1 was
//! told so (its last word about the key says the same).

mod env;

use std::collections::{BTreeMap, BTreeSet};

use env::{submission, task, Env, TaskBuilder};
use proptest::prelude::*;
use shoal_core::{Command, CoreConfig, Event, TaskStateKind};
use shoal_proto::{
    ClientToScheduler, CoordOp, Payload, SchedulerToClient, SchedulerToWorker, TaskError, TaskId,
    WorkerId, WorkerToScheduler,
};

/// Seconds of silence after which the core declares a worker dead.
const TTL: f64 = 5.0;

#[derive(Debug, Clone)]
enum Op {
    /// Up to four new tasks; each depends on earlier keys picked by `deps`.
    Submit {
        n: u8,
        deps: u32,
        unwanted: u8,
        retries: u8,
        in_parts: bool,
    },
    /// Ask again for a key submitted before (possibly forgotten since).
    Resubmit(u16),
    Disown(u16),
    /// Client 1 retries a key (erred or not).
    Retry(u16),
    /// Client 1 cancels a key (and what only it wants downstream).
    Cancel(u16),
    AddWorker(u8),
    LoseWorker(u8),
    /// Reports about a task some worker was once sent (possibly stale).
    Start(u16),
    Finish(u16),
    Fail(u16),
    Missing(u16, u16),
    /// A worker answers a steal request with some of the asked tasks.
    AnswerSteal(u8, u8),
    /// A second client connects, asks for a key, and maybe leaves.
    OtherClient(u16, bool),
    /// A worker reports how many tasks it can run at once.
    Capacity(u8, u8),
    /// Time passes (retries that waited become ready).
    Advance(u8),
    /// The limit "L" is set: a concurrency (0..4, or none) and maybe a rate.
    SetLimit(u8, bool),
    /// A worker reports a copy of a key it fetched (or could not fetch).
    Fetched(u8, u16, bool),
    /// Client 1 asks for copies of a key: `n` (0: all) and a branching factor.
    Replicate(u16, u8, u8),
    /// Client 1 asks to rebalance every result (true) or one key.
    Rebalance(u16, bool),
    /// Retire this many workers (the ones holding least).
    Retire(u8),
    /// A worker answers one `Fetch` it was sent (with the copy, or without).
    AnswerFetch(u16, bool),
    /// A worker pauses (memory is short) or resumes.
    Pause(u8, bool),
    /// A worker says it leaves (to restart), then its connection closes.
    Leave(u8),
    /// Every worker but one (picked) reports its health: the silent one
    /// may be declared dead when time passes.
    Heartbeat(u8),
    /// A worker offering the resource "GPU" joins.
    AddGpuWorker,
    /// Client 1 (true) or client 2 asks for the lock "lock".
    Acquire(bool),
    /// Client 1 (true) or client 2 returns a lock lease it holds.
    ReleaseLock(bool, u8),
    /// A third client submits tasks on client 1's keys, then leaves.
    ThirdClient(u16, bool),
    /// Client 3 subscribes to the event-log topic "log" (and may leave);
    /// client 1 logs an event there.
    LogEvent(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u8..=4, any::<u32>(), any::<u8>(), 0u8..3, any::<bool>()).prop_map(
            |(n, deps, unwanted, retries, in_parts)| Op::Submit { n, deps, unwanted, retries, in_parts }
        ),
        1 => any::<u16>().prop_map(Op::Resubmit),
        1 => any::<u16>().prop_map(Op::Disown),
        1 => any::<u16>().prop_map(Op::Retry),
        1 => any::<u16>().prop_map(Op::Cancel),
        1 => (1u8..=3).prop_map(Op::AddWorker),
        1 => any::<u8>().prop_map(Op::LoseWorker),
        3 => any::<u16>().prop_map(Op::Start),
        5 => any::<u16>().prop_map(Op::Finish),
        1 => any::<u16>().prop_map(Op::Fail),
        1 => (any::<u16>(), any::<u16>()).prop_map(|(a, b)| Op::Missing(a, b)),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Op::AnswerSteal(a, b)),
        1 => (any::<u16>(), any::<bool>()).prop_map(|(a, b)| Op::OtherClient(a, b)),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Op::Capacity(a, b)),
        1 => any::<u8>().prop_map(Op::Advance),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(c, r)| Op::SetLimit(c, r)),
        1 => (any::<u8>(), any::<u16>(), any::<bool>()).prop_map(|(w, k, ok)| Op::Fetched(w, k, ok)),
        1 => (any::<u16>(), 0u8..4, 0u8..3).prop_map(|(k, n, b)| Op::Replicate(k, n, b)),
        1 => (any::<u16>(), any::<bool>()).prop_map(|(k, all)| Op::Rebalance(k, all)),
        1 => (1u8..3).prop_map(Op::Retire),
        2 => (any::<u16>(), any::<bool>()).prop_map(|(p, ok)| Op::AnswerFetch(p, ok)),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(w, p)| Op::Pause(w, p)),
        1 => any::<u8>().prop_map(Op::Leave),
        2 => any::<u8>().prop_map(Op::Heartbeat),
        1 => Just(Op::AddGpuWorker),
        1 => any::<bool>().prop_map(Op::Acquire),
        1 => (any::<bool>(), any::<u8>()).prop_map(|(c, p)| Op::ReleaseLock(c, p)),
        1 => (any::<u16>(), any::<bool>()).prop_map(|(k, l)| Op::ThirdClient(k, l)),
        1 => any::<bool>().prop_map(Op::LogEvent),
    ]
}

/// What the harness remembers of the conversation.
#[derive(Default)]
struct Seen {
    keys: Vec<String>,
    workers: Vec<WorkerId>,
    /// Every task ever sent to a worker: (worker, id, key, dependency keys).
    computes: Vec<(WorkerId, TaskId, String, Vec<String>)>,
    /// Steal requests not answered yet.
    steals: Vec<(WorkerId, Vec<TaskId>)>,
    /// `Fetch` requests not answered yet: (worker, key).
    fetches: Vec<(WorkerId, String)>,
    next_req: u64,
    /// Workers told to close (retired), which then disconnect.
    shutdowns: Vec<WorkerId>,
    /// Requests of client 1 answered.
    replied: usize,
    next_key: usize,
    clock: f64,
    /// Keys client 1 wants (submitted wanted and not disowned since).
    wanted: BTreeSet<String>,
    /// Client 1's last word about each key: in memory (true) or erred
    /// (false); a key reported lost has no word.
    told: BTreeMap<String, bool>,
    /// Strict worker restrictions, by key: only these worker names.
    restricted: BTreeMap<String, Vec<String>>,
    /// Each submitted key's inputs.
    inputs: BTreeMap<String, Vec<String>>,
    /// Lock leases asked for, by (client, request id): the lease.
    asking: BTreeMap<(u64, u64), u64>,
    /// Lock leases held, per client.
    held: BTreeMap<u64, Vec<u64>>,
    next_lease: u64,
    /// Worker names of the workers alive (by id).
    names: BTreeMap<WorkerId, String>,
}

impl Seen {
    fn absorb(&mut self, env: &mut Env) {
        for c in env.take() {
            match c {
                Command::ToWorker(w, SchedulerToWorker::Compute(t)) => {
                    let deps = t.deps.into_iter().map(|d| d.key).collect();
                    self.computes.push((w, t.id, t.key, deps));
                }
                Command::ToWorker(w, SchedulerToWorker::Steal { ids }) => {
                    self.steals.push((w, ids));
                }
                Command::ToWorker(w, SchedulerToWorker::Fetch { deps }) => {
                    self.fetches.extend(deps.into_iter().map(|d| (w, d.key)));
                }
                Command::ToWorker(w, SchedulerToWorker::Shutdown) => self.shutdowns.push(w),
                Command::ToClient(c, SchedulerToClient::CoordReply { req, .. }) => {
                    if c == 1 {
                        self.replied += 1;
                    }
                    if let Some(lease) = self.asking.remove(&(c, req)) {
                        self.held.entry(c).or_default().push(lease);
                    }
                }
                Command::ToClient(1, SchedulerToClient::KeyMemory { key, .. }) => {
                    self.told.insert(key, true);
                }
                Command::ToClient(1, SchedulerToClient::KeyErred { key, .. }) => {
                    self.told.insert(key, false);
                }
                Command::ToClient(1, SchedulerToClient::KeyLost { key }) => {
                    self.told.remove(&key);
                }
                Command::ToClient(1, SchedulerToClient::KeyCancelled { key }) => {
                    self.wanted.remove(&key);
                }
                _ => {}
            }
        }
    }

    fn compute(&self, pick: u16) -> Option<(WorkerId, TaskId, String, Vec<String>)> {
        if self.computes.is_empty() {
            return None;
        }
        // Recent assignments are the likely ones to be live; old ones stale.
        let n = self.computes.len();
        let i = if pick.is_multiple_of(4) {
            pick as usize % n
        } else {
            n - 1 - (pick as usize % n.min(8))
        };
        Some(self.computes[i].clone())
    }

    fn key(&self, pick: u16) -> Option<String> {
        (!self.keys.is_empty()).then(|| self.keys[pick as usize % self.keys.len()].clone())
    }
}

fn raised() -> TaskError {
    TaskError::Raised {
        exception: Payload::default(),
        type_name: "ValueError".into(),
        message: "boom".into(),
        traceback: String::new(),
    }
}

/// A worker's report that task `id` finished with a small result.
fn finished(id: TaskId) -> WorkerToScheduler {
    WorkerToScheduler::TaskFinished {
        id,
        nbytes: 8,
        type_name: "int".into(),
        inline: None,
        duration: 0.001,
        timing: None,
    }
}

/// A worker's report that it now holds a copy of `key` (or could not get one).
fn fetch_answer(key: String, ok: bool) -> WorkerToScheduler {
    let (keys, missing) = if ok {
        (vec![key], vec![])
    } else {
        (vec![], vec![key])
    };
    WorkerToScheduler::Fetched { keys, missing }
}

fn from_worker(env: &mut Env, w: WorkerId, msg: WorkerToScheduler) {
    env.event(Event::FromWorker(w, msg));
}

fn apply(env: &mut Env, seen: &mut Seen, op: Op) {
    match op {
        Op::Submit {
            n,
            deps,
            unwanted,
            retries,
            in_parts,
        } => {
            let mut batch: Vec<TaskBuilder> = Vec::new();
            let mut bits = deps;
            for i in 0..n {
                let key = format!("k{}", seen.next_key);
                seen.next_key += 1;
                let mut dep_keys: Vec<String> = Vec::new();
                for _ in 0..2 {
                    if bits & 1 == 1 && !seen.keys.is_empty() {
                        let k = seen.keys[(bits >> 1) as usize % seen.keys.len()].clone();
                        if !dep_keys.contains(&k) {
                            dep_keys.push(k);
                        }
                    }
                    bits = bits.rotate_right(5);
                }
                let refs: Vec<&str> = dep_keys.iter().map(String::as_str).collect();
                let mut b = task(&key).deps(&refs).retries(retries as u32);
                if i % 2 == 1 {
                    b = b.backoff(0.5, 2.0);
                }
                if (deps >> i) & 4 != 0 {
                    b = b.limits(&["L"]);
                }
                b = b.priority(i32::from(unwanted >> 4) - 8);
                let gpu = (deps >> (8 + i)) & 7 == 0;
                if gpu {
                    b = b.resources(&[("GPU", 1.0)]);
                }
                // (Never both: a worker named may lack the GPU.)
                if !gpu && (deps >> (12 + i)) & 7 == 0 && !seen.names.is_empty() {
                    // A restriction to one live worker, strict or loose.
                    let names: Vec<&String> = seen.names.values().collect();
                    let name = names[(deps >> 20) as usize % names.len()].clone();
                    b = b.on(&[name.as_str()]);
                    if (deps >> 24) & 1 == 0 {
                        b = b.loose();
                    } else {
                        seen.restricted.insert(key.clone(), vec![name]);
                    }
                }
                if unwanted & (1 << i) != 0 {
                    b = b.unwanted();
                } else {
                    seen.wanted.insert(key.clone());
                }
                seen.inputs.insert(key.clone(), dep_keys.clone());
                batch.push(b);
                seen.keys.push(key);
            }
            if in_parts && batch.len() > 1 {
                let rest = batch.split_off(batch.len() / 2);
                env.send(1, ClientToScheduler::SubmitPart(submission(batch)));
                env.submit(rest);
            } else {
                env.submit(batch);
            }
        }
        Op::Resubmit(pick) => {
            if let Some(k) = seen.key(pick) {
                // A key forgotten since comes back without its restriction.
                if env.state(&k).is_none() {
                    seen.restricted.remove(&k);
                    seen.inputs.remove(&k);
                }
                env.submit(vec![task(&k)]);
                seen.wanted.insert(k);
            }
        }
        Op::Disown(pick) => {
            if let Some(k) = seen.key(pick) {
                env.disown(&[k.as_str()]);
                seen.wanted.remove(&k);
            }
        }
        Op::Cancel(pick) => {
            if let Some(k) = seen.key(pick) {
                seen.wanted.remove(&k);
                env.send(1, ClientToScheduler::Cancel(vec![k]));
            }
        }
        Op::Retry(pick) => {
            if let Some(k) = seen.key(pick) {
                env.send(1, ClientToScheduler::Retry(vec![k]));
            }
        }
        Op::AddWorker(n) => {
            let w = env.worker(n as u32);
            seen.join(w);
        }
        Op::AddGpuWorker => {
            let w = env.worker_with(1, &[("GPU", 1.0)]);
            seen.join(w);
        }
        Op::LoseWorker(pick) => {
            if let Some(w) = seen.leave(pick) {
                env.lose(w);
            }
        }
        Op::Pause(pick, paused) => {
            if !seen.workers.is_empty() {
                let w = seen.workers[pick as usize % seen.workers.len()];
                from_worker(env, w, WorkerToScheduler::Paused { paused });
            }
        }
        Op::Leave(pick) => {
            if let Some(w) = seen.leave(pick) {
                let reason = "memory".to_string();
                from_worker(env, w, WorkerToScheduler::Leaving { reason });
                seen.absorb(env);
                env.lose(w);
            }
        }
        Op::Heartbeat(silent) => {
            let silent = (!seen.workers.is_empty())
                .then(|| seen.workers[silent as usize % seen.workers.len()]);
            heartbeat(env, seen, silent);
        }
        Op::Acquire(first) => {
            let c = if first { 1 } else { 2 };
            if c == 2 {
                env.event(Event::ClientConnected(2));
            }
            seen.next_req += u64::from(c == 1);
            let req = if c == 1 {
                seen.next_req
            } else {
                seen.next_lease + 1_000
            };
            seen.next_lease += 1;
            let lease = seen.next_lease;
            seen.asking.insert((c, req), lease);
            let op = CoordOp::Acquire {
                name: "lock".into(),
                max_leases: 1,
                lease,
            };
            env.coord(c, req, op);
        }
        Op::ReleaseLock(first, pick) => {
            let c = if first { 1 } else { 2 };
            let held = seen.held.entry(c).or_default();
            if !held.is_empty() {
                let lease = held.remove(pick as usize % held.len());
                seen.next_req += u64::from(c == 1);
                let req = if c == 1 { seen.next_req } else { 0 };
                let op = CoordOp::Release {
                    name: "lock".into(),
                    lease,
                };
                env.coord(c, req, op);
            }
        }
        Op::ThirdClient(pick, leave) => {
            if let Some(k) = seen.key(pick) {
                env.event(Event::ClientConnected(3));
                let key = format!("third-{}", seen.next_key);
                seen.next_key += 1;
                env.submit_as(3, vec![task(&key).deps(&[k.as_str()])]);
                if leave {
                    env.event(Event::ClientDisconnected(3));
                }
            }
        }
        Op::LogEvent(leave) => {
            env.event(Event::ClientConnected(3));
            let topic = "log".to_string();
            env.coord(3, 0, CoordOp::SubscribeEvents { topic, sub: 1 });
            seen.next_req += 1;
            let op = CoordOp::LogEvent {
                topics: vec!["log".into()],
                event: Default::default(),
            };
            env.coord(1, seen.next_req, op);
            if leave {
                env.event(Event::ClientDisconnected(3));
            }
        }
        Op::Start(pick) => {
            if let Some((w, id, _, _)) = seen.compute(pick) {
                from_worker(env, w, WorkerToScheduler::TaskStarted { ids: vec![id] });
            }
        }
        Op::Finish(pick) => {
            if let Some((w, id, _, _)) = seen.compute(pick) {
                from_worker(env, w, finished(id));
            }
        }
        Op::Fail(pick) => {
            if let Some((w, id, _, _)) = seen.compute(pick) {
                let error = raised();
                from_worker(
                    env,
                    w,
                    WorkerToScheduler::TaskFailed {
                        id,
                        error,
                        retryable: pick % 3 != 0,
                        timing: None,
                    },
                );
            }
        }
        Op::Missing(pick, dep) => {
            if let Some((w, id, _, deps)) = seen.compute(pick) {
                let keys = if deps.is_empty() {
                    vec![]
                } else {
                    vec![deps[dep as usize % deps.len()].clone()]
                };
                from_worker(env, w, WorkerToScheduler::MissingDeps { id, keys });
            }
        }
        Op::AnswerSteal(pick, mask) => {
            if !seen.steals.is_empty() {
                let (w, ids) = seen.steals.remove(pick as usize % seen.steals.len());
                let given = ids
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << (i % 8)) != 0)
                    .map(|(_, id)| id)
                    .collect();
                from_worker(env, w, WorkerToScheduler::GaveBack { ids: given });
            }
        }
        Op::SetLimit(c, rated) => {
            let concurrency = (c % 5 != 4).then_some(u32::from(c % 5));
            let rate = rated.then_some(2.0);
            env.set_limit("L", concurrency, rate, Some(2.0));
        }
        Op::Advance(tenths) => {
            seen.clock += f64::from(tenths) / 10.0;
            env.advance(seen.clock);
        }
        Op::Capacity(pick, slots) => {
            if !seen.workers.is_empty() {
                let w = seen.workers[pick as usize % seen.workers.len()];
                env.capacity(w, slots as u32 % 20);
            }
        }
        Op::Fetched(pick, key, ok) => {
            if let (Some(k), false) = (seen.key(key), seen.workers.is_empty()) {
                let w = seen.workers[pick as usize % seen.workers.len()];
                from_worker(env, w, fetch_answer(k, ok));
            }
        }
        Op::Retire(n) => {
            seen.next_req += 1;
            let op = shoal_proto::CoordOp::RetireWorkers {
                workers: vec![],
                n: u32::from(n),
            };
            env.coord(1, seen.next_req, op);
        }
        Op::Replicate(key, n, branching) => {
            if let Some(k) = seen.key(key) {
                seen.next_req += 1;
                let op = shoal_proto::CoordOp::Replicate {
                    keys: vec![k],
                    n: u32::from(n),
                    workers: vec![],
                    branching: u32::from(branching),
                };
                env.coord(1, seen.next_req, op);
            }
        }
        Op::Rebalance(key, all) => {
            let keys = if all {
                Some(vec![])
            } else {
                seen.key(key).map(|k| vec![k])
            };
            if let Some(keys) = keys {
                seen.next_req += 1;
                let op = shoal_proto::CoordOp::Rebalance {
                    keys,
                    workers: vec![],
                };
                env.coord(1, seen.next_req, op);
            }
        }
        Op::AnswerFetch(pick, ok) => {
            if !seen.fetches.is_empty() {
                let (w, k) = seen.fetches.remove(pick as usize % seen.fetches.len());
                from_worker(env, w, fetch_answer(k, ok));
            }
        }
        Op::OtherClient(pick, leave) => {
            if let Some(k) = seen.key(pick) {
                env.event(Event::ClientConnected(2));
                env.submit_as(2, vec![task(&k)]);
                if leave {
                    env.event(Event::ClientDisconnected(2));
                    // Its leases went with it; what it asked for is void.
                    seen.held.remove(&2);
                    seen.asking.retain(|(c, _), _| *c != 2);
                }
            }
        }
    }
    seen.absorb(env);
    close_retired(env, seen);
}

impl Seen {
    fn join(&mut self, w: WorkerId) {
        self.workers.push(w);
        self.names.insert(w, format!("w{w}"));
    }

    /// Removes a picked worker from the live ones.
    fn leave(&mut self, pick: u8) -> Option<WorkerId> {
        if self.workers.is_empty() {
            return None;
        }
        let w = self.workers.remove(pick as usize % self.workers.len());
        self.names.remove(&w);
        Some(w)
    }
}

/// Every live worker but `silent` reports its health now.
fn heartbeat(env: &mut Env, seen: &mut Seen, silent: Option<WorkerId>) {
    for w in seen.workers.clone() {
        if Some(w) != silent {
            let metrics = shoal_proto::WorkerMetrics::default();
            from_worker(env, w, WorkerToScheduler::Metrics(metrics));
        }
    }
}

/// Workers told to close (retired, or declared dead after a silence)
/// disconnect, as real ones do; a lost worker's connection closing twice is
/// fine too.
fn close_retired(env: &mut Env, seen: &mut Seen) -> bool {
    let mut any = false;
    while let Some(w) = seen.shutdowns.pop() {
        if let Some(i) = seen.workers.iter().position(|x| *x == w) {
            seen.workers.remove(i);
            seen.names.remove(&w);
            env.lose(w);
            seen.absorb(env);
            any = true;
        }
    }
    if any && seen.workers.is_empty() {
        let w = env.worker(2);
        seen.join(w);
        seen.absorb(env);
    }
    any
}

/// Plays well-behaved workers and clients until nothing is left to do:
/// every live assignment is reported finished (or given back when asked),
/// every fetch answered, client 2 leaves and client 1 returns its leases.
fn settle(env: &mut Env, seen: &mut Seen) {
    // Someone to run tasks needing the GPU, and anything else.
    let w = env.worker_with(2, &[("GPU", 1.0)]);
    seen.join(w);
    // Lift the limit: well-behaved workers then finish everything.
    env.set_limit("L", None, None, None);
    env.event(Event::ClientDisconnected(2));
    seen.held.remove(&2);
    seen.asking.retain(|(c, _), _| *c != 2);
    seen.absorb(env);
    let mut idle = 0;
    for _ in 0..10_000 {
        // Time passes for retries' waits and limits' rates, never long
        // enough for a worker that reports its health to seem silent.
        seen.clock += TTL / 2.0;
        heartbeat(env, seen, None);
        env.advance(seen.clock);
        seen.absorb(env);
        let mut progressed = close_retired(env, seen);
        for w in seen.workers.clone() {
            from_worker(env, w, WorkerToScheduler::Paused { paused: false });
            // The threads of cancelled tasks are free again by now.
            from_worker(env, w, WorkerToScheduler::Capacity { slots: 1 });
        }
        while let Some((w, _ids)) = seen.steals.pop() {
            from_worker(env, w, WorkerToScheduler::GaveBack { ids: vec![] });
            progressed = true;
        }
        while let Some((w, key)) = seen.fetches.pop() {
            from_worker(env, w, fetch_answer(key, true));
            progressed = true;
        }
        if let Some(leases) = seen.held.remove(&1) {
            for lease in leases {
                seen.next_req += 1;
                let op = CoordOp::Release {
                    name: "lock".into(),
                    lease,
                };
                env.coord(1, seen.next_req, op);
                progressed = true;
            }
        }
        let live: Vec<(WorkerId, TaskId, String)> = seen
            .computes
            .iter()
            .filter(|(w, _, key, _)| env.state(key) == Some(TaskStateKind::Assigned(*w)))
            .map(|(w, id, key, _)| (*w, *id, key.clone()))
            .collect();
        for (w, id, key) in live {
            if env.state(&key) != Some(TaskStateKind::Assigned(w)) {
                continue;
            }
            from_worker(env, w, finished(id));
            progressed = true;
        }
        seen.absorb(env);
        // Waits (retries up to 2 s, a rate of 2 a second) end within a few
        // rounds of TTL / 2 seconds.
        idle = if progressed { 0 } else { idle + 1 };
        if idle > 4 {
            break;
        }
    }
}

/// A strict restriction none of whose workers is alive keeps its task
/// waiting for such a worker, as in Dask ("no-worker"), and the tasks that
/// need its result with it.
fn waits_for_a_gone_worker(seen: &Seen, key: &str) -> bool {
    let gone = seen
        .restricted
        .get(key)
        .is_some_and(|names| !names.iter().any(|n| seen.names.values().any(|m| m == n)));
    gone || seen
        .inputs
        .get(key)
        .is_some_and(|deps| deps.iter().any(|d| waits_for_a_gone_worker(seen, d)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_event_sequences_keep_the_core_consistent(ops in prop::collection::vec(op(), 1..80)) {
        // The client here never says it is there: removing silent
        // clients (tested in coord.rs) would end every sequence with it.
        let mut env = Env::with_config(CoreConfig {
            worker_ttl: Some(TTL),
            client_timeout: None,
            ..CoreConfig::default()
        });
        let mut seen = Seen::default();
        let w = env.worker(1);
        seen.join(w);
        for op in ops {
            apply(&mut env, &mut seen, op);
        }
        settle(&mut env, &mut seen);
        // Every key client 1 still wants came to an end, and it was told.
        for k in &seen.wanted {
            if waits_for_a_gone_worker(&seen, k) {
                continue;
            }
            let state = env.state(k);
            let told = seen.told.get(k);
            match state {
                Some(TaskStateKind::Memory) => prop_assert_eq!(told, Some(&true), "{} in memory", k),
                Some(TaskStateKind::Erred) => prop_assert_eq!(told, Some(&false), "{} erred", k),
                other => prop_assert!(false, "{k}, wanted, ends {other:?}"),
            }
        }
        // Every request of client 1 was answered (fetches and leases too).
        prop_assert_eq!(seen.replied as u64, seen.next_req);
    }
}
