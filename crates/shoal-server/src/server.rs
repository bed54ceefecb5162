//! The accept loop and the core task.

use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use std::time::Duration;

use shoal_core::{Core, Event};
use shoal_proto::{
    read_frame_limited, write_frame, ClientToScheduler, Hello, Role, SchedulerToClient,
    SchedulerToWorker, Submission, Welcome, WorkerToScheduler, MAX_HELLO_LEN,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;

use crate::comm::{ClientQueue, Connections};
use crate::dashboard::{self, DashboardAddress, Publisher};
use shoal_proto::io::counted_writer;
use shoal_proto::{reader, writer};

/// How long a new connection may take to introduce itself.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Most events applied before the core schedules and flushes.
const MAX_EVENTS_PER_TURN: usize = 10_000;
/// Tasks of a submission taken in at once: a larger one is taken in slices,
/// with ready tasks handed to workers after each, so workers are not left
/// idle while a graph of many parts arrives.
const SUBMIT_SLICE: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("could not listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("could not start the scheduler's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("could not start the dashboard on {addr}: {source} (pass dashboard_address=None to run without it)")]
    Dashboard {
        addr: String,
        source: std::io::Error,
    },
    #[error("the scheduler thread stopped before it was ready")]
    Died,
}

enum Input {
    Event(Event),
    Worker(
        u64,
        shoal_proto::WorkerInfo,
        UnboundedSender<SchedulerToWorker>,
        JoinHandle<()>,
    ),
    /// A client connection: its outgoing queue and its writer.
    Client(u64, ClientQueue, JoinHandle<()>),
    /// Is a connected worker's data server at this address?
    IsWorker(String, tokio::sync::oneshot::Sender<bool>),
    /// Everything a connection sent before this has been applied.
    Barrier(tokio::sync::oneshot::Sender<()>),
    Stop,
}

/// A scheduler running on its own thread. Dropping it stops the scheduler.
pub struct ServerHandle {
    address: SocketAddr,
    dashboard: Option<SocketAddr>,
    input: UnboundedSender<Input>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerHandle {
    /// The address clients and workers connect to.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Where the dashboard listens, if it runs.
    pub fn dashboard_address(&self) -> Option<SocketAddr> {
        self.dashboard
    }

    /// Tells every worker and client to go, then waits for the thread.
    pub fn stop(&mut self) {
        let _ = self.input.send(Input::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ServerError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServerError::Runtime)
}

async fn bind(host: &str, port: u16) -> Result<TcpListener, ServerError> {
    let addr = format!("{host}:{port}");
    TcpListener::bind(&addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

/// The dashboard, if asked for: its publisher and where it listens.
async fn start_dashboard(
    at: Option<&DashboardAddress>,
) -> Result<(Option<Publisher>, Option<SocketAddr>), ServerError> {
    let Some(at) = at else {
        return Ok((None, None));
    };
    let (publisher, addr) =
        dashboard::start(at)
            .await
            .map_err(|source| ServerError::Dashboard {
                addr: format!("{}:{}", at.host, at.port),
                source,
            })?;
    Ok((Some(publisher), Some(addr)))
}

/// How a scheduler runs, beyond where it listens.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the dashboard listens, if it runs.
    pub dashboard: Option<DashboardAddress>,
    /// Seconds of silence after which a worker is declared dead (None:
    /// never).
    pub worker_ttl: Option<f64>,
    /// Seconds of silence after which a client's locks and semaphores go to
    /// others (None: never).
    pub lease_timeout: Option<f64>,
    /// Seconds of silence after which a client is removed, its futures
    /// released (None: never).
    pub client_timeout: Option<f64>,
    /// A task errs with `KilledWorker` once more workers than this died
    /// while running it.
    pub allowed_failures: u32,
    /// The secret every client and worker must present (none: anyone who
    /// reaches the port may connect), and the TLS it serves (off: plain
    /// TCP).
    pub security: shoal_proto::Security,
}

impl Default for Options {
    fn default() -> Self {
        let core = shoal_core::CoreConfig::default();
        Options {
            dashboard: None,
            worker_ttl: core.worker_ttl,
            lease_timeout: core.lease_timeout,
            client_timeout: core.client_timeout,
            allowed_failures: core.allowed_failures,
            security: shoal_proto::Security::default(),
        }
    }
}

/// Starts a scheduler on a new thread, listening on `host:port` (port 0 picks
/// a free one), and returns once it accepts connections.
pub fn start(host: &str, port: u16, options: Options) -> Result<ServerHandle, ServerError> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (input_tx, input_rx) = unbounded_channel();
    let host = host.to_string();
    let input = input_tx.clone();
    let thread = std::thread::Builder::new()
        .name("shoal-scheduler".into())
        .spawn(move || {
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match bind(&host, port).await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let (publisher, board) = match start_dashboard(options.dashboard.as_ref()).await {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let addr = listener.local_addr();
                let _ = ready_tx.send(addr.map(|a| (a, board)).map_err(ServerError::Runtime));
                let security = options.security.clone();
                serve(
                    listener,
                    input,
                    input_rx,
                    publisher,
                    config(&options),
                    security,
                )
                .await;
            });
        })
        .map_err(ServerError::Runtime)?;
    let (address, dashboard) = ready_rx.recv().map_err(|_| ServerError::Died)??;
    Ok(ServerHandle {
        address,
        dashboard,
        input: input_tx,
        thread: Some(thread),
    })
}

/// Runs a scheduler on the calling thread until a client asks it to shut
/// down, or the process gets SIGINT (Ctrl-C) or SIGTERM; either way workers
/// and clients are told first. `on_ready` is called with the bound address.
pub fn run_blocking(
    host: &str,
    port: u16,
    options: Options,
    on_ready: impl FnOnce(SocketAddr, Option<SocketAddr>),
) -> Result<(), ServerError> {
    let rt = runtime()?;
    rt.block_on(async move {
        let listener = bind(host, port).await?;
        let (publisher, board) = start_dashboard(options.dashboard.as_ref()).await?;
        on_ready(listener.local_addr().map_err(ServerError::Runtime)?, board);
        let (tx, rx) = unbounded_channel();
        let stop = tx.clone();
        tokio::spawn(async move {
            termination().await;
            tracing::info!("signal received; shutting down");
            let _ = stop.send(Input::Stop);
        });
        serve(
            listener,
            tx,
            rx,
            publisher,
            config(&options),
            options.security.clone(),
        )
        .await;
        Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM (never, if neither can be watched).
async fn termination() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

async fn serve(
    listener: TcpListener,
    input: UnboundedSender<Input>,
    rx: UnboundedReceiver<Input>,
    publisher: Option<Publisher>,
    config: shoal_core::CoreConfig,
    security: shoal_proto::Security,
) {
    let dashboard = publisher.as_ref().map(|p| p.address());
    let ids = Arc::new(AtomicU64::new(1));
    let gate = shoal_proto::gate::Gate::for_this_process();
    let accept = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => gate.spawn(peer.ip(), |pass| {
                    handshake(
                        stream,
                        peer,
                        pass,
                        input.clone(),
                        ids.clone(),
                        dashboard,
                        security.clone(),
                    )
                }),
                Err(e) => shoal_proto::gate::accept_failed(e).await,
            }
        }
    });
    let writers = core_loop(rx, publisher, config).await;
    accept.abort();
    // Let the writers deliver the goodbyes, but never hang on a stuck peer.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        for w in writers {
            let _ = w.await;
        }
    })
    .await;
}

