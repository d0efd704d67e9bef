//! Clients: a pool of sessions to one server, refilled with backoff when one drops. The pool
//! is the same for TCP and UDP; only how one session is connected differs ([`Kind`]).

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[cfg(feature = "ws")]
use async_tungstenite::tungstenite::protocol::Role;
use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncWrite};

use bytes::Bytes;

use super::{start_session, SessionSet, Signal, Transport};
use crate::codec::Codec;
use crate::driver::datagram::CONNECT_PING;
use crate::error::BoxError;
use crate::error::{Error, Result};
use crate::listener::{EventListener, NewSession, SharedListener};
use crate::pool::{TaskPool, TaskPoolConfig};
use crate::runtime::TcpOptions;
use crate::runtime::{recv_from, send_to, timeout, DynExecutor, Runtime, UdpSocket};
use crate::session::{lock, CloseReason, Session, SessionConfig, SessionGroup};
#[cfg(feature = "tls")]
use crate::tls::TlsClientConfig;
#[cfg(feature = "ws")]
use crate::ws::handshake;

/// What a TLS client takes; nothing can be built without the `tls` feature.
#[cfg(not(feature = "tls"))]
type TlsClientConfig = std::convert::Infallible;

/// Options of a [`Client`]: [`TcpClientBuilder`] or [`UdpClientBuilder`]. Defaults are
/// getty's: one session, 300 ms reconnect interval, 50 consecutive failures before giving up,
/// 3 s connect timeout (and, for UDP, 1 s of waiting for an answer to the connect-ping).
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until it is used"]
pub struct ClientBuilder<K> {
    kind: K,
    addr: SocketAddr,
    pool_size: usize,
    reconnect_interval: Duration,
    max_reconnect_attempts: Option<u32>,
    connect_timeout: Duration,
    local_addr: Option<SocketAddr>,
    task_pool: Option<TaskPoolConfig>,
    session_config: SessionConfig,
}

/// Reconnect delays grow with the number of consecutive failures up to this many intervals.
const MAX_BACKOFF_STEPS: u32 = 10;

/// A random number in `[0, 1)` from the runtime's `random_u64` (its top 53 bits).
fn unit_f64(random: u64) -> f64 {
    (random >> 11) as f64 / (1u64 << 53) as f64
}

/// 16 random bytes from the runtime (a WebSocket client's handshake key).
#[cfg(feature = "ws")]
fn random_bytes<R: Runtime>(rt: &R) -> [u8; 16] {
    let mut bytes = [0; 16];
    bytes[..8].copy_from_slice(&rt.random_u64().to_le_bytes());
    bytes[8..].copy_from_slice(&rt.random_u64().to_le_bytes());
    bytes
}

/// Options of a TCP client.
pub type TcpClientBuilder = ClientBuilder<Tcp>;
/// Options of a connected-UDP client.
pub type UdpClientBuilder = ClientBuilder<Udp>;

/// Marks a [`ClientBuilder`] for TCP sessions (optionally over TLS, optionally WebSocket).
#[derive(Debug, Clone, Default)]
pub struct Tcp {
    tls: Option<TlsClientConfig>,
    websocket: Option<WsTarget>,
    options: TcpOptions,
    /// What a WebSocket upgrade request carries besides its target.
    #[cfg(feature = "ws")]
    ws_request: Box<WsRequest>,
}

/// The subprotocols and headers of a client's WebSocket upgrade requests.
#[cfg(feature = "ws")]
#[derive(Debug, Clone, Default)]
struct WsRequest {
    /// The subprotocols offered, most preferred first.
    protocols: Vec<String>,
    /// Extra headers, as given (checked when the client starts).
    headers: Vec<(String, String)>,
    /// `headers`, checked: filled when the client starts.
    header_map: http::HeaderMap,
}

/// Where a WebSocket client upgrades.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "ws"), allow(dead_code))]
struct WsTarget {
    /// The request target (path and query).
    path: String,
    /// The `Host` header; the server address when not given by a URL.
    host: Option<String>,
    /// The URL's host name, the default TLS server name for `wss://`.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    tls_name: Option<String>,
    /// `wss://`: a TLS configuration is required.
    secure: bool,
    origin: Option<String>,
}

/// Marks a [`ClientBuilder`] for connected-UDP sessions (getty's `NewUDPClient`).
#[derive(Debug, Clone)]
pub struct Udp {
    ping_wait: Duration,
}

/// The transports a [`ClientBuilder`] can start a pool of: [`Tcp`] and [`Udp`].
pub trait ClientKind: Clone + fmt::Debug + Send + Sync + 'static + sealed::Sealed {}

impl ClientKind for Tcp {}
impl ClientKind for Udp {}

/// Sealed: the set of transports is the library's.
mod sealed {
    use std::time::Duration;

    /// How a pool connects one session (what the builder's marker stands for).
    #[derive(Debug, Clone)]
    pub enum Kind {
        Tcp(super::Tcp),
        Udp { ping_wait: Duration },
    }

    pub trait Sealed {
        fn kind(&self) -> Kind;
    }

    impl Sealed for super::Tcp {
        fn kind(&self) -> Kind {
            Kind::Tcp(self.clone())
        }
    }

    impl Sealed for super::Udp {
        fn kind(&self) -> Kind {
            Kind::Udp {
                ping_wait: self.ping_wait,
            }
        }
    }
}
use sealed::Kind;

