//! The same-host shortcut for data connections.
//!
//! A worker's data server listens on its TCP address and, on Linux, also on
//! a Unix socket in the abstract namespace named after that address
//! (`shoal/data/HOST:PORT`). A process about to open a data connection to
//! `HOST:PORT` tries that name first and falls back to TCP when nothing
//! answers there.
//!
//! Why it is right: abstract names belong to a network namespace, exactly
//! as the TCP port does, so the name answers only where a TCP connection
//! to the same address would reach the same process, and a worker in
//! another namespace (another host) is reached over TCP as before. Nothing
//! is created in the file system, and the name goes away with the process.
//! The handshake that proves the token runs on it unchanged.
//!
//! Why it pays: a value's bytes cross a Unix socket with less work per byte
//! than loopback TCP (no segmentation, checksums or acknowledgements); see
//! BENCHMARKS.md. With TLS on, data connections stay on TCP, since the
//! certificates are what authenticates the peer there.

/// The abstract socket name of the data server whose TCP address is
/// `addr` (with or without a scheme), with its leading NUL byte.
pub fn name(addr: &str) -> String {
    format!("\0shoal/data/{}", crate::addr::strip_scheme(addr))
}

#[cfg(target_os = "linux")]
mod imp {
    use tokio::net::{UnixListener, UnixStream};

    pub fn listen(addr: &str) -> Option<UnixListener> {
        match UnixListener::bind(super::name(addr)) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::debug!("no same-host data socket for {addr}: {e}");
                None
            }
        }
    }

    pub async fn connect(addr: &str) -> Option<UnixStream> {
        UnixStream::connect(super::name(addr)).await.ok()
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use tokio::net::{UnixListener, UnixStream};

    pub fn listen(_addr: &str) -> Option<UnixListener> {
        None
    }

    pub async fn connect(_addr: &str) -> Option<UnixStream> {
        None
    }
}

/// A listener on the same-host name of the data server at `addr`, if this
/// platform has abstract names and the name is free.
pub fn listen(addr: &str) -> Option<tokio::net::UnixListener> {
    imp::listen(addr)
}

/// A connection to the same-host name of the data server at `addr`, if a
/// process in this network namespace listens on it.
pub async fn connect(addr: &str) -> Option<tokio::net::UnixStream> {
    imp::connect(addr).await
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_listener_is_reached_by_its_tcp_address_with_or_without_scheme() {
        // A port no TCP listener needs: the name alone is what is tested.
        let addr = format!("127.0.0.1:{}", 40_000 + std::process::id() % 20_000);
        let listener = listen(&addr).expect("the name is free");
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = [0u8; 5];
            s.read_exact(&mut got).await.unwrap();
            got
        });
        let mut c = connect(&format!("tcp://{addr}")).await.expect("it listens");
        c.write_all(b"hello").await.unwrap();
        assert_eq!(&server.await.unwrap(), b"hello");
        // The name is taken while the listener lives, and free once it is
        // gone: nothing is left behind.
        assert!(connect(&addr).await.is_none());
        assert!(listen(&addr).is_some());
    }

    #[tokio::test]
    async fn nothing_answers_where_no_data_server_listens() {
        assert!(connect("127.0.0.1:1").await.is_none());
    }
}
