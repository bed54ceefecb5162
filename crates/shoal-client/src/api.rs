//! The blocking API callers use: submit, reference counting, waits, gathers.
//!
//! Callers block on the shared condition variable without holding any lock
//! the network thread needs. Nothing here reads the socket.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};
use shoal_proto::{
    addr, put_data, run_on_worker, ClientToScheduler, CoordOp, CoordReply, FuncHash, FunctionDef,
    LimitSpec, LimitStatus, Payload, RunResponse, Submission, TaskError, TaskOptions, TaskRecord,
    TaskSpec, WorkerInfo, WorkerStatus,
};
use tokio::sync::mpsc::unbounded_channel;

use crate::net::{self, Outgoing, Shared};
use crate::queue::CompletionQueue;
use crate::table::{Collected, KeyEntry, KeyStatus, State};

/// Most tasks in one `Submit` message.
const SUBMIT_CHUNK: usize = 10_000;

/// Submissions queued for the network thread at most before a graph's next
/// part waits for it (a part is up to [`SUBMIT_CHUNK`] tasks).
pub(crate) const QUEUED_SUBMISSIONS: usize = 2;

/// How to reach the scheduler.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port`; a leading `tcp://` is accepted.
    pub address: String,
    pub name: String,
    pub connect_timeout: Duration,
    /// The cluster's secret, presented to the scheduler and to workers,
    /// and the TLS this client speaks to them.
    pub security: shoal_proto::Security,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("could not connect to the scheduler at {addr} within {secs:.1} s: {reason}")]
    Connect {
        addr: String,
        secs: f64,
        reason: String,
    },
    #[error("the scheduler at {addr} refused the connection: {reason}")]
    Refused { addr: String, reason: String },
    #[error("lost the connection to the scheduler: {0}")]
    Disconnected(String),
    #[error(
        "the scheduler removed this client: {0}; its futures were released and its locks \
         freed; make a new Client to go on"
    )]
    Removed(shoal_proto::Removal),
    #[error("the client is closed")]
    Closed,
    #[error("{0} is not a key this client holds a future for")]
    UnknownKey(String),
    #[error("could not start the client's network thread: {0}")]
    Start(String),
    #[error("subscription {0} has ended (or never began)")]
    NotSubscribed(u64),
}

/// What a key came to.
#[derive(Debug, Clone)]
pub enum Outcome {
    Value(Payload),
    Error(TaskError),
    Cancelled,
}