impl ClientBuilder<Tcp> {
    /// A TCP client of the server at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        ClientBuilder::with_kind(Tcp::default(), addr)
    }

    #[cfg(feature = "tls")]
    /// Connects over TLS (getty's `WithClientSslEnabled`): each connection completes a
    /// handshake, within the connect timeout, before it becomes a session. A failed handshake
    /// is a failed connect ([`Error::TlsHandshake`]), retried with backoff.
    pub fn tls(mut self, config: TlsClientConfig) -> Self {
        self.kind.tls = Some(config);
        self
    }

    /// Options applied to every connection (TCP_NODELAY on by default, keep-alive, buffer
    /// sizes).
    pub fn tcp_options(mut self, options: TcpOptions) -> Self {
        self.kind.options = options;
        self
    }

    #[cfg(feature = "ws")]
    /// Opens WebSocket sessions: each connection upgrades on `path` (with TLS set: `wss`)
    /// within the connect timeout. A refused upgrade is a failed connect
    /// ([`Error::WebSocketHandshake`]), retried with backoff.
    pub fn websocket(mut self, path: impl Into<String>) -> Self {
        self.kind.websocket = Some(WsTarget {
            path: path.into(),
            host: None,
            tls_name: None,
            secure: false,
            origin: None,
        });
        self
    }

    /// A WebSocket client of `url` (`ws://host[:port][/path][?query]` or `wss://...`; the host
    /// is resolved now, blocking, when it is a name). A `wss://` client needs
    /// [`tls`](Self::tls) too; the URL's host is then the default TLS server name. A URL with
    /// user information (`user@host`) or a fragment (`#...`) is refused.
    #[cfg(feature = "ws")]
    pub fn websocket_url(url: &str) -> Result<Self> {
        let bad = |why: &str| Error::invalid(format!("WebSocket URL {url:?}: {why}"));
        // `http::Uri` drops a fragment silently; a WebSocket URL must not have one (RFC 6455
        // §3).
        if url.contains('#') {
            return Err(bad("a WebSocket URL cannot have a fragment (#...)"));
        }
        let uri: http::Uri = url.parse().map_err(|err| {
            // `ws://` and `ws:///path` fail to parse with errors that do not say why.
            match url.split_once("://") {
                Some((_, rest)) if rest.is_empty() || rest.starts_with('/') => bad("no host"),
                _ => bad(&format!("not a valid URI: {err}")),
            }
        })?;
        let secure = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            _ => return Err(bad("the scheme must be ws:// or wss://")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad(
                "user information (user@host) is not allowed in a WebSocket URL",
            ));
        }
        // `[v6]` keeps its brackets in `host()`; the resolver and TLS want it bare.
        let host = authority.host();
        let host_bare = host.trim_start_matches('[').trim_end_matches(']');
        if host_bare.is_empty() {
            return Err(bad("no host"));
        }
        let default_port = if secure { 443 } else { 80 };
        let port = match authority.port_u16() {
            Some(port) => port,
            // Something after the host that is not a port: `host:`, `host:x`, `host:70000`.
            None if authority.as_str().len() > host.len() => return Err(bad("invalid port")),
            None => default_port,
        };
        // The request target: the path ("/" when empty) and the query as written.
        let target = match uri.query() {
            Some(query) => format!("{}?{query}", uri.path()),
            None => uri.path().to_string(),
        };
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host_bare, port))
            .map_err(|e| bad(&format!("cannot resolve the host: {e}")))?
            .next()
            .ok_or_else(|| bad("the host has no address"))?;
        let mut builder = Self::new(addr);
        builder.kind.websocket = Some(WsTarget {
            path: target,
            host: Some(authority.as_str().to_string()),
            tls_name: Some(host_bare.to_string()),
            secure,
            origin: None,
        });
        Ok(builder)
    }

    /// Sends this `Origin` header with WebSocket upgrades (none by default; needs
    /// [`websocket`](Self::websocket) or [`websocket_url`](Self::websocket_url) first).
    #[cfg(feature = "ws")]
    pub fn websocket_origin(mut self, origin: impl Into<String>) -> Self {
        if let Some(ws) = &mut self.kind.websocket {
            ws.origin = Some(origin.into());
        }
        self
    }

    /// Offers these WebSocket subprotocols (`Sec-WebSocket-Protocol`), most preferred first.
    /// The server's choice is [`WebSocketInfo::protocol`](crate::ws::WebSocketInfo::protocol)
    /// on the session ([`Session::websocket`](crate::Session::websocket)). As browsers do, a
    /// `101` naming a protocol that was not offered, or none when some were, fails the
    /// connect ([`Error::WebSocketHandshake`], retried with backoff). Names must be distinct
    /// HTTP tokens, checked when the client starts ([`Error::InvalidConfig`]).
    ///
    /// ```no_run
    /// use getty_core::prelude::*;
    ///
    /// struct Print;
    /// impl EventListener<RawBytes> for Print {
    ///     async fn on_message(&self, _: &Session<RawBytes>, _: Bytes) {}
    /// }
    ///
    /// # async fn demo<R: Runtime>(rt: R) -> getty_core::Result<()> {
    /// let client = TcpClientBuilder::websocket_url("ws://127.0.0.1:8080/chat")?
    ///     .websocket_protocols(["chat.v2", "chat.v1"])
    ///     .websocket_header("Authorization", "Bearer let-me-in")
    ///     .start(rt, RawBytes, Print)?;
    /// client.wait_for_sessions(1).await?;
    /// let session = client.session().expect("connected");
    /// let chosen = session.websocket().and_then(|ws| ws.protocol());
    /// println!("the server speaks {chosen:?}");
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "ws")]
    pub fn websocket_protocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.kind.ws_request.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a header to every WebSocket upgrade request (repeatable), such as
    /// `Authorization: Bearer ...` or a `Cookie`. Checked when the client starts: a malformed
    /// name or value, or one of the handshake's own headers (`Host`, `Upgrade`, `Connection`,
    /// `Sec-WebSocket-Key`, `Sec-WebSocket-Version`, `Sec-WebSocket-Extensions`; and
    /// `Sec-WebSocket-Protocol` and `Origin`, which have their own methods), is
    /// [`Error::InvalidHeader`].
    #[cfg(feature = "ws")]
    pub fn websocket_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.kind
            .ws_request
            .headers
            .push((name.into(), value.into()));
        self
    }
}

