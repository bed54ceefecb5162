//! Who may talk to a shoal process: the protocol version and the cluster's
//! shared secret, which never crosses the wire.
//!
//! Both sides of every connection prove that they hold the token without
//! sending it: each contributes a fresh nonce, and each sends an HMAC of
//! both nonces under the token ([`Token::prove`]). The side that connected
//! checks the other's proof before it sends its own or anything else, so a
//! process that only pretends to be a scheduler or a worker learns nothing
//! it could use and gets no request. [`crate::handshake`] runs the
//! exchange; this module holds its messages and its cryptography.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The version of the wire protocol; peers of different versions refuse
/// each other with a clear reason instead of misreading messages.
pub const PROTOCOL: u32 = 4;

/// The shoal version this build belongs to, for error messages.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Longest token accepted (a generated one has 43 characters).
pub const MAX_TOKEN_LEN: usize = 1024;

/// A cluster's shared secret, or none (nothing is checked). Never printed
/// by `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Token(Option<Arc<str>>);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(_) => f.write_str("Token(<hidden>)"),
            None => f.write_str("Token(none)"),
        }
    }
}

/// A token that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is empty")]
    Empty,
    #[error("the token is {0} characters long; at most {MAX_TOKEN_LEN} are allowed")]
    TooLong(usize),
    #[error("the token may contain only printable ASCII characters without spaces")]
    Unprintable,
}

impl Token {
    /// No token: every connection is let in (loopback-only schedulers).
    pub fn none() -> Token {
        Token(None)
    }

    /// A token from its text (surrounding whitespace, as in a file, is
    /// dropped).
    pub fn new(text: &str) -> Result<Token, TokenError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(TokenError::Empty);
        }
        if text.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong(text.len()));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::Unprintable);
        }
        Ok(Token(Some(text.into())))
    }

    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// This side's proof that it holds the token, for the connection
    /// whose two nonces are given (`None` without a token): an HMAC-SHA256
    /// of both nonces under the token, labelled by `side` so that one
    /// side's proof is never valid as the other's.
    pub fn prove(&self, side: Side, nonces: &Nonces) -> Option<Vec<u8>> {
        let key = self.key()?;
        Some(
            ring::hmac::sign(&key, &nonces.message(side))
                .as_ref()
                .to_vec(),
        )
    }

    /// Whether `offered` proves that `side` holds this token (compared in
    /// constant time). Without a token nothing needs proving.
    pub fn verify(
        &self,
        side: Side,
        nonces: &Nonces,
        offered: Option<&[u8]>,
    ) -> Result<(), Unproven> {
        let Some(key) = self.key() else {
            return Ok(());
        };
        let offered = offered.ok_or(Unproven::Missing)?;
        ring::hmac::verify(&key, &nonces.message(side), offered).map_err(|_| Unproven::Wrong)
    }

    fn key(&self) -> Option<ring::hmac::Key> {
        let text = self.0.as_deref()?;
        Some(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            text.as_bytes(),
        ))
    }
}

/// Which end of a connection a proof comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The side that connected.
    Caller,
    /// The side that accepted.
    Callee,
}

/// How many random bytes each side contributes to a connection's proofs.
pub const NONCE_LEN: usize = 32;

/// The two fresh random values a connection's proofs are made over: the
/// caller's and the callee's, so neither side can replay an old proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nonces {
    pub caller: [u8; NONCE_LEN],
    pub callee: [u8; NONCE_LEN],
}

impl Nonces {
    fn message(&self, side: Side) -> Vec<u8> {
        let label: &[u8] = match side {
            Side::Caller => b"shoal/4 caller proof",
            Side::Callee => b"shoal/4 callee proof",
        };
        [label, &self.caller, &self.callee].concat()
    }
}

/// A fresh nonce from the operating system's random source.
pub fn nonce() -> std::io::Result<[u8; NONCE_LEN]> {
    use ring::rand::SecureRandom;
    let mut out = [0u8; NONCE_LEN];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| std::io::Error::other("the system's random source failed"))?;
    Ok(out)
}

/// Why a side's proof of the token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unproven {
    /// It holds no token.
    Missing,
    /// It holds another token.
    Wrong,
}

