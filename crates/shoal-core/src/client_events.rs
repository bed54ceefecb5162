//! What clients send: functions, graphs, keys they disown, questions.

use shoal_proto::{
    ClientId, ClientToScheduler, SchedulerToClient, SchedulerToWorker, Submission, TaskError,
    TaskId, TaskOptions, TaskRecord, TaskSpec, Timing, WorkerStatus, LITERAL_FUNC,
    MAX_LIMITS_PER_TASK,
};

use crate::core::Core;
use crate::events::Command;
use crate::task::{Dependents, Extra, Task, TaskState};

impl Core {
    pub(crate) fn client_message(
        &mut self,
        c: ClientId,
        msg: ClientToScheduler,
        out: &mut Vec<Command>,
    ) {
        match msg {
            ClientToScheduler::Functions(defs) => {
                for f in defs {
                    if let Err(e) = self.functions.sent(c, f) {
                        tracing::warn!(
                            "client {c} sent {} under the hash {:#x} of {}, a different \
                             function kept already: tasks of that hash run {}",
                            e.sent,
                            e.hash,
                            e.kept,
                            e.kept
                        );
                    }
                }
            }
            ClientToScheduler::SubmitPart(sub) => {
                for id in self.submit_all(c, sub, out) {
                    if let Some(t) = self.tasks.get_mut(&id) {
                        t.pinned = true;
                        self.clients.entry(c).or_default().staged.push(id);
                    }
                }
            }
            ClientToScheduler::Submit(sub) => {
                self.submit_all(c, sub, out);
                self.unpin_staged(c);
            }
            ClientToScheduler::Disown(keys) => {
                for key in keys {
                    if let Some(id) = self.id_of(&key) {
                        self.unwant(c, id);
                    }
                }
            }
            ClientToScheduler::Upload { name, data } => {
                self.uploads.retain(|(n, _)| *n != name);
                self.uploads.push((name.clone(), data.clone()));
                for &w in self.workers.keys() {
                    out.push(Command::ToWorker(
                        w,
                        SchedulerToWorker::Upload {
                            name: name.clone(),
                            data: data.clone(),
                        },
                    ));
                }
            }
            ClientToScheduler::RegisterPlugin { name, plugin } => {
                self.plugins.retain(|(n, _)| *n != name);
                self.plugins.push((name, plugin));
            }
            ClientToScheduler::UnregisterPlugin { name } => {
                self.plugins.retain(|(n, _)| *n != name);
            }
            ClientToScheduler::Preload(modules) => {
                let fresh: Vec<String> = modules
                    .into_iter()
                    .filter(|m| is_module_name(m) && !self.preload.contains(m))
                    .take(MAX_PRELOAD.saturating_sub(self.preload.len()))
                    .collect();
                if !fresh.is_empty() {
                    self.preload.extend(fresh.iter().cloned());
                    for &w in self.workers.keys() {
                        out.push(Command::ToWorker(
                            w,
                            SchedulerToWorker::Preload {
                                modules: fresh.clone(),
                            },
                        ));
                    }
                }
            }
            ClientToScheduler::SetLimit(spec) => self.set_limit(spec),
            // Being heard from is all it says (see `heard_from_client`).
            ClientToScheduler::Heartbeat => {}
            ClientToScheduler::Identify => {
                let workers = self
                    .workers
                    .values()
                    .map(|w| WorkerStatus {
                        info: w.info.clone(),
                        stored: w.holds.len() as u64,
                        assigned: w.assigned.len() as u64,
                        metrics: w.metrics.clone(),
                        paused: w.paused,
                    })
                    .collect();
                out.push(Command::ToClient(
                    c,
                    SchedulerToClient::Identity {
                        workers,
                        tasks: self.tasks.len() as u64,
                        limits: self.limit_status(),
                        scheduler_id: self.config.id.clone(),
                        started: self.config.started,
                    },
                ));
            }
            ClientToScheduler::GetTaskStream { since, limit } => {
                let (events, next) = self.task_stream(since, limit as usize);
                let records = events
                    .into_iter()
                    .map(|e| TaskRecord {
                        name: e.name.to_string(),
                        worker: e.worker.to_string(),
                        key: e.key.into(),
                        timing: Timing {
                            start: e.start,
                            stop: e.stop,
                            thread: e.thread,
                        },
                        ok: e.ok,
                        nbytes: e.nbytes,
                    })
                    .collect();
                out.push(Command::ToClient(
                    c,
                    SchedulerToClient::TaskStream { records, next },
                ));
            }
            ClientToScheduler::Want(keys) => {
                for key in keys {
                    match self.id_of(&key) {
                        Some(id) => {
                            self.want(c, id);
                            self.tell_client_current_state(c, id, out);
                        }
                        None => {
                            let msg = format!(
                                "the scheduler does not know the key {key}: it was never \
                                 submitted, or every future for it was released"
                            );
                            out.push(Command::ToClient(
                                c,
                                SchedulerToClient::KeyErred {
                                    key,
                                    error: internal_error("KeyError", msg),
                                },
                            ));
                        }
                    }
                }
            }
            ClientToScheduler::Coord { req, op, timeout } => {
                self.coord_request(c, req, op, timeout, out)
            }
            ClientToScheduler::Cancel(keys) => self.cancel_for(c, &keys, out),
            ClientToScheduler::Retry(keys) => {
                let ids: Vec<TaskId> = keys.iter().filter_map(|k| self.id_of(k)).collect();
                self.retry(&ids, out);
            }
            ClientToScheduler::Shutdown => out.push(Command::Shutdown),
        }
    }

