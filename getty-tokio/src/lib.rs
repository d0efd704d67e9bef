//! getty on tokio: asynchronous, session-based TCP, UDP, TLS and WebSocket servers and
//! clients, with [`TokioRuntime`] as the runtime.
//!
//! This crate re-exports all of getty-core (codecs, listeners, sessions, endpoints), so it is
//! the only getty dependency a tokio program needs:
//!
//! ```toml
//! [dependencies]
//! getty-tokio = "0.1"
//! tokio = { version = "1", features = ["macros", "rt"] }
//! ```
//!
//! The default features `tls`, `ws` and `compression` are getty-core's; without them
//! (`default-features = false`) there is TCP and UDP.
//!
//! An echo server for getty's hello framing (a 4-byte little-endian length, then the
//! payload):
//!
//! ```no_run
//! use getty_tokio::prelude::*;
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
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> getty_tokio::Result<()> {
//!     let server = TcpServer::builder()
//!         .addr("127.0.0.1:8090".parse().unwrap())
//!         .serve(TokioRuntime::current(), LengthDelimited::hello(), Echo)?;
//!     println!("listening on {}", server.local_addr());
//!     // Serve one client: wait until it has connected, then until it has left.
//!     server.wait_for_sessions(1).await?;
//!     server.wait_for_session_count(0).await?;
//!     server.close().await; // closes every session and waits for their tasks
//!     Ok(())
//! }
//! ```
//!
//! On the multi-threaded runtime (feature `rt-multi-thread`, plain `#[tokio::main]`) it is the
//! same. [`TokioRuntime`] implements getty-core's [`Runtime`] (its [`Executor`] with tokio's
//! spawner, timers and clock; its [`Network`] with tokio's sockets, set up by
//! [`runtime::os`]); streams are adapted to futures-io by [`TokioTcp`] (without zeroing read buffers).

#![deny(missing_docs, missing_debug_implementations)]
#![forbid(unsafe_code)]

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use futures_lite::io::{AsyncRead, AsyncWrite};
use getty_core::runtime::os::{self, OsNetwork, SockRef};
use getty_core::runtime::{Executor, Network, TcpOptions, Timer, UdpSocket};
use tokio::io::{AsyncRead as TokioRead, AsyncWrite as TokioWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::time::Sleep;

/// Everything getty-core offers, so that this crate alone is enough to depend on.
pub use getty_core::*;

/// The names most programs need: getty-core's prelude and [`TokioRuntime`].
pub mod prelude {
    pub use crate::TokioRuntime;
    pub use getty_core::prelude::*;
}

/// A [`Runtime`] that spawns on, and registers sockets and timers with, one tokio runtime.
///
/// Every socket and timer is created inside [`Handle::enter`], so the adapter also works when
/// its futures are polled by another executor (the tokio runtime must keep running).
///
/// [`Handle::enter`]: https://docs.rs/tokio/1/tokio/runtime/struct.Handle.html#method.enter
#[derive(Clone, Debug)]
pub struct TokioRuntime {
    handle: Handle,
}

impl TokioRuntime {
    /// The adapter for the tokio runtime the caller runs in.
    ///
    /// # Panics
    /// If called outside a tokio runtime; see [`TokioRuntime::try_current`].
    pub fn current() -> Self {
        Self::new(Handle::current())
    }

    /// The adapter for the tokio runtime the caller runs in, or `None` outside one.
    pub fn try_current() -> Option<Self> {
        Handle::try_current().ok().map(Self::new)
    }

    /// The adapter for the runtime behind `handle`.
    pub fn new(handle: Handle) -> Self {
        Self { handle }
    }

    /// The tokio handle this adapter spawns on.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Executor for TokioRuntime {
    type Timer = TokioTimer;

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        // Dropping tokio's JoinHandle detaches the task.
        drop(self.handle.spawn(future));
    }

    fn timer(&self, at: Instant) -> TokioTimer {
        let _enter = self.handle.enter();
        TokioTimer(Box::pin(tokio::time::sleep_until(at.into())))
    }

    fn now(&self) -> Instant {
        // The same clock as the timers, paused time (tokio's test-util) included.
        let _enter = self.handle.enter();
        tokio::time::Instant::now().into_std()
    }

    fn random_u64(&self) -> u64 {
        os::random_u64()
    }
}

impl Network for TokioRuntime {
    type Tcp = TokioTcp;
    type Listener = TcpListener;
    type Udp = TokioUdp;

    async fn connect(&self, addr: SocketAddr, local: Option<SocketAddr>) -> io::Result<TokioTcp> {
        let stream = {
            let connecting = os::start_connect(addr, local)?;
            let _enter = self.handle.enter();
            TcpStream::from_std(connecting)?
        };
        // Writable means the handshake ended, successfully or not.
        stream.writable().await?;
        os::finish_connect(&stream)?;
        Ok(TokioTcp(stream))
    }

    fn listen(&self, addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
        let listener = os::listen(addr, reuse_port)?;
        let _enter = self.handle.enter();
        TcpListener::from_std(listener)
    }

    fn listener_addr(&self, listener: &TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    async fn accept<'a>(&'a self, listener: &'a TcpListener) -> io::Result<(TokioTcp, SocketAddr)> {
        // Accepting registers the new stream, which needs the runtime context.
        let (stream, peer) = std::future::poll_fn(|cx| {
            let _enter = self.handle.enter();
            listener.poll_accept(cx)
        })
        .await?;
        // Ignored on purpose: it fails only on a stream the peer already reset (EINVAL on
        // macOS); the session's first read reports that, the accept loop must not.
        let _ = stream.set_nodelay(true);
        Ok((TokioTcp(stream), peer))
    }

    fn tcp_addrs(&self, stream: &TokioTcp) -> io::Result<(SocketAddr, SocketAddr)> {
        Ok((stream.0.local_addr()?, stream.0.peer_addr()?))
    }

    fn set_tcp_options(&self, stream: &TokioTcp, options: &TcpOptions) -> io::Result<()> {
        os::apply_tcp_options(SockRef::from(&stream.0), options)
    }

    fn bind_udp(&self, addr: SocketAddr) -> io::Result<TokioUdp> {
        self.udp(os::bind_udp(addr)?)
    }

    fn connect_udp(&self, peer: SocketAddr, local: Option<SocketAddr>) -> io::Result<TokioUdp> {
        self.udp(os::connect_udp(peer, local)?)
    }
}

impl OsNetwork for TokioRuntime {
    fn os_socket<'a>(&self, stream: &'a TokioTcp) -> SockRef<'a> {
        SockRef::from(&stream.0)
    }
}

