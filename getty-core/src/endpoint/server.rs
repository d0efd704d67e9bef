//! The TCP server: an accept loop that turns each connection into a session.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "ws")]
use async_tungstenite::tungstenite::protocol::Role;
use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncWrite};

#[cfg(feature = "ws")]
use super::{launch_session, prepare_session, Prepared};
use super::{start_session, SessionSet, Signal, Transport};
use crate::codec::{Codec, LengthDelimited};
use crate::error::BoxError;
use crate::error::{Error, Result};
use crate::listener::{EventListener, NewSession, SharedListener};
use crate::pool::{TaskPool, TaskPoolConfig};
#[cfg(any(feature = "tls", feature = "ws"))]
use crate::runtime::timeout_at;
use crate::runtime::TcpOptions;
use crate::runtime::{DynExecutor, Runtime};
#[cfg(feature = "ws")]
use crate::session::TransportKind;
use crate::session::{CloseReason, Session, SessionConfig, SessionGroup};
#[cfg(feature = "tls")]
use crate::tls::TlsServerConfig;
#[cfg(feature = "ws")]
use crate::ws::handshake::{self, HandshakeOptions};
#[cfg(feature = "ws")]
use crate::ws::{Reject, WebSocketInfo};

/// What serving TLS takes; nothing can be built without the `tls` feature.
#[cfg(not(feature = "tls"))]
type TlsServerConfig = std::convert::Infallible;
/// What serving WebSocket takes; nothing can be built without the `ws` feature.
#[cfg(not(feature = "ws"))]
type HandshakeOptions = std::convert::Infallible;

