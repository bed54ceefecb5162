//! The worker's networking: the scheduler link, the data server, and fetching
//! of inputs from peers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shoal_proto::{
    get_data, read_frame, write_frame, ComputeTask, DataResponse, DepLocation, Payload,
    PeerRequest, PutAck, Route, SchedulerToWorker, Stream, TaskError, WorkerToScheduler,
    LITERAL_FUNC,
};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinSet;

use crate::data_store::DataStore;
use crate::memory::MemoryPolicy;
use crate::state::{ReadyTask, Shared, INLINE_LIMIT};
use crate::value::Value;

/// How long one fetch from a peer may take before trying the next holder.
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a worker's data server listens: its TCP address, and the
/// same-host socket named after it (see `shoal_proto::local`) when there is
/// one.
pub(crate) struct DataListeners {
    pub tcp: TcpListener,
    pub local: Option<UnixListener>,
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    stream: Stream,
    listener: DataListeners,
    out_rx: UnboundedReceiver<WorkerToScheduler>,
    memory: MemoryPolicy,
) {
    let (mut r, w) = stream.into_split();
    // `Leaving` is the last message: the writer sends it and hangs up.
    let mut writer = tokio::spawn(shoal_proto::writer(w, out_rx, |m| {
        matches!(m, WorkerToScheduler::Leaving { .. })
    }));
    let server = tokio::spawn(serve_data(shared.clone(), listener));
    let health = tokio::spawn(crate::health::report(shared.clone()));
    let monitor = tokio::spawn(crate::memory::monitor(shared.clone(), memory));
    let mut buf = Vec::new();
    loop {
        let read = tokio::select! {
            read = read_frame::<_, Vec<SchedulerToWorker>>(&mut r, &mut buf) => read,
            // The link broke, or this worker said it leaves.
            _ = &mut writer => break,
        };
        match read {
            Ok(Some(msgs)) => {
                let mut stop = false;
                for m in msgs {
                    stop |= handle(&shared, m);
                }
                if stop {
                    break;
                }
            }
            Ok(None) => {
                tracing::info!("the scheduler closed the connection");
                break;
            }
            Err(e) => {
                tracing::warn!("lost the scheduler: {e}");
                break;
            }
        }
    }
    shared.close();
    monitor.abort();
    health.abort();
    server.abort();
    writer.abort();
}

/// Applies one scheduler message; true means shut down.
fn handle(shared: &Arc<Shared>, msg: SchedulerToWorker) -> bool {
    match msg {
        SchedulerToWorker::Functions(defs) => {
            let mut st = shared.state.lock();
            for f in defs {
                st.functions.insert(f.hash, f.bytes);
            }
        }
        SchedulerToWorker::Compute(t) => compute(shared, t),
        SchedulerToWorker::Cancel { ids } => {
            let mut st = shared.state.lock();
            let ghosts = st.tasks.ghosts();
            for id in ids {
                st.tasks.cancel(id);
            }
            if st.tasks.ghosts() != ghosts {
                // Their threads still run them: fewer slots for new work.
                let slots = st.capacity();
                let _ = shared.out.send(WorkerToScheduler::Capacity { slots });
            }
            // A handed-off task is stopped by the pacer's hook.
            drop(st);
            shared.pace.notify_one();
        }
        SchedulerToWorker::Steal { ids } => {
            let mut st = shared.state.lock();
            let mut given = Vec::new();
            for id in ids {
                // Queued or still fetching inputs: not started, so give it back.
                if st.tasks.give_back(id) {
                    given.push(id);
                }
            }
            drop(st);
            let _ = shared.out.send(WorkerToScheduler::GaveBack { ids: given });
        }
        SchedulerToWorker::Free { keys } => {
            let mut store = shared.store.lock();
            for k in &keys {
                store.remove(k);
            }
            drop(store);
            if shared.control.lock().freed(&keys) {
                shared.control_ready.notify_one();
            }
        }
        SchedulerToWorker::Fetch { deps } => {
            let shared = shared.clone();
            tokio::spawn(async move { fetch_copies(&shared, deps).await });
        }
        SchedulerToWorker::Upload { name, data } => {
            queue_control(shared, crate::control::Control::Upload { name, data });
        }
        SchedulerToWorker::Plugin { name, plugin } => {
            queue_control(shared, crate::control::Control::Plugin { name, plugin });
        }
        SchedulerToWorker::Joined => {
            shared.joined.send_replace(true);
            queue_control(shared, crate::control::Control::Joined);
        }
        SchedulerToWorker::Learnt(kinds) => {
            shared.state.lock().learn(kinds);
            // Queued tasks of a function known to block may start now.
            shared.work.notify_all();
            shared.pace.notify_one();
        }
        SchedulerToWorker::Preload { modules } => {
            shared.state.lock().preload.extend(modules);
            shared.pace.notify_one();
        }
        SchedulerToWorker::Shutdown => return true,
    }
    false
}

