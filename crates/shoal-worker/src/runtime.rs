//! The runtime object executor threads talk to. It starts the network
//! thread ([`crate::net`]) and shares [`Shared`] with it; neither calls the
//! other back.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use shoal_proto::{
    introduce, FuncHash, Hello, Payload, Role, RunResponse, Stream, TaskError, TaskId, Welcome,
    WorkerId, WorkerInfo, WorkerToScheduler,
};
use tokio::net::TcpListener;
use tokio::sync::mpsc::unbounded_channel;

use crate::control::Control;
use crate::data_store::DataStore;
use crate::memory::MemoryPolicy;
use crate::pacer::{PacerHooks, Running};
use crate::state::{ReadyTask, Shared, State, INLINE_LIMIT};
use crate::value::Value;

/// How a worker is started.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The scheduler, `host:port` (a leading `tcp://` is accepted).
    pub scheduler: String,
    pub nthreads: u32,
    pub name: Option<String>,
    /// Host to serve data on; by default the address this machine uses to
    /// reach the scheduler.
    pub listen_host: Option<String>,
    /// Ports to serve data on, the first free one from `.0` to `.1`
    /// (`(0, 0)`: any free port).
    pub listen_ports: (u16, u16),
    /// How long to keep trying to reach the scheduler.
    pub connect_timeout: Duration,
    /// The most executor threads the pacer may run at once while tasks wait
    /// on I/O (at least `nthreads`).
    pub max_threads: u32,
    /// The memory limit and what happens near it (see [`crate::memory`]).
    /// The limit is what the worker reports; without one, the machine's
    /// memory.
    pub memory: MemoryPolicy,
    /// The per-user directory under which this worker's spill directory is
    /// made on first use.
    pub spill_root: std::path::PathBuf,
    /// Whether to end this process (SIGKILL) when the worker restarts for
    /// memory, so that the process supervising it starts a fresh one; else
    /// the worker only closes and [`WorkerRuntime::leaving`] says why.
    pub kill_on_leave: bool,
    /// Abstract resources it offers (`"GPU"`, 2.0), as in Dask.
    pub resources: Vec<(String, f64)>,
    /// The cluster's secret: presented to the scheduler and to peers, and
    /// required of whoever asks this worker's data server; and the TLS it
    /// speaks to all of them.
    pub security: shoal_proto::Security,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("could not reach the scheduler at {addr} within {secs:.1} s: {reason}")]
    Connect {
        addr: String,
        secs: f64,
        reason: String,
    },
    #[error("the scheduler at {0} refused this worker: {1}")]
    Refused(String, String),
    #[error("could not serve data on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("worker runtime failed to start: {0}")]
    Start(String),
}

/// One task handed to an executor, with everything needed to run it.
pub struct Assignment {
    pub id: TaskId,
    pub key: String,
    pub func: FuncHash,
    /// The pickled function, the first time it is handed out; executors
    /// cache it by `func` (see [`WorkerRuntime::function`]).
    pub function: Option<Bytes>,
    pub args: Payload,
    /// The results of the task's dependencies, by key: frames, or objects
    /// kept as they are.
    pub deps: Vec<(String, Value)>,
}

/// A running worker runtime. Cheap to share between executor threads.
pub struct WorkerRuntime {
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    pacer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Where its data server listens, `host:port`.
    address: String,
    /// Its name (its address unless named).
    name: String,
    /// The scheduler, `host:port`.
    scheduler: String,
}

/// The machine's physical memory in bytes (0 if unknown).
pub fn total_memory() -> u64 {
    // SAFETY: sysconf has no preconditions; it returns -1 on failure.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if pages > 0 && size > 0 {
        pages as u64 * size as u64
    } else {
        0
    }
}

