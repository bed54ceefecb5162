//! How values cross a data connection: a [`DataHeader`] frame, then each
//! value's frames as raw bytes (no copy into or out of an encoding buffer).
//!
//! On one host a large frame need not cross the socket at all. An asker
//! that knows the answering process (a same-host socket tells it the pid)
//! says so in its request (`GetData::direct`), and the answer then names
//! each frame of [`DIRECT_MIN`] bytes or more by its address in the
//! worker's memory ([`DataHeader::at`]) instead of sending it. The asker
//! copies those frames with one system call each ([`crate::peer_memory`]):
//! one copy where a socket makes two. The exchange that keeps it safe:
//!
//! 1. the worker writes the header and the other frames, and keeps the
//!    announced frames alive and unchanged until step 3;
//! 2. the asker copies them, then answers [`DirectReply::Done`], or `Send`
//!    if the kernel refused (another user, Yama, seccomp), and then reads
//!    them from the socket after all;
//! 3. the worker answers `Done` to `Done`, and lets the frames go.
//!
//! The asker keeps its copies only once that last `Done` arrives: a worker
//! that stopped waiting (it timed out, or died) closed the connection
//! instead, and the copies, which may have been read from memory freed
//! meanwhile, are dropped with the error.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::buffer::read_exactly;
use crate::frame::{read_frame, read_frame_limited, write_frame, FrameError, MAX_HELLO_LEN};
use crate::messages::{DataHeader, DataResponse, DirectFrame, DirectReply, Payload};

/// The most frames a value in a [`DataResponse`] may have.
const MAX_VALUE_FRAMES: usize = 1 << 16;

/// The least frame worth announcing by address: below it the socket's
/// second copy costs less than the exchange.
pub const DIRECT_MIN: usize = 256 << 10;

/// Writes a [`DataResponse`] whose frames all cross the socket (a `Put`,
/// or an answer to a peer that cannot read this process's memory).
pub async fn write_data<W>(w: &mut W, response: &DataResponse) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
{
    write_parts(w, response, &[]).await
}

/// Answers a `GetData` with `response`; with `direct`, its large frames
/// are announced by address and kept in place until the asker copied them
/// (see the module's documentation). Returns how many bytes the asker
/// copied out of this process's memory.
pub async fn answer_data<S>(
    s: &mut S,
    response: &DataResponse,
    direct: bool,
) -> Result<u64, FrameError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let at: Vec<DirectFrame> = if direct {
        announced(response)
    } else {
        Vec::new()
    };
    write_parts(s, response, &at).await?;
    if at.is_empty() {
        return Ok(0);
    }
    let mut buf = Vec::new();
    let reply = read_frame_limited::<_, DirectReply>(s, &mut buf, MAX_HELLO_LEN).await?;
    match reply {
        Some(DirectReply::Done) => {
            write_frame(s, &DirectReply::Done).await?;
            Ok(at.iter().map(|d| frame_at(response, d).len() as u64).sum())
        }
        Some(DirectReply::Send) => {
            for d in &at {
                s.write_all(frame_at(response, d)).await?;
            }
            s.flush().await?;
            Ok(0)
        }
        None => Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into()),
    }
}

/// The frames of `response` worth announcing by address.
fn announced(response: &DataResponse) -> Vec<DirectFrame> {
    let mut at = Vec::new();
    for (item, (_, value)) in response.items.iter().enumerate() {
        for (frame, bytes) in value.iter().flat_map(|p| &p.frames).enumerate() {
            if bytes.len() >= DIRECT_MIN {
                at.push(DirectFrame {
                    // Bounded: items and frames are counted in u32 on the
                    // wire, and no response comes near either bound.
                    item: item as u32,
                    frame: frame as u32,
                    addr: bytes.as_ptr() as u64,
                });
            }
        }
    }
    at
}

fn frame_at<'a>(response: &'a DataResponse, d: &DirectFrame) -> &'a [u8] {
    let value = response.items[d.item as usize].1.as_ref();
    value.map_or(&[][..], |p| &p.frames[d.frame as usize][..])
}

/// The header, then every frame that `at` does not announce.
async fn write_parts<W>(
    w: &mut W,
    response: &DataResponse,
    at: &[DirectFrame],
) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
{
    let header = DataHeader {
        items: response
            .items
            .iter()
            .map(|(k, v)| {
                let lengths = v
                    .as_ref()
                    .map(|p| p.frames.iter().map(|f| f.len() as u64).collect());
                (k.clone(), lengths)
            })
            .collect(),
        at: at.to_vec(),
    };
    let mut buf = Vec::with_capacity(256);
    crate::frame::encode_frame(&header, &mut buf)?;
    w.write_all(&buf).await?;
    let mut announced = at.iter().peekable();
    for (item, (_, value)) in response.items.iter().enumerate() {
        for (frame, bytes) in value.iter().flat_map(|p| &p.frames).enumerate() {
            if announced
                .next_if(|d| (d.item as usize, d.frame as usize) == (item, frame))
                .is_none()
            {
                w.write_all(bytes).await?;
            }
        }
    }
    w.flush().await?;
    Ok(())
}