/// First pause after a failed accept; doubled on each further failure.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest pause between failed accepts.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Default time a TLS handshake may take before the connection is dropped.
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of a [`TcpServer`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until it is used"]
pub struct TcpServerBuilder {
    addr: SocketAddr,
    max_sessions: Option<usize>,
    tls: Option<TlsServerConfig>,
    handshake_timeout: Duration,
    #[cfg_attr(not(feature = "ws"), allow(dead_code))]
    ws_path: Option<String>,
    #[cfg_attr(not(feature = "ws"), allow(dead_code))]
    ws_origins: Option<Vec<String>>,
    #[cfg_attr(not(feature = "ws"), allow(dead_code))]
    ws_protocols: Option<Vec<String>>,
    tcp_options: TcpOptions,
    reuse_port: bool,
    task_pool: Option<TaskPoolConfig>,
    session_config: SessionConfig,
}

impl Default for TcpServerBuilder {
    fn default() -> Self {
        TcpServerBuilder {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            max_sessions: None,
            tls: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            ws_path: None,
            ws_origins: None,
            ws_protocols: None,
            tcp_options: TcpOptions::default(),
            reuse_port: false,
            task_pool: None,
            session_config: SessionConfig::default(),
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

    /// Refuses connections beyond `max` sessions (they are accepted and closed at once).
    /// Connections still in their TLS or WebSocket handshake count too, so slow handshakes
    /// cannot pile up past the limit.
    pub fn max_sessions(mut self, max: usize) -> Self {
        self.max_sessions = Some(max);
        self
    }

    /// Options applied to every accepted connection (TCP_NODELAY on by default, keep-alive,
    /// buffer sizes).
    pub fn tcp_options(mut self, options: TcpOptions) -> Self {
        self.tcp_options = options;
        self
    }

    /// Sets SO_REUSEPORT on the listener, so that several servers (in this process or others)
    /// can listen on the same port, the OS spreading connections over them. Off by default.
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.reuse_port = on;
        self
    }

    /// The settings every session starts with (validated when the server starts; the
    /// new-session callback can change one session's with
    /// [`Session::configure`](crate::Session::configure)).
    pub fn session_config(mut self, config: SessionConfig) -> Self {
        self.session_config = config;
        self
    }

    /// Runs `on_message` and `on_cron` on a task pool (getty's `WithServerTaskPool`; see
    /// [`crate::pool`]) instead of on each session's task. Closing the server stops it.
    pub fn task_pool(mut self, config: TaskPoolConfig) -> Self {
        self.task_pool = Some(config);
        self
    }

    #[cfg(feature = "tls")]
    /// Serves TLS (getty's `WithServerSslEnabled`): every connection completes a handshake
    /// before it becomes a session. A failed handshake is logged and drops only that
    /// connection.
    pub fn tls(mut self, config: TlsServerConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// How long the TLS and WebSocket handshakes may take together (default 10 s); a slower
    /// peer is dropped.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    #[cfg(feature = "ws")]
    /// Serves WebSocket (getty's `WithWebsocketServerPath`; `wss://` together with
    /// [`tls`](Self::tls)): a connection becomes a session once it upgrades on `path`. Other
    /// requests are answered and dropped: another path gets 404, a method other than GET 405,
    /// a request that is not a valid upgrade 400, another protocol version 426.
    ///
    /// A valid upgrade request is handed to the new-session callback *before* it is answered
    /// ([`Session::websocket`](crate::Session::websocket) shows its path, query, headers and
    /// subprotocols): the callback may choose the subprotocol, add headers to the `101`, or
    /// refuse with an HTTP status by returning a [`Reject`](crate::ws::Reject) (any other
    /// error: 403). Only then is the `101` written, and `on_open` runs once it is. A refused
    /// upgrade opens no session (no `on_open`, no `on_close`, the session count unchanged).
    /// [`handshake_timeout`](Self::handshake_timeout) bounds it all, from the first byte to
    /// the `101`.
    pub fn websocket(mut self, path: impl Into<String>) -> Self {
        self.ws_path = Some(path.into());
        self
    }

    #[cfg(feature = "ws")]
    /// Accepts WebSocket upgrades only from these origins (the `Origin` header, compared
    /// ASCII case-insensitively); others get 403. By default every origin is accepted, as in
    /// getty.
    pub fn websocket_allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.ws_origins = Some(origins.into_iter().map(Into::into).collect());
        self
    }

    #[cfg(feature = "ws")]
    /// The WebSocket subprotocols this server speaks, most preferred first. Of those a client
    /// offers (`Sec-WebSocket-Protocol`), the server chooses the first of this list and names
    /// it in the `101`; with none in common the `101` names none (RFC 6455) and the session
    /// opens all the same: a browser that offered some then fails the connection itself. The
    /// new-session callback sees the offer and the choice
    /// ([`Session::websocket`](crate::Session::websocket)) and may choose another offered one
    /// ([`WebSocketInfo::select_protocol`](crate::ws::WebSocketInfo::select_protocol)).
    /// Names must be HTTP tokens, checked when the server starts ([`Error::InvalidConfig`]).
    ///
    /// ```no_run
    /// use getty_core::prelude::*;
    ///
    /// struct Chat;
    /// impl EventListener<RawBytes> for Chat {
    ///     async fn on_message(&self, _: &Session<RawBytes>, _: Bytes) {}
    /// }
    ///
    /// # fn demo<R: Runtime>(rt: R) -> getty_core::Result<()> {
    /// let server = TcpServer::builder()
    ///     .websocket("/chat")
    ///     .websocket_protocols(["chat.v2", "chat.v1"])
    ///     .serve_with(rt, RawBytes, |session: &Session<RawBytes>| {
    ///         let ws = session.websocket().expect("WebSocket");
    ///         log::info!("{} offered {:?}, speaking {:?}", session.name(), ws.offered_protocols(), ws.protocol());
    ///         Ok(Chat)
    ///     })?;
    /// # let _ = server; Ok(()) }
    /// ```
    pub fn websocket_protocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.ws_protocols = Some(protocols.into_iter().map(Into::into).collect());
        self
    }

    /// Binds the listener and starts accepting on `rt`. Every accepted connection becomes a
    /// session on `codec` whose events go to `listener`, shared by all sessions.
    pub fn serve<R, C, L>(self, rt: R, codec: C, listener: L) -> Result<TcpServer<C>>
    where
        R: Runtime,
        C: Codec,
        L: EventListener<C>,
    {
        self.serve_new_session(rt, codec, SharedListener(Arc::new(listener)))
    }

    /// Binds the listener and starts accepting on `rt`, as [`serve`](Self::serve) does, each
    /// session getting the listener `new_session` returns for it (per-connection state).
    /// `new_session` may also configure the session, or refuse it with an `Err`.
    pub fn serve_with<R, C, F, L>(self, rt: R, codec: C, new_session: F) -> Result<TcpServer<C>>
    where
        R: Runtime,
        C: Codec,
        F: Fn(&Session<C>) -> Result<L, BoxError> + Send + Sync + 'static,
        L: EventListener<C>,
    {
        self.serve_new_session(rt, codec, new_session)
    }

    fn serve_new_session<R, C, N>(self, rt: R, codec: C, new_session: N) -> Result<TcpServer<C>>
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
        #[cfg(not(feature = "ws"))]
        let websocket: Option<Arc<HandshakeOptions>> = None;
        #[cfg(feature = "ws")]
        let websocket = match (self.ws_path, self.ws_origins, self.ws_protocols) {
            (None, None, None) => None,
            (None, Some(_), _) => {
                return Err(Error::invalid(
                    "websocket_allowed_origins needs a websocket path",
                ))
            }
            (None, _, Some(_)) => {
                return Err(Error::invalid("websocket_protocols needs a websocket path"))
            }
            (Some(path), _, _) if !path.starts_with('/') => {
                return Err(Error::invalid(format!(
                    "the WebSocket path must start with '/' (got {path:?})"
                )))
            }
            (Some(path), allowed_origins, protocols) => {
                let protocols = protocols.unwrap_or_default();
                if let Some(bad) = protocols.iter().find(|p| !handshake::is_token(p)) {
                    return Err(Error::invalid(format!(
                        "the WebSocket subprotocol {bad:?} is not an HTTP token"
                    )));
                }
                Some(Arc::new(HandshakeOptions {
                    path,
                    allowed_origins,
                    protocols,
                    ..HandshakeOptions::default()
                }))
            }
        };
        let config = self.session_config.resolve(&codec)?;
        config.check_transport(websocket.is_none())?;
        let listener = rt
            .listen(self.addr, self.reuse_port)
            .map_err(|e| Error::io("listen", e))?;
        let local_addr = rt
            .listener_addr(&listener)
            .map_err(|e| Error::io("listen", e))?;
        let pool = match self.task_pool {
            Some(config) => {
                config.validate()?;
                Some(TaskPool::start(&rt, config))
            }
            None => None,
        };
        let shared = Arc::new(Shared {
            pool: pool.clone(),
            local_addr,
            sessions: Arc::new(SessionSet::default()),
            group: SessionGroup::new(),
            handshakes: AtomicUsize::new(0),
            stop: Signal::default(),
            accept_done: Signal::default(),
        });
        let accept = AcceptLoop {
            starter: Arc::new(Starter {
                dyn_rt: Arc::new(rt.clone()),
                rt: rt.clone(),
                codec: Arc::new(codec),
                config,
                new_session,
                sessions: shared.sessions.clone(),
                group: shared.group.clone(),
                pool,
            }),
            rt: rt.clone(),
            listener: Listening {
                listener: Some(listener),
                shared: shared.clone(),
            },
            max_sessions: self.max_sessions,
            tls: self.tls,
            tcp_options: self.tcp_options,
            websocket,
            handshake_timeout: self.handshake_timeout,
            shared: shared.clone(),
        };
        rt.spawn(accept.run());
        log::info!("tcp server listening on {local_addr}");
        Ok(TcpServer { shared })
    }
}

