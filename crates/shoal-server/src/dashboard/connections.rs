//! The dashboard's connections, bounded: the dashboard shares its thread
//! and its process's file descriptors with the scheduler, so no visitor
//! may hold them without limit.
//!
//! * At most [`MAX_CONNECTIONS`] at once; a connection past it is closed at
//!   once (with a warning at most once a second).
//! * A connection that moves no byte either way for [`IDLE`] is closed. A
//!   live page's update stream sends a keep-alive every 15 s, so it is
//!   never idle; a connection that sends nothing, or half a request, is.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

/// The most dashboard connections open at once.
pub(crate) const MAX_CONNECTIONS: usize = 256;

/// How long a connection may move no byte before it is closed.
pub(crate) const IDLE: Duration = Duration::from_secs(30);

/// The dashboard's listener: accepts within [`MAX_CONNECTIONS`], and hands
/// axum connections that close when idle.
pub(crate) struct Bounded {
    listener: TcpListener,
    open: Arc<AtomicUsize>,
}

impl Bounded {
    pub(crate) fn new(listener: TcpListener) -> Bounded {
        Bounded {
            listener,
            open: Arc::default(),
        }
    }
}

impl axum::serve::Listener for Bounded {
    type Io = Watched;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Watched, std::net::SocketAddr) {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    shoal_proto::gate::accept_failed(e).await;
                    continue;
                }
            };
            if self.open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                self.open.fetch_sub(1, Ordering::SeqCst);
                shoal_proto::throttle::warn(format_args!(
                    "closing a dashboard connection from {peer}: {MAX_CONNECTIONS} are open already"
                ));
                continue;
            }
            let watched = Watched {
                stream,
                deadline: Box::pin(tokio::time::sleep(IDLE)),
                open: self.open.clone(),
            };
            return (watched, peer);
        }
    }

    fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }
}

/// A dashboard connection that ends after [`IDLE`] without a byte, and
/// counts itself out when dropped.
pub(crate) struct Watched {
    stream: TcpStream,
    deadline: Pin<Box<Sleep>>,
    open: Arc<AtomicUsize>,
}

impl Watched {
    /// Bytes moved: the idle clock starts again.
    fn moved(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + IDLE);
    }

    /// Pending I/O: an error once the connection has been idle too long
    /// (the deadline's timer wakes the task then).
    fn check_idle<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the dashboard connection was idle too long",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.moved();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.check_idle(cx),
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.moved();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.check_idle(cx),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
