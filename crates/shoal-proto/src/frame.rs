//! Length-prefixed MessagePack framing over any async byte stream.

use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest frame a peer may send (4 GiB - 1 is the format's limit; we
/// refuse anything above 2 GiB to fail fast on a corrupt length prefix).
pub const MAX_FRAME_LEN: usize = 2 << 30;

/// The largest first frame a connection may send before it is known (a
/// hello, or a request to a worker's data server is not one of these):
/// nothing bigger is read from a peer that has not introduced itself.
pub const MAX_HELLO_LEN: usize = 64 * 1024;

/// What can go wrong reading or writing a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("peer announced a frame of {0} bytes, above the {1} byte limit")]
    TooLarge(usize, usize),
    #[error("the other side speaks TLS and this side plain TCP (or the reverse): give both the same scheme (tls:// or tcp://) and the same TLS options")]
    SpeaksTls,
    #[error("could not decode a message from the peer: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("could not encode a message: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("the peer broke the protocol: {0}")]
    Invalid(String),
}

/// Encodes `msg` as one frame appended to `out`.
pub fn encode_frame<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0u8; 4]);
    rmp_serde::encode::write_named(out, msg)?;
    let len = out.len() - start - 4;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(len, MAX_FRAME_LEN));
    }
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// Writes `msg` as one frame and flushes the stream.
pub async fn write_frame<W, T>(w: &mut W, msg: &T) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let mut buf = Vec::with_capacity(256);
    encode_frame(msg, &mut buf)?;
    w.write_all(&buf).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame. Returns `Ok(None)` on a clean end of stream between frames.
pub async fn read_frame<R, T>(r: &mut R, buf: &mut Vec<u8>) -> Result<Option<T>, FrameError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    read_frame_limited(r, buf, MAX_FRAME_LEN).await
}

/// Reads one frame of at most `limit` bytes (a longer announced length is
/// refused before anything else is read). Memory grows with the bytes that
/// arrive, never with the length announced.
pub async fn read_frame_limited<R, T>(
    r: &mut R,
    buf: &mut Vec<u8>,
    limit: usize,
) -> Result<Option<T>, FrameError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > limit {
        if looks_like_tls(len) {
            return Err(FrameError::SpeaksTls);
        }
        return Err(FrameError::TooLarge(len, limit));
    }
    // Grow the buffer as bytes arrive, never by what the peer announced: a
    // length prefix alone must not reserve memory.
    buf.clear();
    let got = (&mut *r).take(len as u64).read_to_end(buf).await?;
    if got != len {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
    }
    Ok(Some(rmp_serde::from_slice(buf)?))
}

/// Whether a length prefix is the start of a TLS record instead (a
/// handshake or an alert, TLS 1.0-1.3): what a TLS peer sends first.
fn looks_like_tls(len: usize) -> bool {
    let b = (len as u32).to_le_bytes();
    matches!(b[0], 0x15 | 0x16) && b[1] == 0x03 && b[2] <= 0x04
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Payload, Timing, WorkerToScheduler};
    use bytes::Bytes;

    #[tokio::test]
    async fn frames_round_trip_through_a_stream() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let msgs = vec![
            WorkerToScheduler::TaskStarted { ids: vec![1, 2, 3] },
            WorkerToScheduler::TaskFinished {
                id: 7,
                nbytes: 3,
                type_name: "int".into(),
                inline: Some(Payload::single(Bytes::from_static(b"abc"))),
                duration: 0.5,
                timing: Some(Timing {
                    start: 1.0,
                    stop: 1.5,
                    thread: 9,
                }),
            },
        ];
        write_frame(&mut a, &msgs).await.unwrap();
        drop(a);
        let mut buf = Vec::new();
        let got: Option<Vec<WorkerToScheduler>> = read_frame(&mut b, &mut buf).await.unwrap();
        assert_eq!(got.unwrap(), msgs);
        let end: Option<Vec<WorkerToScheduler>> = read_frame(&mut b, &mut buf).await.unwrap();
        assert!(end.is_none());
    }

    #[tokio::test]
    async fn oversized_length_prefix_is_refused() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let got: Result<Option<Vec<WorkerToScheduler>>, _> = read_frame(&mut b, &mut buf).await;
        assert!(matches!(got, Err(FrameError::TooLarge(..))));
    }

    #[tokio::test]
    async fn a_first_frame_above_its_limit_is_refused_unread() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&(MAX_HELLO_LEN as u32 + 1).to_le_bytes())
            .await
            .unwrap();
        let mut buf = Vec::new();
        let got: Result<Option<Vec<WorkerToScheduler>>, _> =
            read_frame_limited(&mut b, &mut buf, MAX_HELLO_LEN).await;
        assert!(
            matches!(got, Err(FrameError::TooLarge(n, MAX_HELLO_LEN)) if n == MAX_HELLO_LEN + 1)
        );
        assert!(buf.capacity() < 1024);
    }

    #[tokio::test]
    async fn a_tls_record_where_a_frame_was_due_is_named() {
        // A TLS ClientHello's record header, then an alert's.
        for first in [[0x16u8, 0x03, 0x01, 0x02], [0x15, 0x03, 0x03, 0x00]] {
            let (mut a, mut b) = tokio::io::duplex(64);
            a.write_all(&first).await.unwrap();
            let mut buf = Vec::new();
            let got: Result<Option<Vec<WorkerToScheduler>>, _> =
                read_frame_limited(&mut b, &mut buf, MAX_HELLO_LEN).await;
            assert!(matches!(got, Err(FrameError::SpeaksTls)), "{got:?}");
        }
    }

    /// A peer announcing a huge frame and sending a few bytes costs what it
    /// sent, not what it announced.
    #[tokio::test]
    async fn a_lying_length_reserves_nothing() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&(1u32 << 30).to_le_bytes()).await.unwrap();
        a.write_all(b"abc").await.unwrap();
        drop(a);
        let mut buf = Vec::new();
        let got: Result<Option<Vec<WorkerToScheduler>>, _> = read_frame(&mut b, &mut buf).await;
        assert!(matches!(got, Err(FrameError::Io(_))));
        assert!(buf.capacity() < 1024, "{} bytes reserved", buf.capacity());
    }

    #[tokio::test]
    async fn garbage_is_a_decode_error_not_a_panic() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&3u32.to_le_bytes()).await.unwrap();
        a.write_all(&[0xc1, 0xc1, 0xc1]).await.unwrap();
        let mut buf = Vec::new();
        let got: Result<Option<Vec<WorkerToScheduler>>, _> = read_frame(&mut b, &mut buf).await;
        assert!(matches!(got, Err(FrameError::Decode(_))));
    }
}
