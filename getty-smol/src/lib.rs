//! getty on smol: asynchronous, session-based TCP, UDP, TLS and WebSocket servers and
//! clients, with [`SmolRuntime`] as the runtime.
//!
//! This crate re-exports all of getty-core (codecs, listeners, sessions, endpoints), so it is
//! the only getty dependency a smol program needs:
//!
//! ```toml
//! [dependencies]
//! getty-smol = "0.1"
//! smol = "2"
//! ```
//!
//! The default features `tls`, `ws` and `compression` are getty-core's; without them
//! (`default-features = false`) there is TCP and UDP.
//!
//! An echo server for getty's hello framing (a 4-byte little-endian length, then the
//! payload):
//!
//! ```no_run
//! use getty_smol::prelude::*;
//!
//! /// Sends every package back.
//! struct Echo;
//!
//! impl EventListener<LengthDelimited> for Echo {
//!     async fn on_message(&self, session: &Session<LengthDelimited>, pkg: Bytes) {
//!         // Waits while the session's write queue is full (backpressure).
//!         let _ = session.send(&pkg).await;
//!     }
//! }
//!
//! fn main() -> getty_smol::Result<()> {
//!     smol::block_on(async {
//!         let server = TcpServer::builder()
//!             .addr("127.0.0.1:8090".parse().unwrap())
//!             .serve(SmolRuntime::global(), LengthDelimited::hello(), Echo)?;
//!         println!("listening on {}", server.local_addr());
//!         // Serve one client: wait until it has connected, then until it has left.
//!         server.wait_for_sessions(1).await?;
//!         server.wait_for_session_count(0).await?;
//!         server.close().await; // closes every session and waits for their tasks
//!         Ok(())
//!     })
//! }
//! ```
//!
//! [`SmolRuntime::global`] spawns on smol's global executor, [`SmolRuntime::with_executor`] on
//! an executor of yours. [`SmolRuntime`] implements getty-core's [`Runtime`] (its
//! [`Executor`](runtime::Executor) with smol's spawner and async-io's timers on the OS clock;
//! its [`Network`] with async-io's sockets, set up by [`runtime::os`]); [`SmolTcp`] only makes `close` send a FIN.

#![deny(missing_docs, missing_debug_implementations)]
#![forbid(unsafe_code)]

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use async_executor::Executor;
use async_io::Async;
use futures_lite::io::{AsyncRead, AsyncWrite};
use getty_core::runtime::os::{self, OsNetwork, SockRef};
use getty_core::runtime::{Network, TcpOptions, Timer, UdpSocket};

/// Everything getty-core offers, so that this crate alone is enough to depend on.
pub use getty_core::*;

/// The names most programs need: getty-core's prelude and [`SmolRuntime`].
pub mod prelude {
    pub use crate::SmolRuntime;
    pub use getty_core::prelude::*;
}

/// A [`Runtime`] that spawns on smol's global executor or on an executor of the caller's.
///
/// Sockets and timers live in async-io's global reactor, which needs no context: any executor
/// may poll them.
#[derive(Clone, Debug, Default)]
pub struct SmolRuntime {
    executor: Option<Arc<Executor<'static>>>,
}

impl SmolRuntime {
    /// The adapter that spawns on smol's global executor (`smol::spawn`).
    pub fn global() -> Self {
        Self { executor: None }
    }

    /// The adapter that spawns on `executor`; the caller must keep running it.
    pub fn with_executor(executor: Arc<Executor<'static>>) -> Self {
        Self {
            executor: Some(executor),
        }
    }

    /// The executor this adapter spawns on, or `None` for smol's global one.
    pub fn executor(&self) -> Option<&Arc<Executor<'static>>> {
        self.executor.as_ref()
    }
}