/// A running TCP server (also serving TLS or WebSocket when so built). [`close`](Self::close)
/// stops it and waits for its sessions to end; dropping it does the same without waiting.
#[must_use = "dropping the server stops it"]
pub struct TcpServer<C: Codec = LengthDelimited> {
    shared: Arc<Shared<C>>,
}

type Sessions<C> = SessionSet<Session<C>>;

struct Shared<C: Codec> {
    pool: Option<Arc<TaskPool>>,
    local_addr: SocketAddr,
    sessions: Arc<Sessions<C>>,
    /// The sessions `on_open` accepted, until they have closed.
    group: SessionGroup<C>,
    /// TLS and WebSocket handshakes under way: they count toward `max_sessions`, and `close`
    /// waits for them (they stop at once when it is called).
    handshakes: AtomicUsize,
    stop: Signal,
    accept_done: Signal,
}

impl TcpServer {
    /// A builder with the default options (the same as [`TcpServerBuilder::new`]; the
    /// server's codec is chosen when it is served).
    pub fn builder() -> TcpServerBuilder {
        TcpServerBuilder::new()
    }
}

impl<C: Codec> TcpServer<C> {
    /// Every session `on_open` accepted, until it has closed, as a [`SessionGroup`]: to
    /// broadcast to all of them, or to list them (`group().members()`) without allocating
    /// while the membership is stable.
    pub fn group(&self) -> &SessionGroup<C> {
        &self.shared.group
    }