#[cfg(feature = "ws")]
impl Tcp {
    /// Checks the WebSocket settings, and builds the extra request headers.
    fn check_websocket(&mut self) -> Result<()> {
        let Some(ws) = &self.websocket else {
            if !self.ws_request.protocols.is_empty() || !self.ws_request.headers.is_empty() {
                return Err(Error::invalid(
                    "websocket_protocols and websocket_header need websocket(path) or \
                     websocket_url first",
                ));
            }
            return Ok(());
        };
        if !ws.path.starts_with('/') || ws.path.parse::<http::uri::PathAndQuery>().is_err() {
            return Err(Error::invalid(format!(
                "the WebSocket path must be a path starting with '/', with an optional query \
                 (got {:?})",
                ws.path
            )));
        }
        if let Some(origin) = &ws.origin {
            if http::HeaderValue::from_str(origin).is_err() {
                return Err(Error::invalid(format!(
                    "the WebSocket origin {origin:?} is not a valid header value"
                )));
            }
        }
        for (i, protocol) in self.ws_request.protocols.iter().enumerate() {
            if !handshake::is_token(protocol) {
                return Err(Error::invalid(format!(
                    "the WebSocket subprotocol {protocol:?} is not an HTTP token"
                )));
            }
            if self.ws_request.protocols[..i].contains(protocol) {
                return Err(Error::invalid(format!(
                    "the WebSocket subprotocol {protocol:?} is offered twice"
                )));
            }
        }
        let mut map = http::HeaderMap::new();
        for (name, value) in &self.ws_request.headers {
            let (name, value) = crate::ws::header_pair(name.as_str(), value.as_str())?;
            let own_method = match name.as_str() {
                "sec-websocket-protocol" => Some("websocket_protocols"),
                "origin" => Some("websocket_origin"),
                _ => None,
            };
            if let Some(method) = own_method {
                return Err(Error::InvalidHeader(
                    format!("{name} is set with {method}, not websocket_header").into(),
                ));
            }
            crate::ws::refuse_reserved(
                &name,
                &[
                    "host",
                    "upgrade",
                    "connection",
                    "sec-websocket-key",
                    "sec-websocket-version",
                    "sec-websocket-extensions",
                ],
                "websocket_header",
            )?;
            map.append(name, value);
        }
        self.ws_request.header_map = map;
        Ok(())
    }
}

impl ClientBuilder<Udp> {
    /// A connected-UDP client of the server at `addr`. Each session is one connected UDP
    /// socket, checked at connect as getty does: it sends the bytes `connect-ping` and waits
    /// for an answer or the connect-ping wait (see
    /// [`connect_ping_wait`](Self::connect_ping_wait)); an ICMP "port unreachable" in that
    /// time fails the attempt, which is retried with the client's backoff. The server side
    /// ignores connect-pings.
    pub fn new(addr: SocketAddr) -> Self {
        ClientBuilder::with_kind(
            Udp {
                ping_wait: Duration::from_secs(1),
            },
            addr,
        )
    }

    /// How long a connect waits after its connect-ping (default 1 s). Silence for that long
    /// counts as success (UDP servers need not answer); each connect of the pool takes this
    /// long unless the server answers.
    pub fn connect_ping_wait(mut self, wait: Duration) -> Self {
        self.kind.ping_wait = wait;
        self
    }
}

impl<K: ClientKind> ClientBuilder<K> {
    fn with_kind(kind: K, addr: SocketAddr) -> Self {
        ClientBuilder {
            kind,
            addr,
            pool_size: 1,
            reconnect_interval: Duration::from_millis(300),
            max_reconnect_attempts: Some(50),
            connect_timeout: Duration::from_secs(3),
            local_addr: None,
            task_pool: None,
            session_config: SessionConfig::default(),
        }
    }

    /// The settings every session starts with (validated when the client starts; the
    /// new-session callback can change one session's with
    /// [`Session::configure`](crate::Session::configure)).
    pub fn session_config(mut self, config: SessionConfig) -> Self {
        self.session_config = config;
        self
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

    /// Runs `on_message` and `on_cron` on a task pool (getty's `WithClientTaskPool`; see
    /// [`crate::pool`]) instead of on each session's task. Closing the client stops it.
    pub fn task_pool(mut self, config: TaskPoolConfig) -> Self {
        self.task_pool = Some(config);
        self
    }

    /// Starts the client on `rt`, every session sharing `listener`: one background worker
    /// connects the pool and refills it. Returns at once; [`Client::wait_for_sessions`] waits
    /// for connections.
    pub fn start<R, C, L>(self, rt: R, codec: C, listener: L) -> Result<Client<C>>
    where
        R: Runtime,
        C: Codec,
        L: EventListener<C>,
    {
        self.start_new_session(rt, codec, SharedListener(Arc::new(listener)))
    }

    /// Starts the client on `rt` as [`start`](Self::start) does, each session getting the
    /// listener `new_session` returns for it. `new_session` may also configure the session,
    /// or refuse it with an `Err` (the connection is dropped and retried with backoff).
    pub fn start_with<R, C, F, L>(self, rt: R, codec: C, new_session: F) -> Result<Client<C>>
    where
        R: Runtime,
        C: Codec,
        F: Fn(&Session<C>) -> Result<L, BoxError> + Send + Sync + 'static,
        L: EventListener<C>,
    {
        self.start_new_session(rt, codec, new_session)
    }

    fn start_new_session<R, C, N>(self, rt: R, codec: C, new_session: N) -> Result<Client<C>>
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
        if let Kind::Tcp(Tcp {
            tls: None,
            websocket: Some(WsTarget { secure: true, .. }),
            ..
        }) = self.kind.kind()
        {
            return Err(Error::invalid(
                "a wss:// client needs a TLS configuration (ClientBuilder::tls)",
            ));
        }
        if self.max_reconnect_attempts == Some(0) {
            return Err(Error::invalid(
                "max_reconnect_attempts must be positive (None retries forever)",
            ));
        }
        #[cfg_attr(not(feature = "ws"), allow(unused_mut))]
        let mut kind = self.kind.kind();
        #[cfg(feature = "ws")]
        if let Kind::Tcp(tcp) = &mut kind {
            tcp.check_websocket()?;
        }
        let config = self.session_config.resolve(&codec)?;
        config.check_transport(!matches!(
            kind,
            Kind::Udp { .. }
                | Kind::Tcp(Tcp {
                    websocket: Some(_),
                    ..
                })
        ))?;
        let pool = match self.task_pool {
            Some(config) => {
                config.validate()?;
                Some(TaskPool::start(&rt, config))
            }
            None => None,
        };
        let dyn_rt: Arc<dyn DynExecutor> = Arc::new(rt.clone());
        let shared = Arc::new(Shared {
            rt: dyn_rt.clone(),
            next_call: AtomicUsize::new(0),
            pool,
            addr: self.addr,
            sessions: Arc::new(SessionSet::default()),
            group: SessionGroup::new(),
            stop: Signal::default(),
            worker_done: Signal::default(),
            gave_up: AtomicBool::new(false),
            max_attempts: self.max_reconnect_attempts,
            subscribers: Mutex::new(Vec::new()),
            missed: Mutex::new(Vec::new()),
            last_error: Mutex::new(None),
        });
        let worker = Worker {
            dyn_rt,
            rt: rt.clone(),
            codec: Arc::new(codec),
            config,
            new_session,
            kind,
            options: ClientBuilder {
                kind: (),
                addr: self.addr,
                pool_size: self.pool_size,
                reconnect_interval: self.reconnect_interval,
                max_reconnect_attempts: self.max_reconnect_attempts,
                connect_timeout: self.connect_timeout,
                local_addr: self.local_addr,
                task_pool: self.task_pool,
                session_config: SessionConfig::default(),
            },
            shared: shared.clone(),
        };
        rt.spawn(worker.run());
        Ok(Client { shared })
    }
}

