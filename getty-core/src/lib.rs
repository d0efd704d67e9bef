//! Executor-neutral core of getty: sessions over TCP and UDP (later WebSocket) driven by
//! user codecs and event listeners, written once against a small [`Runtime`] trait.
//!
//! Users normally depend on a runtime crate (`getty-tokio` or `getty-smol`) or on the `getty`
//! facade; this crate is what those share. Layers, bottom up:
//! - [`runtime`]: the seam to an executor (spawn, timers, sockets);
//! - [`codec`]: bytes ⇄ packages;
//! - [`compress`]: optional compression of a session's byte stream;
//! - [`listener`]: the user's event handlers;
//! - [`session`]: the per-connection handle;
//! - `driver`: the per-session state machine (internal);
//! - [`endpoint`]: servers and clients.
#![deny(missing_docs, missing_debug_implementations)]
#![forbid(unsafe_code)]

pub mod codec;
pub mod compress;
mod driver;
pub mod endpoint;
mod error;
#[cfg(any(all(test, feature = "compression"), feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod listener;
mod panic;
pub mod pool;
pub mod prelude;
pub mod runtime;
pub mod session;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "ws")]
pub(crate) mod ws;

pub use codec::{Codec, CodecError, Decoded};
pub use compress::Compression;
pub use endpoint::{
    Client, TcpClientBuilder, TcpServer, TcpServerBuilder, UdpClientBuilder, UdpEndpoint,
    UdpEndpointBuilder,
};
pub use error::{BoxError, Error, ErrorKind, Result};
pub use listener::{EventListener, NewSession};
pub use runtime::Runtime;
pub use session::{Frame, Session, SessionConfig, Stats};

/// The byte buffer types used by codecs.
pub use bytes;