    /// The graph is whole: its parts no longer need pins.
    fn unpin_staged(&mut self, c: ClientId) {
        let staged = match self.clients.get_mut(&c) {
            Some(cs) => std::mem::take(&mut cs.staged),
            None => return,
        };
        for id in staged {
            if let Some(t) = self.tasks.get_mut(&id) {
                t.pinned = false;
                // Only those needed by nobody now: a graph of a million
                // tasks lists none of its needed ones twice.
                if !t.is_needed() {
                    self.to_check.push(id);
                }
            }
        }
    }

    pub(crate) fn client_gone(&mut self, c: ClientId, out: &mut Vec<Command>) {
        if c == crate::coord::COORD_CLIENT {
            return; // the scheduler's own: never connected, never gone
        }
        self.gone_clients.insert(c);
        self.coord_client_gone(c, out);
        for f in self.functions.client_gone(c) {
            self.function_dropped(f);
        }
        self.replicas_client_gone(c);
        self.rebalance_client_gone(c);
        self.retire_client_gone(c);
        self.unpin_staged(c);
        if let Some(state) = self.clients.remove(&c) {
            for id in state.wants {
                if let Some(t) = self.tasks.get_mut(&id) {
                    t.wanted_by = without(&t.wanted_by, c);
                    self.to_check.push(id);
                }
            }
        }
    }

    pub(crate) fn unwant(&mut self, c: ClientId, id: TaskId) {
        if let Some(t) = self.tasks.get_mut(&id) {
            t.wanted_by = without(&t.wanted_by, c);
        }
        if let Some(cs) = self.clients.get_mut(&c) {
            cs.wants.remove(&id);
        }
        self.to_check.push(id);
    }