    /// The live sessions (accepted by `on_open`, not closing), oldest first.
    pub fn sessions(&self) -> Vec<Session<C>> {
        self.shared.sessions.live()
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

    /// Waits until the server has at least `n` live sessions. Fails with
    /// [`Error::EndpointClosed`] if the server is closed first.
    pub async fn wait_for_sessions(&self, n: usize) -> Result<()> {
        self.wait_for(|live| live >= n).await
    }

    /// Waits until the server has exactly `n` live sessions (`0`: every session has closed
    /// or is closing). Fails with [`Error::EndpointClosed`] if the server is closed first
    /// with another count.
    pub async fn wait_for_session_count(&self, n: usize) -> Result<()> {
        self.wait_for(|live| live == n).await
    }

    async fn wait_for(&self, done: impl Fn(usize) -> bool) -> Result<()> {
        let sessions = &self.shared.sessions;
        loop {
            let listener = sessions.listen();
            if done(sessions.live_len()) {
                return Ok(());
            }
            if self.shared.stop.is_set() {
                return Err(Error::EndpointClosed);
            }
            future::or(listener, self.shared.stop.wait()).await;
        }
    }

    /// Stops accepting (the port is released), closes every session (each flushes within its
    /// close-wait) and waits until all their tasks have ended.
    pub async fn close(&self) {
        self.shared.stop.set();
        self.shared.accept_done.wait().await;
        self.shared
            .sessions
            .close_all(CloseReason::going_away("the server is shutting down"));
        let handshakes = &self.shared.handshakes;
        self.shared
            .sessions
            .wait_until(|s| s.len() == 0 && handshakes.load(Ordering::Acquire) == 0)
            .await;
        if let Some(pool) = &self.shared.pool {
            pool.shutdown().await;
        }
        log::info!("tcp server on {} closed", self.shared.local_addr);
    }

    /// The task pool's workers still running (0 without a pool, and once closed).
    pub fn task_pool_workers(&self) -> usize {
        self.shared.pool.as_ref().map_or(0, |p| p.workers_alive())
    }
}

impl<C: Codec> Drop for TcpServer<C> {
    fn drop(&mut self) {
        self.shared.stop.set();
        self.shared
            .sessions
            .close_all(CloseReason::going_away("the server is shutting down"));
        if let Some(pool) = &self.shared.pool {
            pool.stop();
        }
    }
}

impl<C: Codec> fmt::Debug for TcpServer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpServer")
            .field("local_addr", &self.shared.local_addr)
            .field("sessions", &self.shared.sessions.live_len())
            .field("closed", &self.is_closed())
            .finish()
    }
}

struct AcceptLoop<R: Runtime, C: Codec, N> {
    rt: R,
    listener: Listening<R::Listener, C>,
    max_sessions: Option<usize>,
    /// Applied to every accepted stream.
    tcp_options: TcpOptions,
    /// Set when serving TLS.
    tls: Option<TlsServerConfig>,
    /// Set when serving WebSocket.
    websocket: Option<Arc<HandshakeOptions>>,
    /// Bounds the TLS and WebSocket handshakes together.
    handshake_timeout: Duration,
    starter: Arc<Starter<R, C, N>>,
    shared: Arc<Shared<C>>,
}

/// The accept loop's listener: when the loop ends, however it ends (it returned, or its
/// executor dropped it unfinished: a runtime shutting down, a simulated host crashing), the
/// port is released and then `close` is told, so `close` never waits for a loop that is gone.
struct Listening<L, C: Codec> {
    listener: Option<L>,
    shared: Arc<Shared<C>>,
}

impl<L, C: Codec> Listening<L, C> {
    fn get(&self) -> &L {
        self.listener
            .as_ref()
            .expect("the listener lives until the loop ends")
    }
}

impl<L, C: Codec> Drop for Listening<L, C> {
    fn drop(&mut self) {
        drop(self.listener.take());
        self.shared.accept_done.set();
    }
}

/// What turns a connection, once ready, into a session: shared with handshake tasks.
struct Starter<R: Runtime, C: Codec, N> {
    rt: R,
    dyn_rt: Arc<dyn DynExecutor>,
    codec: Arc<C>,
    config: SessionConfig,
    new_session: N,
    sessions: Arc<Sessions<C>>,
    group: SessionGroup<C>,
    pool: Option<Arc<TaskPool>>,
}

