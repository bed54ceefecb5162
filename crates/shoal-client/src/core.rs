//! The connection to the scheduler and the blocking API on top of it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use shoal_proto::{
    get_data, read_frame, write_frame, ClientToScheduler, FuncHash, FunctionDef, Hello, Payload,
    SchedulerToClient, TaskError, TaskSpec, Welcome, WorkerInfo, WorkerStatus,
};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::queue::CompletionQueue;
use crate::table::{KeyEntry, KeyStatus, Table};

/// Most tasks in one `Submit` message.
const SUBMIT_CHUNK: usize = 10_000;

/// How long one fetch of results from a worker may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(300);

/// How to reach the scheduler.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port`; a leading `tcp://` is accepted.
    pub address: String,
    pub name: String,
    pub connect_timeout: Duration,
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
    #[error("the client is closed")]
    Closed,
    #[error("{0} is not a key this client holds a future for")]
    UnknownKey(String),
    #[error("could not start the client's network thread: {0}")]
    Start(String),
}

/// What a key came to.
#[derive(Debug, Clone)]
pub enum Outcome {
    Value(Payload),
    Error(TaskError),
    Cancelled,
}

struct State {
    keys: Table,
    workers: BTreeMap<String, WorkerInfo>,
    sent_functions: HashSet<FuncHash>,
    /// Set once the connection is gone, with the reason.
    broken: Option<ClientError>,
    shutting_down: bool,
    /// How many `Identity` answers arrived, and the latest.
    identities: u64,
    identity: (Vec<WorkerStatus>, u64),
}

struct Inner {
    state: Mutex<State>,
    changed: Condvar,
    out: UnboundedSender<ClientToScheduler>,
    runtime: tokio::runtime::Handle,
    stop: tokio::sync::Notify,
}

