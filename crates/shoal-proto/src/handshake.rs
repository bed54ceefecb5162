//! The first exchange on every connection: the protocol version, then a
//! mutual proof of the cluster's token (see [`crate::auth`]).
//!
//! ```text
//! caller                                   callee
//!   Greeting{protocol, version, nonce}  ->
//!                                       <-  Challenge{nonce, proof}  (or Refused)
//!   checks the callee's proof
//!   Proof{proof} + its first request    ->
//!                                       <-  Admitted                 (or Refused)
//! ```
//!
//! The caller's first request (a `Hello` to the scheduler, a `PeerRequest`
//! to a data server) goes out with its proof, so a connection costs the
//! same two round trips as when the token itself was sent; the callee
//! reads it only after the proof was accepted. Every frame here is small
//! ([`MAX_HELLO_LEN`]); the caller's deadline is the caller's business.

use serde::Serialize;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::auth::{
    nonce, Admission, Challenge, Greeting, Nonces, Proof, Refusal, Side, Token, Unproven,
    NONCE_LEN, PROTOCOL, VERSION,
};
use crate::frame::{encode_frame, read_frame_limited, write_frame, FrameError, MAX_HELLO_LEN};

/// Why the side that connected did not get in.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("{0}")]
    Refused(String),
    #[error("it runs without a token, so it cannot prove that it belongs to the cluster of this side's token (it may be another program on that port): give it the token, or connect without one")]
    CalleeHasNoToken,
    #[error("wrong token: the other side holds another one (it is not part of this side's cluster, or one of the two tokens is wrong)")]
    CalleeHasOtherToken,
    #[error(
        "it sent an answer that is not shoal's (another program on that port, or an older shoal)"
    )]
    Garbled,
    #[error("it closed the connection during the handshake")]
    Closed,
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Proves this side's `token` to the process it connected to and checks
/// that process's proof first; `first` (the caller's first request) is
/// sent along with the proof. Ok once the other side admitted it.
pub async fn prove<S, M>(stream: &mut S, token: &Token, first: &M) -> Result<(), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    M: Serialize,
{
    let caller = nonce().map_err(FrameError::Io)?;
    let greeting = Greeting {
        protocol: PROTOCOL,
        version: VERSION.to_string(),
        nonce: caller.to_vec(),
    };
    write_frame(stream, &greeting).await?;
    let mut buf = Vec::new();
    let answer = read_frame_limited::<_, Challenge>(stream, &mut buf, MAX_HELLO_LEN)
        .await
        .map_err(garbled)?
        .ok_or(HandshakeError::Closed)?;
    let (callee, proof) = match answer {
        Challenge::Challenge { nonce, proof } => (nonce, proof),
        Challenge::Refused { reason } => return Err(HandshakeError::Refused(reason)),
    };
    let nonces = Nonces {
        caller,
        callee: callee.try_into().map_err(|_| HandshakeError::Garbled)?,
    };
    token
        .verify(Side::Callee, &nonces, proof.as_deref())
        .map_err(|e| match e {
            Unproven::Missing => HandshakeError::CalleeHasNoToken,
            Unproven::Wrong => HandshakeError::CalleeHasOtherToken,
        })?;
    let mut out = Vec::with_capacity(256);
    let proof = Proof {
        proof: token.prove(Side::Caller, &nonces),
    };
    encode_frame(&proof, &mut out)?;
    encode_frame(first, &mut out)?;
    stream.write_all(&out).await.map_err(FrameError::Io)?;
    stream.flush().await.map_err(FrameError::Io)?;
    match read_frame_limited::<_, Admission>(stream, &mut buf, MAX_HELLO_LEN)
        .await
        .map_err(garbled)?
    {
        Some(Admission::Admitted) => Ok(()),
        Some(Admission::Refused { reason }) => Err(HandshakeError::Refused(reason)),
        None => Err(HandshakeError::Closed),
    }
}

/// A reply that does not decode is not from a shoal of this protocol.
fn garbled(e: FrameError) -> HandshakeError {
    match e {
        FrameError::Decode(_) => HandshakeError::Garbled,
        e => HandshakeError::Frame(e),
    }
}

/// The most of a caller's version string repeated in a refusal (and log).
const MAX_VERSION_CHARS: usize = 32;

