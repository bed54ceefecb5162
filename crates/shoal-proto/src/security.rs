//! What a process presents, and checks, on every connection it makes or
//! accepts: the cluster's token and its TLS.

use crate::auth::Token;
use crate::tls::Tls;

/// The token and TLS of one process; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Security {
    pub token: Token,
    pub tls: Tls,
}

impl Security {
    /// A token over plain TCP.
    pub fn token(token: Token) -> Security {
        Security {
            token,
            tls: Tls::off(),
        }
    }
}