/// A pool of sessions to one server. [`close`](Self::close) stops reconnecting, closes the
/// sessions and waits for their tasks; dropping it does the same without waiting.
#[must_use = "dropping the client closes its sessions"]
pub struct Client<C: Codec> {
    shared: Arc<Shared<C>>,
}

/// A pool of TCP sessions (started by [`TcpClientBuilder`]).
pub type TcpClient<C> = Client<C>;
/// A pool of connected-UDP sessions (started by [`UdpClientBuilder`]).
pub type UdpClient<C> = Client<C>;

struct Shared<C: Codec> {
    rt: Arc<dyn DynExecutor>,
    /// Round-robin position of [`Client::call`] among the live sessions.
    next_call: AtomicUsize,
    pool: Option<Arc<TaskPool>>,
    addr: SocketAddr,
    sessions: Arc<SessionSet<Session<C>>>,
    /// The sessions `on_open` accepted, until they have closed.
    group: SessionGroup<C>,
    stop: Signal,
    worker_done: Signal,
    gave_up: AtomicBool,
    /// The consecutive failures after which the client gives up.
    max_attempts: Option<u32>,
    /// Subscribers to the client's events ([`Client::events`]), with their missed counts.
    subscribers: Mutex<Vec<async_channel::Sender<ClientEvent<C>>>>,
    missed: Mutex<Vec<Arc<AtomicU64>>>,
    last_error: Mutex<Option<Arc<Error>>>,
}

impl<C: Codec> Client<C> {
    /// The server address.
    pub fn server_addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The live sessions, oldest first.
    pub fn sessions(&self) -> Vec<Session<C>> {
        self.shared.sessions.live()
    }

    /// The oldest live session, if any: the one to write to when any will do.
    pub fn session(&self) -> Option<Session<C>> {
        self.shared
            .group
            .members()
            .iter()
            .find(|s| !s.is_closing())
            .cloned()
    }

