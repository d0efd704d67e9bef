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
//!
//! # The network
//! [`SimRuntime`] is a getty `Runtime` (an `Executor` and a `Network`), so getty's servers,
//! clients and UDP endpoints run on it unchanged, TLS and WebSocket included. Each handle is on
//! a host ([`Sim::host`], [`SimRuntime::host`]; [`Sim::runtime`] is `127.0.0.1`), whose
//! loopback and unspecified addresses mean its own address.
//! - **TCP**: ordered, reliable streams; each direction has a window ([`DEFAULT_WINDOW`], or
//!   the buffer sizes of getty's `TcpOptions`) past which a writer waits, so backpressure is
//!   real. FIN and half-close, RST ([`SimRuntime::reset_host`]), ephemeral ports from 49152,
//!   a port free again once its sockets are gone. A connect is refused when nothing listens,
//!   and times out after [`CONNECT_GIVE_UP`] when nobody answers.
//! - **UDP**: datagrams with loss, duplication and reordering drawn from the seed
//!   ([`UdpFaults`]); a connected socket whose peer has nothing bound gets a refusal, as ICMP
//!   "port unreachable" gives one.
//! - **Links**: one-way latency ([`DEFAULT_LATENCY`], [`SimRuntime::set_latency`], per link
//!   [`SimRuntime::set_link_latency`]) and bandwidth ([`SimRuntime::set_link_bandwidth`]).
//! - **Faults**, scripted during a run from any handle: cut two hosts apart holding their
//!   traffic ([`partition`](SimRuntime::partition)) or losing it
//!   ([`drop_traffic`](SimRuntime::drop_traffic)), or one host from all
//!   ([`isolate`](SimRuntime::isolate)); [`heal`](SimRuntime::heal) and
//!   [`rejoin`](SimRuntime::rejoin) end them. [`crash`](SimRuntime::crash) stops a host's
//!   tasks and makes its sockets vanish without a FIN; [`restart`](SimRuntime::restart)
//!   brings it back empty, and its old peers get a reset.
//!
//! ```
//! use std::net::SocketAddr;
//! use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
//! use getty_sim::Sim;
//!
//! let sim = Sim::new(3);
//! let (a, b) = (sim.host("10.0.0.1".parse().unwrap()), sim.host("10.0.0.2".parse().unwrap()));
//! sim.block_on(async move {
//!     let listener = a.listen("10.0.0.1:80".parse().unwrap()).unwrap();
//!     let mut conn = b.connect(listener.local_addr()).await.unwrap();
//!     let (mut accepted, _) = listener.accept().await.unwrap();
//!     b.partition(a.ip(), b.ip());
//!     conn.write_all(b"held").await.unwrap(); // waits in the network until the heal
//!     b.heal(a.ip(), b.ip());
//!     let mut got = [0; 4];
//!     accepted.read_exact(&mut got).await.unwrap();
//!     assert_eq!(&got, b"held");
//! });
//! ```
//!
//! # What the seed fixes, and what it does not
//! The seed fixes the order of ready tasks, the clock, every number the runtime hands out
//! (getty draws its reconnect jitter and WebSocket keys from it) and what happens to each
//! datagram. It does not fix what a dependency draws for itself: tungstenite's frame masks
//! change the bytes a WebSocket client sends but not their number nor any event, while rustls's
//! key shares and signatures can change a TLS handshake's length by a byte or two, so TLS runs
//! can differ in byte counts and, on a link with a bandwidth limit, in timing. Nor does it fix
//! what a program reads outside the runtime (`Instant::now()`, its own random numbers, a
//! process-wide counter such as getty's session ids).
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
