//! Connection plumbing shared by every process: a writer task that batches
//! everything queued for a peer into one frame, a reader task that forwards a
//! peer's messages, and the request a client or worker makes to a worker's
//! data server.

use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;

use crate::data::{read_data, write_data};
use crate::frame::{read_frame, read_frame_limited, FrameError, MAX_HELLO_LEN};
use crate::handshake::HandshakeError;
use crate::messages::{
    DataResponse, GetData, Hello, Payload, PeerRequest, PutAck, Role, RunResponse, Welcome,
};
use crate::security::Security;
use crate::stream::Stream;

/// A frame is closed once it holds this many bytes, so that no frame (and
/// no decoding on the other side) grows without bound.
pub const FRAME_SOFT_LIMIT: usize = 1 << 20;

/// Writes everything queued in `rx` to `w`: each wake-up drains the queue
/// into frames of at most about [`FRAME_SOFT_LIMIT`] bytes, until the queue
/// closes or `last` says a message is final.
pub async fn writer<W, M>(w: W, rx: UnboundedReceiver<M>, last: fn(&M) -> bool)
where
    W: AsyncWrite + Unpin,
    M: Serialize,
{
    counted_writer(w, rx, last, Some).await;
}

/// [`writer`] of a queue of items that `take` turns into messages as each
/// leaves the queue (for a queue whose size is counted where items are
/// queued, or whose items are filled in when sent); an item it turns into
/// None is dropped.
pub async fn counted_writer<W, I, M>(
    mut w: W,
    mut rx: UnboundedReceiver<I>,
    last: fn(&M) -> bool,
    mut take: impl FnMut(I) -> Option<M>,
) where
    W: AsyncWrite + Unpin,
    M: Serialize,
{
    let mut buf = Vec::with_capacity(4096);
    let mut next = rx.recv().await;
    while let Some(first) = next.take() {
        let mut frame = FrameBuilder::new(&mut buf);
        let mut done = false;
        if let Some(m) = take(first) {
            done = last(&m);
            frame.push(&m);
        }
        while !done && frame.len() < FRAME_SOFT_LIMIT {
            match rx.try_recv() {
                Ok(item) => {
                    if let Some(m) = take(item) {
                        done = last(&m);
                        frame.push(&m);
                    }
                }
                Err(_) => break,
            }
        }
        if frame.is_empty() {
            next = rx.recv().await;
            continue;
        }
        frame.finish();
        if w.write_all(&buf).await.is_err() || w.flush().await.is_err() {
            return;
        }
        if done {
            let _ = w.shutdown().await;
            return;
        }
        // More may be queued already (a frame filled up); else wait.
        next = match rx.try_recv() {
            Ok(m) => Some(m),
            Err(_) => rx.recv().await,
        };
    }
}

/// Builds one frame holding a MessagePack array of messages, encoding each
/// message as it is pushed.
struct FrameBuilder<'a> {
    buf: &'a mut Vec<u8>,
    count: u32,
}

impl<'a> FrameBuilder<'a> {
    fn new(buf: &'a mut Vec<u8>) -> Self {
        buf.clear();
        // Length prefix, then an array32 header whose count is patched later.
        buf.extend_from_slice(&[0, 0, 0, 0, 0xdd, 0, 0, 0, 0]);
        FrameBuilder { buf, count: 0 }
    }

    fn push<M: Serialize>(&mut self, msg: &M) {
        let mark = self.buf.len();
        match rmp_serde::encode::write_named(self.buf, msg) {
            Ok(()) => self.count += 1,
            Err(e) => {
                self.buf.truncate(mark);
                tracing::warn!("dropping a message that could not be encoded: {e}");
            }
        }
    }

    fn len(&self) -> usize {
        self.buf.len()
    }

    fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn finish(self) {
        let len = (self.buf.len() - 4) as u32;
        self.buf[0..4].copy_from_slice(&len.to_le_bytes());
        self.buf[5..9].copy_from_slice(&self.count.to_be_bytes());
    }
}

/// A frame at least this large is followed by a barrier: the reader waits
/// until the receiver has applied it before decoding the next one, so a
/// large graph never sits decoded in a queue all at once.
pub const BARRIER_ABOVE: usize = 256 * 1024;

