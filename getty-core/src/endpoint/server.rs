//! The TCP server: an accept loop that turns each connection into a session.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncWrite};

use super::{start_session, SessionSet, Signal, Transport};
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::listener::NewSession;
use crate::runtime::{timeout, DynRuntime, Runtime};
use crate::session::SessionControl;
use crate::tls::TlsServerConfig;

/// First pause after a failed accept; doubled on each further failure.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest pause between failed accepts.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Default time a TLS handshake may take before the connection is dropped.
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of a [`TcpServer`].
#[derive(Debug, Clone)]
pub struct TcpServerBuilder {
    addr: SocketAddr,
    max_sessions: Option<usize>,
    tls: Option<TlsServerConfig>,
    handshake_timeout: Duration,
}

impl Default for TcpServerBuilder {
    fn default() -> Self {
        TcpServerBuilder {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            max_sessions: None,
            tls: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

impl TcpServerBuilder {
    /// A builder listening on 127.0.0.1 at a random free port, with no session limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Listens on `addr` (port 0 picks a free port; see [`TcpServer::local_addr`]).
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Refuses connections beyond `max` live sessions (they are accepted and closed at once).
    pub fn max_sessions(mut self, max: usize) -> Self {
        self.max_sessions = Some(max);
        self
    }

    /// Serves TLS (getty's `WithServerSslEnabled`): every connection completes a handshake
    /// before it becomes a session. A failed handshake is logged and drops only that
    /// connection.
    pub fn tls(mut self, config: TlsServerConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// How long a TLS handshake may take (default 10 s); a slower peer is dropped.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Binds the listener and starts accepting on `rt`. Every accepted connection becomes a
    /// session with its own handle on `codec`, configured (or refused) by `new_session`.
    pub async fn serve<R, C, N>(self, rt: R, codec: C, new_session: N) -> Result<TcpServer>
    where
        R: Runtime,
        C: Codec,
        N: NewSession<C>,
    {
        if self.max_sessions == Some(0) {
            return Err(Error::invalid("max_sessions must be positive"));
        }
        if self.handshake_timeout.is_zero() {
            return Err(Error::invalid("handshake_timeout must be positive"));
        }
        let listener = rt
            .listen(self.addr)
            .await
            .map_err(|e| Error::io("listen", e))?;
        let local_addr = rt
            .listener_addr(&listener)
            .map_err(|e| Error::io("listen", e))?;
        let shared = Arc::new(Shared {
            local_addr,
            sessions: Arc::new(SessionSet::default()),
            stop: Signal::default(),
            accept_done: Signal::default(),
        });
        let accept = AcceptLoop {
            starter: Arc::new(Starter {
                dyn_rt: Arc::new(rt.clone()),
                rt: rt.clone(),
                codec: Arc::new(codec),
                new_session,
                sessions: shared.sessions.clone(),
            }),
            rt: rt.clone(),
            listener,
            max_sessions: self.max_sessions,
            tls: self.tls.map(|tls| (tls, self.handshake_timeout)),
            shared: shared.clone(),
        };
        rt.spawn(accept.run());
        log::info!("tcp server listening on {local_addr}");
        Ok(TcpServer { shared })
    }
}

/// A running TCP server. [`close`](Self::close) stops it and waits for its sessions to end;
/// dropping it does the same without waiting.
pub struct TcpServer {
    shared: Arc<Shared>,
}

type Sessions = SessionSet<Arc<dyn SessionControl>>;

struct Shared {
    local_addr: SocketAddr,
    sessions: Arc<Sessions>,
    stop: Signal,
    accept_done: Signal,
}

impl TcpServer {
    /// A builder with the default options.
    pub fn builder() -> TcpServerBuilder {
        TcpServerBuilder::new()
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The number of live sessions (accepted by `on_open`, not closing).
    pub fn session_count(&self) -> usize {
        self.shared.sessions.live_len()
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.shared.stop.is_set()
    }

    /// Waits until the server has exactly `n` live sessions.
    pub async fn wait_session_count(&self, n: usize) {
        self.shared.sessions.wait_until(|s| s.live_len() == n).await
    }

    /// Stops accepting (the port is released), closes every session (each flushes within its
    /// close-wait) and waits until all their tasks have ended.
    pub async fn close(&self) {
        self.shared.stop.set();
        self.shared.accept_done.wait().await;
        self.shared.sessions.close_all();
        self.shared.sessions.wait_until(|s| s.len() == 0).await;
        log::info!("tcp server on {} closed", self.shared.local_addr);
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.shared.stop.set();
        self.shared.sessions.close_all();
    }
}

impl fmt::Debug for TcpServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpServer")
            .field("local_addr", &self.shared.local_addr)
            .field("sessions", &self.shared.sessions.live_len())
            .field("closed", &self.is_closed())
            .finish()
    }
}

struct AcceptLoop<R: Runtime, C, N> {
    rt: R,
    listener: R::Listener,
    max_sessions: Option<usize>,
    /// The TLS configuration and handshake timeout, when serving TLS.
    tls: Option<(TlsServerConfig, Duration)>,
    starter: Arc<Starter<R, C, N>>,
    shared: Arc<Shared>,
}

/// What turns a connection, once ready, into a session: shared with handshake tasks.
struct Starter<R: Runtime, C, N> {
    rt: R,
    dyn_rt: Arc<dyn DynRuntime>,
    codec: Arc<C>,
    new_session: N,
    sessions: Arc<Sessions>,
}

impl<R: Runtime, C: Codec, N: NewSession<C>> Starter<R, C, N> {
    fn start<T>(&self, io: T, local: SocketAddr, peer: SocketAddr, kind: &str)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let started = start_session(
            &self.rt,
            &self.dyn_rt,
            Transport::Stream(io),
            local,
            Some(peer),
            kind,
            &self.codec,
            &self.new_session,
            &self.sessions,
            |s| Arc::new(s.clone()) as Arc<dyn SessionControl>,
        );
        if let Err(err) = started {
            log::info!("refusing {peer}: {err}");
        }
    }
}

impl<R: Runtime, C: Codec, N: NewSession<C>> AcceptLoop<R, C, N> {
    async fn run(self) {
        let mut backoff = ACCEPT_BACKOFF_MIN;
        loop {
            let accepted = future::or(
                async { Some(self.rt.accept(&self.listener).await) },
                async {
                    self.shared.stop.wait().await;
                    None
                },
            )
            .await;
            match accepted {
                None => break,
                Some(Ok((stream, peer))) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    self.admit(stream, peer);
                }
                Some(Err(err)) if is_per_connection(&err) => {
                    log::debug!("accept: connection lost before it was accepted: {err}");
                }
                Some(Err(err)) => {
                    // EMFILE, ENFILE, ENOBUFS, ...: retrying at once would spin; wait for
                    // resources to free up, longer each time.
                    log::warn!("accept failed: {err}; retrying in {backoff:?}");
                    let pause = self.rt.timer(self.rt.now() + backoff);
                    future::or(pause, self.shared.stop.wait()).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                }
            }
        }
        drop(self.listener);
        self.shared.accept_done.set();
    }

    fn admit(&self, stream: R::Tcp, peer: SocketAddr) {
        if let Some(max) = self.max_sessions {
            if self.shared.sessions.len() >= max {
                log::warn!("refusing {peer}: {}", Error::TooManySessions(max));
                return;
            }
        }
        let local = match self.rt.tcp_addrs(&stream) {
            Ok((local, _)) => local,
            Err(err) => {
                log::debug!("dropping {peer}: {err}");
                return;
            }
        };
        let Some((tls, handshake_timeout)) = &self.tls else {
            self.starter.start(stream, local, peer, "tcp");
            return;
        };
        // The handshake runs in its own task: a slow or hostile peer must not hold up accepting.
        let acceptor = tls.acceptor().clone();
        let (starter, rt, handshake_timeout) =
            (self.starter.clone(), self.rt.clone(), *handshake_timeout);
        self.rt.spawn(async move {
            match timeout(&rt, handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => starter.start(tls_stream, local, peer, "tls"),
                Ok(Err(err)) => log::info!("dropping {peer}: {}", Error::tls_handshake(peer, err)),
                Err(_) => {
                    log::info!("dropping {peer}: no TLS handshake within {handshake_timeout:?}")
                }
            }
        });
    }
}

/// Accept errors that concern only the connection being accepted, not the listener.
fn is_per_connection(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}
