//! Executor-neutral core of getty: sessions over TCP, UDP, TLS and WebSocket, driven by user
//! codecs and event listeners, written once against a small [`Runtime`] trait.
//!
//! Users normally depend on the `getty` facade or on one runtime crate, which re-export all of
//! this crate:
//!
//! ```toml
//! [dependencies]
//! getty = { version = "0.1", default-features = false, features = ["tokio"] } # TCP + UDP
//! # or: getty-tokio = "0.1" / getty-smol = "0.1" (TLS, WebSocket and compression included)
//! ```
//!
//! Features: `tls`, `ws` (WebSocket), `compression`, all on by default; without them this
//! crate has TCP and UDP only.
//!
//! A server and a client, generic over the runtime (a runtime crate supplies `rt`):
//!
//! ```no_run
//! use getty_core::prelude::*;
//!
//! struct Echo;
//!
//! impl EventListener<LengthDelimited> for Echo {
//!     async fn on_message(&self, session: &Session<LengthDelimited>, pkg: Bytes) {
//!         let _ = session.send_frame(Frame::payload(pkg)).await;
//!     }
//! }
//!
//! struct Print;
//!
//! impl EventListener<LengthDelimited> for Print {
//!     async fn on_message(&self, _session: &Session<LengthDelimited>, pkg: Bytes) {
//!         println!("echoed: {pkg:?}");
//!     }
//! }
//!
//! async fn demo<R: Runtime>(rt: R) -> getty_core::Result<()> {
//!     let server = TcpServer::builder().serve(rt.clone(), LengthDelimited::hello(), Echo)?;
//!     let client = TcpClientBuilder::new(server.local_addr())
//!         .start(rt, LengthDelimited::hello(), Print)?;
//!     client.wait_for_sessions(1).await?;
//!     let session = client.session().expect("connected");
//!     session.send(b"hello").await?;
//!     client.close().await;
//!     server.close().await;
//!     Ok(())
//! }
//! ```
//!
//! Layers, bottom up (each module's docs say how that part behaves):
//! - [`runtime`]: the seam to an executor (spawn, timers, sockets);
//! - [`codec`]: bytes ⇄ packages, and the one message-size limit;
//! - [`compress`]: optional compression of a session's byte stream;
//! - [`listener`]: the user's event handlers, their order and guarantees;
//! - [`session`]: the per-connection handle: writing, settings, closing;
//! - `driver`: the per-session state machine (internal);
//! - [`endpoint`]: servers and clients: closing, hostile peers, UDP, TLS, WebSocket, the task
//!   pool, socket options;
//! - `tls`: TLS configurations (feature `tls`);
//! - `ws`: what a WebSocket session knows of its upgrade, and refusing one (feature `ws`).
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
pub mod ws;

pub use codec::{Codec, CodecError, Decoded};
pub use compress::Compression;
pub use endpoint::{
    Client, TcpClientBuilder, TcpServer, TcpServerBuilder, UdpClientBuilder, UdpEndpoint,
    UdpEndpointBuilder,
};
pub use error::{BoxError, Error, ErrorKind, Result};
pub use listener::{EventListener, NewSession};
pub use runtime::Runtime;
pub use session::{Frame, Session, SessionConfig, SessionGroup, Stats};

/// The byte buffer types used by codecs.
pub use bytes;
/// The HTTP types of WebSocket handshakes ([`HeaderMap`](http::HeaderMap) and its names and
/// values), feature `ws`.
#[cfg(feature = "ws")]
pub use http;
