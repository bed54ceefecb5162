//! The scheduler state and its event handlers.
//!
//! Every handler appends commands to `out`; none performs I/O. Cascades
//! (releasing a chain of intermediates, failing every dependent of an erred
//! task) run on explicit worklists, so a graph a million tasks deep never
//! recurses.

use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};
use shoal_proto::{
    ClientId, ClientToScheduler, FuncHash, FunctionDef, SchedulerToClient, SchedulerToWorker,
    TaskError, TaskId, TaskSpec, WorkerId, WorkerStatus, WorkerToScheduler, LITERAL_FUNC,
};

use crate::events::{Command, Event};
use crate::keys::KeyIndex;
use crate::placement::ReadyEntry;
use crate::task::{Dependents, Extra, Task, TaskState};
use crate::worker::Worker;

/// Tunables of the scheduler.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// A task running on this many workers that died errs with `KilledWorker`.
    pub allowed_failures: u32,
    /// How much queued work (in seconds of estimated run time) a worker should
    /// hold beyond its running tasks so it never idles waiting for us.
    pub queue_target: f64,
    /// Upper bound on queued tasks per worker thread.
    pub max_queued_per_thread: u32,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            allowed_failures: 3,
            queue_target: 0.005,
            max_queued_per_thread: 64,
        }
    }
}

/// A task's state as seen from outside the core (for tests and diagnostics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStateKind {
    Released,
    Waiting,
    Ready,
    Assigned(WorkerId),
    Memory,
    Erred,
}

#[derive(Default)]
struct ClientState {
    wants: FxHashSet<TaskId>,
    /// Tasks of a graph still arriving in parts, pinned until it is whole.
    staged: Vec<TaskId>,
}

/// The scheduler state machine.
pub struct Core {
    pub(crate) config: CoreConfig,
    /// Boxed so the table stays small: it grows in powers of two.
    pub(crate) tasks: FxHashMap<TaskId, Box<Task>>,
    keys: KeyIndex,
    next_id: TaskId,
    pub(crate) workers: BTreeMap<WorkerId, Worker>,
    clients: BTreeMap<ClientId, ClientState>,
    pub(crate) functions: FxHashMap<FuncHash, FunctionDef>,
    /// Result type names, shared between tasks (`Task::type_name` indexes).
    type_names: Vec<Arc<str>>,
    type_index: FxHashMap<Arc<str>, u32>,
    pub(crate) ready: BinaryHeap<ReadyEntry>,
    /// Exponential moving average of task run times, once any is known.
    pub(crate) mean_duration: Option<f64>,
    /// Tasks whose need may have dropped: release or forget them.
    to_check: Vec<TaskId>,
    /// Keys to free, per worker, gathered into one message each.
    to_free: BTreeMap<WorkerId, Vec<String>>,
    /// Tasks to cancel, per worker.
    to_cancel: BTreeMap<WorkerId, Vec<TaskId>>,
}

impl Default for Core {
    fn default() -> Self {
        Core::new(CoreConfig::default())
    }
}

impl Core {
    pub fn new(config: CoreConfig) -> Self {
        Core {
            config,
            tasks: FxHashMap::default(),
            keys: KeyIndex::default(),
            next_id: 1,
            workers: BTreeMap::new(),
            clients: BTreeMap::new(),
            functions: FxHashMap::default(),
            type_names: Vec::new(),
            type_index: FxHashMap::default(),
            ready: BinaryHeap::new(),
            mean_duration: None,
            to_check: Vec::new(),
            to_free: BTreeMap::new(),
            to_cancel: BTreeMap::new(),
        }
    }

    /// Applies one event. Call [`Core::schedule`] after a batch of events.
    pub fn handle(&mut self, event: Event, out: &mut Vec<Command>) {
        match event {
            Event::ClientConnected(c) => {
                self.clients.entry(c).or_default();
            }
            Event::ClientDisconnected(c) => self.client_gone(c),
            Event::FromClient(c, msg) => self.client_message(c, msg, out),
            Event::WorkerConnected(w, info) => {
                for c in self.clients.keys() {
                    out.push(Command::ToClient(
                        *c,
                        SchedulerToClient::WorkerAdded(info.clone()),
                    ));
                }
                self.workers.insert(w, Worker::new(info));
            }
            Event::WorkerLost(w) => self.worker_lost(w, out),
            Event::FromWorker(w, msg) => self.worker_message(w, msg, out),
        }
        self.drain_checks(out);
    }