/// A connection to a shoal scheduler.
pub struct ClientCore {
    shared: Arc<Shared>,
    address: String,
    dashboard: Option<String>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl ClientCore {
    /// Connects and introduces this client.
    pub fn connect(config: ClientConfig) -> Result<ClientCore, ClientError> {
        addr::check_scheme(&config.address, config.security.tls.is_on()).map_err(|e| {
            ClientError::Connect {
                addr: config.address.clone(),
                secs: 0.0,
                reason: e.to_string(),
            }
        })?;
        let address = addr::strip_scheme(&config.address).to_string();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Start(e.to_string()))?;
        let (stream, id, dashboard) = rt.block_on(net::handshake(&address, &config))?;
        tracing::debug!("connected to {address} as client {id}");
        let (out_tx, out_rx) = unbounded_channel();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new()),
            changed: Condvar::new(),
            published: Condvar::new(),
            submissions_queued: AtomicUsize::new(0),
            room: Condvar::new(),
            out: out_tx,
            runtime: rt.handle().clone(),
            stop: tokio::sync::Notify::new(),
            security: config.security.clone(),
        });
        let for_net = shared.clone();
        let thread = std::thread::Builder::new()
            .name("shoal-client-net".into())
            .spawn(move || rt.block_on(net::run(for_net, stream, out_rx)))
            .map_err(|e| ClientError::Start(e.to_string()))?;
        let core = ClientCore {
            shared,
            address,
            dashboard,
            thread: Mutex::new(Some(thread)),
        };
        core.send(ClientToScheduler::Identify);
        // Know the cluster before returning, so the first `workers()` is right.
        let deadline = Instant::now() + config.connect_timeout;
        let mut st = core.shared.state.lock();
        while st.identities == 0 {
            st.check()?;
            if core
                .shared
                .changed
                .wait_until(&mut st, deadline)
                .timed_out()
            {
                break;
            }
        }
        drop(st);
        Ok(core)
    }

    /// The scheduler's address, `host:port`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The scheduler to carry data connections through, unless `direct`.
    fn relay(&self, direct: bool) -> Option<String> {
        (!direct).then(|| self.address.clone())
    }

    /// Where the scheduler's dashboard listens, `host:port`, if it runs. A
    /// dashboard on every interface is named by the scheduler's host as
    /// this client reached it.
    pub fn dashboard_address(&self) -> Option<String> {
        let bound = self.dashboard.as_deref()?;
        let (host, port) = bound.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let unspecified = host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified());
        if !unspecified {
            return Some(bound.to_string());
        }
        let (scheduler_host, _) = self.address.rsplit_once(':')?;
        Some(format!("{scheduler_host}:{port}"))
    }

    /// Tasks that ran, from position `since` of the scheduler's task stream
    /// (at most `limit`, the newest), and the position to ask from next.
    pub fn task_stream(
        &self,
        since: u64,
        limit: u32,
        timeout: Duration,
    ) -> Result<(Vec<TaskRecord>, u64), ClientError> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        let seen = st.task_streams;
        self.send_locked(&mut st, ClientToScheduler::GetTaskStream { since, limit });
        while st.task_streams == seen {
            st.check()?;
            if !self.wait_changed(&mut st, Some(deadline)) {
                return Err(ClientError::Disconnected(
                    "the scheduler did not answer in time".into(),
                ));
            }
        }
        Ok(std::mem::take(&mut st.task_stream))
    }

    /// Queues `msg` for the network thread.
    fn send(&self, msg: ClientToScheduler) {
        let mut st = self.lock();
        self.send_locked(&mut st, msg);
    }

    /// [`send`](Self::send) with the state locked by the caller: the keys
    /// disowned so far go first, so no message overtakes the `Disown` of a
    /// key dropped before it (a `Submit` naming the key again, say). Every
    /// message goes this way, and while the lock is held: the order of
    /// the queue is the order of the changes to the state.
    fn send_locked(&self, st: &mut State, msg: ClientToScheduler) {
        if let Some(disown) = st.flush_disowned() {
            let _ = self.shared.out.send(Outgoing::Message(disown));
        }
        let _ = self.shared.out.send(Outgoing::Message(msg));
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock()
    }

    /// Sends functions the scheduler has not seen from this client, then the
    /// tasks whose keys this client does not already hold. Every wanted spec
    /// adds one reference to its key (one per future handed to the user).
    /// While a graph is being sent in parts (below), these tasks join it:
    /// the scheduler keeps them with it until its last part.
    pub fn submit(
        &self,
        functions: Vec<FunctionDef>,
        options: Vec<TaskOptions>,
        tasks: Vec<TaskSpec>,
    ) -> Result<(), ClientError> {
        self.submit_any(functions, options, tasks, None)
    }

    /// [`submit`](Self::submit) for one part of a graph: with `last` false,
    /// its last part comes in a later call (the scheduler keeps the parts
    /// until then), so a caller never holds a large graph's specs all at
    /// once. One graph at a time: the caller keeps a second graph's parts
    /// out until the first one's last part.
    pub fn submit_part(
        &self,
        functions: Vec<FunctionDef>,
        options: Vec<TaskOptions>,
        tasks: Vec<TaskSpec>,
        last: bool,
    ) -> Result<(), ClientError> {
        self.submit_any(functions, options, tasks, Some(last))
    }

    fn submit_any(
        &self,
        functions: Vec<FunctionDef>,
        options: Vec<TaskOptions>,
        tasks: Vec<TaskSpec>,
        part: Option<bool>,
    ) -> Result<(), ClientError> {
        let mut st = self.lock();
        if part.is_some() {
            // A graph's parts are made faster than they are sent: wait for
            // the network thread, so queued parts never hold the graph's
            // specs all at once.
            while self.shared.submissions_queued.load(Ordering::Acquire) >= QUEUED_SUBMISSIONS
                && st.broken.is_none()
            {
                self.shared.room.wait(&mut st);
            }
        }
        st.check()?;
        let new_funcs: Vec<FunctionDef> = functions
            .into_iter()
            .filter(|f| st.sent_functions.insert(f.hash))
            .collect();
        let mut fresh = Vec::with_capacity(tasks.len());
        for spec in tasks {
            let wanted = spec.wanted;
            match st.keys.get_mut(&spec.key) {
                Some(e) => {
                    if wanted {
                        e.refs += 1;
                    }
                    if e.status == KeyStatus::Cancelled || !e.wanted {
                        // Cancelled earlier: ask again.
                        *e = KeyEntry {
                            refs: e.refs,
                            ..KeyEntry::new()
                        };
                        fresh.push(spec);
                    }
                }
                None => {
                    if wanted {
                        let mut e = KeyEntry::new();
                        e.refs = 1;
                        st.keys.insert(spec.key.clone(), e);
                    }
                    fresh.push(spec);
                }
            }
        }
        // Whether these tasks end with a `Submit`: not while a graph is
        // open, unless this is its last part, which goes even if empty (it
        // ends the graph the scheduler is keeping).
        let open = st.parts_open;
        let ends = match part {
            None => !open,
            Some(last) => {
                st.parts_open = !last;
                last
            }
        };
        let send_last = ends && (!fresh.is_empty() || open);
        // Sent under the lock (the queue is unbounded: this never waits),
        // so no other thread's part or `Submit` goes between the decision
        // above and these messages.
        if !new_funcs.is_empty() {
            self.send_locked(&mut st, ClientToScheduler::Functions(new_funcs));
        }
        // A large graph goes in parts, so neither side ever holds all of it
        // encoded at once; the scheduler keeps the parts until the last one.
        // Each part carries the options (a few per submission). Each task
        // moves once (a part taken off the front of what is left would move
        // the rest each time).
        let mut parts = fresh.len().div_ceil(SUBMIT_CHUNK);
        let mut tasks = fresh.into_iter();
        while parts > 1 || (parts == 1 && !ends) {
            parts -= 1;
            self.shared
                .submissions_queued
                .fetch_add(1, Ordering::AcqRel);
            self.send_locked(
                &mut st,
                ClientToScheduler::SubmitPart(Submission {
                    options: options.clone(),
                    tasks: tasks.by_ref().take(SUBMIT_CHUNK).collect(),
                }),
            );
        }
        if send_last {
            self.shared
                .submissions_queued
                .fetch_add(1, Ordering::AcqRel);
            self.send_locked(
                &mut st,
                ClientToScheduler::Submit(Submission {
                    options,
                    tasks: tasks.collect(),
                }),
            );
        }
        drop(st);
        Ok(())
    }

    /// Asks every worker, now and later, to import these modules ahead of
    /// need.
    pub fn preload(&self, modules: Vec<String>) {
        if !modules.is_empty() {
            self.send(ClientToScheduler::Preload(modules));
        }
    }

    /// Whether this connection already queued the function with this hash.
    /// If so, its `Functions` message is ahead of anything queued now.
    pub fn has_function(&self, hash: FuncHash) -> bool {
        self.lock().sent_functions.contains(&hash)
    }

    /// Adds a reference to a key. A key this client did not submit (a
    /// future found in a result, a queue or a variable) is asked for: the
    /// scheduler keeps it for this client and says where it is.
    pub fn add_ref(&self, key: &str) -> Result<(), ClientError> {
        let mut st = self.lock();
        if let Some(e) = st.keys.get_mut(key) {
            e.refs += 1;
            return Ok(());
        }
        st.check()?;
        let mut e = KeyEntry::new();
        e.refs = 1;
        st.keys.insert(key.to_string(), e);
        self.send_locked(&mut st, ClientToScheduler::Want(vec![key.to_string()]));
        Ok(())
    }

    /// Drops a reference; with the last one the client disowns the key and
    /// the scheduler may forget it.
    pub fn drop_ref(&self, key: &str) {
        let mut st = self.lock();
        let Some(e) = st.keys.get_mut(key) else {
            return;
        };
        e.refs = e.refs.saturating_sub(1);
        if e.refs > 0 {
            return;
        }
        let wanted = e.wanted;
        st.keys.remove(key);
        // Disowns go in batches (a list of futures let go of at once is one
        // message): the first since the last flush queues a marker that
        // sends them all when the network thread reaches it. Noted under
        // the lock, so a later message naming the key again cannot go
        // before its `Disown` (see `send_locked`).
        if wanted && st.disown(key.to_string()) {
            let epoch = st.disown_epoch;
            let _ = self.shared.out.send(Outgoing::Disowned { epoch });
        }
    }

    /// Marks keys cancelled and disowns them.
    pub fn cancel(&self, keys: &[String]) {
        let mut st = self.lock();
        let mut disown = Vec::new();
        for k in keys {
            if let Some(e) = st.keys.get_mut(k) {
                if e.status == KeyStatus::Pending || e.status == KeyStatus::Finished {
                    e.inline = None;
                    e.complete(k, KeyStatus::Cancelled);
                }
                if e.wanted {
                    e.wanted = false;
                    disown.push(k.clone());
                }
            }
        }
        if !disown.is_empty() {
            self.send_locked(&mut st, ClientToScheduler::Cancel(disown));
        }
        drop(st);
        self.shared.changed.notify_all();
    }

    /// Computes these erred keys again, with the erred tasks upstream of
    /// them; they are pending from now on (keys in any other state are left
    /// as they are).
    pub fn retry(&self, keys: &[String]) {
        let mut st = self.lock();
        let erred: Vec<String> = keys
            .iter()
            .filter(|k| {
                st.keys
                    .get(*k)
                    .is_some_and(|e| e.status == KeyStatus::Erred)
            })
            .cloned()
            .collect();
        st.lost(&erred);
        if !erred.is_empty() {
            self.send_locked(&mut st, ClientToScheduler::Retry(erred));
        }
    }

    /// Sends a file for every worker, now and later, to save and import.
    pub fn upload(&self, name: String, data: bytes::Bytes) {
        self.send(ClientToScheduler::Upload { name, data });
    }

    /// Sends a pickled worker plugin for every worker that joins from now
    /// on (`None`: forget the plugin of that name).
    pub fn register_plugin(&self, name: String, plugin: Option<Payload>) {
        self.send(match plugin {
            Some(plugin) => ClientToScheduler::RegisterPlugin { name, plugin },
            None => ClientToScheduler::UnregisterPlugin { name },
        });
    }

    /// Why this client can no longer reach the scheduler (its connection
    /// broke, or the scheduler removed it), if it cannot.
    pub fn broken(&self) -> Option<ClientError> {
        self.lock().check().err()
    }

    /// Every key this client holds.
    pub fn keys(&self) -> Vec<String> {
        self.lock().keys.keys().cloned().collect()
    }

    /// How many futures of this client hold a key (0 if none).
    pub fn refcount(&self, key: &str) -> u32 {
        self.lock().keys.get(key).map_or(0, |e| e.refs)
    }

    /// The status of a key, if this client holds it.
    pub fn status(&self, key: &str) -> Option<KeyStatus> {
        self.lock().keys.get(key).map(|e| e.status)
    }

    /// The type name and size of a finished key's result.
    pub fn result_info(&self, key: &str) -> Option<(String, u64)> {
        let st = self.lock();
        let e = st.keys.get(key)?;
        (e.status == KeyStatus::Finished).then(|| (e.type_name.clone(), e.nbytes))
    }

    /// The error of an erred key.
    pub fn error(&self, key: &str) -> Option<TaskError> {
        self.lock().keys.get(key)?.error.clone()
    }

    /// Pushes each key onto `queue` when it is done (at once if it already is).
    pub fn watch(&self, keys: &[String], queue: &Arc<CompletionQueue>) {
        let mut st = self.lock();
        for k in keys {
            match st.keys.get_mut(k) {
                Some(e) if !e.status.is_done() => e.watchers.push(queue.clone()),
                _ => queue.push(k.clone()),
            }
        }
    }

    /// Waits until every key is done; false on timeout. Errs if the
    /// connection is gone while keys are still pending.
    pub fn wait(&self, keys: &[String], timeout: Option<Duration>) -> Result<bool, ClientError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.lock();
        Ok(self.wait_locked(&mut st, keys, deadline)?.is_some())
    }

    /// Waits until every key is done or one of them erred (so a gather
    /// raises the first error at once, as in Dask): `Ok(Some(Some(key)))`
    /// for an erred key (the first in `keys` order among those erred when
    /// looked at), `Ok(Some(None))` when every key is done without one,
    /// `Ok(None)` on timeout. Keys this client does not hold count as done.
    pub fn first_error(
        &self,
        keys: &[String],
        timeout: Option<Duration>,
    ) -> Result<Option<Option<String>>, ClientError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.lock();
        // Keys before `front` are done (in order, each looked at once); the
        // rest are searched for an error only when some key erred since
        // the last search. A wake-up per batch of results then costs
        // little, not a pass over every pending key (quadratic in a
        // 50,000-key gather).
        let mut front = 0;
        let mut searched = None;
        let status = |st: &State, k: &str| st.keys.get(k).map(|e| e.status);
        loop {
            if searched != Some(st.errors) {
                searched = Some(st.errors);
                let erred = keys[front..]
                    .iter()
                    .find(|k| status(&st, k) == Some(KeyStatus::Erred));
                if let Some(k) = erred {
                    return Ok(Some(Some(k.clone())));
                }
            }
            while let Some(k) = keys.get(front) {
                match status(&st, k) {
                    Some(KeyStatus::Pending) => break,
                    Some(KeyStatus::Erred) => return Ok(Some(Some(k.clone()))),
                    _ => front += 1,
                }
            }
            if front == keys.len() {
                return Ok(Some(None));
            }
            st.check()?;
            if !self.wait_changed(&mut st, deadline) {
                return Ok(None);
            }
        }
    }

    /// Waits, holding the lock between checks, until every key is done.
    /// `None` on timeout.
    fn wait_locked(
        &self,
        st: &mut MutexGuard<'_, State>,
        keys: &[String],
        deadline: Option<Instant>,
    ) -> Result<Option<()>, ClientError> {
        if let Some(removed @ ClientError::Removed(_)) = &st.broken {
            // Its futures were released: even a finished one's result may
            // be gone from its worker.
            return Err(removed.clone());
        }
        for k in keys {
            loop {
                let done = st.keys.get(k).is_none_or(|e| e.status.is_done());
                if done {
                    break;
                }
                st.check()?;
                if !self.wait_changed(st, deadline) {
                    return Ok(None);
                }
            }
        }
        Ok(Some(()))
    }

    /// Waits for the next change of state; false once `deadline` passed.
    fn wait_changed(&self, st: &mut MutexGuard<'_, State>, deadline: Option<Instant>) -> bool {
        match deadline {
            None => {
                self.shared.changed.wait(st);
                true
            }
            Some(d) => !self.shared.changed.wait_until(st, d).timed_out() || Instant::now() < d,
        }
    }

    /// Waits for every key and returns what each came to, fetching results
    /// that did not come inline from the workers holding them. `None` on
    /// timeout.
    ///
    /// `direct`: fetch from the workers themselves; otherwise through the
    /// scheduler (Dask's `direct=False`).
    pub fn gather(
        &self,
        keys: &[String],
        timeout: Option<Duration>,
        direct: bool,
    ) -> Result<Option<Vec<Outcome>>, ClientError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let collected = {
                let mut st = self.lock();
                if self.wait_locked(&mut st, keys, deadline)?.is_none() {
                    return Ok(None);
                }
                st.collect(keys)?
            };
            let (mut outcomes, remote) = match collected {
                Collected::Done { outcomes, remote } => (outcomes, remote),
                // A result was lost after the wait; wait for it again.
                Collected::NotReady => continue,
            };
            let missing = if remote.is_empty() {
                Vec::new()
            } else {
                net::fetch(&self.shared, remote, &mut outcomes, self.relay(direct))
            };
            if missing.is_empty() {
                return Ok(Some(outcomes.into_iter().flatten().collect()));
            }
            // A holder did not give the data: try the key's other holders;
            // when none is left, ask the scheduler where the key is now (a
            // copy elsewhere), or wait for it to be computed again (it
            // tells us with KeyLost, then KeyMemory).
            let mut st = self.lock();
            let ask = st.unreachable(&missing);
            if !ask.is_empty() {
                self.send_locked(&mut st, ClientToScheduler::Want(ask));
            }
        }
    }

    /// Creates or changes a cluster-wide limit.
    pub fn set_limit(&self, spec: LimitSpec) -> Result<(), ClientError> {
        self.lock().check()?;
        self.send(ClientToScheduler::SetLimit(spec));
        Ok(())
    }

    /// Asks the scheduler for its workers' state, its task count and its
    /// limits.
    #[allow(clippy::type_complexity)]
    pub fn identify(
        &self,
        timeout: Duration,
    ) -> Result<(Vec<WorkerStatus>, u64, Vec<LimitStatus>), ClientError> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        let seen = st.identities;
        self.send_locked(&mut st, ClientToScheduler::Identify);
        while st.identities == seen {
            st.check()?;
            if !self.wait_changed(&mut st, Some(deadline)) {
                return Err(ClientError::Disconnected(
                    "the scheduler did not answer in time".into(),
                ));
            }
        }
        let (workers, tasks) = st.identity.clone();
        Ok((workers, tasks, st.limits.clone()))
    }

    /// Data addresses of the workers holding a finished key.
    pub fn who_has(&self, key: &str) -> Vec<String> {
        let st = self.lock();
        match st.keys.get(key) {
            Some(e) if e.status == KeyStatus::Finished => e.holders.clone(),
            _ => Vec::new(),
        }
    }

    /// The workers the scheduler reported.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.lock().workers.values().cloned().collect()
    }

    /// Waits until at least `n` workers are connected and none of
    /// `without` (data addresses, with or without `tcp://`) is; false on
    /// timeout.
    pub fn wait_for_workers(
        &self,
        n: usize,
        without: &[String],
        timeout: Option<Duration>,
    ) -> Result<bool, ClientError> {
        let without: Vec<&str> = without.iter().map(|a| addr::strip_scheme(a)).collect();
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.lock();
        while st.workers.len() < n || without.iter().any(|a| st.workers.contains_key(*a)) {
            st.check()?;
            if !self.wait_changed(&mut st, deadline) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Sends a coordination request; returns its number, for
    /// [`ClientCore::wait_reply`]. The scheduler answers `TimedOut` after
    /// `timeout` seconds if it cannot grant it by then.
    pub fn request(&self, op: CoordOp, timeout: Option<f64>) -> Result<u64, ClientError> {
        let mut st = self.lock();
        st.check()?;
        let req = st.next_request;
        st.next_request += 1;
        if let CoordOp::Subscribe { sub, .. } | CoordOp::SubscribeEvents { sub, .. } = &op {
            st.published.entry(*sub).or_default();
        }
        let ended = matches!(op, CoordOp::Unsubscribe { .. });
        if let CoordOp::Unsubscribe { sub } = &op {
            st.published.remove(sub);
        }
        self.send_locked(&mut st, ClientToScheduler::Coord { req, op, timeout });
        drop(st);
        if ended {
            // A thread waiting on that subscription returns now.
            self.shared.published.notify_all();
        }
        Ok(req)
    }

    /// Waits up to `slice` for the answer to request `req`; `None` if it has
    /// not come yet.
    pub fn wait_reply(&self, req: u64, slice: Duration) -> Result<Option<CoordReply>, ClientError> {
        let deadline = Instant::now() + slice;
        let mut st = self.lock();
        loop {
            if let Some(r) = st.replies.remove(&req) {
                return Ok(Some(r));
            }
            st.check()?;
            if !self.wait_changed(&mut st, Some(deadline)) {
                return Ok(None);
            }
        }
    }

    /// Waits up to `slice` for the next message of subscription `sub`.
    pub fn next_published(
        &self,
        sub: u64,
        slice: Duration,
    ) -> Result<Option<Payload>, ClientError> {
        let deadline = Instant::now() + slice;
        let mut st = self.lock();
        loop {
            match st.published.get_mut(&sub) {
                Some(q) => {
                    if let Some(m) = q.pop_front() {
                        return Ok(Some(m));
                    }
                }
                None => return Err(ClientError::NotSubscribed(sub)),
            }
            st.check()?;
            if Instant::now() >= deadline {
                return Ok(None);
            }
            // Not `changed`: a finished task must not wake this thread.
            self.shared.published.wait_until(&mut st, deadline);
        }
    }

    /// Messages of subscription `sub` received and not taken yet.
    pub fn buffered(&self, sub: u64) -> usize {
        self.lock().published.get(&sub).map_or(0, |q| q.len())
    }

    /// The scheduler's id and when it started (seconds since the epoch).
    pub fn scheduler_identity(&self) -> (String, f64) {
        self.lock().scheduler.clone()
    }

    /// Runs a pickled call on each worker (by data address) at once;
    /// returns each worker's answer, or why it could not answer.
    pub fn run_on_workers(
        &self,
        workers: Vec<String>,
        call: Payload,
        timeout: Option<Duration>,
        direct: bool,
    ) -> Vec<(String, Result<RunResponse, String>)> {
        let (tx, rx) = std::sync::mpsc::channel();
        for (i, w) in workers.iter().enumerate() {
            let tx = tx.clone();
            let addr = addr::strip_scheme(w).to_string();
            let call = call.clone();
            let security = self.shared.security.clone();
            let via = self.relay(direct);
            self.shared.runtime.spawn(async move {
                let res =
                    run_on_worker(&addr, &security, via.as_deref().into(), call, timeout).await;
                let _ = tx.send((i, res.map_err(|e| e.to_string())));
            });
        }
        drop(tx);
        let mut answers: Vec<Option<Result<RunResponse, String>>> = vec![None; workers.len()];
        while let Ok((i, res)) = rx.recv() {
            answers[i] = Some(res);
        }
        workers
            .into_iter()
            .zip(answers)
            .map(|(w, a)| (w, a.unwrap_or_else(|| Err("the client is closed".into()))))
            .collect()
    }

    /// Sends values straight to workers' data servers (`scatter`), all
    /// workers at once: `puts` is (worker address, [(key, value)]). Each
    /// worker holds its values until the scheduler claims them (submit
    /// them as literals with no frames, restricted to that worker).
    /// Returns, per worker, why it did not take them (None: it did).
    pub fn put_on_workers(
        &self,
        puts: Vec<(String, Vec<(String, Payload)>)>,
        timeout: Duration,
        direct: bool,
    ) -> Vec<Option<String>> {
        let (tx, rx) = std::sync::mpsc::channel();
        let n = puts.len();
        for (i, (worker, items)) in puts.into_iter().enumerate() {
            let tx = tx.clone();
            let addr = addr::strip_scheme(&worker).to_string();
            let security = self.shared.security.clone();
            let via = self.relay(direct);
            self.shared.runtime.spawn(async move {
                let res = put_data(&addr, &security, via.as_deref().into(), items, timeout).await;
                let _ = tx.send((i, res.err().map(|e| e.to_string())));
            });
        }
        drop(tx);
        let mut answers = vec![Some("the client is closed".to_string()); n];
        while let Ok((i, res)) = rx.recv() {
            answers[i] = res;
        }
        answers
    }

    /// Asks the scheduler to stop itself and every worker.
    pub fn shutdown_cluster(&self) {
        self.lock().shutting_down = true;
        self.send(ClientToScheduler::Shutdown);
    }

    /// Closes the connection and waits for the network thread.
    pub fn close(&self) {
        {
            let mut st = self.lock();
            if st.broken.is_none() {
                st.broken = Some(ClientError::Closed);
            }
            st.fail_pending("CancelledError", "the client was closed");
        }
        self.shared.changed.notify_all();
        self.shared.published.notify_all();
        self.shared.stop.notify_one();
        let handle = self.thread.lock().take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Drop for ClientCore {
    fn drop(&mut self) {
        self.close();
    }
}
