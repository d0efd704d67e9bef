//! The runtime seam: the only place where getty-core meets an executor.
//!
//! Everything else in this crate (codecs, sessions, drivers, endpoints) is written against
//! [`Runtime`]. An adapter crate (`getty-tokio`, `getty-smol`) implements it by saying how its
//! runtime spawns a task, sleeps, and opens TCP and UDP sockets; nothing more. Applications
//! only pick an adapter value and hand it to an endpoint builder.
//!
//! Streams are [futures-io] `AsyncRead + AsyncWrite`, so the protocol layers written once in
//! the core (framing, compression, TLS, WebSocket) work on every runtime. Sockets are
//! associated types: the per-byte hot path is statically dispatched. Creating and configuring
//! OS sockets is shared by every adapter ([`socket`]).
//!
//! [futures-io]: https://docs.rs/futures-io/0.3
//!
//! # Waker contracts
//! - [`Timer`]: `poll` registers the waker of the latest call and wakes it once the deadline has
//!   passed; once fired it stays ready until reset. [`Timer::reset`] moves the deadline (earlier
//!   or later) and the next `poll` must honour the new one. A timer may fire late (a busy
//!   executor), never early.
//! - [`UdpSocket`]: each `poll_*` method registers the waker of its latest call for that
//!   direction; one reader and one writer may poll concurrently.

pub mod socket;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncRead, AsyncWrite};

/// A runtime adapter: how one async runtime spawns, sleeps, and opens sockets.
///
/// Implemented by the adapter crates: `TokioRuntime` (getty-tokio) and `SmolRuntime`
/// (getty-smol). Applications pass such a value to `serve`, `start` or `bind` and need not call
/// its methods.
///
/// A third-party adapter provides:
/// - a cheap `Clone` (a handle): every clone drives the same runtime;
/// - [`spawn`](Runtime::spawn) (detached tasks) and [`timer`](Runtime::timer), whose [`Timer`]
///   keeps the waker contract of the [module docs](self); [`now`](Runtime::now) too if its
///   timers follow another clock than [`Instant::now`] (such as paused test time);
/// - its TCP stream (futures-io, `Unpin`) and listener: [`connect`](Runtime::connect),
///   [`accept`](Runtime::accept), [`listener_from_std`](Runtime::listener_from_std),
///   [`listener_addr`](Runtime::listener_addr), [`tcp_addrs`](Runtime::tcp_addrs) and
///   [`tcp_socket`](Runtime::tcp_socket);
/// - its [`UdpSocket`], from [`udp_from_std`](Runtime::udp_from_std).
///
/// The std sockets come from [`socket`] (binding, listening, starting a connect), so
/// `listen`, `listen_with`, `bind_udp` and `connect_udp` are provided. getty-testkit's
/// `conformance_suite!` runs getty's whole behaviour on an adapter.
pub trait Runtime: Clone + Send + Sync + std::fmt::Debug + 'static {
    /// A connected TCP stream.
    type Tcp: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// A bound TCP listener.
    type Listener: Send + Sync + 'static;
    /// A bound UDP socket.
    type Udp: UdpSocket;
    /// A resettable one-shot timer.
    type Timer: Timer;

    /// Runs `future` to completion in the background. The task is detached: no handle is
    /// returned and nothing cancels it; it ends when the future ends.
    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static;

    /// A timer that fires at `at` (immediately if `at` is in the past).
    fn timer(&self, at: Instant) -> Self::Timer;

    /// The current time, as the runtime's timers see it.
    fn now(&self) -> Instant {
        Instant::now()
    }

    /// Connects to `addr`, from `local` if given (bound before connecting), otherwise from an
    /// address the OS picks.
    fn connect(
        &self,
        addr: SocketAddr,
        local: Option<SocketAddr>,
    ) -> impl Future<Output = io::Result<Self::Tcp>> + Send;

    /// Registers a bound, listening, nonblocking std TCP listener with this runtime's reactor.
    fn listener_from_std(&self, listener: std::net::TcpListener) -> io::Result<Self::Listener>;

    /// Binds a TCP listener to `addr` (port 0 picks a free port).
    fn listen(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send {
        let listener = self.listen_with(addr, false);
        async move { listener }
    }

    /// Binds a TCP listener to `addr`, with SO_REUSEPORT when `reuse_port` (several listeners,
    /// in this process or others, then share the port).
    fn listen_with(&self, addr: SocketAddr, reuse_port: bool) -> io::Result<Self::Listener> {
        self.listener_from_std(socket::listen(addr, reuse_port)?)
    }

    /// The socket under a stream, to set and read its options.
    fn tcp_socket<'a>(&self, stream: &'a Self::Tcp) -> socket::SockRef<'a>;

    /// The address a listener is bound to.
    fn listener_addr(&self, listener: &Self::Listener) -> io::Result<SocketAddr>;

    /// Accepts the next connection on `listener`.
    fn accept<'a>(
        &'a self,
        listener: &'a Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Tcp, SocketAddr)>> + Send + 'a;

    /// The local and peer addresses of a connected stream.
    fn tcp_addrs(&self, stream: &Self::Tcp) -> io::Result<(SocketAddr, SocketAddr)>;

    /// Registers a bound, nonblocking std UDP socket with this runtime's reactor.
    fn udp_from_std(&self, socket: std::net::UdpSocket) -> io::Result<Self::Udp>;

    /// Binds a UDP socket to `addr` (port 0 picks a free port).
    fn bind_udp(&self, addr: SocketAddr) -> io::Result<Self::Udp> {
        self.udp_from_std(socket::bind_udp(addr)?)
    }

    /// A UDP socket connected to `peer` (see [`socket::connect_udp`]), bound to `local` if
    /// given.
    fn connect_udp(&self, peer: SocketAddr, local: Option<SocketAddr>) -> io::Result<Self::Udp> {
        self.udp_from_std(socket::connect_udp(peer, local)?)
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

/// The object-safe slice of a [`Runtime`] that runtime-free handles (such as
/// [`Session`](crate::Session)) keep, to sleep and spawn without naming the runtime type.
/// Implemented for every `Runtime`.
pub trait DynRuntime: Send + Sync + std::fmt::Debug + 'static {
    /// A future that completes at `at`.
    fn sleep_until(&self, at: Instant) -> BoxFuture<()>;
    /// Spawns a detached task.
    fn spawn_boxed(&self, future: BoxFuture<()>);
    /// The current time.
    fn now(&self) -> Instant;
}

impl<R: Runtime> DynRuntime for R {
    fn sleep_until(&self, at: Instant) -> BoxFuture<()> {
        Box::pin(self.timer(at))
    }
    fn spawn_boxed(&self, future: BoxFuture<()>) {
        self.spawn(future)
    }
    fn now(&self) -> Instant {
        Runtime::now(self)
    }
}

/// Outcome of [`timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// Runs `future` until it completes or `duration` has passed on `rt`'s clock.
pub async fn timeout<R: Runtime, F: Future>(
    rt: &R,
    duration: Duration,
    future: F,
) -> Result<F::Output, Elapsed> {
    let deadline = rt.now() + duration;
    timeout_at(rt, deadline, future).await
}

/// Runs `future` until it completes or the clock passes `deadline`.
pub async fn timeout_at<R: Runtime, F: Future>(
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
