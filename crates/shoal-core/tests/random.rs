//! The core driven by random event sequences, valid and stale alike:
//! duplicate, late and superseded worker reports, steals racing finishes,
//! workers lost with retries, clients disowning keys while results arrive,
//! graphs in parts, copies fetched by workers and `replicate` rounds
//! answered late or never. The test environment checks every invariant after each
//! event; here we also check that the core never loses track of work: once
//! the workers report everything they were given, every wanted key ends up
//! in memory or erred.

mod env;

use env::{task, Env, TaskBuilder};
use proptest::prelude::*;
use shoal_core::{Command, Event, TaskStateKind};
use shoal_proto::{
    ClientToScheduler, Payload, SchedulerToWorker, TaskError, TaskId, WorkerId, WorkerToScheduler,
};

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
    /// Retire this many workers (the ones holding least).
    Retire(u8),
    /// A worker answers one `Fetch` it was sent (with the copy, or without).
    AnswerFetch(u16, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u8..=4, any::<u32>(), any::<u8>(), 0u8..3, any::<bool>()).prop_map(
            |(n, deps, unwanted, retries, in_parts)| Op::Submit { n, deps, unwanted, retries, in_parts }
        ),
        1 => any::<u16>().prop_map(Op::Resubmit),
        1 => any::<u16>().prop_map(Op::Disown),
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
        1 => (1u8..3).prop_map(Op::Retire),
        2 => (any::<u16>(), any::<bool>()).prop_map(|(p, ok)| Op::AnswerFetch(p, ok)),
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
                Command::ToClient(1, shoal_proto::SchedulerToClient::CoordReply { .. }) => {
                    self.replied += 1;
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
                if unwanted & (1 << i) != 0 {
                    b = b.unwanted();
                }
                batch.push(b);
                seen.keys.push(key);
            }
            if in_parts && batch.len() > 1 {
                let rest = batch.split_off(batch.len() / 2);
                let first = batch.into_iter().map(TaskBuilder::build).collect();
                env.send(1, ClientToScheduler::SubmitPart(first));
                env.submit(rest);
            } else {
                env.submit(batch);
            }
        }
        Op::Resubmit(pick) => {
            if let Some(k) = seen.key(pick) {
                env.submit(vec![task(&k)]);
            }
        }
        Op::Disown(pick) => {
            if let Some(k) = seen.key(pick) {
                env.disown(&[k.as_str()]);
            }
        }
        Op::AddWorker(n) => {
            let w = env.worker(n as u32);
            seen.workers.push(w);
        }
        Op::LoseWorker(pick) => {
            if !seen.workers.is_empty() {
                let w = seen.workers.remove(pick as usize % seen.workers.len());
                env.lose(w);
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
                }
            }
        }
    }
    seen.absorb(env);
    close_retired(env, seen);
}

/// Workers told to close disconnect, as real ones do.
fn close_retired(env: &mut Env, seen: &mut Seen) -> bool {
    let mut any = false;
    while let Some(w) = seen.shutdowns.pop() {
        if let Some(i) = seen.workers.iter().position(|x| *x == w) {
            seen.workers.remove(i);
            env.lose(w);
            seen.absorb(env);
            any = true;
        }
    }
    if any && seen.workers.is_empty() {
        let w = env.worker(2);
        seen.workers.push(w);
        seen.absorb(env);
    }
    any
}

/// Plays well-behaved workers until nothing is left to do: every live
/// assignment is reported finished (or given back when asked).
fn settle(env: &mut Env, seen: &mut Seen) {
    if seen.workers.is_empty() {
        let w = env.worker(2);
        seen.workers.push(w);
    }
    // Lift the limit: well-behaved workers then finish everything.
    env.set_limit("L", None, None, None);
    seen.absorb(env);
    for _ in 0..10_000 {
        // Let every retry's wait run out.
        seen.clock += 1_000.0;
        env.advance(seen.clock);
        seen.absorb(env);
        let mut progressed = close_retired(env, seen);
        while let Some((w, _ids)) = seen.steals.pop() {
            from_worker(env, w, WorkerToScheduler::GaveBack { ids: vec![] });
            progressed = true;
        }
        while let Some((w, key)) = seen.fetches.pop() {
            from_worker(env, w, fetch_answer(key, true));
            progressed = true;
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
        if !progressed {
            break;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_event_sequences_keep_the_core_consistent(ops in prop::collection::vec(op(), 1..80)) {
        let mut env = Env::new();
        let mut seen = Seen::default();
        let w = env.worker(1);
        seen.workers.push(w);
        for op in ops {
            apply(&mut env, &mut seen, op);
        }
        settle(&mut env, &mut seen);
        // Whatever client 1 still wants has come to an end.
        for k in &seen.keys {
            if let Some(state) = env.state(k) {
                prop_assert!(
                    !matches!(state, TaskStateKind::Assigned(_) | TaskStateKind::Ready),
                    "{k} is stuck in {state:?}"
                );
            }
        }
        // Every replicate request was answered once its fetches were.
        prop_assert_eq!(seen.replied as u64, seen.next_req);
    }
}
