#![doc = include_str!("../README.md")]
#![deny(missing_docs, missing_debug_implementations)]
#![forbid(unsafe_code)]

pub use getty_core::*;

#[cfg(feature = "smol")]
pub use getty_smol::SmolRuntime;
#[cfg(feature = "tokio")]
pub use getty_tokio::TokioRuntime;

/// The names most programs need: `use getty::prelude::*;`. It names no runtime crate, so it
/// goes with `#[tokio::main]` or `smol::block_on` alike.
pub mod prelude {
    pub use getty_core::prelude::*;
    #[cfg(feature = "smol")]
    pub use getty_smol::SmolRuntime;
    #[cfg(feature = "tokio")]
    pub use getty_tokio::TokioRuntime;
}

/// The runtime seam ([`Runtime`]) and the adapters for the runtimes this build has: the
/// adapter crates are reachable as `getty::runtime::tokio` and `getty::runtime::smol`, where
/// they do not shadow the `tokio` and `smol` crates.
pub mod runtime {
    pub use getty_core::runtime::*;
    /// The smol adapter (`getty-smol`).
    #[cfg(feature = "smol")]
    pub use getty_smol as smol;
    /// The tokio adapter (`getty-tokio`).
    #[cfg(feature = "tokio")]
    pub use getty_tokio as tokio;
}