    /// Sends `request` on one of the live sessions (taking turns) and waits for its reply,
    /// as [`Session::call`] does; see there for how requests and replies are correlated.
    ///
    /// With no live session (the client is connecting or reconnecting) the call waits for
    /// one, within `deadline`, which bounds the whole call. Errors: those of
    /// [`Session::call`] ([`Error::SessionClosed`] at once when the session carrying the
    /// request closes: the request is not sent again, as it may have been acted on);
    /// [`Error::CallTimeout`] (with session id 0 when no session came up in time);
    /// [`Error::GaveUp`] or [`Error::EndpointClosed`] when the client will have no session.
    ///
    /// ```no_run
    /// # use getty_core::prelude::*;
    /// # use std::time::Duration;
    /// # async fn f<C: Codec<Outbound = str>>(client: Client<C>) -> getty_core::Result<()> {
    /// let reply = client.call("ping", Duration::from_secs(2)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn call(&self, request: &C::Outbound, deadline: Duration) -> Result<C::Inbound> {
        let rt = &self.shared.rt;
        let deadline_at = rt.now().checked_add(deadline);
        let timed_out = |id| Error::CallTimeout {
            id,
            timeout: deadline,
        };
        let session = loop {
            if let Some(session) = self.next_session() {
                break session;
            }
            let came_up = self.wait_for_sessions(1);
            let waited = match deadline_at {
                Some(at) => {
                    future::or(async { Some(came_up.await) }, async {
                        rt.sleep_until(at).await;
                        None
                    })
                    .await
                }
                None => Some(came_up.await),
            };
            match waited {
                Some(Ok(())) => {}
                Some(Err(err)) => return Err(err),
                None => return Err(timed_out(0)),
            }
        };
        let left = deadline_at.map_or(deadline, |at| at.saturating_duration_since(rt.now()));
        match session.call(request, left).await {
            // The deadline the caller gave, not what was left of it.
            Err(Error::CallTimeout { id, .. }) => Err(timed_out(id)),
            outcome => outcome,
        }
    }

    /// The next live session in turn, if any.
    fn next_session(&self) -> Option<Session<C>> {
        let members = self.shared.group.members();
        let start = self.shared.next_call.fetch_add(1, Ordering::Relaxed);
        (0..members.len())
            .map(|i| &members[(start + i) % members.len()])
            .find(|s| !s.is_closing())
            .cloned()
    }

    /// Every session `on_open` accepted, until it has closed, as a [`SessionGroup`]: to
    /// broadcast to all of them, or to list them (`group().members()`) without allocating
    /// while the membership is stable.
    pub fn group(&self) -> &SessionGroup<C> {
        &self.shared.group
    }

    /// The number of live sessions.
    pub fn session_count(&self) -> usize {
        self.shared.sessions.live_len()
    }

    /// Whether the client stopped reconnecting after too many consecutive failures.
    pub fn gave_up(&self) -> bool {
        self.shared.gave_up.load(Ordering::Acquire)
    }

    /// [`Error::GaveUp`] with the last failure, once the client gave up.
    fn gave_up_error(&self) -> Option<Error> {
        self.gave_up().then(|| Error::GaveUp {
            addr: self.shared.addr,
            attempts: self.shared.max_attempts.unwrap_or_default(),
            last: self.last_connect_error(),
        })
    }

    /// The error of the most recent failed connect attempt, if any.
    pub fn last_connect_error(&self) -> Option<Arc<Error>> {
        lock(&self.shared.last_error).clone()
    }

    /// Waits until at least `n` sessions are live. Fails with [`Error::GaveUp`] if the
    /// client gives up first, [`Error::EndpointClosed`] if it is closed.
    pub async fn wait_for_sessions(&self, n: usize) -> Result<()> {
        self.wait_for(|live| live >= n).await
    }

    /// Waits until exactly `n` sessions are live; fails as
    /// [`wait_for_sessions`](Self::wait_for_sessions) does.
    pub async fn wait_for_session_count(&self, n: usize) -> Result<()> {
        self.wait_for(|live| live == n).await
    }

    async fn wait_for(&self, done: impl Fn(usize) -> bool) -> Result<()> {
        loop {
            let listener = self.shared.sessions.listen();
            if done(self.shared.sessions.live_len()) {
                return Ok(());
            }
            if let Some(gave_up) = self.gave_up_error() {
                return Err(gave_up);
            }
            if self.shared.stop.is_set() {
                return Err(Error::EndpointClosed);
            }
            future::or(listener, self.shared.worker_done.wait()).await;
        }
    }

    /// Stops reconnecting, closes every session (each flushes within its close-wait) and waits
    /// until all their tasks have ended.
    pub async fn close(&self) {
        self.shared.stop.set();
        self.shared.worker_done.wait().await;
        self.shared.sessions.close_all(CloseReason::normal());
        self.shared.sessions.wait_until(|s| s.len() == 0).await;
        if let Some(pool) = &self.shared.pool {
            pool.shutdown().await;
        }
        // Every session has closed and said so: the event streams end.
        lock(&self.shared.subscribers).clear();
    }

    /// A stream of this client's connection events from now on: connected sessions,
    /// disconnections, failed connects (with the retry delay) and giving up. It ends once the
    /// client is closed (or, after a last `GaveUp`, when it gives up; a stream asked for after
    /// that holds just the `GaveUp`). Each stream buffers up to 256 events; a subscriber that falls that far
    /// behind misses the newer ones (counted in [`ClientEvents::missed`]).
    ///
    /// ```no_run
    /// # use getty_core::prelude::*;
    /// # use getty_core::endpoint::ClientEvent;
    /// # async fn f(client: Client<Lines>) {
    /// let mut events = client.events();
    /// while let Some(event) = events.recv().await {
    ///     match event {
    ///         ClientEvent::Connected(session) => println!("up: {}", session.id()),
    ///         ClientEvent::ConnectFailed { error, retry_in, .. } => {
    ///             println!("connect failed ({error}); retrying in {retry_in:?}")
    ///         }
    ///         other => println!("{other:?}"),
    ///     }
    /// }
    /// # }
    /// ```
    pub fn events(&self) -> ClientEvents<C> {
        let (sender, receiver) = async_channel::bounded(EVENT_BUFFER);
        let missed = Arc::new(AtomicU64::new(0));
        {
            // Under the lock `emit` takes: no event falls between the check and the push.
            let mut subscribers = lock(&self.shared.subscribers);
            if self.gave_up() {
                // A late subscriber still learns how it ended.
                let last = self.last_connect_error();
                let err = last.unwrap_or_else(|| Arc::new(Error::EndpointClosed));
                let _ = sender.try_send(ClientEvent::GaveUp(err));
            } else if !self.shared.stop.is_set() {
                subscribers.push(sender);
                lock(&self.shared.missed).push(missed.clone());
            }
        }
        ClientEvents {
            receiver: Box::pin(receiver),
            missed,
        }
    }

    /// The task pool's workers still running (0 without a pool, and once closed).
    pub fn task_pool_workers(&self) -> usize {
        self.shared.pool.as_ref().map_or(0, |p| p.workers_alive())
    }
}

impl<C: Codec> Drop for Client<C> {
    fn drop(&mut self) {
        self.shared.stop.set();
        self.shared.sessions.close_all(CloseReason::normal());
        if let Some(pool) = &self.shared.pool {
            pool.stop();
        }
    }
}

impl<C: Codec> fmt::Debug for Client<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.shared.addr)
            .field("sessions", &self.shared.sessions.live_len())
            .field("gave_up", &self.gave_up())
            .finish()
    }
}

/// Events buffered per [`Client::events`] stream.
const EVENT_BUFFER: usize = 256;

/// A connection event of a [`Client`] (see [`Client::events`]).
#[non_exhaustive]
pub enum ClientEvent<C: Codec> {
    /// A connection is up and its session started (its `on_open` may still refuse it, which
    /// is then followed by `Disconnected`).
    Connected(Session<C>),
    /// The session `id` has closed.
    Disconnected {
        /// The session's id.
        id: u64,
    },
    /// A connect failed; the client retries after `retry_in`.
    ConnectFailed {
        /// Why.
        error: Arc<Error>,
        /// Consecutive failures so far.
        attempt: u32,
        /// The delay before the next attempt.
        retry_in: Duration,
    },
    /// The client stopped reconnecting after too many consecutive failures; the stream ends.
    GaveUp(Arc<Error>),
}

// By hand: a derive would require the codec to be `Debug`, which nothing printed needs.
impl<C: Codec> fmt::Debug for ClientEvent<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientEvent::Connected(session) => f.debug_tuple("Connected").field(session).finish(),
            ClientEvent::Disconnected { id } => {
                f.debug_struct("Disconnected").field("id", id).finish()
            }
            ClientEvent::ConnectFailed {
                error,
                attempt,
                retry_in,
            } => f
                .debug_struct("ConnectFailed")
                .field("error", error)
                .field("attempt", attempt)
                .field("retry_in", retry_in)
                .finish(),
            ClientEvent::GaveUp(error) => f.debug_tuple("GaveUp").field(error).finish(),
        }
    }
}