    // ----- introspection -------------------------------------------------

    /// The state of the task named `key`, if the scheduler knows it.
    pub fn state_of(&self, key: &str) -> Option<TaskStateKind> {
        let t = self.tasks.get(&self.lookup(key)?)?;
        Some(match &t.state {
            TaskState::Released => TaskStateKind::Released,
            TaskState::Waiting => TaskStateKind::Waiting,
            TaskState::Ready => TaskStateKind::Ready,
            TaskState::Assigned { worker, .. } => TaskStateKind::Assigned(*worker),
            TaskState::Memory { .. } => TaskStateKind::Memory,
            TaskState::Erred => TaskStateKind::Erred,
        })
    }

    fn lookup(&self, key: &str) -> Option<TaskId> {
        self.keys
            .get(key, |id| self.tasks.get(&id).map_or("", |t| t.key()))
    }

    /// The scheduler's id for `key`.
    pub fn id_of(&self, key: &str) -> Option<TaskId> {
        self.lookup(key)
    }

    /// How many tasks the scheduler remembers.
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    /// Which workers hold the result of `key`.
    pub fn holders_of(&self, key: &str) -> Vec<WorkerId> {
        match self.lookup(key).and_then(|id| self.tasks.get(&id)) {
            Some(t) => match &t.state {
                TaskState::Memory { holders } => holders.clone(),
                _ => Vec::new(),
            },
            None => Vec::new(),
        }
    }

    /// How many tasks are assigned to worker `w`.
    pub fn assigned_to(&self, w: WorkerId) -> usize {
        self.workers.get(&w).map_or(0, |w| w.assigned.len())
    }

    // ----- clients -------------------------------------------------------

    fn client_message(&mut self, c: ClientId, msg: ClientToScheduler, out: &mut Vec<Command>) {
        match msg {
            ClientToScheduler::Functions(defs) => {
                for f in defs {
                    self.functions.insert(f.hash, f);
                }
            }
            ClientToScheduler::SubmitPart(specs) => {
                for spec in specs {
                    if let Some(id) = self.submit_one(c, spec, out) {
                        self.tasks.get_mut(&id).expect("just submitted").pinned = true;
                        self.clients.entry(c).or_default().staged.push(id);
                    }
                }
            }
            ClientToScheduler::Submit(specs) => {
                for spec in specs {
                    self.submit_one(c, spec, out);
                }
                self.unpin_staged(c);
            }
            ClientToScheduler::Release(keys) => {
                for key in keys {
                    if let Some(id) = self.lookup(&key) {
                        self.unwant(c, id);
                    }
                }
            }
            ClientToScheduler::Identify => {
                let workers = self
                    .workers
                    .values()
                    .map(|w| WorkerStatus {
                        info: w.info.clone(),
                        stored: w.holds.len() as u64,
                        assigned: w.assigned.len() as u64,
                    })
                    .collect();
                out.push(Command::ToClient(
                    c,
                    SchedulerToClient::Identity {
                        workers,
                        tasks: self.tasks.len() as u64,
                    },
                ));
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
                self.to_check.push(id);
            }
        }
    }