    /// Client `c` cancelled `keys`: it stops wanting them, and the keys
    /// downstream of one that only `c` wanted are cancelled for it too when
    /// only `c` wants them (told with `KeyCancelled`); the walk passes
    /// through tasks nobody wants and stops at those another client wants.
    fn cancel_for(&mut self, c: ClientId, keys: &[String], out: &mut Vec<Command>) {
        let roots: Vec<TaskId> = keys.iter().filter_map(|k| self.id_of(k)).collect();
        let mut stack = Vec::new();
        for &id in &roots {
            if self.tasks.get(&id).is_some_and(|t| *t.wanted_by == [c]) {
                stack.extend(self.tasks[&id].dependents.iter());
            }
            self.unwant(c, id);
        }
        let mut seen: std::collections::HashSet<TaskId> = roots.into_iter().collect();
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            let Some(t) = self.tasks.get(&id) else {
                continue;
            };
            let only_c = *t.wanted_by == [c];
            if !only_c && !t.wanted_by.is_empty() {
                continue; // another client wants it: it stays, as what it needs
            }
            stack.extend(t.dependents.iter());
            if only_c {
                out.push(Command::ToClient(
                    c,
                    SchedulerToClient::KeyCancelled {
                        key: t.key().to_string(),
                    },
                ));
                self.unwant(c, id);
            }
        }
    }

    pub(crate) fn want(&mut self, c: ClientId, id: TaskId) {
        // Only a connected client can want anything.
        let Some(cs) = self.clients.get_mut(&c) else {
            return;
        };
        let Some(t) = self.tasks.get_mut(&id) else {
            return;
        };
        if !t.wanted_by.contains(&c) {
            let mut v = std::mem::take(&mut t.wanted_by).into_vec();
            v.push(c);
            t.wanted_by = v.into_boxed_slice();
        }
        cs.wants.insert(id);
    }

    /// Adds (or re-asks for) the tasks of a submission; returns their ids.
    fn submit_all(&mut self, c: ClientId, sub: Submission, out: &mut Vec<Command>) -> Vec<TaskId> {
        if sub
            .tasks
            .iter()
            .any(|t| t.options as usize >= sub.options.len())
        {
            tracing::warn!(
                "client {c} sent tasks naming options it did not send: they run with the defaults"
            );
        }
        let mut ids = Vec::with_capacity(sub.tasks.len());
        for spec in &sub.tasks {
            ids.push(self.submit_one(c, spec, sub.options_of(spec), out));
        }
        ids
    }

    /// Adds (or re-asks for) one task; returns its id.
    fn submit_one(
        &mut self,
        c: ClientId,
        spec: &TaskSpec,
        opts: &TaskOptions,
        out: &mut Vec<Command>,
    ) -> TaskId {
        if let Some(id) = self.id_of(&spec.key) {
            if spec.wanted {
                self.want(c, id);
                self.tell_client_current_state(c, id, out);
            }
            self.activate(id, out);
            return id;
        }
        let id = self.tasks.reserve();

        let mut deps = Vec::with_capacity(spec.deps.len());
        let mut missing = None;
        for d in &spec.deps {
            match self.id_of(d) {
                Some(did) if !deps.contains(&did) => deps.push(did),
                Some(_) => {}
                None => missing = Some(d.clone()),
            }
        }
        for &d in &deps {
            if let Some(dt) = self.tasks.get_mut(&d) {
                dt.dependents.push(id);
            }
        }
        let tasks = &self.tasks;
        self.keys.insert(&spec.key, id, |slot| {
            tasks.at_slot(slot).map_or("", |(_, t)| t.key())
        });
        // The client checked these; a client breaking the protocol gets
        // what can be kept, and the log says so.
        if opts.limits.len() > MAX_LIMITS_PER_TASK
            || opts
                .resources
                .iter()
                .any(|(_, n)| !(n.is_finite() && *n > 0.0))
        {
            tracing::warn!(
                "task {} came with more than {MAX_LIMITS_PER_TASK} limits or a resource \
                 amount that is not a finite number above 0: those are ignored",
                spec.key
            );
        }
        let resources: Box<[(std::sync::Arc<str>, f64)]> = opts
            .resources
            .iter()
            .filter(|(_, n)| n.is_finite() && *n > 0.0)
            .map(|(name, n)| (std::sync::Arc::from(name.as_str()), *n))
            .collect();
        let limits: Box<[std::sync::Arc<str>]> = opts
            .limits
            .iter()
            .take(MAX_LIMITS_PER_TASK)
            .map(|n| self.limit_name(n))
            .collect();
        let (blob, deps_len, key_len) = Task::blob(&deps, &spec.key, &spec.args.frames);
        self.functions.task_added(spec.func);
        let no_type = self.intern("");
        let prefix = self.stats.prefix_of(&spec.key);
        self.stats.added(prefix, crate::stats::Bucket::Released);
        self.tasks.fill(
            id,
            Task {
                blob,
                deps_len,
                key_len,
                seq: 0,
                func: spec.func,
                dependents: Dependents::None,
                state: TaskState::Released,
                waiting_on: 0,
                pending_dependents: 0,
                counted_pending: false,
                pinned: false,
                wanted_by: Box::new([]),
                priority: opts.priority,
                retries_left: opts.retries,
                attempts: 0,
                extra: (!opts.workers.is_empty()
                    || opts.retry_delay > 0.0
                    || !limits.is_empty()
                    || !resources.is_empty())
                .then(|| {
                    let delay = if opts.retry_delay.is_finite() {
                        opts.retry_delay.clamp(0.0, MAX_RETRY_DELAY)
                    } else {
                        0.0
                    };
                    let most = if opts.retry_max_delay.is_finite() && opts.retry_max_delay > 0.0 {
                        opts.retry_max_delay.clamp(delay, MAX_RETRY_DELAY)
                    } else {
                        MAX_RETRY_DELAY
                    };
                    Box::new(Extra {
                        restrictions: opts.workers.clone().into_boxed_slice(),
                        error: None,
                        backoff: (delay > 0.0).then_some((delay, most)),
                        retried: 0,
                        failed_on: None,
                        limits,
                        holds_limits: false,
                        resources,
                        loose: opts.loose,
                    })
                }),
                nbytes: 0,
                type_name: no_type,
                prefix,
            },
        );
        if spec.wanted {
            self.want(c, id);
        }
        if let Some(dep) = missing {
            let msg = format!(
                "task {} depends on {dep}, which the scheduler does not know (was its future released?)",
                spec.key
            );
            self.fail(id, internal_error("KeyError", msg), out);
        } else if spec.func != LITERAL_FUNC && !self.functions.contains(spec.func) {
            let msg = format!(
                "the function of task {} was never sent to the scheduler",
                spec.key
            );
            self.fail(id, internal_error("RuntimeError", msg), out);
        } else {
            self.activate(id, out);
        }
        // Nothing may want it (its client is gone): let the check decide.
        self.to_check.push(id);
        id
    }

    fn tell_client_current_state(&self, c: ClientId, id: TaskId, out: &mut Vec<Command>) {
        let t = &self.tasks[&id];
        match &t.state {
            TaskState::Memory { holders } => out.push(Command::ToClient(
                c,
                SchedulerToClient::KeyMemory {
                    key: t.key().to_string(),
                    nbytes: t.nbytes,
                    type_name: self.type_names[t.type_name as usize].to_string(),
                    inline: self.kept.get(id).cloned(),
                    holders: self.addresses(holders),
                },
            )),
            TaskState::Erred => {
                if let Some(e) = t.error() {
                    out.push(Command::ToClient(
                        c,
                        SchedulerToClient::KeyErred {
                            key: t.key().to_string(),
                            error: e.clone(),
                        },
                    ))
                }
            }
            _ => {}
        }
    }
}