/// Reads frames of `M` and forwards each message, wrapped by `wrap`, until the
/// peer closes or sends garbage; then sends `gone`. After a large frame it
/// sends `barrier(ack)` and waits for `ack` before reading on.
pub async fn reader<R, M, E>(
    mut r: R,
    tx: UnboundedSender<E>,
    wrap: impl Fn(M) -> E,
    barrier: impl Fn(oneshot::Sender<()>) -> E,
    gone: E,
    peer: String,
) where
    R: AsyncRead + Unpin,
    M: DeserializeOwned,
{
    let mut buf = Vec::new();
    loop {
        match read_frame::<_, Vec<M>>(&mut r, &mut buf).await {
            Ok(Some(msgs)) => {
                for m in msgs {
                    if tx.send(wrap(m)).is_err() {
                        return;
                    }
                }
                if buf.len() >= BARRIER_ABOVE {
                    let (ack, applied) = oneshot::channel();
                    if tx.send(barrier(ack)).is_err() || applied.await.is_err() {
                        return;
                    }
                }
            }
            Ok(None) => break,
            Err(e @ FrameError::TooLarge(..)) => {
                tracing::warn!("closing connection to {peer}: {e}");
                break;
            }
            Err(e) => {
                // A peer that dies or is killed is an expected event.
                tracing::debug!("closing connection to {peer}: {e}");
                break;
            }
        }
    }
    let _ = tx.send(gone);
}

/// Why data could not be fetched from a worker.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("could not reach the worker at {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("timed out talking to the worker at {0}")]
    Timeout(String),
    #[error("the worker at {addr} failed to answer: {source}")]
    Frame { addr: String, source: FrameError },
    #[error("the worker at {0} closed the connection")]
    Closed(String),
    #[error("the worker at {addr} refused the connection: {reason}")]
    Refused { addr: String, reason: String },
    #[error("the process at {addr} is not a worker of this cluster: {source}")]
    Unproven {
        addr: String,
        source: crate::handshake::HandshakeError,
    },
}

/// How a data connection reaches a worker's data server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// Straight to it (over its same-host socket when it has one).
    Direct,
    /// Through the scheduler at this address, which carries the bytes
    /// (Dask's `direct_to_workers=False`).
    Via(&'a str),
}

impl<'a> From<Option<&'a str>> for Route<'a> {
    /// Through the scheduler at this address, if any; else direct.
    fn from(scheduler: Option<&'a str>) -> Self {
        scheduler.map_or(Route::Direct, Route::Via)
    }
}

/// Asks the data server at `addr` for `keys`; `None` for keys it lacks.
pub async fn get_data(
    addr: &str,
    security: &Security,
    route: Route<'_>,
    keys: Vec<String>,
    timeout: Duration,
) -> Result<Vec<(String, Option<Payload>)>, FetchError> {
    let frame_err = |source| FetchError::Frame {
        addr: addr.to_string(),
        source,
    };
    let work = async {
        let mut stream = connect_route(addr, security, route).await?;
        // A worker on this host may let this process copy large values
        // out of its memory (see `data`).
        let peer = stream.peer_pid();
        let request = PeerRequest::Get(GetData {
            keys,
            direct: peer.is_some(),
        });
        prove(&mut stream, addr, security, &request).await?;
        read_data(&mut stream, peer)
            .await
            .map_err(frame_err)?
            .ok_or_else(|| FetchError::Closed(addr.to_string()))
    };
    let resp = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| FetchError::Timeout(addr.to_string()))??;
    Ok(resp.items)
}

/// Sends `items` (key, value) straight to the data server at `addr`
/// (`scatter`), which holds them for the scheduler to claim; returns how
/// many it holds.
pub async fn put_data(
    addr: &str,
    security: &Security,
    route: Route<'_>,
    items: Vec<(String, Payload)>,
    timeout: Duration,
) -> Result<u32, FetchError> {
    let frame_err = |source| FetchError::Frame {
        addr: addr.to_string(),
        source,
    };
    let body = DataResponse {
        items: items.into_iter().map(|(k, v)| (k, Some(v))).collect(),
    };
    let work = async {
        let mut stream = admitted(addr, security, route, &PeerRequest::Put).await?;
        write_data(&mut stream, &body).await.map_err(frame_err)?;
        let mut buf = Vec::new();
        let ack: Option<PutAck> = read_frame_limited(&mut stream, &mut buf, MAX_HELLO_LEN)
            .await
            .map_err(frame_err)?;
        ack.map(|a| a.held)
            .ok_or_else(|| FetchError::Closed(addr.to_string()))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| FetchError::Timeout(addr.to_string()))?
}