/// Connects to the scheduler, trying again while it cannot be reached
/// (it may be starting) but not after a failed TLS handshake, which
/// another try would fail the same way.
async fn connect_with_retry(
    addr: &str,
    tls: &shoal_proto::Tls,
    timeout: Duration,
) -> Result<Stream, WorkerError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = Duration::from_millis(10);
    loop {
        let attempt = tokio::time::timeout_at(deadline, tls.connect(addr)).await;
        let (reason, again) = match attempt {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(e)) => (e.to_string(), e.kind() != std::io::ErrorKind::InvalidData),
            Err(_) => ("timed out".to_string(), true),
        };
        if !again || tokio::time::Instant::now() + delay >= deadline {
            return Err(WorkerError::Connect {
                addr: addr.to_string(),
                secs: timeout.as_secs_f64(),
                reason,
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

impl WorkerRuntime {
    /// Connects to the scheduler, starts serving data, and returns once the
    /// scheduler has accepted this worker.
    pub fn start(config: WorkerConfig) -> Result<Arc<WorkerRuntime>, WorkerError> {
        shoal_proto::addr::check_scheme(&config.scheduler, config.security.tls.is_on())
            .map_err(|e| WorkerError::Start(e.to_string()))?;
        config.security.tls.can_serve().map_err(|e| {
            WorkerError::Start(format!(
                "{e} (tls_worker_cert and tls_worker_key, or --tls-cert and --tls-key)"
            ))
        })?;
        if config.memory.whole_process {
            crate::allocator::Mode::Roomy.apply();
        }
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (out_tx, out_rx) = unbounded_channel();
        let store = DataStore::new(config.memory.store_target(), config.spill_root.clone())
            .reporting_to(out_tx.clone());
        let shared = Arc::new(Shared::new(
            State::new(config.nthreads, config.max_threads),
            out_tx,
            config.security.clone(),
            store,
            config.memory.fetch_bytes(),
        ));
        let net_shared = shared.clone();
        let scheduler = shoal_proto::addr::strip_scheme(&config.scheduler).to_string();
        let given_name = config.name.clone();
        let thread = std::thread::Builder::new()
            .name("shoal-worker-net".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(WorkerError::Start(e.to_string())));
                        return;
                    }
                };
                rt.block_on(async move {
                    let setup = setup(&config).await;
                    let (stream, listener, id, address) = match setup {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            net_shared.close();
                            return;
                        }
                    };
                    tracing::info!("worker {id} serves data on {address}");
                    let _ = ready_tx.send(Ok(address));
                    let policy = config.memory.clone();
                    crate::net::run(net_shared.clone(), stream, listener, out_rx, policy).await;
                    net_shared.close();
                    if config.kill_on_leave && net_shared.leaving.lock().is_some() {
                        // The supervisor starts a fresh process at once.
                        // SAFETY: kill has no memory preconditions.
                        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
                    }
                });
            })
            .map_err(|e| WorkerError::Start(e.to_string()))?;
        let address = ready_rx
            .recv()
            .map_err(|_| WorkerError::Start("the network thread died".into()))??;
        Ok(Arc::new(WorkerRuntime {
            shared,
            thread: Mutex::new(Some(thread)),
            pacer: Mutex::new(None),
            name: given_name.unwrap_or_else(|| address.clone()),
            address,
            scheduler,
        }))
    }

    /// Where this worker's data server listens, `host:port`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// This worker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The scheduler's address, `host:port`.
    pub fn scheduler(&self) -> &str {
        &self.scheduler
    }

    /// How many tasks run at once here while they compute.
    pub fn nthreads(&self) -> u32 {
        self.shared.state.lock().nthreads
    }

    /// Blocks until a task is ready to run, or returns `None` once the worker
    /// is shutting down.
    pub fn next_task(&self) -> Option<Assignment> {
        loop {
            let (t, function) = self.take_task()?;
            // Inputs are read outside the state lock: one spilled to disk
            // takes a while to read back.
            let mut deps = Vec::with_capacity(t.deps.len());
            let mut missing = Vec::new();
            if !t.deps.is_empty() {
                let mut store = self.shared.store.lock();
                for k in t.deps {
                    match store.get(&k) {
                        Some(p) => deps.push((k, p)),
                        None => missing.push(k),
                    }
                }
            }
            if !missing.is_empty() {
                let mut st = self.shared.state.lock();
                st.tasks.inputs_lost(t.id);
                if function.is_some() {
                    st.delivered.remove(&t.func);
                }
                drop(st);
                self.shared.work.notify_one();
                let _ = self.shared.out.send(WorkerToScheduler::MissingDeps {
                    id: t.id,
                    keys: missing,
                });
                continue;
            }
            let _ = self
                .shared
                .out
                .send(WorkerToScheduler::TaskStarted { ids: vec![t.id] });
            return Some(Assignment {
                id: t.id,
                key: t.key,
                func: t.func,
                function,
                args: t.args,
                deps,
            });
        }
    }

    /// Waits for a task that may start now and counts it as running;
    /// `None` once the worker closes. Returns the function's bytes the first
    /// time its tasks are handed out.
    fn take_task(&self) -> Option<(ReadyTask, Option<Bytes>)> {
        let mut st = self.shared.state.lock();
        loop {
            if st.closed {
                return None;
            }
            // Room to run one more? (The pacer widens `allowed` while the
            // running tasks are blocked.) Nothing starts while memory is
            // short, or while a preload import runs.
            if st.paused || st.importing || st.tasks.in_slots() >= st.allowed {
                self.shared.work.wait(&mut st);
                continue;
            }
            let Some(t) = st.take_runnable() else {
                self.shared.work.wait(&mut st);
                continue;
            };
            // Executors cache functions; hand out the bytes once.
            let function = if st.delivered.insert(t.func) {
                st.functions.get(&t.func).cloned()
            } else {
                None
            };
            return Some((t, function));
        }
    }

    /// The executor thread that took task `id` has loaded its function and
    /// arguments (which may have imported modules from disk) and calls it
    /// now: from here the pacer watches the thread, so only the task's own
    /// waiting can make it look blocked.
    pub fn begin(&self, id: TaskId) {
        self.shared.state.lock().tasks.begin(id);
    }

    /// Stores a task's result and tells the scheduler. `holds_futures`: the
    /// Python side keeps futures alive for this result until it is freed
    /// (it learns when from [`WorkerRuntime::next_control`]).
    pub fn finish(
        &self,
        id: TaskId,
        key: String,
        result: Value,
        type_name: String,
        duration: f64,
        holds_futures: bool,
    ) {
        let nbytes = result.nbytes();
        let inline = match &result {
            Value::Frames(p) if nbytes <= INLINE_LIMIT => Some(p.clone()),
            _ => None,
        };
        if holds_futures {
            self.shared.control.lock().holding.insert(key.clone());
        }
        let ran = self.end(id);
        self.shared.store.lock().insert(key, result);
        let _ = self.shared.out.send(WorkerToScheduler::TaskFinished {
            id,
            nbytes,
            type_name,
            inline,
            duration,
            timing: ran.map(|r| r.timing()),
        });
    }

    /// Asks to hear (through [`WorkerRuntime::next_control`]) when the
    /// stored result `key` is freed, because the Python side keeps
    /// something built over it (an unpickled input). False, and nothing
    /// is asked, when it is not stored (any more): keep nothing then.
    pub fn watch(&self, key: &str) -> bool {
        // The control lock is held across the check, and a free takes the
        // store's lock and then, separately, the control lock: a key either
        // is seen gone here, or is watched before its free looks.
        let mut control = self.shared.control.lock();
        if !self.shared.store.lock().contains_key(key) {
            return false;
        }
        control.holding.insert(key.to_string());
        true
    }

    /// Ends task `id` here and returns how it ran. A task that held a slot
    /// wakes an executor: the thread that ran it may exit now (a task that
    /// seceded and rejoined ends its thread), and a task queued behind it
    /// would otherwise wait until something else arrived — the recursive
    /// `secede`/`rejoin` deadlock.
    fn end(&self, id: TaskId) -> Option<Running> {
        let ended = {
            let mut st = self.shared.state.lock();
            let ghosts = st.tasks.ghosts();
            let (ended, unlearnt) = st.done(id);
            if let Some(func) = unlearnt {
                let kinds = shoal_proto::FunctionKinds::computes(vec![func]);
                let _ = self.shared.out.send(WorkerToScheduler::Learnt(kinds));
            }
            if st.tasks.ghosts() != ghosts {
                // A cancelled task's thread is free again: so is its slot.
                let _ = self.shared.out.send(WorkerToScheduler::Capacity {
                    slots: st.capacity(),
                });
            }
            ended
        };
        if ended.freed_slot {
            self.shared.work.notify_one();
        }
        ended.ran
    }

    /// Reports that a task raised; `retryable` is false when the task's
    /// retry filter says the error is final.
    pub fn fail(&self, id: TaskId, error: TaskError, retryable: bool) {
        let ran = self.end(id);
        let _ = self.shared.out.send(WorkerToScheduler::TaskFailed {
            id,
            error,
            retryable,
            timing: ran.map(|r| r.timing()),
        });
    }

    /// Task `id` raised `Reschedule`: its slot is free, and the scheduler
    /// places it again.
    pub fn reschedule(&self, id: TaskId) {
        let ran = self.end(id);
        let _ = self.shared.out.send(WorkerToScheduler::TaskRescheduled {
            id,
            timing: ran.map(|r| r.timing()),
        });
    }

    /// The executor that took task `id` handed it off (a coroutine now on
    /// the worker's event loop): it still runs, but holds no thread, so
    /// another task may start. `finish` or `fail` reports it later.
    pub fn hand_off(&self, id: TaskId) {
        self.detach(id);
    }

    /// Moves running task `id` out of the slots it counts against, lets
    /// another task start, and tells the scheduler the larger capacity (so
    /// it keeps the worker's window open for the detached task).
    fn detach(&self, id: TaskId) {
        let capacity = {
            let mut st = self.shared.state.lock();
            if !st.tasks.secede(id) {
                return;
            }
            st.capacity()
        };
        self.shared.work.notify_one();
        let _ = self
            .shared
            .out
            .send(WorkerToScheduler::Capacity { slots: capacity });
    }

    /// Task `id`'s executor thread leaves the worker's slots while the task
    /// waits on other tasks (`secede`): it keeps running but no longer
    /// counts against the thread count, so another task may start (the
    /// caller starts an executor thread to take its place).
    pub fn secede(&self, id: TaskId) {
        self.detach(id);
    }

    /// Task `id`, seceded earlier, counts against the worker's slots
    /// again. It does not wait for a free slot: a task that rejoins may
    /// hold what the task in that slot waits for (a lock), so waiting could
    /// deadlock. Until enough running tasks finish, the worker runs one
    /// task more than its slots, and starts no new task meanwhile.
    pub fn rejoin(&self, id: TaskId) {
        let capacity = {
            let mut st = self.shared.state.lock();
            if !st.tasks.rejoin(id) {
                return; // not seceded: nothing to do
            }
            st.capacity()
        };
        let _ = self
            .shared
            .out
            .send(WorkerToScheduler::Capacity { slots: capacity });
    }

    /// Blocks until there is control work (a `Client.run` call, freed
    /// results holding futures) or `timeout` passes; `None` on timeout or
    /// once the worker is closed.
    pub fn next_control(&self, timeout: Duration) -> Option<Control> {
        let deadline = std::time::Instant::now() + timeout;
        let mut q = self.shared.control.lock();
        loop {
            if let Some(c) = q.items.pop_front() {
                return Some(c);
            }
            if q.closed {
                return None;
            }
            if self
                .shared
                .control_ready
                .wait_until(&mut q, deadline)
                .timed_out()
            {
                return q.items.pop_front();
            }
        }
    }

    /// Sets what frees memory the process let go of but could not free at
    /// once: values spilled or freed off the interpreter's threads may be
    /// owned by Python objects, whose release waits until some thread next
    /// enters the interpreter. The memory monitor calls it (from a thread
    /// of its own, never the network thread) after spilling and while the
    /// worker is paused, so a paused worker never waits on memory only it
    /// could free.
    pub fn set_release(&self, release: crate::state::Release) {
        *self.shared.release.lock() = Some(release);
    }

    /// Closes (`true`) or opens the gate for tasks around a preload
    /// import: while closed, [`WorkerRuntime::next_task`] hands out nothing.
    pub fn set_importing(&self, on: bool) {
        self.shared.state.lock().importing = on;
        if !on {
            self.shared.work.notify_all();
        }
    }

    /// Why the worker left to restart (memory), if it did.
    pub fn leaving(&self) -> Option<String> {
        self.shared.leaving.lock().clone()
    }

    /// Bytes of results held in memory and on disk.
    pub fn stored_bytes(&self) -> (u64, u64) {
        let store = self.shared.store.lock();
        (store.memory_bytes(), store.disk_bytes())
    }

    /// Whether the worker has closed (its scheduler link ended).
    pub fn is_closed(&self) -> bool {
        self.shared.state.lock().closed
    }

    /// Answers the `Client.run` call `id`.
    pub fn reply_run(&self, id: u64, response: RunResponse) {
        if let Some(tx) = self.shared.control.lock().waiting.remove(&id) {
            let _ = tx.send(response);
        }
    }

    /// Whether tasks here need the CPU: some wait for a slot, or run a
    /// function not known to block. (Tasks blocked on I/O and handed-off
    /// coroutines leave the CPU free.)
    pub fn busy(&self) -> bool {
        let st = self.shared.state.lock();
        st.tasks.queued() > 0 || st.computing() > 0
    }

    /// Starts the pacer (see [`crate::pacer`]): without it the worker runs
    /// `nthreads` tasks at once, whatever they do.
    pub fn start_pacer(self: &Arc<Self>, hooks: PacerHooks) -> Result<(), WorkerError> {
        let shared = self.shared.clone();
        let handle = std::thread::Builder::new()
            .name("shoal-pacer".into())
            .spawn(move || crate::pacer::run(shared, hooks))
            .map_err(|e| WorkerError::Start(e.to_string()))?;
        *self.pacer.lock() = Some(handle);
        Ok(())
    }

    /// The pickled function with this hash, if the scheduler sent it.
    pub fn function(&self, hash: FuncHash) -> Option<Bytes> {
        self.shared.state.lock().functions.get(&hash).cloned()
    }

    /// Stops handing out work; executors' `next_task` returns `None`.
    pub fn close(&self) {
        self.shared.close();
    }

    /// Blocks until the connection to the scheduler has ended and the
    /// pacer has stopped (its hooks call into Python, which they must not do
    /// once the interpreter shuts down).
    pub fn wait_closed(&self) {
        let handle = self.thread.lock().take();
        if let Some(h) = handle {
            let _ = h.join();
        }
        let pacer = self.pacer.lock().take();
        if let Some(h) = pacer {
            let _ = h.join();
        }
    }
}