/// Why an accepted connection was not let in.
#[derive(Debug, thiserror::Error)]
pub enum Unadmitted {
    /// Told to the caller, who may be a user with a wrong token.
    #[error("{0}")]
    Refused(Refusal),
    /// Closed, silent, or not shoal's framing at all.
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("it closed the connection during the handshake")]
    Closed,
    /// Gone after this side's proof: a caller does that when the proof
    /// is not of its token.
    #[error("it hung up after this side proved its token: it holds another token (wrong token), or it is not shoal")]
    Abandoned,
}

impl Unadmitted {
    /// Says why a connection (`what`, from `peer`) was not let in: at warn,
    /// at most a line a second, what an operator may act on (a refusal, a
    /// caller that hung up after this side's proof, a first frame too large
    /// or in TLS); at debug the rest (closed, silent, garbage).
    pub fn log(&self, what: &str, peer: impl std::fmt::Display) {
        match self {
            Unadmitted::Refused(_) | Unadmitted::Abandoned => {
                crate::throttle::warn(format_args!("refused {what} from {peer}: {self}"));
            }
            Unadmitted::Frame(FrameError::TooLarge(..) | FrameError::SpeaksTls) => {
                crate::throttle::warn(format_args!("closing {what} from {peer}: {self}"));
            }
            _ => tracing::debug!("{what} from {peer} did not get in: {self}"),
        }
    }
}

/// Runs the callee's side of the handshake on a connection this process
/// accepted: checks the version, proves its own token, checks the caller's
/// proof. Each refusal is written to the caller before it is returned.
pub async fn admit<S>(stream: &mut S, token: &Token) -> Result<(), Unadmitted>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    let greeting = match read_frame_limited::<_, Greeting>(stream, &mut buf, MAX_HELLO_LEN).await {
        Ok(Some(g)) => g,
        Ok(None) => return Err(Unadmitted::Closed),
        Err(FrameError::Decode(_)) => return refuse(stream, Refusal::Unreadable).await,
        Err(e) => return Err(e.into()),
    };
    if greeting.protocol != PROTOCOL {
        // The caller's words reach this side's log: a version, not a page.
        let theirs: String = greeting.version.chars().take(MAX_VERSION_CHARS).collect();
        let ours = VERSION.to_string();
        return refuse(stream, Refusal::Version { ours, theirs }).await;
    }
    let Ok(caller) = <[u8; NONCE_LEN]>::try_from(greeting.nonce) else {
        return refuse(stream, Refusal::Unreadable).await;
    };
    let callee = nonce().map_err(FrameError::Io)?;
    let nonces = Nonces { caller, callee };
    let challenge = Challenge::Challenge {
        nonce: callee.to_vec(),
        proof: token.prove(Side::Callee, &nonces),
    };
    write_frame(stream, &challenge).await?;
    let proof = match read_frame_limited::<_, Proof>(stream, &mut buf, MAX_HELLO_LEN).await {
        Ok(Some(p)) => p,
        Ok(None) => return Err(Unadmitted::Abandoned),
        Err(FrameError::Decode(_)) => return refuse(stream, Refusal::Unreadable).await,
        Err(e) => return Err(e.into()),
    };
    match token.verify(Side::Caller, &nonces, proof.proof.as_deref()) {
        Ok(()) => {
            write_frame(stream, &Admission::Admitted).await?;
            Ok(())
        }
        Err(Unproven::Missing) => refuse(stream, Refusal::MissingToken).await,
        Err(Unproven::Wrong) => refuse(stream, Refusal::WrongToken).await,
    }
}

/// How long a refused caller's remaining bytes are read and dropped.
const LINGER: Duration = Duration::from_secs(1);