/// Proves this side's token to the scheduler, checks the scheduler's,
/// sends `hello` and reads its answer (a small frame); what goes wrong is
/// said in words a user can act on (`tls`: whether this side speaks TLS,
/// for the hints).
pub async fn introduce(
    stream: &mut Stream,
    token: &crate::Token,
    hello: &Hello,
    tls: bool,
) -> Result<Welcome, String> {
    let said = |e: FrameError| match e {
        FrameError::Io(io) if tls => crate::tls::explained(io, "the connection failed").to_string(),
        e => e.to_string(),
    };
    match crate::handshake::prove(stream, token, hello).await {
        Ok(()) => {}
        Err(HandshakeError::Refused(reason)) => return Ok(Welcome::Refused { reason }),
        Err(HandshakeError::Frame(e)) => return Err(said(e)),
        Err(e @ (HandshakeError::CalleeHasNoToken | HandshakeError::CalleeHasOtherToken)) => {
            return Ok(Welcome::Refused {
                reason: e.to_string(),
            });
        }
        Err(e) => return Err(e.to_string()),
    }
    let mut buf = Vec::new();
    read_frame_limited(stream, &mut buf, MAX_HELLO_LEN)
        .await
        .map_err(said)?
        .ok_or_else(|| "the scheduler closed the connection without answering".to_string())
}

/// Runs a pickled call on the worker whose data server is at `addr`
/// (`Client.run`), outside its task slots.
pub async fn run_on_worker(
    addr: &str,
    security: &Security,
    route: Route<'_>,
    call: Payload,
    timeout: Option<Duration>,
) -> Result<RunResponse, FetchError> {
    let request = PeerRequest::Run { call };
    // No deadline: a year stands for ever.
    let timeout = timeout.unwrap_or(Duration::from_secs(365 * 86_400));
    ask_peer(addr, security, route, &request, timeout).await
}

/// One request to a worker's data server and its answer, on a connection
/// of its own: the credentials go first, and the request only once they
/// are admitted.
async fn ask_peer<R: DeserializeOwned>(
    addr: &str,
    security: &Security,
    route: Route<'_>,
    request: &PeerRequest,
    timeout: Duration,
) -> Result<R, FetchError> {
    let work = async {
        let frame_err = |source| FetchError::Frame {
            addr: addr.to_string(),
            source,
        };
        let mut stream = admitted(addr, security, route, request).await?;
        let mut buf = Vec::new();
        read_frame(&mut stream, &mut buf)
            .await
            .map_err(frame_err)?
            .ok_or_else(|| FetchError::Closed(addr.to_string()))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| FetchError::Timeout(addr.to_string()))?
}

/// A connection to the data server at `addr`: its same-host socket when
/// it answers there and TLS is off (see [`crate::local`]), TCP otherwise.
pub async fn connect_data(addr: &str, security: &Security) -> Result<Stream, FetchError> {
    if !security.tls.is_on() {
        if let Some(unix) = crate::local::connect(addr).await {
            return Ok(Stream::Unix(unix));
        }
    }
    connect_tcp(addr, security).await
}

/// A TCP connection to `addr`, TLS if this process speaks it.
async fn connect_tcp(addr: &str, security: &Security) -> Result<Stream, FetchError> {
    let connected = security.tls.connect(addr).await;
    connected.map_err(|source| FetchError::Connect {
        addr: addr.to_string(),
        source,
    })
}

/// A connection to the data server at `to` carried by the scheduler at
/// `scheduler`, which checks that `to` is one of its workers.
async fn connect_via(scheduler: &str, to: &str, security: &Security) -> Result<Stream, FetchError> {
    let refused = |reason: String| FetchError::Refused {
        addr: to.to_string(),
        reason: format!("the scheduler at {scheduler} could not carry the connection: {reason}"),
    };
    let mut stream = connect_tcp(scheduler, security).await?;
    let hello = Hello {
        role: Role::Relay { to: to.to_string() },
    };
    match introduce(&mut stream, &security.token, &hello, security.tls.is_on()).await {
        Ok(Welcome::Relay) => Ok(stream),
        Ok(Welcome::Refused { reason }) => Err(refused(reason)),
        Ok(other) => Err(refused(format!("unexpected answer {other:?}"))),
        Err(reason) => Err(refused(reason)),
    }
}

