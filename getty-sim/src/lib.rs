//! getty-sim: a deterministic simulated runtime for getty.
//!
//! A [`Sim`] runs every task on one thread; a seed chooses the order in which ready tasks run
//! and every random number the runtime hands out, so the same seed and the same program give
//! the same run, event for event ([`Sim::trace`]). Time is virtual: when no task can run, the
//! clock jumps to the next timer, so an hour of heartbeats and backoff takes milliseconds. A
//! panic or a deadlock fails the run with the seed that replays it.
//!
//! ```
//! use std::time::Duration;
//! use getty_sim::Sim;
//!
//! let sim = Sim::new(1);
//! let rt = sim.runtime();
//! sim.block_on(async move {
//!     let (tx, rx) = std::sync::mpsc::channel();
//!     let worker = rt.clone();
//!     rt.spawn(async move {
//!         worker.sleep(Duration::from_secs(30)).await;
//!         tx.send(worker.now()).unwrap();
//!     });
//!     rt.sleep(Duration::from_secs(60)).await;
//!     assert!(rx.try_recv().is_ok(), "the worker ran at 30 s of virtual time");
//! });
//! assert_eq!(sim.elapsed(), Duration::from_secs(60));
//! ```
#![deny(missing_docs, missing_debug_implementations)]
#![forbid(unsafe_code)]

mod executor;
mod link;
mod net;
mod runtime;
mod trace;
mod udp;

pub use executor::{Sim, SimRuntime, SimTimer};
pub use link::{LinkFault, CONNECT_GIVE_UP};
pub use net::{SimListener, SimTcpStream, DEFAULT_LATENCY, DEFAULT_WINDOW};
pub use trace::{Event, Trace};
pub use udp::{SimUdp, UdpFaults};