impl TokioRuntime {
    /// Registers a bound, nonblocking std UDP socket with the reactor.
    fn udp(&self, socket: std::net::UdpSocket) -> io::Result<TokioUdp> {
        let _enter = self.handle.enter();
        Ok(TokioUdp(tokio::net::UdpSocket::from_std(socket)?))
    }
}

/// A tokio TCP stream as a futures-io `AsyncRead + AsyncWrite`.
#[derive(Debug)]
pub struct TokioTcp(TcpStream);

impl TokioTcp {
    /// The tokio stream.
    pub fn get_ref(&self) -> &TcpStream {
        &self.0
    }

    /// Unwraps the tokio stream.
    pub fn into_inner(self) -> TcpStream {
        self.0
    }
}

impl AsyncRead for TokioTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        // `buf` is initialised already: ReadBuf::new marks it so and does not zero it.
        let mut buf = ReadBuf::new(buf);
        ready!(Pin::new(&mut self.0).poll_read(cx, &mut buf))?;
        Poll::Ready(Ok(buf.filled().len()))
    }
}

impl AsyncWrite for TokioTcp {
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
        // tokio's is one writev; the futures-io default would write only the first slice.
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// A tokio UDP socket as a getty [`UdpSocket`].
#[derive(Debug)]
pub struct TokioUdp(tokio::net::UdpSocket);

impl UdpSocket for TokioUdp {
    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        loop {
            match self.0.try_recv_from(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // tokio signals read readiness for data only, and skips the receive call
                    // until it has seen some: a pending socket error (a connected socket's
                    // ICMP "port unreachable", EPOLLERR alone) would stay unreported. Fetch it
                    // by hand, as the receive call would have.
                    if let Some(err) = self.0.take_error()? {
                        return Poll::Ready(Err(err));
                    }
                    ready!(self.0.poll_recv_ready(cx))?
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
        self.0.poll_send_to(cx, buf, to)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// A tokio [`Sleep`](https://docs.rs/tokio/1/tokio/time/struct.Sleep.html) as a getty
/// [`Timer`].
///
/// Polling it after its runtime has shut down panics (tokio's behaviour).
#[derive(Debug)]
pub struct TokioTimer(Pin<Box<Sleep>>);

impl Timer for TokioTimer {
    fn reset(&mut self, at: Instant) {
        self.0.as_mut().reset(at.into());
    }
}

impl Future for TokioTimer {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

// The runtime seam's behaviour is checked by getty-core's conformance suite (tests/ at the
// workspace root runs it on this adapter); these tests cover what is particular to tokio.
#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
    use std::time::Duration;

    async fn pair(rt: &TokioRuntime) -> (TokioTcp, TokioTcp) {
        let listener = rt.listen("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let addr = rt.listener_addr(&listener).unwrap();
        let (client, accepted) =
            futures_lite::future::zip(rt.connect(addr, None), rt.accept(&listener)).await;
        (client.unwrap(), accepted.unwrap().0)
    }

    #[tokio::test]
    async fn connected_and_accepted_streams_have_nodelay() {
        let (client, server) = pair(&TokioRuntime::current()).await;
        assert!(client.get_ref().nodelay().unwrap());
        assert!(server.get_ref().nodelay().unwrap());
    }

    #[test]
    fn works_when_polled_outside_tokio() {
        // A current-thread runtime whose driver runs on its own thread until told to stop.
        let tokio = std::sync::Arc::new(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let driver = std::thread::spawn({
            let tokio = tokio.clone();
            move || tokio.block_on(stopped)
        });
        let rt = TokioRuntime::new(tokio.handle().clone());
        futures_lite::future::block_on(async {
            let (mut client, mut server) = pair(&rt).await;
            client.write_all(b"x").await.unwrap();
            let mut buf = [0; 1];
            server.read_exact(&mut buf).await.unwrap();
            let at = Instant::now() + Duration::from_millis(5);
            rt.timer(at).await;
            assert!(Instant::now() >= at);
        });
        stop.send(()).unwrap();
        driver.join().unwrap().unwrap();
    }
}
