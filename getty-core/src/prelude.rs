//! The names most programs need, for `use getty_core::prelude::*;` (the runtime crates and the
//! `getty` facade have preludes that add their runtime).
//!
//! It holds no name that shadows std or a runtime crate (no `Result`, no `tokio`).

pub use crate::codec::{Codec, CodecError, Decoded, LengthDelimited, Lines, RawBytes};
pub use crate::endpoint::{
    Client, TcpClientBuilder, TcpServer, TcpServerBuilder, UdpClientBuilder, UdpEndpoint,
    UdpEndpointBuilder,
};
pub use crate::error::{BoxError, Error, ErrorKind};
pub use crate::listener::EventListener;
pub use crate::runtime::Runtime;
pub use crate::session::{Frame, Session, SessionConfig, SessionGroup};
pub use bytes::Bytes;