/// A listener on `host` at the first free port of `ports` (any port for
/// `(0, 0)`).
async fn bind_data_server(host: &str, ports: (u16, u16)) -> Result<TcpListener, WorkerError> {
    let (first, last) = ports;
    let mut error = None;
    for port in first..=last.max(first) {
        match TcpListener::bind((host, port)).await {
            Ok(listener) => return Ok(listener),
            Err(e) => error = Some(e),
        }
    }
    Err(WorkerError::Listen {
        addr: if first == last.max(first) {
            format!("{host}:{first}")
        } else {
            format!("{host}:{first}-{last}")
        },
        source: error.unwrap_or_else(|| std::io::Error::other("no port to try")),
    })
}

async fn setup(
    config: &WorkerConfig,
) -> Result<(Stream, crate::net::DataListeners, WorkerId, String), WorkerError> {
    let addr = shoal_proto::addr::strip_scheme(&config.scheduler).to_string();
    let tls = &config.security.tls;
    let mut stream = connect_with_retry(&addr, tls, config.connect_timeout).await?;
    let host = match &config.listen_host {
        Some(h) => h.clone(),
        None => stream
            .local_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_else(|_| "127.0.0.1".into()),
    };
    let listener = bind_data_server(&host, config.listen_ports).await?;
    let data_address = listener
        .local_addr()
        .map_err(|source| WorkerError::Listen {
            addr: format!("{host}:0"),
            source,
        })?
        .to_string();
    let listeners = crate::net::DataListeners {
        local: if tls.is_on() {
            None
        } else {
            shoal_proto::local::listen(&data_address)
        },
        tcp: listener,
    };
    let info = WorkerInfo {
        name: config.name.clone().unwrap_or_else(|| data_address.clone()),
        data_address: data_address.clone(),
        nthreads: config.nthreads.max(1),
        memory: if config.memory.limit > 0 {
            config.memory.limit
        } else {
            total_memory()
        },
        pid: std::process::id(),
        host,
        resources: config.resources.clone(),
    };
    let refused = |reason: String| WorkerError::Refused(addr.clone(), reason);
    let hello = Hello {
        role: Role::Worker(info),
    };
    let welcome = tokio::time::timeout(
        config.connect_timeout,
        introduce(&mut stream, &config.security.token, &hello, tls.is_on()),
    )
    .await
    .map_err(|_| refused("no answer to the introduction".into()))?
    .map_err(refused)?;
    match welcome {
        Welcome::Worker { id } => Ok((stream, listeners, id, data_address)),
        Welcome::Refused { reason } => Err(refused(reason)),
        other => Err(refused(format!("unexpected answer {other:?}"))),
    }
}
