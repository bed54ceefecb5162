//! The shoal wire protocol: message types exchanged between clients, the
//! scheduler and workers, and the length-prefixed framing that carries them.
//!
//! Every connection carries *frames*. A frame is a little-endian `u32` length
//! followed by that many bytes of MessagePack encoding a `Vec` of messages, so
//! whatever is queued for a connection goes out in one write.

pub mod addr;
pub mod auth;
pub mod buffer;
pub mod coord;
pub mod data;
pub mod frame;
pub mod gate;
pub mod handshake;
pub mod io;
pub mod local;
pub mod messages;
pub mod peer_memory;
pub mod security;
pub mod stream;
pub mod throttle;
pub mod tls;
pub mod weight;

pub use auth::{Admission, Refusal, Token, TokenError};
pub use coord::{CoordOp, CoordReply, Held, MetaEntry, StoryEntry};
pub use data::{answer_data, read_data, write_data};
pub use frame::{
    read_frame, read_frame_limited, write_frame, FrameError, MAX_FRAME_LEN, MAX_HELLO_LEN,
};
pub use handshake::{admit, prove, HandshakeError, Unadmitted};
pub use io::{
    counted_writer, get_data, introduce, put_data, reader, run_on_worker, writer, FetchError, Route,
};
pub use messages::*;
pub use security::Security;
pub use stream::Stream;
pub use tls::{Tls, TlsError, TlsPem};
