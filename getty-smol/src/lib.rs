//! The smol runtime adapter for getty: [`SmolRuntime`] implements [`Runtime`] with async-io's
//! sockets and timers and an async-executor spawner.
//!
//! getty-core speaks futures-io, as async-io does; [`SmolTcp`] only makes `close` send a FIN.

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
use getty_core::runtime::{socket, Timer, UdpSocket};

pub use getty_core::runtime::Runtime;

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

impl Runtime for SmolRuntime {
    type Tcp = SmolTcp;
    type Listener = Async<TcpListener>;
    type Udp = SmolUdp;
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

    async fn connect(&self, addr: SocketAddr, local: Option<SocketAddr>) -> io::Result<SmolTcp> {
        let stream = Async::new_nonblocking(socket::start_connect(addr, local)?)?;
        // Writable means the handshake ended, successfully or not.
        stream.writable().await?;
        socket::finish_connect(stream.get_ref())?;
        Ok(SmolTcp(stream))
    }

    async fn listen(&self, addr: SocketAddr) -> io::Result<Async<TcpListener>> {
        Async::new_nonblocking(socket::listen(addr)?)
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
        Ok((SmolTcp(stream), peer))
    }

    fn tcp_addrs(&self, stream: &SmolTcp) -> io::Result<(SocketAddr, SocketAddr)> {
        let stream = stream.0.get_ref();
        Ok((stream.local_addr()?, stream.peer_addr()?))
    }

    async fn bind_udp(&self, addr: SocketAddr) -> io::Result<SmolUdp> {
        Ok(SmolUdp(Async::<std::net::UdpSocket>::bind(addr)?))
    }
}

/// An async-io TCP stream whose `close` shuts the write half down, as tokio's does.
///
/// `Async<TcpStream>`'s own `poll_close` only flushes: the peer would see no EOF until drop.
#[derive(Debug)]
pub struct SmolTcp(Async<TcpStream>);

impl SmolTcp {
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
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
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

/// An async-io [`Timer`](async_io::Timer) as a getty [`Timer`].
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
    use getty_core::runtime::{recv_from, send_to};
    use std::time::Duration;

    const ANY: &str = "127.0.0.1:0";

    fn any() -> SocketAddr {
        ANY.parse().unwrap()
    }

    async fn pair(rt: &SmolRuntime) -> (SmolTcp, SmolTcp) {
        let listener = rt.listen(any()).await.unwrap();
        let addr = rt.listener_addr(&listener).unwrap();
        let (client, accepted) =
            futures_lite::future::zip(rt.connect(addr, None), rt.accept(&listener)).await;
        (client.unwrap(), accepted.unwrap().0)
    }

    #[test]
    fn tcp_round_trip_with_nodelay() {
        smol::block_on(async {
            let rt = SmolRuntime::global();
            let (mut client, mut server) = pair(&rt).await;
            assert!(client.get_ref().get_ref().nodelay().unwrap());
            assert!(server.get_ref().get_ref().nodelay().unwrap());
            client.write_all(b"ping").await.unwrap();
            let mut buf = [0; 4];
            server.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
            server.write_all(b"pong").await.unwrap();
            client.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"pong");
        });
    }

    #[test]
    fn vectored_write_arrives_whole() {
        smol::block_on(async {
            let rt = SmolRuntime::global();
            let (mut client, mut server) = pair(&rt).await;
            let parts = [
                IoSlice::new(b"hel"),
                IoSlice::new(b"lo "),
                IoSlice::new(b"world"),
            ];
            let n = client.write_vectored(&parts).await.unwrap();
            assert_eq!(n, 11, "one writev takes all three small slices");
            client.close().await.unwrap();
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"hello world");
        });
    }

    #[test]
    fn listen_again_on_a_port_in_time_wait() {
        smol::block_on(async {
            let rt = SmolRuntime::global();
            let listener = rt.listen(any()).await.unwrap();
            let addr = rt.listener_addr(&listener).unwrap();
            let (client, accepted) =
                futures_lite::future::zip(rt.connect(addr, None), rt.accept(&listener)).await;
            // The server closes first, so its side of the connection sits in TIME_WAIT.
            let (mut server, mut client) = (accepted.unwrap().0, client.unwrap());
            server.close().await.unwrap();
            assert_eq!(client.read(&mut [0; 1]).await.unwrap(), 0);
            drop((server, client, listener));
            rt.listen(addr).await.unwrap();
        });
    }

    #[test]
    fn connect_refused() {
        smol::block_on(async {
            let rt = SmolRuntime::global();
            // A port that was just free: bind, note it, close.
            let addr = std::net::TcpListener::bind(ANY)
                .unwrap()
                .local_addr()
                .unwrap();
            let err = rt.connect(addr, None).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        });
    }

    #[test]
    fn connect_from_local_address() {
        smol::block_on(async {
            let rt = SmolRuntime::global();
            let listener = rt.listen(any()).await.unwrap();
            let addr = rt.listener_addr(&listener).unwrap();
            let local = std::net::TcpListener::bind(ANY)
                .unwrap()
                .local_addr()
                .unwrap();
            let (client, accepted) =
                futures_lite::future::zip(rt.connect(addr, Some(local)), rt.accept(&listener))
                    .await;
            let (client, (_, peer)) = (client.unwrap(), accepted.unwrap());
            assert_eq!(rt.tcp_addrs(&client).unwrap(), (local, addr));
            assert_eq!(peer, local);
        });
    }

    #[test]
    fn timer_fires_stays_ready_and_reset_moves_it_later() {
        smol::block_on(async {
            let rt = SmolRuntime::global();
            let first = Instant::now() + Duration::from_millis(20);
            let mut timer = rt.timer(first);
            (&mut timer).await;
            assert!(Instant::now() >= first);
            assert!(futures_lite::future::poll_once(&mut timer).await.is_some());
            let second = Instant::now() + Duration::from_millis(30);
            timer.reset(second);
            timer.await;
            assert!(Instant::now() >= second);
        });
    }

    #[test]
    fn spawn_runs_detached_task_on_global_executor() {
        let rt = SmolRuntime::global();
        let (tx, rx) = smol::channel::bounded(1);
        rt.spawn(async move {
            let _ = tx.send(7).await;
        });
        assert_eq!(smol::block_on(rx.recv()).unwrap(), 7);
    }

    #[test]
    fn spawn_runs_detached_task_on_own_executor() {
        let executor = Arc::new(Executor::new());
        let rt = SmolRuntime::with_executor(executor.clone());
        let (tx, rx) = smol::channel::bounded(1);
        rt.spawn(async move {
            let _ = tx.send(7).await;
        });
        assert_eq!(smol::block_on(executor.run(rx.recv())).unwrap(), 7);
    }

    #[test]
    fn udp_round_trip() {
        smol::block_on(async {
            let rt = SmolRuntime::global();
            let a = rt.bind_udp(any()).await.unwrap();
            let b = rt.bind_udp(any()).await.unwrap();
            let b_addr = b.local_addr().unwrap();
            assert_eq!(send_to(&a, b"datagram", b_addr).await.unwrap(), 8);
            let mut buf = [0; 64];
            let (n, from) = recv_from(&b, &mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"datagram");
            assert_eq!(from, a.local_addr().unwrap());
        });
    }
}
