#![doc = include_str!("../README.md")]
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
