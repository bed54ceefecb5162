//! Who may talk to a shoal process: the protocol version and the cluster's
//! shared secret, carried by the first frame of every connection.
//!
//! The scheduler, every worker's data server and the peers that fetch from
//! them read a small first frame ([`crate::MAX_HELLO_LEN`]) and check it
//! with [`Token::check`] before they read anything else.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The version of the wire protocol; peers of different versions refuse
/// each other with a clear reason instead of misreading messages.
pub const PROTOCOL: u32 = 3;

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

    /// What this side presents when it connects.
    pub fn credentials(&self) -> Credentials {
        Credentials {
            protocol: PROTOCOL,
            version: VERSION.to_string(),
            token: self.0.as_deref().unwrap_or_default().to_string(),
        }
    }

    /// Whether `offered` may come in: the same protocol, and this token
    /// (compared in constant time) if one is set.
    pub fn check(&self, offered: &Credentials) -> Result<(), Refusal> {
        if offered.protocol != PROTOCOL {
            return Err(Refusal::Version {
                ours: VERSION.to_string(),
                theirs: offered.version.clone(),
            });
        }
        match &self.0 {
            None => Ok(()),
            Some(_) if offered.token.is_empty() => Err(Refusal::MissingToken),
            Some(t) if same(t.as_bytes(), offered.token.as_bytes()) => Ok(()),
            Some(_) => Err(Refusal::WrongToken),
        }
    }
}

/// Equal bytes, in a time that depends only on the lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The first frame's proof of who is calling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub protocol: u32,
    /// The caller's shoal version, for the error message on a mismatch.
    pub version: String,
    /// Empty when the caller has none.
    pub token: String,
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

    fn offered(token: &str) -> Credentials {
        Credentials {
            protocol: PROTOCOL,
            version: VERSION.into(),
            token: token.into(),
        }
    }

    #[test]
    fn a_set_token_admits_only_itself() {
        let t = Token::new("s3cret").unwrap();
        assert_eq!(t.check(&offered("s3cret")), Ok(()));
        assert_eq!(t.check(&t.credentials()), Ok(()));
        assert_eq!(t.check(&offered("s3cres")), Err(Refusal::WrongToken));
        assert_eq!(t.check(&offered("s3cret2")), Err(Refusal::WrongToken));
        assert_eq!(t.check(&offered("")), Err(Refusal::MissingToken));
    }

    #[test]
    fn no_token_admits_anyone_of_the_same_protocol() {
        let t = Token::none();
        assert_eq!(t.check(&offered("")), Ok(()));
        assert_eq!(t.check(&offered("anything")), Ok(()));
        let mut old = offered("");
        old.protocol = PROTOCOL - 1;
        old.version = "0.0.1".into();
        let e = t.check(&old).unwrap_err();
        assert!(e.to_string().contains("0.0.1") && e.to_string().contains(VERSION));
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
        assert_eq!(Token::new(" ok\n").unwrap().credentials().token, "ok");
    }

    #[test]
    fn the_token_is_never_printed() {
        let t = Token::new("s3cret").unwrap();
        assert!(!format!("{t:?}").contains("s3cret"));
    }
}