/// Tells the caller why it is refused (as far as it still listens), and
/// returns the refusal.
///
/// The caller may have sent its first request along with its proof:
/// closing a socket with unread bytes makes the kernel reset the
/// connection, and the caller would lose the reason. So the refusal is
/// followed by the end of this side's stream, and what the caller still
/// sends (up to [`MAX_HELLO_LEN`], for at most [`LINGER`]) is dropped.
async fn refuse<S>(stream: &mut S, refusal: Refusal) -> Result<(), Unadmitted>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let reason = refusal.to_string();
    // The same encoding as `Admission::Refused`, whichever the caller
    // waits for.
    if write_frame(stream, &Challenge::Refused { reason })
        .await
        .is_ok()
    {
        let _ = stream.shutdown().await;
        let mut rest = (&mut *stream).take(MAX_HELLO_LEN as u64);
        let mut sink = tokio::io::sink();
        let _ = tokio::time::timeout(LINGER, tokio::io::copy(&mut rest, &mut sink)).await;
    }
    Err(Unadmitted::Refused(refusal))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::read_frame;

    /// Runs both sides over an in-memory pipe; the callee returns the
    /// first request it reads once it admitted the caller.
    async fn connect(
        caller: Token,
        callee: Token,
    ) -> (Result<(), HandshakeError>, Result<String, Unadmitted>) {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move {
            admit(&mut b, &callee).await?;
            let mut buf = Vec::new();
            let first: Option<String> = read_frame(&mut b, &mut buf).await?;
            first.ok_or(Unadmitted::Closed)
        });
        let called = prove(&mut a, &caller, &"the first request".to_string()).await;
        drop(a);
        (called, server.await.unwrap())
    }

    fn token(t: &str) -> Token {
        Token::new(t).unwrap()
    }

    #[tokio::test]
    async fn the_same_token_on_both_sides_is_admitted_and_the_request_follows() {
        let (called, served) = connect(token("s3cret"), token("s3cret")).await;
        called.unwrap();
        assert_eq!(served.unwrap(), "the first request");
    }

    #[tokio::test]
    async fn a_caller_with_another_token_never_sends_its_request() {
        let (called, served) = connect(token("mine"), token("theirs")).await;
        assert!(matches!(called, Err(HandshakeError::CalleeHasOtherToken)));
        // The caller stopped before its proof: the callee saw the
        // connection close, and no request.
        assert!(matches!(served, Err(Unadmitted::Abandoned)), "{served:?}");
    }

    #[tokio::test]
    async fn a_callee_without_a_token_cannot_pass_for_one_of_the_cluster() {
        let (called, served) = connect(token("s3cret"), Token::none()).await;
        assert!(matches!(called, Err(HandshakeError::CalleeHasNoToken)));
        assert!(served.is_err());
    }

    #[tokio::test]
    async fn a_caller_without_a_token_is_refused_and_told_why() {
        let (called, served) = connect(Token::none(), token("s3cret")).await;
        let Err(HandshakeError::Refused(reason)) = called else {
            panic!("{called:?}")
        };
        assert!(reason.contains("token is required"), "{reason}");
        assert!(matches!(
            served,
            Err(Unadmitted::Refused(Refusal::MissingToken))
        ));
    }

    #[tokio::test]
    async fn neither_side_with_a_token_is_admitted() {
        let (called, served) = connect(Token::none(), Token::none()).await;
        called.unwrap();
        assert_eq!(served.unwrap(), "the first request");
    }

    #[tokio::test]
    async fn a_caller_of_another_protocol_is_told_the_versions() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move { admit(&mut b, &Token::none()).await });
        // What protocol 3 sent first: its token in clear, no nonce.
        #[derive(Serialize)]
        struct Credentials {
            protocol: u32,
            version: String,
            token: String,
        }
        let old = Credentials {
            protocol: 3,
            version: format!("0.0.3{}", "x".repeat(60_000)),
            token: String::new(),
        };
        write_frame(&mut a, &old).await.unwrap();
        let mut buf = Vec::new();
        let answer: Challenge = read_frame(&mut a, &mut buf).await.unwrap().unwrap();
        let Challenge::Refused { reason } = answer else {
            panic!("{answer:?}")
        };
        assert!(
            reason.contains("0.0.3") && reason.contains(VERSION),
            "{reason}"
        );
        assert!(
            reason.len() < 300,
            "the caller's text is cut: {}",
            reason.len()
        );
        assert!(matches!(
            server.await.unwrap(),
            Err(Unadmitted::Refused(Refusal::Version { .. }))
        ));
    }

    #[tokio::test]
    async fn a_replayed_proof_is_refused() {
        // A listener that recorded a caller's proof cannot use it: the
        // callee's nonce differs on every connection.
        let t = token("s3cret");
        let old = Nonces {
            caller: nonce().unwrap(),
            callee: nonce().unwrap(),
        };
        let recorded = t.prove(Side::Caller, &old);
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let callee = t.clone();
        let server = tokio::spawn(async move { admit(&mut b, &callee).await });
        let greeting = Greeting {
            protocol: PROTOCOL,
            version: VERSION.into(),
            nonce: old.caller.to_vec(),
        };
        write_frame(&mut a, &greeting).await.unwrap();
        let mut buf = Vec::new();
        let _: Challenge = read_frame(&mut a, &mut buf).await.unwrap().unwrap();
        write_frame(&mut a, &Proof { proof: recorded })
            .await
            .unwrap();
        assert!(matches!(
            server.await.unwrap(),
            Err(Unadmitted::Refused(Refusal::WrongToken))
        ));
    }
}
