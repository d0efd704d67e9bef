//! A runtime wrapper that counts connects and accepts and can make accepts fail, so scenarios
//! can check how endpoints behave under faults the OS rarely produces on demand (EMFILE).
//! Sockets stay real: every call that succeeds is the wrapped runtime's.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::runtime::Runtime;

/// What an [`Instrumented`] runtime counted, and the faults still to inject.
#[derive(Debug, Default)]
pub struct Counters {
    /// Calls to `connect` and `connect_udp`.
    pub connects: AtomicUsize,
    /// Calls to `accept` that were made to fail.
    pub failed_accepts: AtomicUsize,
    /// How many of the next `accept` calls fail with "too many open files".
    pub fail_next_accepts: AtomicUsize,
    /// A second handle (a duplicated descriptor) on every stream accepted, to read its options
    /// back after the endpoint configured it.
    pub accepted: Mutex<Vec<socket2::Socket>>,
    /// The same for every stream connected.
    pub connected: Mutex<Vec<socket2::Socket>>,
}

/// Wraps runtime `R`, counting and injecting faults as [`Counters`] says.
#[derive(Debug, Clone)]
pub struct Instrumented<R> {
    inner: R,
    /// Shared by every clone.
    pub counters: Arc<Counters>,
}

impl<R: Runtime> Instrumented<R> {
    /// Wraps `inner` with zeroed counters and no faults.
    pub fn new(inner: R) -> Self {
        Instrumented {
            inner,
            counters: Arc::default(),
        }
    }
}

fn emfile() -> io::Error {
    #[cfg(unix)]
    return io::Error::from_raw_os_error(libc::EMFILE);
    #[cfg(not(unix))]
    return io::Error::other("too many open files (simulated)");
}

impl<R: Runtime> Runtime for Instrumented<R> {
    type Tcp = R::Tcp;
    type Listener = R::Listener;
    type Udp = R::Udp;
    type Timer = R::Timer;

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.inner.spawn(future)
    }

    fn timer(&self, at: Instant) -> Self::Timer {
        self.inner.timer(at)
    }

    fn now(&self) -> Instant {
        self.inner.now()
    }

    async fn connect(&self, addr: SocketAddr, local: Option<SocketAddr>) -> io::Result<Self::Tcp> {
        self.counters.connects.fetch_add(1, Ordering::SeqCst);
        let stream = self.inner.connect(addr, local).await?;
        let dup = self.inner.tcp_socket(&stream).try_clone()?;
        crate::session::lock(&self.counters.connected).push(dup);
        Ok(stream)
    }

    fn listener_from_std(&self, listener: std::net::TcpListener) -> io::Result<Self::Listener> {
        self.inner.listener_from_std(listener)
    }

    fn tcp_socket<'a>(&self, stream: &'a Self::Tcp) -> crate::runtime::socket::SockRef<'a> {
        self.inner.tcp_socket(stream)
    }

    fn listener_addr(&self, listener: &Self::Listener) -> io::Result<SocketAddr> {
        self.inner.listener_addr(listener)
    }

    async fn accept<'a>(
        &'a self,
        listener: &'a Self::Listener,
    ) -> io::Result<(Self::Tcp, SocketAddr)> {
        let counters = &self.counters;
        let inject = counters
            .fail_next_accepts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if inject {
            counters.failed_accepts.fetch_add(1, Ordering::SeqCst);
            return Err(emfile());
        }
        let (stream, peer) = self.inner.accept(listener).await?;
        let dup = self.inner.tcp_socket(&stream).try_clone()?;
        crate::session::lock(&counters.accepted).push(dup);
        Ok((stream, peer))
    }

    fn tcp_addrs(&self, stream: &Self::Tcp) -> io::Result<(SocketAddr, SocketAddr)> {
        self.inner.tcp_addrs(stream)
    }

    fn udp_from_std(&self, socket: std::net::UdpSocket) -> io::Result<Self::Udp> {
        self.inner.udp_from_std(socket)
    }

    fn connect_udp(&self, peer: SocketAddr, local: Option<SocketAddr>) -> io::Result<Self::Udp> {
        self.counters.connects.fetch_add(1, Ordering::SeqCst);
        self.inner.connect_udp(peer, local)
    }
}