impl<C: Codec> Clone for ClientEvent<C> {
    fn clone(&self) -> Self {
        match self {
            ClientEvent::Connected(session) => ClientEvent::Connected(session.clone()),
            ClientEvent::Disconnected { id } => ClientEvent::Disconnected { id: *id },
            ClientEvent::ConnectFailed {
                error,
                attempt,
                retry_in,
            } => ClientEvent::ConnectFailed {
                error: error.clone(),
                attempt: *attempt,
                retry_in: *retry_in,
            },
            ClientEvent::GaveUp(error) => ClientEvent::GaveUp(error.clone()),
        }
    }
}

/// A stream of [`ClientEvent`]s (from [`Client::events`]).
#[derive(Debug)]
pub struct ClientEvents<C: Codec> {
    receiver: std::pin::Pin<Box<async_channel::Receiver<ClientEvent<C>>>>,
    missed: Arc<AtomicU64>,
}

impl<C: Codec> ClientEvents<C> {
    /// The next event; `None` once the client is closed (or gave up) and every event was
    /// received.
    pub async fn recv(&mut self) -> Option<ClientEvent<C>> {
        self.receiver.recv().await.ok()
    }

    /// Events this stream missed because it was 256 behind.
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }
}

impl<C: Codec> futures_lite::Stream for ClientEvents<C> {
    type Item = ClientEvent<C>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<ClientEvent<C>>> {
        self.receiver.as_mut().poll_next(cx)
    }
}

impl<C: Codec> Shared<C> {
    /// Hands `event` to every subscriber that has room; ends the streams of those that left.
    fn emit(&self, event: ClientEvent<C>) {
        let mut subscribers = lock(&self.subscribers);
        let mut missed = lock(&self.missed);
        let mut i = 0;
        while i < subscribers.len() {
            match subscribers[i].try_send(event.clone()) {
                Ok(()) => i += 1,
                Err(async_channel::TrySendError::Full(_)) => {
                    missed[i].fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                Err(async_channel::TrySendError::Closed(_)) => {
                    subscribers.swap_remove(i);
                    missed.swap_remove(i);
                }
            }
        }
        if matches!(event, ClientEvent::GaveUp(_)) {
            subscribers.clear();
            missed.clear();
        }
    }
}

/// Tells `close` and `wait_for_sessions` callers (they then see `gave_up` or the stop) that
/// the worker ended: when it returns, or when its executor drops it unfinished (a runtime
/// shutting down, a simulated host crashing), so nobody waits for a worker that is gone.
struct WorkerDone<C: Codec>(Arc<Shared<C>>);

impl<C: Codec> Drop for WorkerDone<C> {
    fn drop(&mut self) {
        self.0.worker_done.set();
    }
}

/// The one reconnect worker of a client: however many sessions drop at once, connects are
/// made one at a time, so a restarting server sees no storm.
struct Worker<R: Runtime, C: Codec, N> {
    rt: R,
    dyn_rt: Arc<dyn DynExecutor>,
    codec: Arc<C>,
    config: SessionConfig,
    new_session: N,
    kind: Kind,
    options: ClientBuilder<()>,
    shared: Arc<Shared<C>>,
}

impl<R: Runtime, C: Codec, N: NewSession<C>> Worker<R, C, N> {
    async fn run(self) {
        // Wakes `close` and `wait_for_sessions` callers however the worker ends.
        let _done = WorkerDone(self.shared.clone());
        let mut failures: u32 = 0;
        // The newest session and when it connected: one that dies young counts as a failure.
        let mut newest: Option<(Session<C>, Instant)> = None;
        let sessions = &self.shared.sessions;
        while !self.shared.stop.is_set() {
            if sessions.len() >= self.options.pool_size {
                let listener = sessions.listen();
                if sessions.len() >= self.options.pool_size {
                    future::or(listener, self.shared.stop.wait()).await;
                }
                continue;
            }
            // A server that accepts and then drops every connection (a refused TLS client
            // certificate, an on_open that says no) gets the same backoff as one that refuses
            // connects: a session closed within the reconnect interval was no success.
            if let Some((session, at)) = newest.take() {
                if session.is_closing()
                    && self.rt.now().saturating_duration_since(at) < self.options.reconnect_interval
                {
                    failures = failures.saturating_add(1);
                    let delay = self.backoff(failures);
                    log::info!(
                        "session {} to {} closed right after connecting; reconnecting in {delay:?}",
                        session.id(),
                        self.options.addr
                    );
                    let pause = self.rt.timer(self.rt.now() + delay);
                    future::or(pause, self.shared.stop.wait()).await;
                    continue;
                }
                failures = 0;
            }
            match self.connect_one().await {
                Ok(session) => {
                    log::debug!("client session {} connected", session.id());
                    newest = Some((session.clone(), self.rt.now()));
                    let shared = Arc::downgrade(&self.shared);
                    let watched = session.add_close_callback("getty.client.events", move |s| {
                        if let Some(shared) = shared.upgrade() {
                            shared.emit(ClientEvent::Disconnected { id: s.id() });
                        }
                    });
                    self.shared.emit(ClientEvent::Connected(session.clone()));
                    if watched.is_err() {
                        // It closed already: its close callbacks have run without ours.
                        self.shared
                            .emit(ClientEvent::Disconnected { id: session.id() });
                    }
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
                            self.shared.emit(ClientEvent::GaveUp(err));
                            break;
                        }
                    }
                    let delay = self.backoff(failures);
                    self.shared.emit(ClientEvent::ConnectFailed {
                        error: err.clone(),
                        attempt: failures,
                        retry_in: delay,
                    });
                    log::info!(
                        "connect to {} failed ({err}); retry {failures} in {delay:?}",
                        self.options.addr
                    );
                    let pause = self.rt.timer(self.rt.now() + delay);
                    future::or(pause, self.shared.stop.wait()).await;
                }
            }
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        let base = self.options.reconnect_interval * failures.min(MAX_BACKOFF_STEPS);
        base + base.mul_f64(0.2 * unit_f64(self.rt.random_u64()))
    }