/// The handshake (both sides prove the token), then the caller's `Hello`;
/// a hello that does not decode is answered, as "another shoal version".
async fn introduced(
    stream: &mut shoal_proto::Stream,
    token: &shoal_proto::Token,
) -> Result<Hello, shoal_proto::Unadmitted> {
    shoal_proto::admit(stream, token).await?;
    let mut buf = Vec::new();
    match read_frame_limited::<_, Hello>(stream, &mut buf, MAX_HELLO_LEN).await {
        Ok(Some(hello)) => Ok(hello),
        Ok(None) => Err(shoal_proto::Unadmitted::Closed),
        Err(shoal_proto::FrameError::Decode(_)) => {
            let refusal = shoal_proto::Refusal::Unreadable;
            let reason = refusal.to_string();
            let _ = write_frame(stream, &Welcome::Refused { reason }).await;
            Err(shoal_proto::Unadmitted::Refused(refusal))
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs a new connection's handshake (counted by the gate's `pass` until
/// it ends), then serves the client or worker it introduced.
async fn handshake(
    stream: TcpStream,
    peer: SocketAddr,
    pass: shoal_proto::gate::Pass,
    input: UnboundedSender<Input>,
    ids: Arc<AtomicU64>,
    dashboard: Option<SocketAddr>,
    security: shoal_proto::Security,
) {
    let deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
    let stream = match tokio::time::timeout_at(deadline, security.tls.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            shoal_proto::throttle::warn(format_args!(
                "closing a connection from {peer}: {}",
                shoal_proto::tls::explained(e, "its TLS handshake failed")
            ));
            return;
        }
        Err(_) => {
            tracing::debug!("{peer} did not finish its TLS handshake in time");
            return;
        }
    };
    let mut stream = stream;
    let introduced = tokio::time::timeout_at(deadline, introduced(&mut stream, &security.token));
    let hello = match introduced.await {
        Ok(Ok(hello)) => hello,
        Ok(Err(e)) => {
            e.log("a client or worker", peer);
            return;
        }
        Err(_) => {
            tracing::debug!("{peer} did not introduce itself in time");
            return;
        }
    };
    // Introduced: no longer a handshake the gate may close.
    drop(pass);
    if let Role::Relay { to } = &hello.role {
        relay(stream, to, peer, &input, &security).await;
        return;
    }
    let (r, mut w) = stream.into_split();
    let id = ids.fetch_add(1, Ordering::Relaxed);
    match hello.role {
        Role::Client { .. } => {
            let welcome = Welcome::Client {
                id,
                dashboard: dashboard.map(|a| a.to_string()),
            };
            if write_frame(&mut w, &welcome).await.is_err() {
                return;
            }
            let (tx, rx) = unbounded_channel();
            let queued = Arc::new(AtomicU64::new(0));
            let taken = queued.clone();
            let handle = tokio::spawn(counted_writer(
                w,
                rx,
                |m| {
                    matches!(
                        m,
                        SchedulerToClient::ShuttingDown | SchedulerToClient::Removed(_)
                    )
                },
                move |m: SchedulerToClient| {
                    taken.fetch_sub(m.weight(), Ordering::Relaxed);
                    Some(m)
                },
            ));
            let closer = Arc::new(tokio::sync::Notify::new());
            let queue = ClientQueue {
                tx,
                queued,
                closer: closer.clone(),
            };
            let _ = input.send(Input::Client(id, queue, handle));
            let reading = reader::<_, ClientToScheduler, _>(
                r,
                input,
                move |m| Input::Event(Event::FromClient(id, m)),
                Input::Barrier,
                Input::Event(Event::ClientDisconnected(id)),
                peer.to_string(),
            );
            // A client removed for its silence is read no more: dropping the
            // reader drops the connection's read half.
            tokio::select! {
                () = reading => {}
                () = closer.notified() => {}
            }
        }
        // Carried to its worker above.
        Role::Relay { .. } => {}
        Role::Worker(info) => {
            if write_frame(&mut w, &Welcome::Worker { id }).await.is_err() {
                return;
            }
            tracing::info!("worker {} connected from {peer}", info.name);
            let (tx, rx) = unbounded_channel();
            let handle = tokio::spawn(writer(w, rx, |m| matches!(m, SchedulerToWorker::Shutdown)));
            let _ = input.send(Input::Worker(id, info, tx, handle));
            reader::<_, WorkerToScheduler, _>(
                r,
                input,
                move |m| Input::Event(Event::FromWorker(id, m)),
                Input::Barrier,
                Input::Event(Event::WorkerLost(id)),
                peer.to_string(),
            )
            .await;
        }
    }
}

/// How long the scheduler tries to reach a worker for a relayed
/// connection.
const RELAY_CONNECT: Duration = Duration::from_secs(10);

/// Each direction's buffer while relaying (large values pass through).
const RELAY_BUFFER: usize = 256 << 10;

/// Carries a client's data connection to the data server of the worker at
/// `to`, byte for byte both ways, after checking that `to` is one of this
/// scheduler's workers (so the scheduler is no open proxy). The client and
/// the worker then run their own handshake through it, end to end.
async fn relay(
    mut stream: shoal_proto::Stream,
    to: &str,
    peer: SocketAddr,
    input: &UnboundedSender<Input>,
    security: &shoal_proto::Security,
) {
    let (ack, known) = tokio::sync::oneshot::channel();
    let _ = input.send(Input::IsWorker(to.to_string(), ack));
    let refuse = |reason: String| Welcome::Refused { reason };
    let worker = if known.await.unwrap_or(false) {
        let connect = shoal_proto::io::connect_data(to, security);
        match tokio::time::timeout(RELAY_CONNECT, connect).await {
            Ok(Ok(worker)) => Ok(worker),
            Ok(Err(e)) => Err(refuse(e.to_string())),
            Err(_) => Err(refuse(format!("timed out reaching the worker at {to}"))),
        }
    } else {
        Err(refuse(format!("{to} is not a worker of this cluster")))
    };
    let mut worker = match worker {
        Ok(w) => w,
        Err(refusal) => {
            let _ = write_frame(&mut stream, &refusal).await;
            return;
        }
    };
    if write_frame(&mut stream, &Welcome::Relay).await.is_err() {
        return;
    }
    tracing::debug!("carrying a data connection from {peer} to {to}");
    let _ = tokio::io::copy_bidirectional_with_sizes(
        &mut stream,
        &mut worker,
        RELAY_BUFFER,
        RELAY_BUFFER,
    )
    .await;
}

/// Owns the core. Returns when asked to stop, with the writer tasks still
/// flushing their last messages.
async fn core_loop(
    mut rx: UnboundedReceiver<Input>,
    mut publisher: Option<Publisher>,
    config: shoal_core::CoreConfig,
) -> Vec<JoinHandle<()>> {
    let mut core = Core::new(config);
    let mut conns = Connections::default();
    let mut out = Vec::new();
    let mut stop = false;
    // The core gets the time from here: seconds since the scheduler started.
    let started = tokio::time::Instant::now();
    loop {
        // Wake for the next input, when a retry's wait ends, or when the
        // dashboard is due a publication.
        let wakeup = core
            .next_wakeup()
            .map(|at| started + Duration::from_secs_f64(at.max(0.0)));
        let due = publisher
            .as_ref()
            .and_then(|p| p.due())
            .map(tokio::time::Instant::from_std);
        let wakeup = match (wakeup, due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let first = tokio::select! {
            input = rx.recv() => match input {
                Some(input) => Some(input),
                None => break,
            },
            _ = sleep_until_some(wakeup) => None,
        };
        core.advance(started.elapsed().as_secs_f64());
        let mut next = first;
        let mut n = 0;
        while let Some(input) = next.take() {
            match sliced(input) {
                Err(input) => stop |= apply(&mut core, &mut conns, input, &mut out),
                Ok(slices) => {
                    for (i, input) in slices.into_iter().enumerate() {
                        if i > 0 {
                            stop |= schedule_and_route(&mut core, &mut conns, &mut out);
                            // Let the writers send what was routed.
                            tokio::task::yield_now().await;
                        }
                        stop |= apply(&mut core, &mut conns, input, &mut out);
                    }
                }
            }
            n += 1;
            if n < MAX_EVENTS_PER_TURN {
                next = rx.try_recv().ok();
            }
        }
        stop |= schedule_and_route(&mut core, &mut conns, &mut out);
        let slow = conns.take_slow();
        if !slow.is_empty() {
            // Removed for reading too slowly: gone, as if disconnected.
            for c in slow {
                core.handle(Event::ClientDisconnected(c), &mut out);
            }
            core.schedule(&mut out);
            stop |= conns.route(&mut out);
        }
        if stop {
            break;
        }
        if let Some(p) = publisher.as_mut() {
            p.turn(&core);
        }
    }
    tracing::debug!("scheduler shutting down");
    conns.say_goodbye()
}

/// Hands ready tasks to workers and sends what the core said; true if the
/// scheduler is to stop.
fn schedule_and_route(
    core: &mut Core,
    conns: &mut Connections,
    out: &mut Vec<shoal_core::Command>,
) -> bool {
    core.schedule(out);
    #[cfg(debug_assertions)]
    if let Err(e) = core.check_invariants() {
        panic!("{e}");
    }
    conns.route(out)
}

/// A submission of more than [`SUBMIT_SLICE`] tasks as the core is to
/// take it in: parts of that many (a `Submit` ends with a `Submit` of its
/// last slice, as if the client had sent it in parts). Anything else comes
/// back as the error, to be applied as it is.
#[allow(clippy::result_large_err)] // the input goes back as it came: no copy
fn sliced(input: Input) -> Result<Vec<Input>, Input> {
    let (client, sub, ends) = match input {
        Input::Event(Event::FromClient(c, ClientToScheduler::Submit(sub)))
            if sub.tasks.len() > SUBMIT_SLICE =>
        {
            (c, sub, true)
        }
        Input::Event(Event::FromClient(c, ClientToScheduler::SubmitPart(sub)))
            if sub.tasks.len() > SUBMIT_SLICE =>
        {
            (c, sub, false)
        }
        other => return Err(other),
    };
    let n = sub.tasks.len().div_ceil(SUBMIT_SLICE);
    let mut tasks = sub.tasks.into_iter();
    let options = sub.options;
    Ok((0..n)
        .map(|i| {
            let part = Submission {
                options: options.clone(),
                tasks: tasks.by_ref().take(SUBMIT_SLICE).collect(),
            };
            let msg = if ends && i + 1 == n {
                ClientToScheduler::Submit(part)
            } else {
                ClientToScheduler::SubmitPart(part)
            };
            Input::Event(Event::FromClient(client, msg))
        })
        .collect())
}

/// The core's configuration: the options, this scheduler's id and start
/// time.
fn config(options: &Options) -> shoal_core::CoreConfig {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    // Unique enough to tell schedulers apart: the process, the instant, and
    // a fresh hasher's random keys.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(started.to_bits());
    shoal_core::CoreConfig {
        id: format!("Scheduler-{:016x}", h.finish()),
        started,
        worker_ttl: options.worker_ttl,
        lease_timeout: options.lease_timeout,
        client_timeout: options.client_timeout,
        allowed_failures: options.allowed_failures,
        ..Default::default()
    }
}

/// Sleeps until `at`, or for ever if there is no `at`.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn apply(
    core: &mut Core,
    conns: &mut Connections,
    input: Input,
    out: &mut Vec<shoal_core::Command>,
) -> bool {
    match input {
        Input::Stop => return true,
        Input::Barrier(ack) => {
            let _ = ack.send(());
        }
        Input::IsWorker(addr, ack) => {
            let _ = ack.send(core.has_worker_at(&addr));
        }
        Input::Client(id, queue, handle) => {
            conns.clients.insert(id, queue);
            conns.writers.insert(id, handle);
            core.handle(Event::ClientConnected(id), out);
        }
        Input::Worker(id, info, tx, handle) => {
            conns.workers.insert(id, tx);
            conns.writers.insert(id, handle);
            core.handle(Event::WorkerConnected(id, info), out);
        }
        Input::Event(e) => {
            match &e {
                Event::ClientDisconnected(c) => conns.client_gone(*c),
                Event::WorkerLost(w) => {
                    conns.worker_gone(*w);
                    tracing::debug!("worker {w} lost");
                }
                _ => {}
            }
            core.handle(e, out);
        }
    }
    false
}
