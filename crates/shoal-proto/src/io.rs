//! Connection plumbing shared by every process: a writer task that batches
//! everything queued for a peer into one frame, a reader task that forwards a
//! peer's messages, and the request a client or worker makes to a worker's
//! data server.

use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::frame::{encode_frame, read_frame, write_frame, FrameError};
use crate::messages::{DataResponse, GetData, Payload};

/// Most messages packed into one frame; bounds latency of the first message.
const MAX_BATCH: usize = 4096;

/// Writes everything queued in `rx` to `w`, one frame per wake-up, until the
/// queue closes or `last` says a message is final.
pub async fn writer<W, M>(mut w: W, mut rx: UnboundedReceiver<M>, last: fn(&M) -> bool)
where
    W: AsyncWrite + Unpin,
    M: Serialize,
{
    let mut batch = Vec::new();
    let mut buf = Vec::with_capacity(4096);
    while let Some(first) = rx.recv().await {
        let mut done = last(&first);
        batch.push(first);
        while !done && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => {
                    done = last(&m);
                    batch.push(m);
                }
                Err(_) => break,
            }
        }
        buf.clear();
        if let Err(e) = encode_frame(&batch, &mut buf) {
            eprintln!("shoal: dropping a batch that could not be encoded: {e}");
            batch.clear();
            continue;
        }
        batch.clear();
        if w.write_all(&buf).await.is_err() || w.flush().await.is_err() {
            return;
        }
        if done {
            let _ = w.shutdown().await;
            return;
        }
    }
}

/// Reads frames of `M` and forwards each message, wrapped by `wrap`, until the
/// peer closes or sends garbage. Then sends `gone`.
pub async fn reader<R, M, E>(
    mut r: R,
    tx: UnboundedSender<E>,
    wrap: impl Fn(M) -> E,
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
            }
            Ok(None) => break,
            Err(e) => {
                eprintln!("shoal: closing connection to {peer}: {e}");
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
}

/// Asks the data server at `addr` for `keys`; `None` for keys it lacks.
pub async fn get_data(
    addr: &str,
    keys: Vec<String>,
    timeout: Duration,
) -> Result<Vec<(String, Option<Payload>)>, FetchError> {
    let work = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|source| FetchError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let frame_err = |source| FetchError::Frame {
            addr: addr.to_string(),
            source,
        };
        write_frame(&mut stream, &GetData { keys })
            .await
            .map_err(frame_err)?;
        let mut buf = Vec::new();
        let resp: DataResponse = read_frame(&mut stream, &mut buf)
            .await
            .map_err(frame_err)?
            .ok_or_else(|| FetchError::Closed(addr.to_string()))?;
        Ok(resp.items)
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| FetchError::Timeout(addr.to_string()))?
}
