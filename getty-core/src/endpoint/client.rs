//! The TCP client: a pool of sessions to one server, refilled with backoff when one drops.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::future;

use super::{start_stream_session, SessionSet, Signal};
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::listener::NewSession;
use crate::runtime::{timeout, DynRuntime, Runtime};
use crate::session::{lock, Session};

/// Options of a [`TcpClient`]. Defaults are getty's: one session, 300 ms reconnect interval,
/// 50 consecutive failures before giving up, 3 s connect timeout.
#[derive(Debug, Clone)]
pub struct TcpClientBuilder {
    addr: SocketAddr,
    pool_size: usize,
    reconnect_interval: Duration,
    max_reconnect_attempts: Option<u32>,
    connect_timeout: Duration,
    local_addr: Option<SocketAddr>,
}

/// Reconnect delays grow with the number of consecutive failures up to this many intervals.
const MAX_BACKOFF_STEPS: u32 = 10;

impl TcpClientBuilder {
    /// A client of the server at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        TcpClientBuilder {
            addr,
            pool_size: 1,
            reconnect_interval: Duration::from_millis(300),
            max_reconnect_attempts: Some(50),
            connect_timeout: Duration::from_secs(3),
            local_addr: None,
        }
    }

    /// How many sessions the client keeps open (default 1; zero is an error at start).
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n;
        self
    }

    /// The base reconnect interval: after the k-th consecutive failure the client waits
    /// `min(k, 10) × interval`, plus up to 20 % random jitter (default 300 ms).
    pub fn reconnect_interval(mut self, interval: Duration) -> Self {
        self.reconnect_interval = interval;
        self
    }

    /// Gives up after this many consecutive failed connects (default 50; a success resets the
    /// count). `None` retries forever.
    pub fn max_reconnect_attempts(mut self, attempts: Option<u32>) -> Self {
        self.max_reconnect_attempts = attempts;
        self
    }

    /// How long one connect may take (default 3 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Binds every connection to this local address before connecting.
    pub fn local_addr(mut self, addr: SocketAddr) -> Self {
        self.local_addr = Some(addr);
        self
    }

    /// Starts the client on `rt`: one background worker connects the pool and refills it.
    /// Returns at once; [`TcpClient::wait_for_sessions`] waits for connections.
    pub fn start<R, C, N>(self, rt: R, codec: C, new_session: N) -> Result<TcpClient<C>>
    where
        R: Runtime,
        C: Codec,
        N: NewSession<C>,
    {
        if self.pool_size == 0 {
            return Err(Error::invalid("pool_size must be positive"));
        }
        if self.connect_timeout.is_zero() {
            return Err(Error::invalid("connect_timeout must be positive"));
        }
        if self.max_reconnect_attempts == Some(0) {
            return Err(Error::invalid(
                "max_reconnect_attempts must be positive (None retries forever)",
            ));
        }
        let shared = Arc::new(Shared {
            addr: self.addr,
            sessions: Arc::new(SessionSet::default()),
            stop: Signal::default(),
            worker_done: Signal::default(),
            gave_up: AtomicBool::new(false),
            last_error: Mutex::new(None),
        });
        let worker = Worker {
            dyn_rt: Arc::new(rt.clone()),
            rt: rt.clone(),
            codec: Arc::new(codec),
            new_session: Box::new(new_session),
            options: self,
            shared: shared.clone(),
        };
        rt.spawn(worker.run());
        Ok(TcpClient { shared })
    }
}

/// A pool of sessions to one server. [`close`](Self::close) stops reconnecting, closes the
/// sessions and waits for their tasks; dropping it does the same without waiting.
pub struct TcpClient<C: Codec> {
    shared: Arc<Shared<C>>,
}

struct Shared<C: Codec> {
    addr: SocketAddr,
    sessions: Arc<SessionSet<Session<C>>>,
    stop: Signal,
    worker_done: Signal,
    gave_up: AtomicBool,
    last_error: Mutex<Option<Arc<Error>>>,
}

impl<C: Codec> TcpClient<C> {
    /// The server address.
    pub fn server_addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The live sessions, oldest first.
    pub fn sessions(&self) -> Vec<Session<C>> {
        self.shared.sessions.live()
    }

    /// The number of live sessions.
    pub fn session_count(&self) -> usize {
        self.shared.sessions.live_len()
    }

    /// Whether the client stopped reconnecting after too many consecutive failures.
    pub fn gave_up(&self) -> bool {
        self.shared.gave_up.load(Ordering::Acquire)
    }

    /// The error of the most recent failed connect attempt, if any.
    pub fn last_connect_error(&self) -> Option<Arc<Error>> {
        lock(&self.shared.last_error).clone()
    }