/// Reads a [`DataResponse`]. `peer` is the answering process's pid when
/// the connection says it is on this host; frames announced by address
/// are copied from its memory then, and asked for over the socket
/// otherwise. Each value's memory grows as its bytes arrive, never by the
/// lengths the header announced.
pub async fn read_data<S>(s: &mut S, peer: Option<u32>) -> Result<Option<DataResponse>, FrameError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    let Some(header) = read_frame::<_, DataHeader>(s, &mut buf).await? else {
        return Ok(None);
    };
    check_announced(&header)?;
    let DataHeader { items: header, at } = header;
    let mut direct = at.iter().peekable();
    // Frames announced by address are left empty here and filled below.
    let mut wanted: Vec<Wanted> = Vec::with_capacity(at.len());
    let mut items = Vec::with_capacity(header.len());
    for (item, (key, lengths)) in header.into_iter().enumerate() {
        let Some(lengths) = lengths else {
            items.push((key, None));
            continue;
        };
        if lengths.len() > MAX_VALUE_FRAMES {
            return Err(FrameError::TooLarge(lengths.len(), MAX_VALUE_FRAMES));
        }
        let mut frames = Vec::with_capacity(lengths.len());
        for (frame, len) in lengths.into_iter().enumerate() {
            // No cap: a value may be larger than any message (its buffer
            // is bounded until its bytes arrive, see `buffer`).
            let len =
                usize::try_from(len).map_err(|_| FrameError::TooLarge(usize::MAX, usize::MAX))?;
            match direct.next_if(|d| (d.item as usize, d.frame as usize) == (item, frame)) {
                Some(d) => {
                    wanted.push(Wanted {
                        item,
                        frame,
                        addr: d.addr,
                        len,
                    });
                    frames.push(bytes::Bytes::new());
                }
                None => frames.push(read_exactly(s, len).await?),
            }
        }
        items.push((key, Some(Payload { frames })));
    }
    if !wanted.is_empty() {
        fill_announced(s, peer, &mut items, wanted).await?;
    }
    Ok(Some(DataResponse { items }))
}

/// The header's announced frames, checked: each names a frame the header
/// has, in increasing order.
fn check_announced(header: &DataHeader) -> Result<(), FrameError> {
    let mut last: Option<(u32, u32)> = None;
    for d in &header.at {
        let exists = header
            .items
            .get(d.item as usize)
            .and_then(|(_, lengths)| lengths.as_ref())
            .is_some_and(|l| (d.frame as usize) < l.len());
        if !exists || last.is_some_and(|l| l >= (d.item, d.frame)) {
            return Err(FrameError::Invalid(format!(
                "the answer announced frame {} of value {} out of order or not at all",
                d.frame, d.item
            )));
        }
        last = Some((d.item, d.frame));
    }
    Ok(())
}

/// A frame announced by address: where it goes in the response, where it
/// lies in the peer's memory, and its length.
struct Wanted {
    item: usize,
    frame: usize,
    addr: u64,
    len: usize,
}