/// The first frame on every connection, from the side that connected:
/// its protocol and version (checked first) and its nonce. A peer of an
/// older protocol, whose first frame had no nonce, decodes as one with an
/// empty nonce and is told about the version mismatch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Greeting {
    pub protocol: u32,
    /// The caller's shoal version, for the error message on a mismatch.
    pub version: String,
    #[serde(default, with = "serde_bytes")]
    pub nonce: Vec<u8>,
}

/// The accepting side's answer to a [`Greeting`]: its nonce and its proof
/// (none if it holds no token), or why the caller is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Challenge {
    Challenge {
        #[serde(with = "serde_bytes")]
        nonce: Vec<u8>,
        #[serde(with = "serde_bytes")]
        proof: Option<Vec<u8>>,
    },
    Refused {
        reason: String,
    },
}

/// The calling side's proof (none if it holds no token), sent once it has
/// checked the other side's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    #[serde(with = "serde_bytes")]
    pub proof: Option<Vec<u8>>,
}

/// Why a connection was refused; the text is what the caller sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("version mismatch: this side runs shoal {ours}, the caller shoal {theirs}; install the same version everywhere")]
    Version { ours: String, theirs: String },
    #[error("a token is required: pass it as Security(token=...), --token, --token-file or the SHOAL_TOKEN environment variable")]
    MissingToken,
    #[error("wrong token")]
    WrongToken,
    #[error("the first message could not be read (a peer of another shoal version, or not shoal at all)")]
    Unreadable,
}

/// A data server's answer to a peer's credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Admission {
    Admitted,
    Refused { reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nonces() -> Nonces {
        Nonces {
            caller: nonce().unwrap(),
            callee: nonce().unwrap(),
        }
    }

    #[test]
    fn a_proof_is_valid_for_its_token_side_and_nonces_only() {
        let t = Token::new("s3cret").unwrap();
        let n = nonces();
        let proof = t.prove(Side::Caller, &n).unwrap();
        assert_eq!(t.verify(Side::Caller, &n, Some(&proof)), Ok(()));
        // The other side's proof, another connection, another token.
        assert_eq!(
            t.verify(Side::Callee, &n, Some(&proof)),
            Err(Unproven::Wrong)
        );
        assert_eq!(
            t.verify(Side::Caller, &nonces(), Some(&proof)),
            Err(Unproven::Wrong)
        );
        let other = Token::new("s3cres").unwrap();
        assert_eq!(
            other.verify(Side::Caller, &n, Some(&proof)),
            Err(Unproven::Wrong)
        );
        assert_eq!(t.verify(Side::Caller, &n, None), Err(Unproven::Missing));
        assert_eq!(t.verify(Side::Caller, &n, Some(b"")), Err(Unproven::Wrong));
    }

    #[test]
    fn a_proof_does_not_contain_the_token() {
        let t = Token::new("s3cret-that-is-long-enough").unwrap();
        let proof = t.prove(Side::Caller, &nonces()).unwrap();
        assert_eq!(proof.len(), 32);
        assert!(!proof.windows(6).any(|w| w == b"s3cret".as_slice()));
    }

    #[test]
    fn without_a_token_nothing_is_proven_or_checked() {
        let t = Token::none();
        let n = nonces();
        assert_eq!(t.prove(Side::Callee, &n), None);
        assert_eq!(t.verify(Side::Caller, &n, None), Ok(()));
        assert_eq!(t.verify(Side::Caller, &n, Some(b"anything")), Ok(()));
    }

    #[test]
    fn nonces_are_fresh() {
        assert_ne!(nonce().unwrap(), nonce().unwrap());
    }

    #[test]
    fn bad_tokens_are_refused_with_a_reason() {
        assert_eq!(Token::new("  \n"), Err(TokenError::Empty));
        assert_eq!(Token::new("a b"), Err(TokenError::Unprintable));
        assert_eq!(Token::new("caf\u{e9}"), Err(TokenError::Unprintable));
        let long = "x".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            Token::new(&long),
            Err(TokenError::TooLong(MAX_TOKEN_LEN + 1))
        );
        let n = nonces();
        let trimmed = Token::new(" ok\n").unwrap().prove(Side::Caller, &n);
        assert_eq!(trimmed, Token::new("ok").unwrap().prove(Side::Caller, &n));
    }

    #[test]
    fn the_token_is_never_printed() {
        let t = Token::new("s3cret").unwrap();
        assert!(!format!("{t:?}").contains("s3cret"));
    }
}
