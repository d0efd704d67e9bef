//! The runtime seam: the only place where getty-core meets an executor and a network.
//!
//! Everything else in this crate (codecs, sessions, drivers, endpoints) is written against
//! [`Runtime`], which is two traits and nothing more:
//! - [`Executor`]: spawn a detached task, a resettable [`Timer`], the clock ([`now`]) and a
//!   source of randomness ([`random_u64`]);
//! - [`Network`]: connect, listen, accept, addresses, UDP sockets, and applying
//!   [`TcpOptions`] to a stream.
//!
//! Neither names an OS type: a runtime whose sockets are not the OS's (a simulated network)
//! fits as well as tokio or smol. The OS work that the tokio and smol adapters share
//! (creating, binding and configuring sockets with socket2) lives in [`os`], which is not part
//! of the traits; [`os::OsNetwork`] gives tests on OS runtimes the socket under a stream.
//!
//! Streams are [futures-io] `AsyncRead + AsyncWrite`, so the protocol layers written once in
//! the core (framing, compression, TLS, WebSocket) work on every network. Sockets are
//! associated types: the per-byte hot path is statically dispatched. Runtime-free handles
//! (such as [`Session`](crate::Session)) keep the object-safe [`DynExecutor`].
//!
//! [futures-io]: https://docs.rs/futures-io/0.3
//! [`now`]: Executor::now
//! [`random_u64`]: Executor::random_u64
//!
//! # One clock
//! Every time getty-core reads or waits (last activity, read and idle timeouts, cron, reconnect
//! backoff, close-wait, handshake timeouts, statistics, a session's age) goes through
//! [`Executor::now`] and [`Executor::timer`]: getty-core itself never reads `Instant::now()`
//! or `SystemTime::now()` (CI greps for it). A runtime with a virtual clock therefore controls
//! all of getty's time.
//!
//! # Randomness, and what a seeded runtime makes deterministic
//! getty-core draws every random number it uses itself from [`Executor::random_u64`]:
//! - the reconnect jitter of clients (up to 20 % added to each backoff pause);
//! - the `Sec-WebSocket-Key` of each WebSocket client handshake (16 bytes from two draws).
//!
//! A runtime that seeds `random_u64` (and schedules tasks and delivers bytes deterministically)
//! therefore fixes every decision getty makes. What dependencies draw internally is outside
//! that seed, and a seeded run is exactly as deterministic as follows:
//! - **WebSocket client frame masks** are drawn by tungstenite with its own generator. They
//!   change the bytes on the wire (not their number), never what the server unmasks: the
//!   events getty reports, their order and their timing do not depend on them. Only a test
//!   that records raw client-to-server bytes sees them differ.
//! - **TLS** (rustls): key shares, nonces and signature randomness come from the crypto
//!   provider's OS generator. Record contents always differ between runs, and so can their
//!   lengths (an ECDSA signature's DER encoding varies by a byte or two), so the number of
//!   bytes a TLS handshake puts on the wire, and with it the number of reads and the exact
//!   instants on a simulated link with finite bandwidth, can vary. A TLS run is deterministic
//!   in its getty events (which sessions open, what messages arrive, in which order, how they
//!   close) but not byte for byte, and timing that depends on handshake lengths at sub-packet
//!   granularity can shift; plain TCP, UDP and WebSocket runs have no such source.
//! - getty-core keeps its maps of sessions, group members and pending calls in ordered maps,
//!   so iteration order (a broadcast's send order, closing every session) is by session or
//!   call id, never by a per-process hash seed.
//! - Session ids come from one process-wide counter, so two runs in one process (tests on
//!   parallel threads) number their sessions differently; within a run they still grow in
//!   creation order, so the order by id above is the same. Compare runs by events, not raw ids.
//!
//! # Waker contracts
//! - [`Timer`]: `poll` registers the waker of the latest call and wakes it once the deadline has
//!   passed; once fired it stays ready until reset. [`Timer::reset`] moves the deadline (earlier
//!   or later) and the next `poll` must honour the new one. A timer may fire late (a busy
//!   executor), never early, by the runtime's own [`Executor::now`].
//! - [`Network::Tcp`] streams follow futures-io: each `poll_*` registers the waker of its latest
//!   call for its direction (one reader and one writer may poll concurrently); `poll_close`
//!   shuts the write half down (the peer reads end of stream) without closing the read half.
//! - [`Network::connect`] and [`Network::accept`] are plain futures: dropping one cancels it
//!   (an accepted connection not yet returned may be lost; the next call is unaffected).
//! - [`UdpSocket`]: each `poll_*` method registers the waker of its latest call for that
//!   direction; one reader and one writer may poll concurrently.

pub mod os;