fn compute(shared: &Arc<Shared>, t: ComputeTask) {
    if t.func == LITERAL_FUNC {
        keep_literal(shared, t);
        return;
    }
    let keys = t.deps.iter().map(|d| d.key.clone()).collect();
    // The scheduler counts this worker as a holder of what came along.
    if !shared.state.lock().tasks.assign(t.id) {
        tracing::debug!("task {} assigned here twice: the second is ignored", t.key);
        return;
    }
    let (missing, _) = store_inline(&mut shared.store.lock(), t.deps);
    let ready = ReadyTask {
        id: t.id,
        key: t.key,
        func: t.func,
        args: t.args,
        deps: keys,
        priority: t.priority,
        seq: 0,
    };
    if missing.is_empty() {
        push_ready(shared, ready);
        return;
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        let (got, lost) = fetch_all(&shared, missing).await;
        // The lost ones are reported as `MissingDeps` below.
        report_copies(&shared, got, Vec::new());
        if lost.is_empty() {
            push_ready(&shared, ready);
        } else {
            shared.state.lock().tasks.inputs_lost(ready.id);
            let _ = shared.out.send(WorkerToScheduler::MissingDeps {
                id: ready.id,
                keys: lost,
            });
        }
    });
}

/// Scattered data: the argument payload is the value, or, with no frames,
/// the value was put here by its client (`PeerRequest::Put`).
fn keep_literal(shared: &Shared, t: ComputeTask) {
    let value = if t.args.frames.is_empty() {
        shared.staged.lock().claim(&t.key)
    } else {
        Some(t.args)
    };
    let Some(value) = value else {
        // Put on a worker that died or restarted since, or placed here
        // because that worker is gone: the value is lost, as in Dask.
        let _ = shared.out.send(WorkerToScheduler::TaskFailed {
            id: t.id,
            error: TaskError::Raised {
                exception: Payload::default(),
                type_name: "RuntimeError".into(),
                message: format!(
                    "the scattered value {} was lost with the worker it was sent to: \
                     scatter it again",
                    t.key
                ),
                traceback: String::new(),
            },
            retryable: false,
            timing: None,
        });
        return;
    };
    let nbytes = value.nbytes();
    let inline = (nbytes <= INLINE_LIMIT).then(|| value.clone());
    shared.store.lock().insert(t.key, value.into());
    let _ = shared.out.send(WorkerToScheduler::TaskFinished {
        id: t.id,
        nbytes,
        type_name: String::new(),
        inline,
        duration: 0.0,
        timing: None,
    });
}

fn push_ready(shared: &Shared, t: ReadyTask) {
    if !shared.state.lock().tasks.inputs_local(t) {
        return; // given back or cancelled while its inputs came
    }
    shared.work.notify_one();
    shared.pace.notify_one();
}

/// Fetches copies the scheduler asked for (`Fetch`) and reports them.
async fn fetch_copies(shared: &Arc<Shared>, deps: Vec<DepLocation>) {
    let (here, missing): (Vec<_>, Vec<_>) = {
        let store = shared.store.lock();
        deps.into_iter().partition(|d| store.contains_key(&d.key))
    };
    let (missing, inlined) = store_inline(&mut shared.store.lock(), missing);
    let (mut got, lost) = fetch_all(shared, missing).await;
    got.extend(here.into_iter().map(|d| d.key));
    got.extend(inlined);
    report_copies(shared, got, lost);
}

/// Stores the inputs that came with their value; returns the ones still
/// missing (to fetch from their holders) and the keys stored.
fn store_inline(store: &mut DataStore, deps: Vec<DepLocation>) -> (Vec<DepLocation>, Vec<String>) {
    let mut missing = Vec::new();
    let mut stored = Vec::new();
    for d in deps {
        if store.contains_key(&d.key) {
            continue;
        }
        match d.inline {
            Some(value) => {
                store.insert(d.key.clone(), value.into());
                stored.push(d.key);
            }
            None => missing.push(d),
        }
    }
    (missing, stored)
}

/// Tells the scheduler this worker now keeps copies of `keys` (so it frees
/// them with their keys) and could not get `missing`.
fn report_copies(shared: &Shared, keys: Vec<String>, missing: Vec<String>) {
    if !keys.is_empty() || !missing.is_empty() {
        let _ = shared
            .out
            .send(WorkerToScheduler::Fetched { keys, missing });
    }
}