    /// Waits until at least `n` sessions are live. Fails if the client gives up or is closed
    /// first.
    pub async fn wait_for_sessions(&self, n: usize) -> Result<()> {
        loop {
            let listener = self.shared.sessions.listen();
            if self.shared.sessions.live_len() >= n {
                return Ok(());
            }
            if self.gave_up() {
                return Err(Error::Connect {
                    addr: self.shared.addr,
                    source: std::io::Error::other("client gave up reconnecting"),
                });
            }
            if self.shared.stop.is_set() {
                return Err(Error::invalid("client is closed"));
            }
            future::or(listener, self.shared.worker_done.wait()).await;
        }
    }

    /// Stops reconnecting, closes every session (each flushes within its close-wait) and waits
    /// until all their tasks have ended.
    pub async fn close(&self) {
        self.shared.stop.set();
        self.shared.worker_done.wait().await;
        self.shared.sessions.close_all();
        self.shared.sessions.wait_until(|s| s.len() == 0).await;
    }
}

impl<C: Codec> Drop for TcpClient<C> {
    fn drop(&mut self) {
        self.shared.stop.set();
        self.shared.sessions.close_all();
    }
}

impl<C: Codec> fmt::Debug for TcpClient<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpClient")
            .field("server", &self.shared.addr)
            .field("sessions", &self.shared.sessions.live_len())
            .field("gave_up", &self.gave_up())
            .finish()
    }
}

/// The one reconnect worker of a client: however many sessions drop at once, connects are
/// made one at a time, so a restarting server sees no storm.
struct Worker<R: Runtime, C: Codec> {
    rt: R,
    dyn_rt: Arc<dyn DynRuntime>,
    codec: Arc<C>,
    new_session: Box<dyn NewSession<C>>,
    options: TcpClientBuilder,
    shared: Arc<Shared<C>>,
}

impl<R: Runtime, C: Codec> Worker<R, C> {
    async fn run(self) {
        let mut failures: u32 = 0;
        let sessions = &self.shared.sessions;
        while !self.shared.stop.is_set() {
            if sessions.len() >= self.options.pool_size {
                let listener = sessions.listen();
                if sessions.len() >= self.options.pool_size {
                    future::or(listener, self.shared.stop.wait()).await;
                }
                continue;
            }
            match self.connect_one().await {
                Ok(session) => {
                    log::debug!("client session {} connected", session.id());
                    failures = 0;
                }
                Err(err) => {
                    let err = Arc::new(err);
                    *lock(&self.shared.last_error) = Some(err.clone());
                    failures = failures.saturating_add(1);
                    if let Some(max) = self.options.max_reconnect_attempts {
                        if failures >= max {
                            log::error!(
                                "giving up on {} after {failures} consecutive failures: {err}",
                                self.options.addr
                            );
                            self.shared.gave_up.store(true, Ordering::Release);
                            break;
                        }
                    }
                    let delay = self.backoff(failures);
                    log::info!(
                        "connect to {} failed ({err}); retry {failures} in {delay:?}",
                        self.options.addr
                    );
                    let pause = self.rt.timer(self.rt.now() + delay);
                    future::or(pause, self.shared.stop.wait()).await;
                }
            }
        }
        // Also wakes `wait_for_sessions` callers, so they see `gave_up` or the stop.
        self.shared.worker_done.set();
    }

    fn backoff(&self, failures: u32) -> Duration {
        let base = self.options.reconnect_interval * failures.min(MAX_BACKOFF_STEPS);
        base + base.mul_f64(0.2 * fastrand::f64())
    }

    async fn connect_one(&self) -> Result<Session<C>> {
        let addr = self.options.addr;
        let connect_timeout = self.options.connect_timeout;
        let stream = timeout(
            &self.rt,
            connect_timeout,
            self.rt.connect(addr, self.options.local_addr),
        )
        .await
        .map_err(|_| Error::ConnectTimeout {
            addr,
            timeout: connect_timeout,
        })?
        .map_err(|source| Error::Connect { addr, source })?;
        let (local, peer) = self
            .rt
            .tcp_addrs(&stream)
            .map_err(|source| Error::Connect { addr, source })?;
        if local == peer {
            // TCP simultaneous open made the socket connect to itself (possible when the
            // server's port is in the ephemeral range and nothing listens on it).
            return Err(Error::SelfConnect(addr));
        }
        start_stream_session(
            &self.rt,
            &self.dyn_rt,
            stream,
            local,
            peer,
            "tcp-client",
            &self.codec,
            self.new_session.as_ref(),
            &self.shared.sessions,
            Session::clone,
        )
    }
}