    async fn connect_one(&self) -> Result<Session<C>> {
        match &self.kind {
            Kind::Tcp(tcp) => self.connect_stream(tcp).await,
            Kind::Udp { ping_wait } => self.connect_udp(*ping_wait).await,
        }
    }

    /// Connects one TCP session, with TLS and the WebSocket upgrade when configured.
    async fn connect_stream(&self, tcp: &Tcp) -> Result<Session<C>> {
        let (stream, local, peer) = self.connect_tcp().await?;
        self.rt
            .set_tcp_options(&stream, &tcp.options)
            .map_err(|source| Error::Connect { addr: peer, source })?;
        let Some(tls) = &tcp.tls else {
            return self.upgrade(stream, tcp, local, peer).await;
        };
        #[cfg(not(feature = "tls"))]
        match *tls {}
        #[cfg(feature = "tls")]
        let name = match tcp.websocket.as_ref().and_then(|ws| ws.tls_name.as_deref()) {
            Some(url_host) => tls.server_name_or(url_host, peer),
            None => tls.server_name_for(peer),
        };
        #[cfg(feature = "tls")]
        let handshake = tls.connector().connect(name, stream);
        #[cfg(feature = "tls")]
        let stream = timeout(&self.rt, self.options.connect_timeout, handshake)
            .await
            .map_err(|_| Error::ConnectTimeout {
                addr: peer,
                timeout: self.options.connect_timeout,
            })?
            .map_err(|source| Error::TlsHandshake { peer, source })?;
        #[cfg(feature = "tls")]
        self.upgrade(stream, tcp, local, peer).await
    }

    /// Starts the session on a connected (and, with TLS, secured) stream: after the WebSocket
    /// upgrade when configured.
    async fn upgrade<T>(
        &self,
        mut io: T,
        tcp: &Tcp,
        local: SocketAddr,
        peer: SocketAddr,
    ) -> Result<Session<C>>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let secure = tcp.tls.is_some();
        let Some(ws) = &tcp.websocket else {
            let kind = if secure { "tls-client" } else { "tcp-client" };
            return self.start(Transport::Stream(io), local, peer, kind);
        };
        #[cfg(not(feature = "ws"))]
        {
            // `websocket` is only ever set through the builder's WebSocket methods.
            let _ = (ws, &mut io);
            Err(Error::invalid("WebSocket needs getty's `ws` feature"))
        }
        #[cfg(feature = "ws")]
        {
            let host = ws.host.clone().unwrap_or_else(|| peer.to_string());
            let request = handshake::ClientRequest {
                host: &host,
                path_and_query: &ws.path,
                origin: ws.origin.as_deref(),
                protocols: &tcp.ws_request.protocols,
                headers: &tcp.ws_request.header_map,
                max_head_len: MAX_RESPONSE_HEAD,
                key: random_bytes(&self.rt),
            };
            let handshake = handshake::connect(&mut io, request);
            let connected = timeout(&self.rt, self.options.connect_timeout, handshake)
                .await
                .map_err(|_| Error::ConnectTimeout {
                    addr: peer,
                    timeout: self.options.connect_timeout,
                })?
                .map_err(|err| Error::WebSocketHandshake {
                    peer,
                    source: Box::new(err),
                })?;
            let info = crate::ws::WebSocketInfo::client(
                ws.path.clone(),
                connected.headers,
                tcp.ws_request.protocols.clone(),
                connected.protocol,
            );
            let transport = Transport::WebSocket {
                io,
                role: Role::Client,
                leftover: connected.leftover,
                info: Some(Box::new(info)),
            };
            let kind = if secure { "wss-client" } else { "ws-client" };
            self.start(transport, local, peer, kind)
        }
    }

    /// Connects one TCP stream: `(stream, local, peer)`.
    async fn connect_tcp(&self) -> Result<(R::Tcp, SocketAddr, SocketAddr)> {
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
        Ok((stream, local, peer))
    }

    /// Connects a UDP socket and checks it with getty's connect-ping: an answer or silence
    /// within `ping_wait` is success, an ICMP "port unreachable" (reported as
    /// `ConnectionRefused` on a connected socket) is failure.
    async fn connect_udp(&self, ping_wait: Duration) -> Result<Session<C>> {
        let addr = self.options.addr;
        let fail = |source| Error::Connect { addr, source };
        let socket = self
            .rt
            .connect_udp(addr, self.options.local_addr)
            .map_err(fail)?;
        let local = socket.local_addr().map_err(fail)?;
        if local == addr {
            return Err(Error::SelfConnect(addr));
        }
        let connect_timeout = self.options.connect_timeout;
        timeout(
            &self.rt,
            connect_timeout,
            send_to(&socket, CONNECT_PING, addr),
        )
        .await
        .map_err(|_| Error::ConnectTimeout {
            addr,
            timeout: connect_timeout,
        })?
        .map_err(fail)?;
        // Whatever answers is kept and handed to the session: nothing received is lost.
        let mut buf = vec![0; MAX_DATAGRAM_RECV];
        let answer = match timeout(&self.rt, ping_wait, recv_from(&socket, &mut buf)).await {
            Ok(answer) => Some(answer),
            // Silence. Some reactors (tokio's) do not wake a reader for a socket error alone,
            // so look once more: a refusal that arrived meanwhile is reported now.
            Err(_silence) => future::poll_once(recv_from(&socket, &mut buf)).await,
        };
        let first = match answer {
            None => None,
            Some(Ok((n, from))) => Some((Bytes::copy_from_slice(&buf[..n]), from)),
            Some(Err(source)) => return Err(fail(source)),
        };
        self.start::<R::Tcp>(
            Transport::Datagram { socket, first },
            local,
            addr,
            "udp-client",
        )
    }

    fn start<T>(
        &self,
        transport: Transport<R, T>,
        local: SocketAddr,
        peer: SocketAddr,
        kind: &str,
    ) -> Result<Session<C>>
    where
        T: futures_lite::io::AsyncRead + futures_lite::io::AsyncWrite + Unpin + Send + 'static,
    {
        start_session(
            &self.rt,
            &self.dyn_rt,
            transport,
            local,
            Some(peer),
            kind,
            &self.codec,
            &self.config,
            &self.new_session,
            &self.shared.sessions,
            self.shared.pool.as_ref(),
            Some(&self.shared.group),
            Session::clone,
        )
    }
}