/// A connection to a shoal scheduler.
pub struct ClientCore {
    inner: Arc<Inner>,
    id: u64,
    address: String,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn strip_scheme(addr: &str) -> &str {
    addr.strip_prefix("tcp://").unwrap_or(addr)
}

impl ClientCore {
    /// Connects and introduces this client.
    pub fn connect(config: ClientConfig) -> Result<ClientCore, ClientError> {
        let addr = strip_scheme(&config.address).to_string();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Start(e.to_string()))?;
        let (stream, id) = rt.block_on(handshake(&addr, &config))?;
        let (out_tx, out_rx) = unbounded_channel();
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                keys: HashMap::new(),
                workers: BTreeMap::new(),
                sent_functions: HashSet::new(),
                broken: None,
                shutting_down: false,
                identities: 0,
                identity: (Vec::new(), 0),
            }),
            changed: Condvar::new(),
            out: out_tx,
            runtime: rt.handle().clone(),
            stop: tokio::sync::Notify::new(),
        });
        let net = inner.clone();
        let thread = std::thread::Builder::new()
            .name("shoal-client-net".into())
            .spawn(move || rt.block_on(run(net, stream, out_rx)))
            .map_err(|e| ClientError::Start(e.to_string()))?;
        let core = ClientCore {
            inner,
            id,
            address: addr,
            thread: Mutex::new(Some(thread)),
        };
        core.send(ClientToScheduler::Identify);
        // Know the cluster before returning, so the first `workers()` is right.
        let deadline = Instant::now() + config.connect_timeout;
        let mut st = core.inner.state.lock();
        while st.identities == 0 {
            core.check(&st)?;
            if core.inner.changed.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        drop(st);
        Ok(core)
    }

    /// The scheduler's id for this client.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The scheduler's address.
    pub fn address(&self) -> &str {
        &self.address
    }

    fn send(&self, msg: ClientToScheduler) {
        let _ = self.inner.out.send(msg);
    }

    fn check(&self, st: &State) -> Result<(), ClientError> {
        match &st.broken {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Sends functions the scheduler has not seen from this client, then the
    /// tasks whose keys this client does not already hold. Every spec adds one
    /// reference to its key (one per future handed to the user).
    pub fn submit(
        &self,
        functions: Vec<FunctionDef>,
        tasks: Vec<TaskSpec>,
    ) -> Result<(), ClientError> {
        let mut st = self.inner.state.lock();
        self.check(&st)?;
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
        drop(st);
        if !new_funcs.is_empty() {
            self.send(ClientToScheduler::Functions(new_funcs));
        }
        // A large graph goes in parts, so neither side ever holds all of it
        // encoded at once; the scheduler keeps the parts until the last one.
        while fresh.len() > SUBMIT_CHUNK {
            let rest = fresh.split_off(SUBMIT_CHUNK);
            self.send(ClientToScheduler::SubmitPart(std::mem::replace(
                &mut fresh, rest,
            )));
        }
        if !fresh.is_empty() {
            self.send(ClientToScheduler::Submit(fresh));
        }
        Ok(())
    }

    /// Whether this connection already queued the function with this hash.
    /// If so, its `Functions` message is ahead of anything queued now.
    pub fn has_function(&self, hash: FuncHash) -> bool {
        self.inner.state.lock().sent_functions.contains(&hash)
    }

    /// Adds a reference to a key this client holds.
    pub fn acquire(&self, key: &str) -> Result<(), ClientError> {
        let mut st = self.inner.state.lock();
        let e = st
            .keys
            .get_mut(key)
            .ok_or_else(|| ClientError::UnknownKey(key.to_string()))?;
        e.refs += 1;
        Ok(())
    }

    /// Drops a reference; the last one tells the scheduler to forget the key.
    pub fn release(&self, key: &str) {
        let mut st = self.inner.state.lock();
        let Some(e) = st.keys.get_mut(key) else {
            return;
        };
        e.refs = e.refs.saturating_sub(1);
        if e.refs > 0 {
            return;
        }
        let wanted = e.wanted;
        st.keys.remove(key);
        drop(st);
        if wanted {
            self.send(ClientToScheduler::Release(vec![key.to_string()]));
        }
    }

    /// Marks keys cancelled and tells the scheduler this client no longer
    /// wants them.
    pub fn cancel(&self, keys: &[String]) {
        let mut st = self.inner.state.lock();
        let mut release = Vec::new();
        for k in keys {
            if let Some(e) = st.keys.get_mut(k) {
                if e.status == KeyStatus::Pending || e.status == KeyStatus::Finished {
                    e.inline = None;
                    e.complete(k, KeyStatus::Cancelled);
                }
                if e.wanted {
                    e.wanted = false;
                    release.push(k.clone());
                }
            }
        }
        drop(st);
        self.inner.changed.notify_all();
        if !release.is_empty() {
            self.send(ClientToScheduler::Release(release));
        }
    }

    /// The status of a key, if this client holds it.
    pub fn status(&self, key: &str) -> Option<KeyStatus> {
        self.inner.state.lock().keys.get(key).map(|e| e.status)
    }

    /// The type name and size of a finished key's result.
    pub fn result_info(&self, key: &str) -> Option<(String, u64)> {
        let st = self.inner.state.lock();
        let e = st.keys.get(key)?;
        (e.status == KeyStatus::Finished).then(|| (e.type_name.clone(), e.nbytes))
    }

    /// The error of an erred key.
    pub fn error(&self, key: &str) -> Option<TaskError> {
        self.inner.state.lock().keys.get(key)?.error.clone()
    }

    /// Pushes each key onto `queue` when it is done (at once if it already is).
    pub fn watch(&self, keys: &[String], queue: &Arc<CompletionQueue>) {
        let mut st = self.inner.state.lock();
        for k in keys {
            match st.keys.get_mut(k) {
                Some(e) if !e.status.is_done() => e.watchers.push(queue.clone()),
                _ => queue.push(k.clone()),
            }
        }
    }

    /// Waits until every key is done; false on timeout. Errors if the
    /// connection is gone while keys are still pending.
    pub fn wait(&self, keys: &[String], timeout: Option<Duration>) -> Result<bool, ClientError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.inner.state.lock();
        for k in keys {
            loop {
                let done = st.keys.get(k).is_none_or(|e| e.status.is_done());
                if done {
                    break;
                }
                self.check(&st)?;
                if !self.wait_changed(&mut st, deadline) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Waits until at least `count` of `keys` are done; false on timeout.
    pub fn wait_count(
        &self,
        keys: &[String],
        count: usize,
        timeout: Option<Duration>,
    ) -> Result<bool, ClientError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.inner.state.lock();
        loop {
            let done = keys
                .iter()
                .filter(|k| st.keys.get(*k).is_none_or(|e| e.status.is_done()))
                .count();
            if done >= count.min(keys.len()) {
                return Ok(true);
            }
            self.check(&st)?;
            if !self.wait_changed(&mut st, deadline) {
                return Ok(false);
            }
        }
    }

    /// Waits for the next change of state; false once `deadline` passed.
    fn wait_changed(
        &self,
        st: &mut parking_lot::MutexGuard<'_, State>,
        deadline: Option<Instant>,
    ) -> bool {
        match deadline {
            None => {
                self.inner.changed.wait(st);
                true
            }
            Some(d) => !self.inner.changed.wait_until(st, d).timed_out() || Instant::now() < d,
        }
    }

    /// Waits for every key and returns what each came to, fetching results
    /// that did not come inline from the workers holding them. `None` on
    /// timeout.
    pub fn gather(
        &self,
        keys: &[String],
        timeout: Option<Duration>,
    ) -> Result<Option<Vec<Outcome>>, ClientError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if !self.wait(keys, left)? {
                return Ok(None);
            }
            let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(keys.len());
            let mut remote: BTreeMap<String, Vec<(usize, String)>> = BTreeMap::new();
            {
                let st = self.inner.state.lock();
                for (i, k) in keys.iter().enumerate() {
                    let e = st
                        .keys
                        .get(k)
                        .ok_or_else(|| ClientError::UnknownKey(k.clone()))?;
                    outcomes.push(match e.status {
                        KeyStatus::Erred => Some(Outcome::Error(
                            e.error.clone().unwrap_or_else(|| lost_error(k)),
                        )),
                        KeyStatus::Cancelled => Some(Outcome::Cancelled),
                        KeyStatus::Finished => match &e.inline {
                            Some(p) => Some(Outcome::Value(p.clone())),
                            None => {
                                let holder = e.holders.first().cloned().unwrap_or_default();
                                remote.entry(holder).or_default().push((i, k.clone()));
                                None
                            }
                        },
                        KeyStatus::Pending => unreachable!("waited for every key"),
                    });
                }
            }
            if remote.is_empty() {
                return Ok(Some(
                    outcomes.into_iter().map(|o| o.expect("filled")).collect(),
                ));
            }
            let missing = self.fetch(remote, &mut outcomes);
            if missing.is_empty() {
                return Ok(Some(
                    outcomes.into_iter().map(|o| o.expect("filled")).collect(),
                ));
            }
            // The data is gone from its holders: wait for the scheduler to
            // compute it again (it tells us with KeyLost, then KeyMemory).
            self.mark_pending_unless_changed(&missing);
        }
    }

    /// Fetches remote results into `outcomes`; returns keys no holder had.
    fn fetch(
        &self,
        remote: BTreeMap<String, Vec<(usize, String)>>,
        outcomes: &mut [Option<Outcome>],
    ) -> Vec<String> {
        let (tx, rx) = std::sync::mpsc::channel();
        let n = remote.len();
        for (addr, wanted) in remote {
            let tx = tx.clone();
            self.inner.runtime.spawn(async move {
                let keys = wanted.iter().map(|(_, k)| k.clone()).collect();
                let res = get_data(&addr, keys, FETCH_TIMEOUT).await;
                let _ = tx.send((wanted, res));
            });
        }
        let mut missing = Vec::new();
        for _ in 0..n {
            let Ok((wanted, res)) = rx.recv() else {
                break;
            };
            match res {
                Ok(items) => {
                    let mut got: HashMap<String, Payload> = items
                        .into_iter()
                        .filter_map(|(k, v)| v.map(|v| (k, v)))
                        .collect();
                    for (i, k) in wanted {
                        match got.remove(&k) {
                            Some(p) => outcomes[i] = Some(Outcome::Value(p)),
                            None => missing.push(k),
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!("{e}");
                    missing.extend(wanted.into_iter().map(|(_, k)| k));
                }
            }
        }
        missing
    }

    fn mark_pending_unless_changed(&self, keys: &[String]) {
        let mut st = self.inner.state.lock();
        for k in keys {
            if let Some(e) = st.keys.get_mut(k) {
                if e.status == KeyStatus::Finished && e.inline.is_none() {
                    e.status = KeyStatus::Pending;
                    e.holders.clear();
                }
            }
        }
    }

    /// Asks the scheduler for its workers' state and its task count.
    pub fn identify(&self, timeout: Duration) -> Result<(Vec<WorkerStatus>, u64), ClientError> {
        let deadline = Instant::now() + timeout;
        let mut st = self.inner.state.lock();
        let seen = st.identities;
        self.send(ClientToScheduler::Identify);
        while st.identities == seen {
            self.check(&st)?;
            if !self.wait_changed(&mut st, Some(deadline)) {
                return Err(ClientError::Disconnected(
                    "the scheduler did not answer in time".into(),
                ));
            }
        }
        Ok(st.identity.clone())
    }

    /// Data addresses of the workers holding a finished key.
    pub fn who_has(&self, key: &str) -> Vec<String> {
        let st = self.inner.state.lock();
        match st.keys.get(key) {
            Some(e) if e.status == KeyStatus::Finished => e.holders.clone(),
            _ => Vec::new(),
        }
    }

    /// The workers the scheduler reported.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.inner.state.lock().workers.values().cloned().collect()
    }

    /// Waits until at least `n` workers are connected and none of
    /// `without` (data addresses) is; false on timeout.
    pub fn wait_for_workers(
        &self,
        n: usize,
        without: &[String],
        timeout: Option<Duration>,
    ) -> Result<bool, ClientError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.inner.state.lock();
        while st.workers.len() < n || without.iter().any(|a| st.workers.contains_key(a)) {
            self.check(&st)?;
            if !self.wait_changed(&mut st, deadline) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// How many keys this client holds.
    pub fn key_count(&self) -> usize {
        self.inner.state.lock().keys.len()
    }

    /// Whether the connection is up.
    pub fn is_connected(&self) -> bool {
        self.inner.state.lock().broken.is_none()
    }

    /// Asks the scheduler to stop itself and every worker.
    pub fn shutdown_cluster(&self) {
        self.inner.state.lock().shutting_down = true;
        self.send(ClientToScheduler::Shutdown);
    }

    /// Closes the connection and waits for the network thread.
    pub fn close(&self) {
        {
            let mut st = self.inner.state.lock();
            if st.broken.is_none() {
                st.broken = Some(ClientError::Closed);
            }
            fail_pending(&mut st, "CancelledError", "the client was closed");
        }
        self.inner.changed.notify_all();
        self.inner.stop.notify_one();
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

fn lost_error(key: &str) -> TaskError {
    TaskError::Raised {
        exception: Payload::default(),
        type_name: "RuntimeError".into(),
        message: format!("the result of {key} is unavailable"),
        traceback: String::new(),
    }
}

/// Errs every pending key; `type_name` is the Python exception to raise.
fn fail_pending(st: &mut State, type_name: &str, reason: &str) {
    for (k, e) in st.keys.iter_mut() {
        if e.status == KeyStatus::Pending {
            e.error = Some(TaskError::Raised {
                exception: Payload::default(),
                type_name: type_name.into(),
                message: format!("{k} was not computed: {reason}"),
                traceback: String::new(),
            });
            e.complete(k, KeyStatus::Erred);
        }
    }
}

async fn handshake(addr: &str, config: &ClientConfig) -> Result<(TcpStream, u64), ClientError> {
    let secs = config.connect_timeout.as_secs_f64();
    let connect_err = |reason: String| ClientError::Connect {
        addr: addr.to_string(),
        secs,
        reason,
    };
    let work = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        write_frame(
            &mut stream,
            &Hello::Client {
                name: config.name.clone(),
            },
        )
        .await
        .map_err(|e| connect_err(e.to_string()))?;
        let mut buf = Vec::new();
        let welcome: Option<Welcome> = read_frame(&mut stream, &mut buf)
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        match welcome {
            Some(Welcome::Client { id }) => Ok((stream, id)),
            Some(Welcome::Refused { reason }) => Err(ClientError::Refused {
                addr: addr.to_string(),
                reason,
            }),
            other => Err(connect_err(format!("unexpected answer {other:?}"))),
        }
    };
    tokio::time::timeout(config.connect_timeout, work)
        .await
        .map_err(|_| connect_err("timed out".into()))?
}

async fn run(inner: Arc<Inner>, stream: TcpStream, out_rx: UnboundedReceiver<ClientToScheduler>) {
    let (mut r, w) = stream.into_split();
    let mut writer = tokio::spawn(shoal_proto::writer(w, out_rx, |m| {
        matches!(m, ClientToScheduler::Shutdown)
    }));
    let mut buf = Vec::new();
    let reason = loop {
        let frame = tokio::select! {
            f = read_frame::<_, Vec<SchedulerToClient>>(&mut r, &mut buf) => f,
            _ = inner.stop.notified() => break "the client was closed".to_string(),
        };
        match frame {
            Ok(Some(msgs)) => {
                let mut st = inner.state.lock();
                for m in msgs {
                    apply(&mut st, m);
                }
                drop(st);
                inner.changed.notify_all();
            }
            Ok(None) => break "the scheduler closed the connection".to_string(),
            Err(e) => break e.to_string(),
        }
    };
    if inner.state.lock().shutting_down {
        // Deliver the shutdown request before hanging up.
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut writer).await;
    }
    writer.abort();
    let mut st = inner.state.lock();
    if st.broken.is_none() {
        st.broken = Some(ClientError::Disconnected(reason.clone()));
    }
    fail_pending(&mut st, "ConnectionError", &reason);
    drop(st);
    inner.changed.notify_all();
}

fn apply(st: &mut State, msg: SchedulerToClient) {
    match msg {
        SchedulerToClient::KeyMemory {
            key,
            nbytes,
            type_name,
            inline,
            holders,
        } => {
            if let Some(e) = st.keys.get_mut(&key) {
                if e.status == KeyStatus::Cancelled || !e.wanted {
                    return;
                }
                e.nbytes = nbytes;
                e.type_name = type_name;
                e.holders = holders;
                if inline.is_some() {
                    e.inline = inline;
                }
                e.error = None;
                e.complete(&key, KeyStatus::Finished);
            }
        }
        SchedulerToClient::KeyErred { key, error } => {
            if let Some(e) = st.keys.get_mut(&key) {
                if e.status == KeyStatus::Cancelled || !e.wanted {
                    return;
                }
                e.error = Some(error);
                e.complete(&key, KeyStatus::Erred);
            }
        }
        SchedulerToClient::KeyLost { key } => {
            if let Some(e) = st.keys.get_mut(&key) {
                if e.status == KeyStatus::Finished && e.inline.is_none() {
                    e.status = KeyStatus::Pending;
                    e.holders.clear();
                }
            }
        }
        SchedulerToClient::Identity { workers, tasks } => {
            st.identities += 1;
            st.workers = workers
                .iter()
                .map(|w| (w.info.data_address.clone(), w.info.clone()))
                .collect();
            st.identity = (workers, tasks);
        }
        SchedulerToClient::WorkerAdded(info) => {
            st.workers.insert(info.data_address.clone(), info);
        }
        SchedulerToClient::WorkerRemoved { data_address } => {
            st.workers.remove(&data_address);
        }
        SchedulerToClient::ShuttingDown => {
            st.broken = Some(ClientError::Disconnected("the scheduler shut down".into()));
        }
    }
}