/// The socket helpers and [`TcpOptions`] under their former path (`runtime::socket`), so
/// imports written before [`os`] existed keep working.
pub mod socket {
    pub use super::os::*;
    pub use super::TcpOptions;
}

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncRead, AsyncWrite};

/// The executor half of a runtime: spawning, timers, the clock and randomness.
///
/// Implemented by `TokioRuntime` (getty-tokio) and `SmolRuntime` (getty-smol) with the OS
/// clock and a thread-local generator; a simulated runtime implements it with a virtual clock
/// and a seeded generator. A cheap `Clone` (a handle): every clone drives the same executor.
pub trait Executor: Clone + Send + Sync + std::fmt::Debug + 'static {
    /// A resettable one-shot timer.
    type Timer: Timer;

    /// Runs `future` to completion in the background. The task is detached: no handle is
    /// returned and nothing cancels it; it ends when the future ends.
    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static;

    /// A timer that fires at `at` (immediately if `at` is in the past).
    fn timer(&self, at: Instant) -> Self::Timer;

    /// The current time, as this executor's timers see it. getty-core reads no other clock.
    fn now(&self) -> Instant;

    /// A uniformly distributed random number. getty-core draws all its randomness here (see
    /// the [module docs](self)); a simulated runtime returns numbers from its seed.
    fn random_u64(&self) -> u64;
}

/// The network half of a runtime: TCP streams and listeners, UDP sockets.
///
/// No OS type appears here: an adapter on OS sockets builds them with [`os`], a simulated
/// network with whatever it models. Addresses are [`SocketAddr`]s either way.
pub trait Network: Clone + Send + Sync + std::fmt::Debug + 'static {
    /// A connected TCP stream (futures-io; `poll_close` shuts the write half down).
    type Tcp: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// A bound TCP listener.
    type Listener: Send + Sync + 'static;
    /// A bound UDP socket.
    type Udp: UdpSocket;

    /// Connects to `addr`, from `local` if given (bound before connecting), otherwise from an
    /// address the network picks. The stream has TCP_NODELAY on (where that means something).
    fn connect(
        &self,
        addr: SocketAddr,
        local: Option<SocketAddr>,
    ) -> impl Future<Output = io::Result<Self::Tcp>> + Send;

    /// Binds a TCP listener to `addr` (port 0 picks a free port). With `reuse_port` several
    /// listeners (in this process or others) may share the port (SO_REUSEPORT); a network
    /// without that notion returns [`io::ErrorKind::Unsupported`].
    fn listen(&self, addr: SocketAddr, reuse_port: bool) -> io::Result<Self::Listener>;

    /// The address a listener is bound to.
    fn listener_addr(&self, listener: &Self::Listener) -> io::Result<SocketAddr>;

    /// Accepts the next connection on `listener`, with TCP_NODELAY on (where that means
    /// something).
    fn accept<'a>(
        &'a self,
        listener: &'a Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Tcp, SocketAddr)>> + Send + 'a;

    /// The local and peer addresses of a connected stream.
    fn tcp_addrs(&self, stream: &Self::Tcp) -> io::Result<(SocketAddr, SocketAddr)>;

    /// Applies `options` to a connected stream. A network applies what it models and ignores
    /// the rest (a simulated network may ignore them all).
    fn set_tcp_options(&self, stream: &Self::Tcp, options: &TcpOptions) -> io::Result<()>;

    /// Binds a UDP socket to `addr` (port 0 picks a free port).
    fn bind_udp(&self, addr: SocketAddr) -> io::Result<Self::Udp>;

    /// A UDP socket connected to `peer`, bound to `local` if given (otherwise to an address
    /// the network picks). It only exchanges datagrams with `peer`, and reports a "port
    /// unreachable" from it as `ConnectionRefused` on a later receive.
    fn connect_udp(&self, peer: SocketAddr, local: Option<SocketAddr>) -> io::Result<Self::Udp>;
}

/// A runtime adapter: an [`Executor`] and a [`Network`], which is all getty needs.
///
/// Implemented for every type that is both, such as `TokioRuntime` (getty-tokio) and
/// `SmolRuntime` (getty-smol). Applications pass such a value to `serve`, `start` or `bind` and
/// need not call its methods. getty-testkit's `conformance_suite!` runs getty's whole
/// behaviour on an adapter.
pub trait Runtime: Executor + Network {}

impl<T: Executor + Network> Runtime for T {}