#[cfg(feature = "ws")]
/// The longest WebSocket upgrade response accepted.
const MAX_RESPONSE_HEAD: usize = 8 * 1024;

/// The connect-ping's answer is read whole, whatever its size.
const MAX_DATAGRAM_RECV: usize = 64 * 1024;

#[cfg(all(test, feature = "ws"))]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    /// The server address and the WebSocket target of `websocket_url(url)`.
    fn parse(url: &str) -> (SocketAddr, WsTarget) {
        let builder = ClientBuilder::websocket_url(url)
            .unwrap_or_else(|err| panic!("{url:?} was refused: {err}"));
        let target = builder.kind.websocket.expect("a WebSocket target");
        (builder.addr, target)
    }

    /// The message `websocket_url(url)` is refused with.
    fn refusal(url: &str) -> String {
        match ClientBuilder::websocket_url(url) {
            Err(Error::InvalidConfig(msg)) => msg,
            Err(other) => panic!("{url:?}: not an invalid-configuration error: {other}"),
            Ok(_) => panic!("{url:?} was accepted"),
        }
    }

    #[test]
    fn websocket_url_takes_host_port_path_and_query() {
        let (addr, ws) = parse("ws://127.0.0.1:9000/chat/room?id=7&x=y");
        assert_eq!(addr, SocketAddr::from((Ipv4Addr::LOCALHOST, 9000)));
        assert_eq!(ws.path, "/chat/room?id=7&x=y");
        assert_eq!(ws.host.as_deref(), Some("127.0.0.1:9000"));
        assert_eq!(ws.tls_name.as_deref(), Some("127.0.0.1"));
        assert!(!ws.secure);
        assert!(ws.origin.is_none());
    }

    #[test]
    fn websocket_url_defaults_the_port_and_the_path() {
        let (addr, ws) = parse("ws://127.0.0.1");
        assert_eq!(addr, SocketAddr::from((Ipv4Addr::LOCALHOST, 80)));
        assert_eq!(
            (ws.path.as_str(), ws.host.as_deref()),
            ("/", Some("127.0.0.1"))
        );
        let (addr, ws) = parse("wss://127.0.0.1/");
        assert_eq!(addr, SocketAddr::from((Ipv4Addr::LOCALHOST, 443)));
        assert_eq!(ws.path, "/");
        assert!(ws.secure);
        // A query without a path still gets "/" before it.
        let (_, ws) = parse("ws://127.0.0.1:8080?token=abc");
        assert_eq!(ws.path, "/?token=abc");
    }

    #[test]
    fn websocket_url_takes_ipv6_hosts() {
        let (addr, ws) = parse("wss://[::1]:8443/ws");
        assert_eq!(addr, SocketAddr::from((Ipv6Addr::LOCALHOST, 8443)));
        assert_eq!(ws.path, "/ws");
        // The Host header keeps the brackets, the TLS server name does not.
        assert_eq!(ws.host.as_deref(), Some("[::1]:8443"));
        assert_eq!(ws.tls_name.as_deref(), Some("::1"));
        assert!(ws.secure);
        let (addr, ws) = parse("ws://[::1]");
        assert_eq!(addr, SocketAddr::from((Ipv6Addr::LOCALHOST, 80)));
        assert_eq!(ws.host.as_deref(), Some("[::1]"));
    }

    #[test]
    fn websocket_url_resolves_names() {
        let (addr, ws) = parse("ws://localhost:9001/echo");
        assert!(addr.ip().is_loopback(), "{addr}");
        assert_eq!(addr.port(), 9001);
        assert_eq!(ws.host.as_deref(), Some("localhost:9001"));
        assert_eq!(ws.tls_name.as_deref(), Some("localhost"));
        assert_eq!(ws.path, "/echo");
    }

    #[test]
    fn websocket_url_refuses_other_schemes() {
        for url in [
            "http://127.0.0.1/",
            "https://127.0.0.1/",
            "127.0.0.1:80",
            "/chat",
        ] {
            assert!(
                refusal(url).contains("the scheme must be ws:// or wss://"),
                "{url}"
            );
        }
    }

    #[test]
    fn websocket_url_refuses_a_missing_host() {
        for url in ["ws://", "ws:///chat", "wss://:443/", "ws://[]:80/"] {
            assert!(refusal(url).contains("no host"), "{url}: {}", refusal(url));
        }
    }

    #[test]
    fn websocket_url_refuses_bad_ports() {
        for url in [
            "ws://127.0.0.1:/",
            "ws://127.0.0.1:http/",
            "ws://127.0.0.1:65536/",
            "ws://[::1]:99999",
        ] {
            assert!(
                refusal(url).contains("invalid port"),
                "{url}: {}",
                refusal(url)
            );
        }
    }

    #[test]
    fn websocket_url_refuses_userinfo_and_fragments() {
        for url in ["ws://user@127.0.0.1/", "wss://user:secret@127.0.0.1:8443/"] {
            assert!(
                refusal(url).contains("user information"),
                "{url}: {}",
                refusal(url)
            );
        }
        for url in ["ws://127.0.0.1/chat#top", "ws://127.0.0.1#"] {
            assert!(refusal(url).contains("fragment"), "{url}: {}", refusal(url));
        }
    }

    /// (An unresolvable name is left untested: proving it fails needs a DNS lookup.)
    #[test]
    fn websocket_url_reports_malformed_urls() {
        let msg = refusal("ws://127.0.0.1/a path");
        assert!(msg.contains("not a valid URI"), "{msg}");
        // The message names the URL.
        assert!(msg.contains("\"ws://127.0.0.1/a path\""), "{msg}");
    }
}

#[cfg(test)]
mod jitter_tests {
    use super::unit_f64;

    #[test]
    fn jitter_fraction_is_in_zero_to_one() {
        assert_eq!(unit_f64(0), 0.0);
        assert!(unit_f64(u64::MAX) < 1.0);
        assert!((unit_f64(1 << 63) - 0.5).abs() < 1e-12);
    }
}