impl runtime::Executor for SmolRuntime {
    type Timer = SmolTimer;

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        // A smol Task cancels its future when dropped: detach it.
        match &self.executor {
            Some(executor) => executor.spawn(future).detach(),
            None => smol::spawn(future).detach(),
        }
    }

    fn timer(&self, at: Instant) -> SmolTimer {
        SmolTimer(async_io::Timer::at(at))
    }

    fn now(&self) -> Instant {
        // async-io's timers follow the OS clock.
        os::now()
    }

    fn random_u64(&self) -> u64 {
        os::random_u64()
    }
}

impl Network for SmolRuntime {
    type Tcp = SmolTcp;
    type Listener = Async<TcpListener>;
    type Udp = SmolUdp;

    async fn connect(&self, addr: SocketAddr, local: Option<SocketAddr>) -> io::Result<SmolTcp> {
        let stream = Async::new_nonblocking(os::start_connect(addr, local)?)?;
        // Writable means the handshake ended, successfully or not.
        stream.writable().await?;
        os::finish_connect(stream.get_ref())?;
        Ok(SmolTcp::new(stream))
    }

    fn listen(&self, addr: SocketAddr, reuse_port: bool) -> io::Result<Async<TcpListener>> {
        Async::new_nonblocking(os::listen(addr, reuse_port)?)
    }

    fn listener_addr(&self, listener: &Async<TcpListener>) -> io::Result<SocketAddr> {
        listener.get_ref().local_addr()
    }

    async fn accept<'a>(
        &'a self,
        listener: &'a Async<TcpListener>,
    ) -> io::Result<(SmolTcp, SocketAddr)> {
        let (stream, peer) = listener.accept().await?;
        // Ignored on purpose: it fails only on a stream the peer already reset (EINVAL on
        // macOS); the session's first read reports that, the accept loop must not.
        let _ = stream.get_ref().set_nodelay(true);
        Ok((SmolTcp::new(stream), peer))
    }

    fn tcp_addrs(&self, stream: &SmolTcp) -> io::Result<(SocketAddr, SocketAddr)> {
        let stream = stream.0.get_ref();
        Ok((stream.local_addr()?, stream.peer_addr()?))
    }

    fn set_tcp_options(&self, stream: &SmolTcp, options: &TcpOptions) -> io::Result<()> {
        os::apply_tcp_options(SockRef::from(stream.0.get_ref()), options)
    }

    fn bind_udp(&self, addr: SocketAddr) -> io::Result<SmolUdp> {
        Ok(SmolUdp(Async::new_nonblocking(os::bind_udp(addr)?)?))
    }

    fn connect_udp(&self, peer: SocketAddr, local: Option<SocketAddr>) -> io::Result<SmolUdp> {
        Ok(SmolUdp(Async::new_nonblocking(os::connect_udp(
            peer, local,
        )?)?))
    }
}

impl OsNetwork for SmolRuntime {
    fn os_socket<'a>(&self, stream: &'a SmolTcp) -> SockRef<'a> {
        SockRef::from(stream.0.get_ref())
    }
}

/// An async-io TCP stream whose `close` shuts the write half down, as tokio's does, and whose
/// reads skip the system call that would only say "nothing to read".
///
/// `Async<TcpStream>`'s own `poll_close` only flushes: the peer would see no EOF until drop.
#[derive(Debug)]
pub struct SmolTcp(Async<TcpStream>, ReadState);

/// What the last read said about the socket's receive queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    /// Try the read.
    Unknown,
    /// The last read returned less than it was offered: the queue is empty (TCP on Linux
    /// returns a short read only then). The readiness event that led to that read may still
    /// be on record in async-io (which would report it once more and make `Async::poll_read`
    /// read twice, in vain, before waiting): take it off first.
    Drained,
    /// That event is spent: the next readiness is news, then read.
    Waiting,
}

impl SmolTcp {
    fn new(stream: Async<TcpStream>) -> Self {
        SmolTcp(stream, ReadState::Unknown)
    }

    /// The async-io stream.
    pub fn get_ref(&self) -> &Async<TcpStream> {
        &self.0
    }