/// The longest a retry may be put off, in seconds (a day).
const MAX_RETRY_DELAY: f64 = 86_400.0;

/// The most modules the scheduler asks workers to preload.
const MAX_PRELOAD: usize = 256;

/// A dotted Python module name (`pandas`, `bs4.element`), nothing else.
fn is_module_name(m: &str) -> bool {
    !m.is_empty()
        && m.len() <= 200
        && m.split('.').all(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// `ids` without `c`.
fn without(
    ids: &[shoal_proto::ClientId],
    c: shoal_proto::ClientId,
) -> Box<[shoal_proto::ClientId]> {
    ids.iter().copied().filter(|x| *x != c).collect()
}

fn internal_error(type_name: &str, message: String) -> TaskError {
    TaskError::Raised {
        exception: Default::default(),
        type_name: type_name.to_string(),
        message,
        traceback: String::new(),
    }
}

/// The latest clients gone. A client can go before all it sent was applied
/// (removed for its silence, or for reading too slowly, its connection
/// closed at once): what arrives from it afterwards is ignored rather than
/// bringing it back. Bounded: ids are never reused, and only the last
/// messages of a closed connection can still be on their way.
#[derive(Default)]
pub(crate) struct GoneClients {
    ids: std::collections::HashSet<ClientId>,
    order: std::collections::VecDeque<ClientId>,
}

impl GoneClients {
    /// The most clients remembered.
    const KEPT: usize = 1024;

    pub(crate) fn insert(&mut self, c: ClientId) {
        if self.ids.insert(c) {
            self.order.push_back(c);
        }
        while self.order.len() > Self::KEPT {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }

    pub(crate) fn contains(&self, c: ClientId) -> bool {
        self.ids.contains(&c)
    }
}