/// Fetches every missing input of a task: one request per holder, all
/// holders at once; a key its first holder lacked is then tried at its other
/// holders. Returns the keys fetched, and the keys no holder had.
async fn fetch_all(shared: &Arc<Shared>, missing: Vec<DepLocation>) -> (Vec<String>, Vec<String>) {
    let mut by_holder: HashMap<String, (Vec<String>, u64)> = HashMap::new();
    let mut fallback: Vec<(String, u64, Vec<String>)> = Vec::with_capacity(missing.len());
    for dep in missing {
        let rest = match dep.holders.split_first() {
            Some((first, rest)) => {
                let request = by_holder.entry(first.clone()).or_default();
                request.0.push(dep.key.clone());
                request.1 += dep.nbytes;
                rest.to_vec()
            }
            None => Vec::new(),
        };
        fallback.push((dep.key, dep.nbytes, rest));
    }
    let mut requests = JoinSet::new();
    for (addr, (keys, nbytes)) in by_holder {
        let shared = shared.clone();
        requests.spawn(async move {
            // The room is held until the values are stored.
            let _room = shared.fetches.take(nbytes).await;
            let items =
                get_data(&addr, &shared.security, Route::Direct, keys, FETCH_TIMEOUT).await?;
            let mut store = shared.store.lock();
            for (k, v) in items {
                if let Some(p) = v {
                    store.insert(k, p.into());
                }
            }
            Ok::<_, shoal_proto::FetchError>(())
        });
    }
    while let Some(done) = requests.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!("fetching inputs: {e}"),
            Err(e) => tracing::debug!("fetching inputs: {e}"),
        }
    }
    let (mut got, mut lost) = (Vec::new(), Vec::new());
    for (key, nbytes, others) in fallback {
        if fetch_one(shared, &key, nbytes, &others).await {
            got.push(key);
        } else {
            lost.push(key);
        }
    }
    (got, lost)
}

/// Fetches `key` from the first holder that has it; true on success (also
/// if it is already here).
async fn fetch_one(shared: &Shared, key: &str, nbytes: u64, holders: &[String]) -> bool {
    for h in holders {
        if shared.store.lock().contains_key(key) {
            return true;
        }
        let room = shared.fetches.take(nbytes).await;
        let got = get_data(
            h,
            &shared.security,
            Route::Direct,
            vec![key.to_string()],
            FETCH_TIMEOUT,
        )
        .await;
        match got {
            Ok(items) => {
                for (k, p) in items {
                    if let Some(p) = p {
                        shared.store.lock().insert(k, p.into());
                        return true;
                    }
                }
            }
            Err(e) => tracing::debug!("fetching {key}: {e}"),
        }
        drop(room);
    }
    shared.store.lock().contains_key(key)
}

/// Accepts data connections on both listeners; one gate bounds the
/// handshakes of both.
async fn serve_data(shared: Arc<Shared>, listeners: DataListeners) {
    let gate = shoal_proto::gate::Gate::for_this_process();
    let DataListeners { tcp, local } = listeners;
    let over_tcp = async {
        loop {
            match tcp.accept().await {
                Ok((stream, addr)) => gate.spawn(addr.ip(), |pass| {
                    serve_tcp(shared.clone(), stream, addr, pass)
                }),
                Err(e) => shoal_proto::gate::accept_failed(e).await,
            }
        }
    };
    let on_this_host = async {
        let Some(local) = local else {
            return std::future::pending().await;
        };
        loop {
            match local.accept().await {
                // Same-host callers share one place in the gate's
                // per-address count, as loopback TCP callers do.
                Ok((stream, _)) => gate.spawn(std::net::Ipv4Addr::LOCALHOST.into(), |pass| {
                    serve_peer(shared.clone(), Stream::Unix(stream), Peer::Local, pass)
                }),
                Err(e) => shoal_proto::gate::accept_failed(e).await,
            }
        }
    };
    tokio::join!(over_tcp, on_this_host);
}

/// Who is at the other end of a data connection, for the logs.
#[derive(Clone, Copy)]
enum Peer {
    Tcp(SocketAddr),
    Local,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(addr) => addr.fmt(f),
            Peer::Local => f.write_str("a process on this host"),
        }
    }
}

/// How long a data connection may stay silent before it is closed.
const PEER_IDLE: Duration = Duration::from_secs(30);

/// Runs the handshake with a peer (within the idle limit): both prove
/// they hold the token; true if the peer may ask for data.
async fn admit(shared: &Shared, stream: &mut Stream, peer: Peer) -> bool {
    let admitted = tokio::time::timeout(
        PEER_IDLE,
        shoal_proto::admit(stream, &shared.security.token),
    );
    match admitted.await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            e.log("a data connection", peer);
            false
        }
        // Silent for too long.
        Err(_) => false,
    }
}