    /// Unwraps the async-io stream.
    pub fn into_inner(self) -> Async<TcpStream> {
        self.0
    }
}

impl AsyncRead for SmolTcp {
    /// Like `Async<TcpStream>`'s, but after a short read it waits for readiness instead of
    /// reading again: tokio does the same (it clears readiness on a short read). With
    /// async-io's oneshot interest, each wait then costs one `epoll_ctl` and no `EAGAIN` read
    /// (it cost two). No wake-up can be missed: re-arming interest in epoll reports data that
    /// arrived in between at once.
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if self.1 == ReadState::Drained {
            // Ready here is the event that led to the last read (or one about data that came
            // since): either way the next readiness decides.
            self.1 = ReadState::Waiting;
            if let Poll::Ready(result) = self.0.poll_readable(cx) {
                result?;
            }
        }
        if self.1 == ReadState::Waiting {
            ready!(self.0.poll_readable(cx))?;
            self.1 = ReadState::Unknown;
        }
        let n = ready!(Pin::new(&mut self.0).poll_read(cx, buf))?;
        if n > 0 && n < buf.len() {
            self.1 = ReadState::Drained;
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for SmolTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // async-io's is one writev; the futures-io default would write only the first slice.
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.0).poll_flush(cx))?;
        Poll::Ready(self.0.get_ref().shutdown(Shutdown::Write))
    }
}

/// An async-io UDP socket as a getty [`UdpSocket`].
#[derive(Debug)]
pub struct SmolUdp(Async<std::net::UdpSocket>);

impl SmolUdp {
    /// The async-io socket.
    pub fn get_ref(&self) -> &Async<std::net::UdpSocket> {
        &self.0
    }

    /// Unwraps the async-io socket.
    pub fn into_inner(self) -> Async<std::net::UdpSocket> {
        self.0
    }
}

impl UdpSocket for SmolUdp {
    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        // Try first, wait on WouldBlock: a readiness event may be stale, so loop until the
        // call succeeds or readiness is pending (which registers this waker).
        loop {
            match self.0.get_ref().recv_from(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.0.poll_readable(cx))?
                }
                result => return Poll::Ready(result),
            }
        }
    }

    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        to: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.0.get_ref().send_to(buf, to) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.0.poll_writable(cx))?
                }
                result => return Poll::Ready(result),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().local_addr()
    }
}

/// An async-io [`Timer`](https://docs.rs/async-io/2/async_io/struct.Timer.html) as a getty
/// [`Timer`].
#[derive(Debug)]
pub struct SmolTimer(async_io::Timer);

impl Timer for SmolTimer {
    fn reset(&mut self, at: Instant) {
        self.0.set_at(at);
    }
}

impl Future for SmolTimer {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = ready!(Pin::new(&mut self.0).poll(cx));
        // A fired async-io timer stays pending forever; re-arming it at the past deadline keeps
        // it ready until reset, as tokio's Sleep is (no reactor call: it is not registered).
        self.0.set_at(deadline);
        Poll::Ready(())
    }
}

// The runtime seam's behaviour is checked by getty-core's conformance suite (tests/ at the
// workspace root runs it on this adapter, on a caller's executor and on the global one); this
// covers what the suite cannot see through the seam.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connected_and_accepted_streams_have_nodelay() {
        smol::block_on(async {
            let rt = SmolRuntime::global();
            let listener = rt.listen("127.0.0.1:0".parse().unwrap(), false).unwrap();
            let addr = rt.listener_addr(&listener).unwrap();
            let (client, accepted) =
                futures_lite::future::zip(rt.connect(addr, None), rt.accept(&listener)).await;
            let (client, server) = (client.unwrap(), accepted.unwrap().0);
            assert!(client.get_ref().get_ref().nodelay().unwrap());
            assert!(server.get_ref().get_ref().nodelay().unwrap());
        });
    }
}