    fn client_gone(&mut self, c: ClientId) {
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

    fn unwant(&mut self, c: ClientId, id: TaskId) {
        if let Some(t) = self.tasks.get_mut(&id) {
            t.wanted_by = without(&t.wanted_by, c);
        }
        if let Some(cs) = self.clients.get_mut(&c) {
            cs.wants.remove(&id);
        }
        self.to_check.push(id);
    }

    fn want(&mut self, c: ClientId, id: TaskId) {
        let Some(t) = self.tasks.get_mut(&id) else {
            return;
        };
        if !t.wanted_by.contains(&c) {
            let mut v = std::mem::take(&mut t.wanted_by).into_vec();
            v.push(c);
            t.wanted_by = v.into_boxed_slice();
        }
        self.clients.entry(c).or_default().wants.insert(id);
    }

    /// Adds (or re-asks for) one task; returns its id.
    fn submit_one(
        &mut self,
        c: ClientId,
        spec: TaskSpec,
        out: &mut Vec<Command>,
    ) -> Option<TaskId> {
        if let Some(id) = self.lookup(&spec.key) {
            if spec.wanted {
                self.want(c, id);
                self.tell_client_current_state(c, id, out);
            }
            self.activate(id, out);
            return Some(id);
        }
        let id = self.next_id;
        self.next_id += 1;

        let mut deps = Vec::with_capacity(spec.deps.len());
        let mut missing = None;
        for d in &spec.deps {
            match self.lookup(d) {
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
        self.keys.insert(&spec.key, id);
        let (blob, key_len) = Task::blob(&spec.key, &spec.args.frames);
        let no_type = self.intern("");
        self.tasks.insert(
            id,
            Box::new(Task {
                blob,
                key_len,
                func: spec.func,
                deps: deps.into_boxed_slice(),
                dependents: Dependents::None,
                state: TaskState::Released,
                waiting_on: 0,
                pending_dependents: 0,
                counted_pending: false,
                pinned: false,
                wanted_by: Box::new([]),
                priority: spec.priority,
                retries_left: spec.retries,
                attempts: 0,
                extra: (!spec.workers.is_empty()).then(|| {
                    Box::new(Extra {
                        restrictions: spec.workers.into_boxed_slice(),
                        error: None,
                    })
                }),
                nbytes: 0,
                type_name: no_type,
            }),
        );
        if spec.wanted {
            self.want(c, id);
        }
        if let Some(dep) = missing {
            let msg = format!(
                "task {} depends on {dep}, which the scheduler does not know (was its future released?)",
                self.tasks[&id].key()
            );
            self.fail(id, internal_error("KeyError", msg), out);
        } else if spec.func != LITERAL_FUNC && !self.functions.contains_key(&spec.func) {
            let msg = format!(
                "the function of task {} was never sent to the scheduler",
                self.tasks[&id].key()
            );
            self.fail(id, internal_error("RuntimeError", msg), out);
        } else {
            self.activate(id, out);
        }
        Some(id)
    }

    /// One shared copy of each result type name.
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.type_index.get(name) {
            return i;
        }
        let n: Arc<str> = Arc::from(name);
        let i = self.type_names.len() as u32;
        self.type_names.push(n.clone());
        self.type_index.insert(n, i);
        i
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
                    inline: None,
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

    fn addresses(&self, holders: &[WorkerId]) -> Vec<String> {
        holders
            .iter()
            .filter_map(|w| self.workers.get(w).map(|w| w.info.data_address.clone()))
            .collect()
    }

    // ----- the life of a task ---------------------------------------------

    /// Makes a released task (and, transitively, its released dependencies)
    /// waiting or ready. Does nothing to tasks in any other state.
    fn activate(&mut self, root: TaskId, out: &mut Vec<Command>) {
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            match self.tasks.get(&id) {
                Some(t) if t.state == TaskState::Released => {}
                _ => continue,
            }
            if let Some(err) = self.first_erred_dep(id) {
                self.fail(id, err, out);
                continue;
            }
            let waiting = self.count_missing_deps(id, &mut stack);
            self.set_waiting_or_ready(id, waiting);
            self.set_counted_pending(id, true);
        }
    }

    /// Counts dependencies not in memory, pushing released ones on `stack`.
    fn count_missing_deps(&self, id: TaskId, stack: &mut Vec<TaskId>) -> u32 {
        let mut waiting = 0;
        for d in &self.tasks[&id].deps {
            let dt = &self.tasks[d];
            match dt.state {
                TaskState::Memory { .. } => {}
                TaskState::Released => {
                    waiting += 1;
                    stack.push(*d);
                }
                _ => waiting += 1,
            }
        }
        waiting
    }

    fn first_erred_dep(&self, id: TaskId) -> Option<TaskError> {
        self.tasks[&id].deps.iter().find_map(|d| {
            let dt = &self.tasks[d];
            (dt.state == TaskState::Erred).then(|| dt.error().cloned())?
        })
    }

    fn set_waiting_or_ready(&mut self, id: TaskId, waiting: u32) {
        let t = self.tasks.get_mut(&id).expect("task exists");
        t.waiting_on = waiting;
        if waiting == 0 {
            t.state = TaskState::Ready;
            self.ready.push(ReadyEntry::of(t, id));
        } else {
            t.state = TaskState::Waiting;
        }
    }

    /// Puts an assigned task back in the queue (its worker died or it is
    /// retried), keeping it counted as pending so its inputs stay put.
    pub(crate) fn reschedule(&mut self, id: TaskId, out: &mut Vec<Command>) {
        if let Some(err) = self.first_erred_dep(id) {
            self.fail(id, err, out);
            return;
        }
        let mut stack = Vec::new();
        let waiting = self.count_missing_deps(id, &mut stack);
        self.set_waiting_or_ready(id, waiting);
        for d in stack {
            self.activate(d, out);
        }
    }

    /// Keeps dependencies' `pending_dependents` in step with whether `id` is
    /// pending. Dependencies that stop being needed are queued for a check.
    fn set_counted_pending(&mut self, id: TaskId, on: bool) {
        let t = self.tasks.get_mut(&id).expect("task exists");
        if t.counted_pending == on {
            return;
        }
        t.counted_pending = on;
        for i in 0..self.tasks[&id].deps.len() {
            let d = self.tasks[&id].deps[i];
            let dt = self.tasks.get_mut(&d).expect("dependency exists");
            if on {
                dt.pending_dependents += 1;
            } else {
                dt.pending_dependents -= 1;
                if dt.pending_dependents == 0 {
                    self.to_check.push(d);
                }
            }
        }
    }

    /// Marks `root` and every pending task downstream of it as erred.
    fn fail(&mut self, root: TaskId, error: TaskError, out: &mut Vec<Command>) {
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            let Some(t) = self.tasks.get(&id) else {
                continue;
            };
            if id != root && !t.is_pending() {
                continue;
            }
            self.unassign(id);
            let t = self.tasks.get_mut(&id).expect("task exists");
            t.state = TaskState::Erred;
            t.set_error(error.clone());
            for &c in &t.wanted_by {
                out.push(Command::ToClient(
                    c,
                    SchedulerToClient::KeyErred {
                        key: t.key().to_string(),
                        error: error.clone(),
                    },
                ));
            }
            stack.extend(t.dependents.iter());
            self.set_counted_pending(id, false);
            self.to_check.push(id);
        }
    }

    /// If `id` is assigned, forgets the assignment and tells the worker to
    /// drop it (a no-op for the worker if it already ran).
    fn unassign(&mut self, id: TaskId) {
        if let TaskState::Assigned { worker, .. } = self.tasks[&id].state {
            if let Some(w) = self.workers.get_mut(&worker) {
                w.assigned.remove(&id);
                w.stealing.remove(&id);
                self.to_cancel.entry(worker).or_default().push(id);
            }
        }
    }

    /// The result of `id` now lives on `w`.
    fn finished(&mut self, w: WorkerId, id: TaskId, nbytes: u64, type_name: String) {
        let type_name = self.intern(&type_name);
        let t = self.tasks.get_mut(&id).expect("task exists");
        t.state = TaskState::Memory { holders: vec![w] };
        t.nbytes = nbytes;
        t.type_name = type_name;
        if let Some(worker) = self.workers.get_mut(&w) {
            worker.holds.insert(id);
        }
        self.set_counted_pending(id, false);
        for i in 0..self.tasks[&id].dependents.len() {
            let d = self.tasks[&id].dependents.get(i);
            let dt = self.tasks.get_mut(&d).expect("dependent exists");
            if dt.state == TaskState::Waiting {
                dt.waiting_on -= 1;
                if dt.waiting_on == 0 {
                    dt.state = TaskState::Ready;
                    self.ready.push(ReadyEntry::of(dt, d));
                }
            }
        }
        self.to_check.push(id);
    }

    /// The last copy of `id`'s result is gone. Dependents that counted on it
    /// wait again, and the task is computed anew if anyone needs it.
    fn lost(&mut self, id: TaskId, out: &mut Vec<Command>) {
        self.tasks.get_mut(&id).expect("task exists").state = TaskState::Released;
        for i in 0..self.tasks[&id].dependents.len() {
            let d = self.tasks[&id].dependents.get(i);
            let dt = self.tasks.get_mut(&d).expect("dependent exists");
            match dt.state {
                TaskState::Waiting => dt.waiting_on += 1,
                TaskState::Ready => {
                    dt.state = TaskState::Waiting;
                    dt.waiting_on = 1;
                }
                _ => {}
            }
        }
        let t = &self.tasks[&id];
        if t.is_needed() {
            for &c in &t.wanted_by {
                out.push(Command::ToClient(
                    c,
                    SchedulerToClient::KeyLost {
                        key: t.key().to_string(),
                    },
                ));
            }
            self.activate(id, out);
        } else {
            self.to_check.push(id);
        }
    }

    /// Releases or forgets every task whose need may have dropped.
    fn drain_checks(&mut self, out: &mut Vec<Command>) {
        while let Some(id) = self.to_check.pop() {
            let Some(t) = self.tasks.get(&id) else {
                continue;
            };
            if t.is_needed() {
                continue;
            }
            match &t.state {
                TaskState::Memory { holders } => {
                    for &w in holders {
                        if let Some(worker) = self.workers.get_mut(&w) {
                            worker.holds.remove(&id);
                            self.to_free.entry(w).or_default().push(t.key().to_string());
                        }
                    }
                    self.tasks.get_mut(&id).expect("task exists").state = TaskState::Released;
                }
                TaskState::Waiting | TaskState::Ready | TaskState::Assigned { .. } => {
                    self.unassign(id);
                    self.tasks.get_mut(&id).expect("task exists").state = TaskState::Released;
                    self.set_counted_pending(id, false);
                }
                TaskState::Released | TaskState::Erred => {}
            }
            if self.tasks[&id].dependents.is_empty() {
                self.forget(id);
            }
        }
        self.flush_worker_batches(out);
    }

    /// Removes a task nobody wants and nothing depends on.
    fn forget(&mut self, id: TaskId) {
        let Some(t) = self.tasks.remove(&id) else {
            return;
        };
        self.keys.remove(t.key(), id);
        for d in t.deps {
            if let Some(dt) = self.tasks.get_mut(&d) {
                dt.dependents.remove(id);
                if dt.dependents.is_empty() {
                    self.to_check.push(d);
                }
            }
        }
    }

    fn flush_worker_batches(&mut self, out: &mut Vec<Command>) {
        for (w, keys) in std::mem::take(&mut self.to_free) {
            out.push(Command::ToWorker(w, SchedulerToWorker::Free { keys }));
        }
        for (w, ids) in std::mem::take(&mut self.to_cancel) {
            if self.workers.contains_key(&w) {
                out.push(Command::ToWorker(w, SchedulerToWorker::Cancel { ids }));
            }
        }
    }

    // ----- workers -------------------------------------------------------

    fn worker_message(&mut self, w: WorkerId, msg: WorkerToScheduler, out: &mut Vec<Command>) {
        match msg {
            WorkerToScheduler::TaskStarted { ids } => {
                for id in ids {
                    if let Some(t) = self.tasks.get_mut(&id) {
                        if let TaskState::Assigned { worker, started } = &mut t.state {
                            if *worker == w {
                                *started = true;
                            }
                        }
                    }
                }
            }
            WorkerToScheduler::TaskFinished {
                id,
                nbytes,
                type_name,
                inline,
                duration,
            } => self.task_finished(w, id, nbytes, type_name, inline, duration, out),
            WorkerToScheduler::TaskFailed { id, error } => self.task_failed(w, id, error, out),
            WorkerToScheduler::MissingDeps { id, keys } => self.missing_deps(w, id, keys, out),
            WorkerToScheduler::Released { ids } => self.released(w, ids, out),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn task_finished(
        &mut self,
        w: WorkerId,
        id: TaskId,
        nbytes: u64,
        type_name: String,
        inline: Option<shoal_proto::Payload>,
        duration: f64,
        out: &mut Vec<Command>,
    ) {
        if !self.workers.contains_key(&w) {
            return;
        }
        let Some(t) = self.tasks.get_mut(&id) else {
            // Forgotten meanwhile: the worker should not keep the result.
            return;
        };
        match &mut t.state {
            TaskState::Memory { holders } => {
                if !holders.contains(&w) {
                    holders.push(w);
                    if let Some(worker) = self.workers.get_mut(&w) {
                        worker.holds.insert(id);
                    }
                }
                return;
            }
            TaskState::Released | TaskState::Erred => {
                let key = t.key().to_string();
                self.to_free.entry(w).or_default().push(key);
                return;
            }
            TaskState::Assigned { worker, .. } if *worker == w => {
                self.forget_assignment(w, id);
            }
            // Computed again elsewhere, or a recomputation raced an old
            // assignment: the result is valid, so take it.
            TaskState::Assigned { .. } => self.unassign(id),
            TaskState::Waiting | TaskState::Ready => {}
        }
        self.note_duration(duration);
        self.finished(w, id, nbytes, type_name.clone());
        let t = &self.tasks[&id];
        if !t.wanted_by.is_empty() {
            let holders = self.addresses(&[w]);
            for &c in &t.wanted_by {
                out.push(Command::ToClient(
                    c,
                    SchedulerToClient::KeyMemory {
                        key: t.key().to_string(),
                        nbytes,
                        type_name: type_name.clone(),
                        inline: inline.clone(),
                        holders: holders.clone(),
                    },
                ));
            }
        }
    }

    fn note_duration(&mut self, d: f64) {
        if !d.is_finite() || d < 0.0 {
            return;
        }
        self.mean_duration = Some(match self.mean_duration {
            None => d,
            Some(m) => 0.9 * m + 0.1 * d,
        });
    }

    fn task_failed(&mut self, w: WorkerId, id: TaskId, error: TaskError, out: &mut Vec<Command>) {
        let Some(t) = self.tasks.get_mut(&id) else {
            return;
        };
        if t.state
            != (TaskState::Assigned {
                worker: w,
                started: true,
            })
            && t.state
                != (TaskState::Assigned {
                    worker: w,
                    started: false,
                })
        {
            return;
        }
        self.forget_assignment(w, id);
        let t = self.tasks.get_mut(&id).expect("task exists");
        if t.retries_left > 0 {
            t.retries_left -= 1;
            self.reschedule(id, out);
        } else {
            self.fail(id, error, out);
        }
    }

    fn missing_deps(&mut self, w: WorkerId, id: TaskId, keys: Vec<String>, out: &mut Vec<Command>) {
        // Only the worker the task is assigned to speaks for it; an answer
        // about a task taken back since is stale.
        match self.tasks.get(&id) {
            Some(t) if matches!(t.state, TaskState::Assigned { worker, .. } if worker == w) => {}
            _ => return,
        }
        for key in keys {
            let Some(d) = self.lookup(&key) else {
                continue;
            };
            let holders = match &mut self.tasks.get_mut(&d).expect("task exists").state {
                TaskState::Memory { holders } => std::mem::take(holders),
                _ => continue,
            };
            for h in holders {
                if let Some(worker) = self.workers.get_mut(&h) {
                    worker.holds.remove(&d);
                }
            }
            self.lost(d, out);
        }
        self.forget_assignment(w, id);
        self.reschedule(id, out);
    }

    /// Drops `id` from worker `w`'s books, without telling the worker.
    pub(crate) fn forget_assignment(&mut self, w: WorkerId, id: TaskId) {
        if let Some(wk) = self.workers.get_mut(&w) {
            wk.assigned.remove(&id);
            wk.stealing.remove(&id);
        }
    }

    fn worker_lost(&mut self, w: WorkerId, out: &mut Vec<Command>) {
        let Some(worker) = self.workers.remove(&w) else {
            return;
        };
        let address = worker.info.data_address.clone();
        for c in self.clients.keys() {
            out.push(Command::ToClient(
                *c,
                SchedulerToClient::WorkerRemoved {
                    data_address: address.clone(),
                },
            ));
        }
        let mut held: Vec<TaskId> = worker.holds.into_iter().collect();
        held.sort_unstable();
        for id in held {
            let t = self.tasks.get_mut(&id).expect("held task exists");
            if let TaskState::Memory { holders } = &mut t.state {
                holders.retain(|h| *h != w);
                if holders.is_empty() {
                    self.lost(id, out);
                }
            }
        }
        let mut assigned: Vec<TaskId> = worker.assigned.into_iter().collect();
        assigned.sort_unstable();
        for id in assigned {
            let t = self.tasks.get_mut(&id).expect("assigned task exists");
            let TaskState::Assigned { started, .. } = t.state else {
                continue;
            };
            if started {
                t.attempts += 1;
            }
            if t.attempts >= self.config.allowed_failures {
                let error = TaskError::KilledWorker {
                    key: t.key().to_string(),
                    last_worker: address.clone(),
                    attempts: t.attempts,
                };
                self.fail(id, error, out);
            } else {
                self.reschedule(id, out);
            }
        }
    }
}

/// `ids` without `c`.
fn without(ids: &[ClientId], c: ClientId) -> Box<[ClientId]> {
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