/// Hands `item` to the worker's Python control thread, in arrival order.
fn queue_control(shared: &Shared, item: crate::control::Control) {
    shared.control.lock().items.push_back(item);
    shared.control_ready.notify_one();
}

/// The longest a client's `run` call waits for the worker's join to be
/// complete (the scheduler's `Joined`), in case it never comes.
const JOIN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves a peer that came over TCP, after the TLS handshake if TLS is on.
async fn serve_tcp(
    shared: Arc<Shared>,
    tcp: TcpStream,
    addr: SocketAddr,
    pass: shoal_proto::gate::Pass,
) {
    let accepted = tokio::time::timeout(PEER_IDLE, shared.security.tls.accept(tcp));
    let stream = match accepted.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            shoal_proto::throttle::warn(format_args!(
                "closing a data connection from {addr}: {}",
                shoal_proto::tls::explained(e, "its TLS handshake failed")
            ));
            return;
        }
        Err(_) => return,
    };
    serve_peer(shared, stream, Peer::Tcp(addr), pass).await;
}

/// Serves one peer's requests, once its handshake (counted by the gate's
/// `pass` until it ends) admitted it.
async fn serve_peer(
    shared: Arc<Shared>,
    mut stream: Stream,
    peer: Peer,
    pass: shoal_proto::gate::Pass,
) {
    let mut buf = Vec::new();
    if !admit(&shared, &mut stream, peer).await {
        return;
    }
    drop(pass);
    loop {
        let read = tokio::time::timeout(
            PEER_IDLE,
            read_frame::<_, PeerRequest>(&mut stream, &mut buf),
        );
        let req = match read.await {
            Ok(Ok(Some(req))) => req,
            Ok(Err(e @ shoal_proto::FrameError::TooLarge(..))) => {
                shoal_proto::throttle::warn(format_args!(
                    "closing a data connection from {peer}: {e}"
                ));
                return;
            }
            // Closed, garbage, or silent for too long.
            _ => return,
        };
        let req = match req {
            PeerRequest::Get(req) => req,
            PeerRequest::Put => {
                // The values follow as raw frames; their buffers grow as
                // their bytes arrive.
                let Ok(Some(body)) = shoal_proto::read_data(&mut stream, None).await else {
                    return;
                };
                let items = body
                    .items
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| (k, v)))
                    .collect();
                let held = shared.staged.lock().hold(items, std::time::Instant::now());
                let ack = PutAck {
                    held: u32::try_from(held).unwrap_or(u32::MAX),
                };
                if write_frame(&mut stream, &ack).await.is_err() {
                    return;
                }
                continue;
            }
            PeerRequest::Run { call } => {
                // After what the scheduler sent as this worker joined (its
                // plugins): a client may reach it before that arrives.
                let mut joined = shared.joined.subscribe();
                let _ = tokio::time::timeout(JOIN_WAIT, joined.wait_for(|j| *j)).await;
                let answer = shared.control.lock().run(call);
                shared.control_ready.notify_one();
                // No answer means the worker is closing: hang up.
                let Ok(response) = answer.await else { return };
                if write_frame(&mut stream, &response).await.is_err() {
                    return;
                }
                continue;
            }
        };
        // Values spilled to disk are read back, and objects kept as they
        // are serialized, off the network thread; the latter without the
        // store's lock, which tasks finishing meanwhile need.
        let asked_direct = req.direct;
        let store_of = shared.clone();
        let read = tokio::task::spawn_blocking(move || {
            let values: Vec<(String, Option<Value>)> = {
                let mut store = store_of.store.lock();
                req.keys
                    .into_iter()
                    .map(|k| {
                        let v = store.get(&k);
                        (k, v)
                    })
                    .collect()
            };
            values
                .into_iter()
                .map(|(k, v)| {
                    let frames = v.and_then(|v| match v.to_payload() {
                        Ok(frames) => Some(frames),
                        Err(e) => {
                            shoal_proto::throttle::warn(format_args!(
                                "could not serialize {k} to send it: {e}"
                            ));
                            None
                        }
                    });
                    (k, frames)
                })
                .collect()
        });
        let Ok(items) = read.await else { return };
        // Large values may be copied out of this process's memory by an
        // asker on this host (`shoal_proto::data`); never over TCP.
        let direct = asked_direct && stream.peer_pid().is_some();
        match shoal_proto::answer_data(&mut stream, &DataResponse { items }, direct).await {
            Ok(copied) if copied > 0 => {
                tracing::trace!("{peer} copied {copied} bytes out of this process's memory");
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}