impl<R: Runtime, C: Codec, N: NewSession<C>> Starter<R, C, N> {
    /// Answers a valid upgrade request: builds the session, runs the new-session callback
    /// with the request visible, then writes the `101` (with the chosen subprotocol and the
    /// callback's headers) or the refusal. Returns the session to launch, with the bytes read
    /// after the request; `None` when refused or when the `101` could not be written (the
    /// session is then dropped unopened).
    #[cfg(feature = "ws")]
    async fn answer_upgrade<T>(
        &self,
        io: &mut T,
        request: handshake::Request,
        options: &HandshakeOptions,
        local: SocketAddr,
        peer: SocketAddr,
        kind: &str,
    ) -> Option<(Prepared<C, N::Listener>, Vec<u8>)>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        let chosen = request.preferred_protocol(&options.protocols);
        let handshake::Request {
            path_and_query,
            headers,
            offered,
            accept_key,
            leftover,
        } = request;
        let info = WebSocketInfo::server(path_and_query, headers, offered, chosen);
        let prepared = prepare_session(
            &self.dyn_rt,
            TransportKind::WebSocket,
            local,
            Some(peer),
            kind,
            &self.codec,
            &self.config,
            &self.new_session,
            |session| session.set_websocket(info),
        );
        match prepared {
            Ok(prepared) => {
                let response = match prepared.session().websocket() {
                    Some(ws) => {
                        ws.seal();
                        let extra = ws.take_response_headers();
                        handshake::switching_protocols(&accept_key, ws.protocol(), &extra)
                    }
                    None => {
                        handshake::switching_protocols(&accept_key, None, &http::HeaderMap::new())
                    }
                };
                match handshake::write_response(io, &response).await {
                    Ok(()) => Some((prepared, leftover)),
                    Err(err) => {
                        log::info!("dropping {peer}: writing the 101 failed: {err}");
                        None
                    }
                }
            }
            Err(err) => {
                let (status, reason, headers) = refusal_for(&err);
                log::info!("refusing the WebSocket upgrade of {peer} with {status}: {err}");
                let response = handshake::refusal(status, &reason, &headers);
                handshake::write_refusal(io, status, &response).await;
                None
            }
        }
    }

    /// Registers and runs a session the new-session callback accepted.
    #[cfg(feature = "ws")]
    fn launch<T>(&self, prepared: Prepared<C, N::Listener>, transport: Transport<R, T>)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        launch_session(
            &self.rt,
            prepared,
            transport,
            &self.sessions,
            self.pool.as_ref(),
            Some(&self.group),
            Session::clone,
        );
    }

    fn start<T>(&self, transport: Transport<R, T>, local: SocketAddr, peer: SocketAddr, kind: &str)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let started = start_session(
            &self.rt,
            &self.dyn_rt,
            transport,
            local,
            Some(peer),
            kind,
            &self.codec,
            &self.config,
            &self.new_session,
            &self.sessions,
            self.pool.as_ref(),
            Some(&self.group),
            Session::clone,
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
                async { Some(self.rt.accept(self.listener.get()).await) },
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
        // Dropping the loop releases the port, then tells `close`.
    }

    fn admit(&self, stream: R::Tcp, peer: SocketAddr) {
        if let Some(max) = self.max_sessions {
            let handshakes = self.shared.handshakes.load(Ordering::Acquire);
            if self.shared.sessions.len() + handshakes >= max {
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
        if let Err(err) = self.rt.set_tcp_options(&stream, &self.tcp_options) {
            // Only a connection already reset fails here.
            log::debug!("dropping {peer}: setting socket options: {err}");
            return;
        }
        if self.tls.is_none() && self.websocket.is_none() {
            self.starter
                .start(Transport::Stream(stream), local, peer, "tcp");
            return;
        }
        // Handshakes run in their own task: a slow or hostile peer must not hold up accepting.
        let (rt, starter) = (self.rt.clone(), self.starter.clone());
        // Without the `tls` or `ws` feature these are `Option<Infallible>` (`Copy`).
        #[allow(clippy::clone_on_copy)]
        let (tls, websocket) = (self.tls.clone(), self.websocket.clone());
        let deadline = self.rt.now() + self.handshake_timeout;
        let pending = PendingHandshake::new(self.shared.clone());
        let handshake = async move {
            let Some(tls) = tls else {
                return upgrade(
                    &rt, deadline, &starter, stream, websocket, local, peer, false,
                )
                .await;
            };
            #[cfg(not(feature = "tls"))]
            match tls {}
            #[cfg(feature = "tls")]
            match timeout_at(&rt, deadline, tls.acceptor().accept(stream)).await {
                Ok(Ok(stream)) => {
                    upgrade(
                        &rt, deadline, &starter, stream, websocket, local, peer, true,
                    )
                    .await
                }
                Ok(Err(source)) => {
                    log::info!("dropping {peer}: {}", Error::TlsHandshake { peer, source })
                }
                Err(_) => log::info!("dropping {peer}: the TLS handshake timed out"),
            }
        };
        self.rt.spawn(async move {
            // Closing the server ends handshakes under way.
            future::or(handshake, pending.shared.stop.wait()).await;
            drop(pending);
        });
    }
}

/// Counts one handshake under way in [`Shared::handshakes`] while it lives.
struct PendingHandshake<C: Codec> {
    shared: Arc<Shared<C>>,
}

impl<C: Codec> PendingHandshake<C> {
    fn new(shared: Arc<Shared<C>>) -> Self {
        shared.handshakes.fetch_add(1, Ordering::AcqRel);
        PendingHandshake { shared }
    }
}

impl<C: Codec> Drop for PendingHandshake<C> {
    fn drop(&mut self) {
        self.shared.handshakes.fetch_sub(1, Ordering::AcqRel);
        // `close` waits on the session set's changes.
        self.shared.sessions.notify();
    }
}

/// Starts a session on a connection whose TLS handshake (if any) is done: after the WebSocket
/// upgrade when serving WebSocket, at once otherwise.
#[allow(clippy::too_many_arguments)]
async fn upgrade<R, C, N, T>(
    rt: &R,
    deadline: std::time::Instant,
    starter: &Starter<R, C, N>,
    mut io: T,
    websocket: Option<Arc<HandshakeOptions>>,
    local: SocketAddr,
    peer: SocketAddr,
    secure: bool,
) where
    R: Runtime,
    C: Codec,
    N: NewSession<C>,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(options) = websocket else {
        return starter.start(Transport::Stream(io), local, peer, "tls");
    };
    #[cfg(not(feature = "ws"))]
    {
        let _ = (rt, deadline, secure, &mut io);
        match *options {}
    }
    #[cfg(feature = "ws")]
    {
        let kind = if secure { "wss" } else { "ws" };
        let request =
            match timeout_at(rt, deadline, handshake::read_request(&mut io, &options)).await {
                Ok(Ok(request)) => request,
                Ok(Err(err)) => return log::info!("dropping {peer}: {err}"),
                Err(_) => return log::info!("dropping {peer}: the WebSocket handshake timed out"),
            };
        let answer = starter.answer_upgrade(&mut io, request, &options, local, peer, kind);
        match timeout_at(rt, deadline, answer).await {
            Ok(Some((prepared, leftover))) => {
                let transport = Transport::WebSocket {
                    io,
                    role: Role::Server,
                    leftover,
                    info: None,
                };
                starter.launch(prepared, transport);
            }
            // Refused, and logged.
            Ok(None) => {}
            // The session the callback accepted is dropped unopened (no on_open, no on_close).
            Err(_) => log::info!("dropping {peer}: the WebSocket handshake timed out"),
        }
    }
}

/// The HTTP refusal for a new-session callback's error on a WebSocket upgrade: a
/// [`Reject`]'s status, reason and headers; 500 for a panic; 403 for any other error, with a
/// body that does not repeat it.
#[cfg(feature = "ws")]
fn refusal_for(err: &Error) -> (u16, String, http::HeaderMap) {
    match err {
        Error::Refused(reason) => match reason.downcast_ref::<Reject>() {
            Some(reject) => (
                reject.status_code(),
                reject.reason().to_owned(),
                reject.headers().clone(),
            ),
            None => (403, "forbidden".to_owned(), http::HeaderMap::new()),
        },
        _ => (
            500,
            "internal server error".to_owned(),
            http::HeaderMap::new(),
        ),
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
