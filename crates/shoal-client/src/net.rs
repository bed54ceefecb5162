//! The client's network thread: the handshake, the loop that applies the
//! scheduler's messages to the key table, and fetches of large results from
//! the workers that hold them.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use shoal_proto::Stream;
use shoal_proto::{
    get_data, introduce, read_frame, ClientToScheduler, Hello, Payload, Role, SchedulerToClient,
    Welcome,
};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::api::{ClientConfig, ClientError, Outcome};
use crate::table::State;

/// How long one fetch of results from a worker may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(300);

/// What the blocking API and the network thread share.
pub(crate) struct Shared {
    pub state: Mutex<State>,
    /// Signalled after every change of `state`.
    pub changed: Condvar,
    /// Signalled when a subscription's message arrives, a subscription
    /// ends, or the connection ends: only the threads waiting on
    /// subscriptions wait on it, so a task finishing does not wake them.
    pub published: Condvar,
    /// `Submit` and `SubmitPart` messages queued for the network thread and
    /// not yet taken by it (counted without the lock: every submission
    /// passes here). A graph's next part waits while there are
    /// [`crate::api::QUEUED_SUBMISSIONS`].
    pub submissions_queued: AtomicUsize,
    /// Signalled (under `state`'s lock) when the network thread takes a
    /// submission off a full queue, or the connection ends.
    pub room: Condvar,
    pub out: UnboundedSender<Outgoing>,
    pub runtime: tokio::runtime::Handle,
    pub stop: tokio::sync::Notify,
    /// The cluster's secret and TLS, for fetches from workers.
    pub security: shoal_proto::Security,
}

/// What the API queues for the network thread to send.
pub(crate) enum Outgoing {
    /// A message, as it is.
    Message(ClientToScheduler),
    /// The keys disowned since flush number `epoch` of `State::disowned`:
    /// sent as one `Disown` when this leaves the queue, unless a flush
    /// sent them already (see `ClientCore::drop_ref`).
    Disowned { epoch: u64 },
}

/// Connects to the scheduler and introduces this client; returns the
/// stream, the id the scheduler gave it, and where its dashboard listens.
pub(crate) async fn handshake(
    addr: &str,
    config: &ClientConfig,
) -> Result<(Stream, u64, Option<String>), ClientError> {
    let secs = config.connect_timeout.as_secs_f64();
    let connect_err = |reason: String| ClientError::Connect {
        addr: addr.to_string(),
        secs,
        reason,
    };
    let work = async {
        let mut stream = config
            .security
            .tls
            .connect(addr)
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        let hello = Hello {
            role: Role::Client {
                name: config.name.clone(),
            },
        };
        let tls = config.security.tls.is_on();
        match introduce(&mut stream, &config.security.token, &hello, tls)
            .await
            .map_err(connect_err)?
        {
            Welcome::Client { id, dashboard } => Ok((stream, id, dashboard)),
            Welcome::Refused { reason } => Err(ClientError::Refused {
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

/// Applies the scheduler's messages until the connection ends or the
/// client closes; then errs every pending key.
pub(crate) async fn run(shared: Arc<Shared>, stream: Stream, out_rx: UnboundedReceiver<Outgoing>) {
    let (mut r, w) = stream.into_split();
    let counted = shared.clone();
    let mut writer = tokio::spawn(shoal_proto::counted_writer(
        w,
        out_rx,
        |m| matches!(m, ClientToScheduler::Shutdown),
        move |item| {
            let m = match item {
                Outgoing::Message(m) => m,
                Outgoing::Disowned { epoch } => {
                    return counted.state.lock().take_disowned(epoch);
                }
            };
            if matches!(
                m,
                ClientToScheduler::Submit(_) | ClientToScheduler::SubmitPart(_)
            ) {
                let before = counted.submissions_queued.fetch_sub(1, Ordering::AcqRel);
                if before >= crate::api::QUEUED_SUBMISSIONS {
                    // A part may be waiting: it checks the count under the
                    // lock, so taking the lock here means it is already
                    // waiting (and is woken) or has not checked yet.
                    drop(counted.state.lock());
                    counted.room.notify_all();
                }
            }
            Some(m)
        },
    ));
    let mut buf = Vec::new();
    let mut heartbeat = tokio::time::interval(shoal_proto::CLIENT_HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let reason = loop {
        let frame = tokio::select! {
            f = read_frame::<_, Vec<SchedulerToClient>>(&mut r, &mut buf) => f,
            _ = shared.stop.notified() => break "the client was closed".to_string(),
            _ = heartbeat.tick() => {
                let _ = shared
                    .out
                    .send(Outgoing::Message(ClientToScheduler::Heartbeat));
                continue;
            }
        };
        match frame {
            Ok(Some(msgs)) => {
                let mut st = shared.state.lock();
                let mut published = false;
                for m in msgs {
                    published |= matches!(m, SchedulerToClient::Published { .. });
                    st.apply(m);
                }
                drop(st);
                shared.changed.notify_all();
                if published {
                    shared.published.notify_all();
                }
            }
            Ok(None) => break "the scheduler closed the connection".to_string(),
            Err(e) => break e.to_string(),
        }
    };
    if shared.state.lock().shutting_down {
        // Deliver the shutdown request before hanging up.
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut writer).await;
    }
    writer.abort();
    let mut st = shared.state.lock();
    // Pending keys fail with why the client broke: the scheduler may have
    // said so (it shut down, or removed this client) before hanging up.
    let why = match st.broken.get_or_insert(ClientError::Disconnected(reason)) {
        ClientError::Disconnected(reason) => reason.clone(),
        other => other.to_string(),
    };
    st.fail_pending("ConnectionError", &why);
    drop(st);
    shared.changed.notify_all();
    shared.published.notify_all();
    shared.room.notify_all();
}

/// Fetches remote results into `outcomes`, one request per holder, all at
/// once; returns the keys that could not be had, each with the holder that
/// failed to give it. If the network thread is gone the requests never
/// run, and every key counts as missing.
pub(crate) fn fetch(
    shared: &Shared,
    remote: BTreeMap<String, Vec<(usize, String)>>,
    outcomes: &mut [Option<Outcome>],
    via: Option<String>,
) -> Vec<(String, String)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut missing = Vec::new();
    let mut asked: HashMap<usize, (String, Vec<(usize, String)>)> = HashMap::new();
    for (n, (addr, wanted)) in remote.into_iter().enumerate() {
        let tx = tx.clone();
        let keys = wanted.iter().map(|(_, k)| k.clone()).collect();
        asked.insert(n, (addr.clone(), wanted));
        let security = shared.security.clone();
        let via = via.clone();
        shared.runtime.spawn(async move {
            let res = get_data(&addr, &security, via.as_deref().into(), keys, FETCH_TIMEOUT).await;
            let _ = tx.send((n, res));
        });
    }
    // Only the requests hold senders now: when they have all answered, or
    // were dropped unrun, the channel closes.
    drop(tx);
    while let Ok((n, res)) = rx.recv() {
        let Some((addr, wanted)) = asked.remove(&n) else {
            continue;
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
                        None => missing.push((k, addr.clone())),
                    }
                }
            }
            Err(e) => {
                tracing::debug!("{e}");
                missing.extend(wanted.into_iter().map(|(_, k)| (k, addr.clone())));
            }
        }
    }
    for (addr, wanted) in asked.into_values() {
        missing.extend(wanted.into_iter().map(|(_, k)| (k, addr.clone())));
    }
    missing
}
