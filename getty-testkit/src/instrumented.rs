//! A runtime wrapper that counts connects, accepts and tasks and can make accepts fail, so
//! scenarios can check how endpoints behave under faults the OS rarely produces on demand
//! (EMFILE), and that closing an endpoint leaves no task behind.
//! Every call that succeeds is the wrapped runtime's. It wraps any [`Runtime`]; on an OS
//! runtime ([`OsNetwork`]), [`Instrumented::with_socket_copies`] also keeps a second handle on
//! every stream, to read its options back from the kernel.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use getty_core::runtime::os::{OsNetwork, SockRef};
use getty_core::runtime::{Executor, Network, Runtime, TcpOptions};

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
    /// Tasks spawned through the runtime (`spawn`, and so also `DynExecutor::spawn_boxed`).
    pub tasks_spawned: AtomicUsize,
    /// Tasks spawned through the runtime whose future has not been dropped yet. A task counts
    /// as gone once its future is dropped: when it finished, or when it was dropped unfinished
    /// (by its executor shutting down, say).
    pub tasks_live: AtomicUsize,
    /// Calls to `random_u64`.
    pub random_draws: AtomicUsize,
    /// When set, `random_u64` returns this instead of asking the wrapped runtime.
    pub fixed_random: Mutex<Option<u64>>,
    /// A second handle (a duplicated descriptor) on every stream accepted, to read its options
    /// back after the endpoint configured it; only with [`Instrumented::with_socket_copies`].
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
}

/// Travels with a spawned future: counts its task as gone when dropped, which happens when the
/// future finished or was dropped unfinished.
struct TaskGuard(Arc<Counters>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.tasks_live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Duplicates the OS socket under a stream (see [`Instrumented::with_socket_copies`]).
type Copier<R> = fn(&R, &<R as Network>::Tcp) -> io::Result<socket2::Socket>;

/// Wraps runtime `R`, counting and injecting faults as [`Counters`] says.
#[derive(Debug, Clone)]
pub struct Instrumented<R: Runtime> {
    inner: R,
    /// Duplicates accepted and connected streams into `counters`, when set.
    copier: Option<Copier<R>>,
    /// Shared by every clone.
    pub counters: Arc<Counters>,
}

impl<R: Runtime> Instrumented<R> {
    /// Wraps `inner` with zeroed counters and no faults. It holds no socket of its own.
    pub fn new(inner: R) -> Self {
        Instrumented {
            inner,
            copier: None,
            counters: Arc::default(),
        }
    }

    fn keep_copy(&self, list: &Mutex<Vec<socket2::Socket>>, stream: &R::Tcp) -> io::Result<()> {
        if let Some(copier) = self.copier {
            let dup = copier(&self.inner, stream)?;
            crate::support::lock(list).push(dup);
        }
        Ok(())
    }
}

impl<R: Runtime + OsNetwork> Instrumented<R> {
    /// Wraps `inner` like [`new`](Self::new), and also keeps a second handle (a duplicated
    /// descriptor) on every stream accepted and connected, in [`Counters::accepted`] and
    /// [`Counters::connected`]: every such descriptor then stays open.
    pub fn with_socket_copies(inner: R) -> Self {
        Instrumented {
            copier: Some(|rt, stream| rt.os_socket(stream).try_clone()),
            ..Self::new(inner)
        }
    }
}

fn emfile() -> io::Error {
    #[cfg(unix)]
    return io::Error::from_raw_os_error(libc::EMFILE);
    #[cfg(not(unix))]
    return io::Error::other("too many open files (simulated)");
}

impl<R: Runtime> Executor for Instrumented<R> {
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

    fn random_u64(&self) -> u64 {
        self.counters.random_draws.fetch_add(1, Ordering::SeqCst);
        match *crate::support::lock(&self.counters.fixed_random) {
            Some(fixed) => fixed,
            None => self.inner.random_u64(),
        }
    }
}

impl<R: Runtime> Network for Instrumented<R> {
    type Tcp = R::Tcp;
    type Listener = R::Listener;
    type Udp = R::Udp;

    async fn connect(&self, addr: SocketAddr, local: Option<SocketAddr>) -> io::Result<Self::Tcp> {
        self.counters.connects.fetch_add(1, Ordering::SeqCst);
        let stream = self.inner.connect(addr, local).await?;
        self.keep_copy(&self.counters.connected, &stream)?;
        Ok(stream)
    }

    fn listen(&self, addr: SocketAddr, reuse_port: bool) -> io::Result<Self::Listener> {
        self.inner.listen(addr, reuse_port)
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
        self.keep_copy(&counters.accepted, &stream)?;
        Ok((stream, peer))
    }

    fn tcp_addrs(&self, stream: &Self::Tcp) -> io::Result<(SocketAddr, SocketAddr)> {
        self.inner.tcp_addrs(stream)
    }

    fn set_tcp_options(&self, stream: &Self::Tcp, options: &TcpOptions) -> io::Result<()> {
        self.inner.set_tcp_options(stream, options)
    }

    fn bind_udp(&self, addr: SocketAddr) -> io::Result<Self::Udp> {
        self.inner.bind_udp(addr)
    }

    fn connect_udp(&self, peer: SocketAddr, local: Option<SocketAddr>) -> io::Result<Self::Udp> {
        self.counters.connects.fetch_add(1, Ordering::SeqCst);
        self.inner.connect_udp(peer, local)
    }
}

impl<R: Runtime + OsNetwork> OsNetwork for Instrumented<R> {
    fn os_socket<'a>(&self, stream: &'a Self::Tcp) -> SockRef<'a> {
        self.inner.os_socket(stream)
    }
}
