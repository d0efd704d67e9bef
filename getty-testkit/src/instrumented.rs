//! A runtime wrapper that counts connects, accepts and tasks and can make accepts fail, so
//! scenarios can check how endpoints behave under faults the OS rarely produces on demand
//! (EMFILE), and that closing an endpoint leaves no task behind.
//! Sockets stay real: every call that succeeds is the wrapped runtime's.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use getty_core::runtime::socket::SockRef;
use getty_core::runtime::Runtime;

/// What an [`Instrumented`] runtime counted, and the faults still to inject.
#[derive(Debug, Default)]
pub struct Counters {
    /// Calls to `connect` and `connect_udp`.
    pub connects: AtomicUsize,
    /// Calls to `accept` that were made to fail.
    pub failed_accepts: AtomicUsize,
    /// How many of the next `accept` calls fail with "too many open files".
    pub fail_next_accepts: AtomicUsize,
    /// Calls to `accept` of the wrapped runtime that returned an error (real ones, such as a
    /// real EMFILE; the injected failures are `failed_accepts`).
    pub accept_errors: AtomicUsize,
    /// Tasks spawned through the runtime (`spawn`, and so also `DynRuntime::spawn_boxed`).
    pub tasks_spawned: AtomicUsize,
    /// Tasks spawned through the runtime whose future has not been dropped yet. A task counts
    /// as gone once its future is dropped: when it finished, or when it was dropped unfinished
    /// (by its executor shutting down, say).
    pub tasks_live: AtomicUsize,
    /// When set, streams accepted and connected are not duplicated into `accepted` and
    /// `connected` (whose copies keep every descriptor open): for scenarios that count
    /// descriptors or open thousands of connections. See [`Instrumented::lean`].
    pub skip_copies: AtomicBool,
    /// A second handle (a duplicated descriptor) on every stream accepted, to read its options
    /// back after the endpoint configured it.
    pub accepted: Mutex<Vec<socket2::Socket>>,
    /// The same for every stream connected.
    pub connected: Mutex<Vec<socket2::Socket>>,
}

impl Counters {
    /// Tasks spawned through the runtime so far.
    pub fn spawned_tasks(&self) -> usize {
        self.tasks_spawned.load(Ordering::SeqCst)
    }

    /// Tasks spawned through the runtime and not yet dropped (finished or not).
    pub fn live_tasks(&self) -> usize {
        self.tasks_live.load(Ordering::SeqCst)
    }

    fn keep_copy(&self, list: &Mutex<Vec<socket2::Socket>>, socket: SockRef<'_>) -> io::Result<()> {
        if !self.skip_copies.load(Ordering::SeqCst) {
            let dup = socket.try_clone()?;
            crate::support::lock(list).push(dup);
        }
        Ok(())
    }
}

/// Travels with a spawned future: counts its task as gone when dropped, which happens when the
/// future finished or was dropped unfinished.
struct TaskGuard(Arc<Counters>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.tasks_live.fetch_sub(1, Ordering::SeqCst);
    }
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

    /// Wraps `inner` with zeroed counters, no faults, and no copies of streams (see
    /// [`Counters::skip_copies`]): the wrapper then holds no descriptor of its own.
    pub fn lean(inner: R) -> Self {
        let wrapped = Self::new(inner);
        wrapped.counters.skip_copies.store(true, Ordering::SeqCst);
        wrapped
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
        let counters = &self.counters;
        counters.tasks_spawned.fetch_add(1, Ordering::SeqCst);
        counters.tasks_live.fetch_add(1, Ordering::SeqCst);
        let guard = TaskGuard(counters.clone());
        self.inner.spawn(async move {
            // Dropped after `future`, whether it ran to its end or is dropped before.
            let _guard = guard;
            future.await
        })
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
        let counters = &self.counters;
        counters.keep_copy(&counters.connected, self.inner.tcp_socket(&stream))?;
        Ok(stream)
    }

    fn listener_from_std(&self, listener: std::net::TcpListener) -> io::Result<Self::Listener> {
        self.inner.listener_from_std(listener)
    }

    fn tcp_socket<'a>(&self, stream: &'a Self::Tcp) -> SockRef<'a> {
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
        let (stream, peer) = match self.inner.accept(listener).await {
            Ok(accepted) => accepted,
            Err(err) => {
                counters.accept_errors.fetch_add(1, Ordering::SeqCst);
                return Err(err);
            }
        };
        counters.keep_copy(&counters.accepted, self.inner.tcp_socket(&stream))?;
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