/// The connection to `addr` that `route` takes.
async fn connect_route(
    addr: &str,
    security: &Security,
    route: Route<'_>,
) -> Result<Stream, FetchError> {
    match route {
        Route::Direct => connect_data(addr, security).await,
        Route::Via(scheduler) => connect_via(scheduler, addr, security).await,
    }
}

/// A connection to the data server at `addr` that proved it holds this
/// process's token and admitted this process, with `request` sent.
async fn admitted(
    addr: &str,
    security: &Security,
    route: Route<'_>,
    request: &PeerRequest,
) -> Result<Stream, FetchError> {
    let mut stream = connect_route(addr, security, route).await?;
    prove(&mut stream, addr, security, request).await?;
    Ok(stream)
}

/// Proves this process's token on `stream` to the data server at `addr`
/// and sends `request` once it admitted this process.
async fn prove(
    stream: &mut Stream,
    addr: &str,
    security: &Security,
    request: &PeerRequest,
) -> Result<(), FetchError> {
    let addr = addr.to_string();
    match crate::handshake::prove(stream, &security.token, request).await {
        Ok(()) => Ok(()),
        Err(HandshakeError::Refused(reason)) => Err(FetchError::Refused { addr, reason }),
        Err(HandshakeError::Closed) => Err(FetchError::Closed(addr)),
        Err(HandshakeError::Frame(source)) => Err(FetchError::Frame { addr, source }),
        Err(source) => Err(FetchError::Unproven { addr, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::WorkerToScheduler;
    use bytes::Bytes;

    /// A data server that answers one `GetData` on its same-host socket
    /// with `value` under each key asked for.
    #[cfg(target_os = "linux")]
    async fn serve_one_fetch_on_this_host(addr: &str, token: crate::Token, value: Bytes) {
        let listener = crate::local::listen(addr).expect("the name is free");
        tokio::spawn(async move {
            let (unix, _) = listener.accept().await.unwrap();
            let mut s = Stream::Unix(unix);
            crate::handshake::admit(&mut s, &token).await.unwrap();
            let mut buf = Vec::new();
            let Some(PeerRequest::Get(req)) = read_frame(&mut s, &mut buf).await.unwrap() else {
                panic!("not a fetch");
            };
            let items = req
                .keys
                .iter()
                .cloned()
                .map(|k| {
                    let frames = vec![value.clone()];
                    (k, Some(Payload { frames }))
                })
                .collect();
            // The asker knows this process from the socket, so it may copy
            // the value out of this process's memory.
            assert!(req.direct, "a same-host fetch offers to copy");
            let copied = crate::data::answer_data(&mut s, &DataResponse { items }, true)
                .await
                .unwrap();
            assert_eq!(copied, value.len() as u64, "copied, not sent");
        });
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_fetch_from_a_worker_on_this_host_takes_its_unix_socket() {
        // The TCP port is held but never served: a fetch over TCP would
        // time out, so the value can only come over the same-host socket.
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("tcp://{}", tcp.local_addr().unwrap());
        let token = crate::Token::new("same-host").unwrap();
        let value = Bytes::from(vec![5u8; 3 << 20]);
        serve_one_fetch_on_this_host(&addr, token.clone(), value.clone()).await;
        let security = Security::token(token);
        let got = get_data(
            &addr,
            &security,
            Route::Direct,
            vec!["k".into()],
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(
            got,
            vec![(
                "k".to_string(),
                Some(Payload {
                    frames: vec![value]
                })
            )]
        );
    }

    #[tokio::test]
    async fn the_writer_splits_a_large_backlog_into_bounded_frames() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let n = 100_000u64;
        for i in 0..n {
            tx.send(WorkerToScheduler::TaskStarted {
                ids: (i..i + 10).collect(),
            })
            .unwrap();
        }
        drop(tx);
        tokio::spawn(writer(a, rx, |_| false));
        let mut buf = Vec::new();
        let mut got = 0u64;
        let mut frames = 0;
        while let Some(msgs) = read_frame::<_, Vec<WorkerToScheduler>>(&mut b, &mut buf)
            .await
            .unwrap()
        {
            assert!(buf.len() <= FRAME_SOFT_LIMIT + 1024);
            for m in msgs {
                assert_eq!(
                    m,
                    WorkerToScheduler::TaskStarted {
                        ids: (got..got + 10).collect()
                    }
                );
                got += 1;
            }
            frames += 1;
        }
        assert_eq!(got, n);
        assert!(frames > 1, "a backlog this large spans several frames");
    }
}
