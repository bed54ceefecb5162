//! Length-prefixed MessagePack framing over any async byte stream.

use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest frame a peer may send (4 GiB - 1 is the format's limit; we
/// refuse anything above 2 GiB to fail fast on a corrupt length prefix).
pub const MAX_FRAME_LEN: usize = 2 << 30;

/// What can go wrong reading or writing a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("peer sent a frame of {0} bytes, above the {MAX_FRAME_LEN} byte limit")]
    TooLarge(usize),
    #[error("could not decode a message from the peer: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("could not encode a message: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
}

/// Encodes `msg` as one frame appended to `out`.
pub fn encode_frame<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0u8; 4]);
    rmp_serde::encode::write_named(out, msg)?;
    let len = out.len() - start - 4;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(len));
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
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(len));
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
        assert!(matches!(got, Err(FrameError::TooLarge(_))));
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