/// Copies the announced frames from the peer's memory (or, if that cannot
/// be done, asks for them over the socket) into their places in `items`.
async fn fill_announced<S>(
    s: &mut S,
    peer: Option<u32>,
    items: &mut [(String, Option<Payload>)],
    wanted: Vec<Wanted>,
) -> Result<(), FrameError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let copied = match peer {
        Some(pid) => {
            let places: Vec<(u64, usize)> = wanted.iter().map(|w| (w.addr, w.len)).collect();
            let copy = tokio::task::spawn_blocking(move || {
                places
                    .into_iter()
                    .map(|(addr, len)| crate::peer_memory::read(pid, addr, len))
                    .collect::<std::io::Result<Vec<_>>>()
            });
            match copy.await.map_err(std::io::Error::other).and_then(|r| r) {
                Ok(frames) => Some(frames),
                Err(e) => {
                    tracing::debug!("reading a value from process {pid}: {e}; over the socket");
                    None
                }
            }
        }
        None => None,
    };
    let mut buf = Vec::new();
    let frames = match copied {
        Some(frames) => {
            write_frame(s, &DirectReply::Done).await?;
            // Only the worker's `Done` proves it kept the frames in place
            // while they were copied.
            match read_frame_limited::<_, DirectReply>(s, &mut buf, MAX_HELLO_LEN).await? {
                Some(DirectReply::Done) => frames,
                _ => {
                    return Err(FrameError::Invalid(
                        "the worker did not confirm it kept the values being copied".into(),
                    ))
                }
            }
        }
        None => {
            write_frame(s, &DirectReply::Send).await?;
            let mut frames = Vec::with_capacity(wanted.len());
            for w in &wanted {
                frames.push(read_exactly(s, w.len).await?);
            }
            frames
        }
    };
    for (w, bytes) in wanted.into_iter().zip(frames) {
        if let Some(p) = items[w.item].1.as_mut() {
            p.frames[w.frame] = bytes;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn response(big: Bytes) -> DataResponse {
        DataResponse {
            items: vec![
                (
                    "x".into(),
                    Some(Payload {
                        frames: vec![Bytes::from_static(b"head"), big.clone()],
                    }),
                ),
                ("gone".into(), None),
                (
                    "empty".into(),
                    Some(Payload {
                        frames: vec![Bytes::new()],
                    }),
                ),
                ("y".into(), Some(Payload::single(big))),
            ],
        }
    }

    #[tokio::test]
    async fn data_responses_round_trip_with_raw_frames() {
        let (mut a, mut b) = tokio::io::duplex(1 << 12);
        let sent = response(Bytes::from(vec![7u8; 300_000]));
        let expected = sent.clone();
        tokio::spawn(async move { write_data(&mut a, &sent).await.unwrap() });
        assert_eq!(read_data(&mut b, None).await.unwrap(), Some(expected));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_frames_are_copied_from_the_peer_or_sent_when_it_cannot_be() {
        let me = std::process::id();
        // This process is its own peer; pid 0 names none, so the copy
        // fails and the frames come over the socket after all.
        for peer in [Some(me), Some(0), None] {
            let (mut a, mut b) = tokio::io::duplex(1 << 16);
            let big: Vec<u8> = (0..3 * DIRECT_MIN + 5).map(|i| (i % 249) as u8).collect();
            let sent = response(Bytes::from(big));
            let expected = sent.clone();
            let server = tokio::spawn(async move {
                answer_data(&mut a, &sent, true).await.unwrap();
                a
            });
            assert_eq!(
                read_data(&mut b, peer).await.unwrap(),
                Some(expected),
                "{peer:?}"
            );
            drop(server.await.unwrap());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn copies_are_dropped_unless_the_worker_confirms_it_kept_the_frames() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let sent = response(Bytes::from(vec![1u8; DIRECT_MIN]));
        let held = sent.clone();
        tokio::spawn(async move {
            // Announces, then hangs up without waiting for the reply.
            let at = announced(&held);
            write_parts(&mut a, &held, &at).await.unwrap();
        });
        let got = read_data(&mut b, Some(std::process::id())).await;
        assert!(got.is_err(), "{got:?}");
        drop(sent);
    }

    #[tokio::test]
    async fn announced_frames_that_are_not_in_the_header_are_refused() {
        for at in [
            vec![DirectFrame {
                item: 1,
                frame: 0,
                addr: 8,
            }],
            vec![DirectFrame {
                item: 0,
                frame: 5,
                addr: 8,
            }],
            vec![
                DirectFrame {
                    item: 0,
                    frame: 0,
                    addr: 8,
                },
                DirectFrame {
                    item: 0,
                    frame: 0,
                    addr: 8,
                },
            ],
        ] {
            let (mut a, mut b) = tokio::io::duplex(1 << 12);
            let header = DataHeader {
                items: vec![("x".into(), Some(vec![1])), ("gone".into(), None)],
                at,
            };
            write_frame(&mut a, &header).await.unwrap();
            let err = read_data(&mut b, Some(std::process::id()))
                .await
                .unwrap_err();
            assert!(matches!(err, FrameError::Invalid(_)), "{err}");
        }
    }

    #[tokio::test]
    async fn a_data_response_cut_short_is_an_error_not_a_hang_or_a_huge_buffer() {
        let (mut a, mut b) = tokio::io::duplex(1 << 12);
        let header = DataHeader {
            items: vec![("x".into(), Some(vec![1 << 30]))],
            at: Vec::new(),
        };
        write_frame(&mut a, &header).await.unwrap();
        a.write_all(b"only a few bytes").await.unwrap();
        drop(a);
        assert!(read_data(&mut b, None).await.is_err());
    }
}
