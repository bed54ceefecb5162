//! A test environment for the scheduler core: builders for tasks and workers,
//! and helpers that play the part of clients and workers.
#![allow(dead_code)]

use bytes::Bytes;
use shoal_core::{Command, Core, CoreConfig, Event, TaskStateKind};
use shoal_proto::*;

pub const FUNC: FuncHash = 42;

/// A task under construction: its spec and its options.
pub struct TaskBuilder(TaskSpec, TaskOptions);

pub fn task(key: &str) -> TaskBuilder {
    TaskBuilder(
        TaskSpec {
            key: key.to_string(),
            func: FUNC,
            args: Payload::single(Bytes::from(key.as_bytes().to_vec())),
            deps: vec![],
            wanted: true,
            options: 0,
        },
        TaskOptions::default(),
    )
}

/// One submission of these tasks, each with options of its own.
pub fn submission(tasks: Vec<TaskBuilder>) -> Submission {
    let mut sub = Submission::default();
    for (i, TaskBuilder(mut spec, opts)) in tasks.into_iter().enumerate() {
        spec.options = i as u32;
        sub.tasks.push(spec);
        sub.options.push(opts);
    }
    sub
}

impl TaskBuilder {
    pub fn deps(mut self, deps: &[&str]) -> Self {
        self.0.deps = deps.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn unwanted(mut self) -> Self {
        self.0.wanted = false;
        self
    }
    pub fn wanted(mut self) -> Self {
        self.0.wanted = true;
        self
    }
    pub fn priority(mut self, p: i32) -> Self {
        self.1.priority = p;
        self
    }
    pub fn retries(mut self, r: u32) -> Self {
        self.1.retries = r;
        self
    }
    /// Retries wait `first` seconds, doubling up to `most`.
    pub fn backoff(mut self, first: f64, most: f64) -> Self {
        self.1.retry_delay = first;
        self.1.retry_max_delay = most;
        self
    }
    /// Counts against these limits.
    pub fn limits(mut self, names: &[&str]) -> Self {
        self.1.limits = names.iter().map(|s| s.to_string()).collect();
        self
    }
    /// Needs these resources on its worker.
    pub fn resources(mut self, needs: &[(&str, f64)]) -> Self {
        self.1.resources = needs.iter().map(|(n, v)| (n.to_string(), *v)).collect();
        self
    }
    /// Its worker restrictions are a preference (`allow_other_workers`).
    pub fn loose(mut self) -> Self {
        self.1.loose = true;
        self
    }
    pub fn on(mut self, workers: &[&str]) -> Self {
        self.1.workers = workers.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn func(mut self, f: FuncHash) -> Self {
        self.0.func = f;
        self
    }
    pub fn clone_key(&self) -> String {
        self.0.key.clone()
    }
    pub fn from_spec(spec: TaskSpec) -> Self {
        TaskBuilder(spec, TaskOptions::default())
    }
}

/// The core plus everything it said so far.
pub struct Env {
    pub core: Core,
    pub out: Vec<Command>,
    next_worker: WorkerId,
}

impl Env {
    /// A core that never declares silent workers dead nor removes silent
    /// clients (the clock here jumps freely); tests of silence set
    /// `worker_ttl` and `client_timeout`.
    pub fn new() -> Self {
        Env::with_config(CoreConfig {
            worker_ttl: None,
            client_timeout: None,
            ..CoreConfig::default()
        })
    }

    pub fn with_config(config: CoreConfig) -> Self {
        let mut env = Env {
            core: Core::new(config),
            out: vec![],
            next_worker: 1,
        };
        env.event(Event::ClientConnected(1));
        env.send(
            1,
            ClientToScheduler::Functions(vec![FunctionDef {
                hash: FUNC,
                name: "f".into(),
                bytes: Bytes::from_static(b"pickled f"),
            }]),
        );
        env
    }

    /// Applies an event and schedules, like the server shell does, then
    /// checks every invariant of the core.
    pub fn event(&mut self, e: Event) {
        let shown = format!("{e:?}");
        self.core.handle(e, &mut self.out);
        self.check(&shown, "the event");
        self.core.schedule(&mut self.out);
        self.check(&shown, "scheduling after the event");
    }

    fn check(&self, event: &str, when: &str) {
        if let Err(e) = self.core.check_invariants() {
            let event: String = event.chars().take(300).collect();
            panic!("{e} (after {when} {event})");
        }
    }

    pub fn send(&mut self, client: ClientId, msg: ClientToScheduler) {
        self.event(Event::FromClient(client, msg));
    }

    pub fn worker(&mut self, nthreads: u32) -> WorkerId {
        self.worker_with(nthreads, &[])
    }

    /// A worker offering these resources.
    /// A new one-thread worker computes `key`, a root task the client
    /// wants; the worker holds its result.
    pub fn computed(&mut self, key: &str) -> WorkerId {
        let w = self.worker(1);
        self.submit(vec![task(key)]);
        self.finish(w, key);
        w
    }

    pub fn worker_with(&mut self, nthreads: u32, resources: &[(&str, f64)]) -> WorkerId {
        let id = self.next_worker;
        self.next_worker += 1;
        self.event(Event::WorkerConnected(
            id,
            WorkerInfo {
                name: format!("w{id}"),
                data_address: format!("127.0.0.1:{}", 9000 + id),
                nthreads,
                memory: 1 << 30,
                pid: id as u32,
                host: "127.0.0.1".into(),
                resources: resources.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
            },
        ));
        id
    }

    pub fn submit(&mut self, tasks: Vec<TaskBuilder>) {
        self.submit_as(1, tasks);
    }

    pub fn submit_as(&mut self, client: ClientId, tasks: Vec<TaskBuilder>) {
        self.send(client, ClientToScheduler::Submit(submission(tasks)));
    }

    /// Worker `w` reports the copies it fetched, and those it could not.
    pub fn fetched(&mut self, w: WorkerId, keys: &[&str], missing: &[&str]) {
        let keys = keys.iter().map(|k| k.to_string()).collect();
        let missing = missing.iter().map(|k| k.to_string()).collect();
        self.event(Event::FromWorker(
            w,
            WorkerToScheduler::Fetched { keys, missing },
        ));
    }

    /// `client` sends coordination request `req`, without a timeout.
    pub fn coord(&mut self, client: ClientId, req: u64, op: shoal_proto::CoordOp) {
        self.send(
            client,
            ClientToScheduler::Coord {
                req,
                op,
                timeout: None,
            },
        );
    }

    /// Client 1 disowns these keys (its last futures for them are gone).
    pub fn disown(&mut self, keys: &[&str]) {
        let keys = keys.iter().map(|s| s.to_string()).collect();
        self.send(1, ClientToScheduler::Disown(keys));
    }

    pub fn id(&self, key: &str) -> TaskId {
        self.core
            .id_of(key)
            .unwrap_or_else(|| panic!("{key} unknown"))
    }

    pub fn state(&self, key: &str) -> Option<TaskStateKind> {
        self.core.state_of(key)
    }

    pub fn start(&mut self, w: WorkerId, key: &str) {
        let id = self.id(key);
        self.event(Event::FromWorker(
            w,
            WorkerToScheduler::TaskStarted { ids: vec![id] },
        ));
    }

    pub fn finish(&mut self, w: WorkerId, key: &str) {
        self.finish_with(w, key, 10, 0.001);
    }

    /// Worker `w` finished `key` with a result too large to travel with
    /// the report (so the scheduler keeps no copy of it).
    pub fn finish_large(&mut self, w: WorkerId, key: &str) {
        self.finish_with(w, key, 1 << 20, 0.001);
    }

    /// Worker `w` finished `key`: results up to 64 KiB come along with the
    /// report, as from a real worker.
    pub fn finish_with(&mut self, w: WorkerId, key: &str, nbytes: u64, duration: f64) {
        let id = self.id(key);
        self.finish_task(w, id, nbytes, duration);
    }

    /// Worker `w` reports task `id` finished (its key may be forgotten).
    pub fn finish_task(&mut self, w: WorkerId, id: TaskId, nbytes: u64, duration: f64) {
        let inline = (nbytes <= 64 << 10).then(|| Payload::single(Bytes::from_static(b"r")));
        self.event(Event::FromWorker(
            w,
            WorkerToScheduler::TaskFinished {
                id,
                nbytes,
                type_name: "int".into(),
                inline,
                duration,
                timing: Some(shoal_proto::Timing {
                    start: 100.0,
                    stop: 100.0 + duration,
                    thread: 1,
                }),
            },
        ));
    }

    /// Worker `w` reports `key` failed with an error its filter says is
    /// not to be retried.
    pub fn fail_final(&mut self, w: WorkerId, key: &str) {
        self.fail_with(w, key, "ValueError", false);
    }

    /// Client 1 sets a limit.
    pub fn set_limit(
        &mut self,
        name: &str,
        concurrency: Option<u32>,
        rate: Option<f64>,
        burst: Option<f64>,
    ) {
        self.send(
            1,
            ClientToScheduler::SetLimit(LimitSpec {
                name: name.into(),
                concurrency,
                rate,
                burst,
            }),
        );
    }

    /// The shell passes the time in, then schedules.
    pub fn advance(&mut self, now: f64) {
        self.core.advance(now);
        self.core.schedule(&mut self.out);
        if let Err(e) = self.core.check_invariants() {
            panic!("{e} (after advancing to {now})");
        }
    }

    pub fn fail(&mut self, w: WorkerId, key: &str) {
        self.fail_with(w, key, "ZeroDivisionError", true);
    }

    /// Worker `w` reports `key` raised a `type_name`.
    pub fn fail_with(&mut self, w: WorkerId, key: &str, type_name: &str, retryable: bool) {
        let id = self.id(key);
        self.fail_task(w, id, type_name, retryable);
    }

    /// Worker `w` reports task `id` raised (its key may be forgotten).
    pub fn fail_task(&mut self, w: WorkerId, id: TaskId, type_name: &str, retryable: bool) {
        self.event(Event::FromWorker(
            w,
            WorkerToScheduler::TaskFailed {
                id,
                error: TaskError::Raised {
                    exception: Payload::default(),
                    type_name: type_name.into(),
                    message: "boom".into(),
                    traceback: String::new(),
                },
                retryable,
                timing: None,
            },
        ));
    }

    /// Worker `w` reports it can run `slots` tasks at once.
    pub fn capacity(&mut self, w: WorkerId, slots: u32) {
        self.event(Event::FromWorker(w, WorkerToScheduler::Capacity { slots }));
    }

    pub fn lose(&mut self, w: WorkerId) {
        self.event(Event::WorkerLost(w));
    }

    /// Takes the commands said so far.
    pub fn take(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.out)
    }

    /// Keys sent to worker `w` for computing, in order, taking all commands.
    pub fn computes(&mut self) -> Vec<(WorkerId, String)> {
        self.take()
            .into_iter()
            .filter_map(|c| match c {
                Command::ToWorker(w, SchedulerToWorker::Compute(t)) => Some((w, t.key)),
                _ => None,
            })
            .collect()
    }

    /// Messages to client 1, taking all commands.
    pub fn client_msgs(&mut self) -> Vec<SchedulerToClient> {
        self.take()
            .into_iter()
            .filter_map(|c| match c {
                Command::ToClient(1, m) => Some(m),
                _ => None,
            })
            .collect()
    }

    /// Keys freed on each worker, taking all commands.
    pub fn frees(&mut self) -> Vec<(WorkerId, String)> {
        self.take()
            .into_iter()
            .flat_map(|c| match c {
                Command::ToWorker(w, SchedulerToWorker::Free { keys }) => {
                    keys.into_iter().map(|k| (w, k)).collect()
                }
                _ => vec![],
            })
            .collect()
    }
}

/// What the core said since the last [`Env::said`], sorted: fetches asked
/// of workers (worker, key, holders to try), keys freed, shutdowns, tasks
/// sent for computing, and coordination replies to client 1.
#[allow(dead_code)] // each test file reads the parts it needs
#[derive(Default, Debug)]
pub struct Said {
    pub fetches: Vec<(WorkerId, String, Vec<String>)>,
    pub frees: Vec<(WorkerId, String)>,
    pub shutdowns: Vec<WorkerId>,
    pub computes: Vec<(WorkerId, String)>,
    pub replies: Vec<(u64, shoal_proto::CoordReply)>,
}

impl Env {
    /// Takes the commands said so far, sorted into a [`Said`].
    #[allow(dead_code)]
    pub fn said(&mut self) -> Said {
        let mut s = Said::default();
        for c in self.take() {
            match c {
                Command::ToWorker(w, SchedulerToWorker::Fetch { deps }) => s
                    .fetches
                    .extend(deps.into_iter().map(|d| (w, d.key, d.holders))),
                Command::ToWorker(w, SchedulerToWorker::Free { keys }) => {
                    s.frees.extend(keys.into_iter().map(|k| (w, k)))
                }
                Command::ToWorker(w, SchedulerToWorker::Shutdown) => s.shutdowns.push(w),
                Command::ToWorker(w, SchedulerToWorker::Compute(t)) => s.computes.push((w, t.key)),
                Command::ToClient(1, SchedulerToClient::CoordReply { req, reply }) => {
                    s.replies.push((req, reply))
                }
                _ => {}
            }
        }
        s
    }
}