/// Options of a TCP connection, applied to every accepted or connected stream (with
/// [`Network::set_tcp_options`]). The defaults leave the OS's choices except TCP_NODELAY, which
/// is on (packages are sent as soon as they are written: getty's default too).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a builder does nothing until it is used"]
#[non_exhaustive]
pub struct TcpOptions {
    /// TCP_NODELAY (default on).
    pub nodelay: bool,
    /// SO_KEEPALIVE with this idle time before the first probe (default off).
    pub keepalive: Option<Duration>,
    /// SO_SNDBUF in bytes (default: the OS's).
    pub send_buffer_size: Option<usize>,
    /// SO_RCVBUF in bytes (default: the OS's).
    pub recv_buffer_size: Option<usize>,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            nodelay: true,
            keepalive: None,
            send_buffer_size: None,
            recv_buffer_size: None,
        }
    }
}

impl TcpOptions {
    /// Sets TCP_NODELAY.
    pub fn nodelay(mut self, on: bool) -> Self {
        self.nodelay = on;
        self
    }

    /// Turns keep-alive on with `idle` before the first probe, or off with `None`.
    pub fn keepalive(mut self, idle: Option<Duration>) -> Self {
        self.keepalive = idle;
        self
    }

    /// Sets SO_SNDBUF (the OS may round it; Linux doubles it).
    pub fn send_buffer_size(mut self, bytes: usize) -> Self {
        self.send_buffer_size = Some(bytes);
        self
    }

    /// Sets SO_RCVBUF (the OS may round it; Linux doubles it).
    pub fn recv_buffer_size(mut self, bytes: usize) -> Self {
        self.recv_buffer_size = Some(bytes);
        self
    }
}

/// A one-shot timer whose deadline can be moved. Completes once its deadline has passed.
pub trait Timer: Future<Output = ()> + Send + Unpin + 'static {
    /// Moves the deadline to `at`; a timer that already fired fires again at `at`.
    fn reset(&mut self, at: Instant);
}

/// A bound UDP socket, polled by address.
///
/// futures-io has no datagram traits, so the seam defines the two calls the core needs.
pub trait UdpSocket: Send + Sync + 'static {
    /// Receives one datagram into `buf`, returning its length and sender.
    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>>;

    /// Sends `buf` as one datagram to `to`, returning the number of bytes sent.
    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        to: SocketAddr,
    ) -> Poll<io::Result<usize>>;

    /// The address this socket is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// Receives one datagram (the `async` form of [`UdpSocket::poll_recv_from`]).
pub async fn recv_from<U: UdpSocket + ?Sized>(
    socket: &U,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr)> {
    futures_lite::future::poll_fn(|cx| socket.poll_recv_from(cx, buf)).await
}

/// Sends one datagram (the `async` form of [`UdpSocket::poll_send_to`]).
pub async fn send_to<U: UdpSocket + ?Sized>(
    socket: &U,
    buf: &[u8],
    to: SocketAddr,
) -> io::Result<usize> {
    futures_lite::future::poll_fn(|cx| socket.poll_send_to(cx, buf, to)).await
}

/// A boxed, `Send` future, as handed out by the dynamic parts of the seam.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The object-safe slice of an [`Executor`] that runtime-free handles (such as
/// [`Session`](crate::Session)) keep, to sleep, spawn, read the clock and draw random numbers
/// without naming the runtime type. Implemented for every `Executor`.
pub trait DynExecutor: Send + Sync + std::fmt::Debug + 'static {
    /// A future that completes at `at`.
    fn sleep_until(&self, at: Instant) -> BoxFuture<()>;
    /// Spawns a detached task.
    fn spawn_boxed(&self, future: BoxFuture<()>);
    /// The current time ([`Executor::now`]).
    fn now(&self) -> Instant;
    /// A random number ([`Executor::random_u64`]).
    fn random_u64(&self) -> u64;
}

/// The former name of [`DynExecutor`].
pub use DynExecutor as DynRuntime;

impl<E: Executor> DynExecutor for E {
    fn sleep_until(&self, at: Instant) -> BoxFuture<()> {
        Box::pin(self.timer(at))
    }
    fn spawn_boxed(&self, future: BoxFuture<()>) {
        self.spawn(future)
    }
    fn now(&self) -> Instant {
        Executor::now(self)
    }
    fn random_u64(&self) -> u64 {
        Executor::random_u64(self)
    }
}

/// Outcome of [`timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// Runs `future` until it completes or `duration` has passed on `rt`'s clock.
pub async fn timeout<R: Executor, F: Future>(
    rt: &R,
    duration: Duration,
    future: F,
) -> Result<F::Output, Elapsed> {
    let deadline = rt.now() + duration;
    timeout_at(rt, deadline, future).await
}

/// Runs `future` until it completes or the clock passes `deadline`.
pub async fn timeout_at<R: Executor, F: Future>(
    rt: &R,
    deadline: Instant,
    future: F,
) -> Result<F::Output, Elapsed> {
    let timer = rt.timer(deadline);
    futures_lite::future::or(async { Ok(future.await) }, async {
        timer.await;
        Err(Elapsed)
    })
    .await
}
