//! getty: asynchronous, session-based network I/O on tokio or smol, with one API.
//!
//! This facade re-exports [`getty_core`] (codecs, listeners, sessions, servers and clients)
//! and, by feature, the runtime adapters: [`tokio`] (feature `tokio`, on by default) and
//! [`smol`] (feature `smol`).
//!
//! ```no_run
//! use std::sync::Arc;
//! use getty::codec::LengthDelimited;
//! use getty::{async_trait, bytes::Bytes, EventListener, Session, TcpServer};
//!
//! struct Echo;
//!
//! #[async_trait]
//! impl EventListener<LengthDelimited> for Echo {
//!     async fn on_message(&self, session: &Session<LengthDelimited>, pkg: Bytes) {
//!         let _ = session.send_pkg(&pkg);
//!     }
//! }
//!
//! # async fn run() -> getty::Result<()> {
//! let rt = getty::tokio::TokioRuntime::current();
//! let listener: Arc<dyn EventListener<LengthDelimited>> = Arc::new(Echo);
//! let server = TcpServer::builder()
//!     .serve(rt, LengthDelimited::hello(), move |_: &Session<_>| Ok(listener.clone()))
//!     .await?;
//! println!("echo server on {}", server.local_addr());
//! # Ok(()) }
//! ```
#![deny(missing_docs, missing_debug_implementations)]
#![forbid(unsafe_code)]

pub use getty_core::endpoint::{TcpClient, TcpClientBuilder, TcpServer, TcpServerBuilder};
pub use getty_core::*;

/// The tokio runtime adapter (`getty-tokio`).
#[cfg(feature = "tokio")]
pub use getty_tokio as tokio;

/// The smol runtime adapter (`getty-smol`).
#[cfg(feature = "smol")]
pub use getty_smol as smol;
