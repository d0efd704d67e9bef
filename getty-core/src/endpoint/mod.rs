//! Endpoints: servers that accept sessions and clients that keep a pool of them.
//!
//! - [`TcpServer`] (from [`TcpServerBuilder`]) accepts TCP connections, optionally over TLS
//!   and/or WebSocket, and turns each into a session.
//! - [`Client`] (from [`TcpClientBuilder`] or [`UdpClientBuilder`]) keeps a pool of sessions
//!   to one server and reconnects with backoff.
//! - [`UdpEndpoint`] (from [`UdpEndpointBuilder`]) is one session on a bound UDP socket,
//!   serving every peer that sends to it.
//!
//! Every builder takes a [`SessionConfig`] (validated when the endpoint starts) and a listener:
//! `serve` / `start` / `bind` share one value between all sessions, `serve_with` /
//! `start_with` / `bind_with` call a factory per session, which may also configure the session
//! or refuse it.
//!
//! ```no_run
//! use std::time::Duration;
//! use getty_core::prelude::*;
//! # fn demo<R: Runtime>(rt: R) -> getty_core::Result<()> {
//! #[derive(Default)]
//! struct Conn {
//!     lines: std::sync::atomic::AtomicUsize,
//! }
//!
//! impl EventListener<Lines> for Conn {
//!     async fn on_message(&self, session: &Session<Lines>, line: String) {
//!         let n = self.lines.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
//!         let _ = session.send(&format!("{n}: {line}")).await;
//!     }
//! }
//!
//! let server = TcpServer::builder()
//!     .addr("127.0.0.1:0".parse().unwrap())
//!     .max_sessions(10_000)
//!     .session_config(SessionConfig::new().idle_timeout(Duration::from_secs(60)))
//!     .serve_with(rt, Lines::new(), |_session| Ok(Conn::default()))?;
//! println!("listening on {}", server.local_addr());
//! # Ok(()) }
//! ```
//!
//! # Closing
//! `close()` on an endpoint stops accepting or reconnecting, closes every session (each
//! flushes its queue within its close-wait) and waits until all their tasks have ended;
//! dropping an endpoint does the same without waiting.
//!
//! # Hostile peers
//! A misbehaving peer closes only its own session, with an error for `on_error`: a frame longer
//! than the maximum message length (refused from its header), a codec error, a reset in the
//! middle of a frame, a WebSocket protocol violation, a corrupt compressed stream, a panicking
//! handler. The read timeout closes a silent peer; the idle timeout closes a peer that sends no
//! whole package, which also catches one trickling a frame a byte at a time (slowloris) and one
//! that vanished without a FIN. A handler that blocks stalls only its own session. TLS and
//! WebSocket handshakes run in their own tasks, bounded by `handshake_timeout`, and count
//! toward `max_sessions`, so slow handshakes cannot pile up; `close()` ends those still under
//! way. Accept errors such as EMFILE back off (5 ms doubling to 1 s) instead of spinning, and
//! accepting resumes when descriptors free up.
//!
//! # UDP
//! A [`UdpEndpoint`] is one session for the socket. Each datagram is decoded on its own and
//! every frame in it reaches `on_datagram(session, pkg, peer)`; replies name their peer
//! ([`Session::to`](crate::Session::to)), and a write without one is
//! [`Error::Unsupported`]. A datagram longer than the maximum message
//! length, or one the codec refuses in any part, is dropped whole with a logged warning and
//! counted in `Stats::pkgs_dropped`; the endpoint keeps serving. The receive buffer is the
//! maximum message length plus one byte (at most 64 KiB), so nothing is silently truncated. A
//! package too large for one datagram is `Error::DatagramTooLarge` when written; empty packages
//! send nothing. On an endpoint a failed send is logged and counted (`Stats::send_failures`)
//! and the endpoint goes on; on a connected client session it closes the session, and the pool
//! reconnects.
//!
//! A UDP client connect sends `connect-ping` and waits `connect_ping_wait` (default 1 s, as
//! getty): an ICMP "port unreachable" fails the attempt (retried with backoff); silence or any
//! answer is success (an answer is delivered as the session's first datagram). Sessions never
//! deliver a `connect-ping` datagram, and do not count it in their statistics.
//!
//! # TLS (feature `tls`)
//! `TcpServerBuilder::tls` and `TcpClientBuilder::tls` use rustls with the *ring* provider.
//! Configurations come from PEM files or bytes (`TlsServerConfig::builder()`,
//! `TlsClientConfig::builder()`); every mistake in them (a missing file, PEM without a
//! certificate, a key that does not match) is an `Error::TlsConfig` from `build()`.
//! Verification is on: a client checks the server's chain against its root CAs and the server
//! name (by default the IP connected to; `server_name` or a `wss://` URL's host otherwise), and
//! a server with `client_ca_*` requires client certificates. Turning a client's checks off
//! takes `dangerous_accept_any_server_certificate()`. The server runs each handshake in its own
//! task, bounded by `handshake_timeout` (default 10 s); a failed one is logged and drops only
//! that connection. A client's failed handshake is `Error::TlsHandshake`, retried with backoff.
//!
//! # WebSocket (feature `ws`)
//! `TcpServerBuilder::websocket(path)`, `TcpClientBuilder::websocket(path)` or
//! `TcpClientBuilder::websocket_url("ws://host:port/path")` (add `tls` for `wss`): each binary
//! or text message is one package for the codec ([`RawBytes`](crate::codec::RawBytes) hands out
//! the bytes as they are); writes send binary messages, [`Frame::text`](crate::Frame::text) text
//! ones. The maximum message length caps messages (a longer one: `Error::FrameTooLarge`, that
//! session closes). Every cron tick sends a ping; pings and pongs from the peer keep the read
//! timeout alive but are not activity: `last_active` and the idle timeout count data messages
//! only, so a silent user is kicked even while heartbeats flow; pings are answered. A close frame from the peer ends the session
//! without `on_error`. The server answers what it does not upgrade: another path 404, a method
//! other than GET 405, no valid upgrade 400, another version 426, an origin outside
//! `websocket_allowed_origins` 403 (every origin is accepted by default, as in getty). No
//! extension is negotiated: permessage-deflate is not supported, and compression on a
//! WebSocket session is refused.
//!
//! A valid upgrade request reaches the server's new-session callback *before* it is answered:
//! `Session::websocket` shows its path, query, headers (`Cookie`,
//! `Authorization`, ...) and subprotocols. The callback may choose the subprotocol, add
//! headers to the `101` (a `Set-Cookie`), or refuse with an HTTP status and headers by
//! returning a `ws::Reject` (`401` with `WWW-Authenticate`, say); any
//! other error of its is a `403` whose body does not repeat it. A refused upgrade opens no
//! session: no `on_open`, no `on_close`, the session count unchanged. `on_open` runs once the
//! `101` is written; `handshake_timeout` bounds everything before it. Subprotocols:
//! `TcpServerBuilder::websocket_protocols` lists the server's in its order of preference (the
//! first one the client offered is chosen; none in common, none named, and the session still
//! opens); `TcpClientBuilder::websocket_protocols` offers some, and a client fails a `101`
//! naming one it did not offer, or none when it offered some, as browsers do. A client adds
//! request headers with `TcpClientBuilder::websocket_header` (`Authorization: Bearer ...`);
//! its session's `ws::WebSocketInfo` holds the `101`'s headers and
//! the server's choice.
//!
//! Text and binary messages: a codec is told which kind each inbound message is
//! ([`Codec::decode_message`]) and says which kind each package
//! goes out as ([`Codec::outbound_kind`]);
//! `codec::WsMessages` hands out `Message::Text` and
//! `Message::Binary` and sends each as its kind. A text message that is not UTF-8 closes its
//! session with close code 1007 and an `Error::WebSocket` for `on_error`.
//!
//! # Task pool
//! Handlers run on the session's task by default. With `task_pool(TaskPoolConfig)` on a server
//! or client, `on_message` and `on_cron` run on a bounded set of worker tasks instead, and the
//! session goes on reading meanwhile. Ordered mode (the default) keeps each session's handlers
//! one at a time and in order, on whichever worker is free, so a slow handler holds up only
//! its own session; unordered mode shares one queue (no order, a slow package delays nothing).
//! Queues are bounded: when one is full, the session's reading waits. Handlers still running
//! when a session closes finish (within the close-wait) before `on_close`; a panic in one
//! closes its session with `Error::HandlerPanic`. Closing the endpoint stops the workers
//! (`task_pool_workers()` then reports 0).
//!
//! # Socket options
//! `tcp_options(TcpOptions)` on servers and clients (TCP_NODELAY on by default, keep-alive
//! with its idle time, send and receive buffer sizes) and `reuse_port(true)` on servers, so
//! several servers can share a port.
//
// What servers and clients share lives here: the set of live sessions (to close them all and
// wait for their tasks), a one-shot signal, and how a connected stream becomes a running
// session (new-session callback, then a driver task that always deregisters itself).

mod client;
mod server;
mod udp;

pub use client::{
    Client, ClientBuilder, ClientEvent, ClientEvents, ClientKind, Tcp, TcpClient, TcpClientBuilder,
    Udp, UdpClient, UdpClientBuilder,
};
pub use server::{TcpServer, TcpServerBuilder};
pub use udp::{UdpEndpoint, UdpEndpointBuilder};

use std::collections::BTreeMap;

#[cfg(feature = "ws")]
use async_tungstenite::tungstenite::protocol::Role;
use bytes::Bytes;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use event_listener::Event;
use futures_lite::io::{AsyncRead, AsyncWrite};

use crate::codec::Codec;
#[cfg(feature = "compression")]
use crate::compress::Compressed;
#[cfg(feature = "ws")]
use crate::driver::message;
use crate::driver::{datagram, stream};
use crate::error::Error;
use crate::listener::NewSession;
use crate::panic::panic_message;
use crate::pool::TaskPool;
use crate::runtime::{DynExecutor, Runtime};
use crate::session::{
    lock, CloseReason, Session, SessionConfig, SessionControl, SessionGroup, TransportKind,
};

/// A flag that is set once and can be awaited.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    set: AtomicBool,
    event: Event,
}

impl Signal {
    pub(crate) fn set(&self) {
        self.set.store(true, Ordering::Release);
        self.event.notify(usize::MAX);
    }

    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    pub(crate) async fn wait(&self) {
        while !self.is_set() {
            let listener = self.event.listen();
            if self.is_set() {
                return;
            }
            listener.await;
        }
    }
}

/// The sessions of an endpoint whose tasks run. Every change notifies `changed`.
pub(crate) struct SessionSet<S> {
    inner: Mutex<SetInner<S>>,
    changed: Event,
}

struct SetInner<S> {
    map: BTreeMap<u64, S>,
    /// Set by `close_all`: a session inserted afterwards is closed at once (with this
    /// reason), so none started concurrently with an endpoint's close outlives it.
    closed: Option<CloseReason>,
}

impl<S> Default for SessionSet<S> {
    fn default() -> Self {
        SessionSet {
            inner: Mutex::new(SetInner {
                map: BTreeMap::new(),
                closed: None,
            }),
            changed: Event::new(),
        }
    }
}

impl<S: SessionControl + Clone> SessionSet<S> {
    pub(crate) fn insert(&self, session: S) {
        let mut inner = lock(&self.inner);
        if let Some(reason) = &inner.closed {
            session.close_with(reason.clone());
        }
        inner.map.insert(session.id(), session);
        drop(inner);
        self.changed.notify(usize::MAX);
    }

    pub(crate) fn remove(&self, id: u64) {
        lock(&self.inner).map.remove(&id);
        self.changed.notify(usize::MAX);
    }

    /// Every session whose task runs, including those still in `on_open` and those closing.
    pub(crate) fn len(&self) -> usize {
        lock(&self.inner).map.len()
    }

    /// Sessions that `on_open` accepted and that are not closing.
    pub(crate) fn live_len(&self) -> usize {
        lock(&self.inner)
            .map
            .values()
            .filter(|s| s.is_live())
            .count()
    }

    /// The live sessions, oldest first.
    pub(crate) fn live(&self) -> Vec<S> {
        let mut sessions: Vec<S> = lock(&self.inner)
            .map
            .values()
            .filter(|s| s.is_live())
            .cloned()
            .collect();
        sessions.sort_by_key(|s| s.id());
        sessions
    }

    /// Wakes everything waiting on the set (a session's state changed).
    pub(crate) fn notify(&self) {
        self.changed.notify(usize::MAX);
    }

    /// Closes every session, and every session inserted from now on, telling the peers
    /// `reason` where the transport can.
    pub(crate) fn close_all(&self, reason: CloseReason) {
        let mut inner = lock(&self.inner);
        inner.closed = Some(reason.clone());
        let sessions: Vec<S> = inner.map.values().cloned().collect();
        drop(inner);
        for session in sessions {
            session.close_with(reason.clone());
        }
    }

    /// Waits until `done()` holds, re-checking after every change of the set.
    pub(crate) async fn wait_until(&self, mut done: impl FnMut(&Self) -> bool) {
        loop {
            if done(self) {
                return;
            }
            let listener = self.changed.listen();
            if done(self) {
                return;
            }
            listener.await;
        }
    }

    /// A listener for the next change (register before checking a condition).
    pub(crate) fn listen(&self) -> event_listener::EventListener {
        self.changed.listen()
    }
}

/// The socket a new session runs on.
pub(crate) enum Transport<R: Runtime, T> {
    /// A connected byte stream.
    Stream(T),
    /// A byte stream that completed a WebSocket opening handshake as `role`, with the bytes
    /// read after the handshake, and the handshake for the session (`None` when it was
    /// attached already).
    #[cfg(feature = "ws")]
    WebSocket {
        io: T,
        role: Role,
        leftover: Vec<u8>,
        info: Option<Box<crate::ws::WebSocketInfo>>,
    },
    /// A UDP socket, with a datagram that arrived before the session started.
    Datagram {
        socket: R::Udp,
        first: Option<(Bytes, SocketAddr)>,
    },
}

impl<R: Runtime, T> Transport<R, T> {
    fn kind(&self) -> TransportKind {
        match self {
            Transport::Stream(_) => TransportKind::Stream,
            Transport::Datagram { .. } => TransportKind::Datagram,
            #[cfg(feature = "ws")]
            Transport::WebSocket { .. } => TransportKind::WebSocket,
        }
    }
}

/// Turns a connected socket into a running session: builds the session, runs the new-session
/// callback (a refusal or a panic there drops the socket), registers it in `set`, and spawns
/// its driver. The driver task deregisters the session when it ends, even by a panic.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start_session<R, C, N, T, S>(
    rt: &R,
    dyn_rt: &Arc<dyn DynExecutor>,
    #[cfg_attr(not(feature = "ws"), allow(unused_mut))] mut transport: Transport<R, T>,
    local: SocketAddr,
    peer: Option<SocketAddr>,
    kind: &str,
    codec: &Arc<C>,
    config: &SessionConfig,
    new_session: &N,
    set: &Arc<SessionSet<S>>,
    pool: Option<&Arc<TaskPool>>,
    group: Option<&SessionGroup<C>>,
    wrap: impl FnOnce(&Session<C>) -> S,
) -> Result<Session<C>, Error>
where
    R: Runtime,
    C: Codec,
    N: NewSession<C>,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: SessionControl + Clone + 'static,
{
    #[cfg(feature = "ws")]
    let info = match &mut transport {
        Transport::WebSocket { info, .. } => info.take(),
        _ => None,
    };
    let prepared = prepare_session(
        dyn_rt,
        transport.kind(),
        local,
        peer,
        kind,
        codec,
        config,
        new_session,
        |_session| {
            #[cfg(feature = "ws")]
            if let Some(info) = info {
                _session.set_websocket(*info);
            }
        },
    )?;
    Ok(launch_session(
        rt, prepared, transport, set, pool, group, wrap,
    ))
}

/// A session whose new-session callback accepted it, not yet running. Dropped without
/// [`launch_session`], it is marked closed (no `on_open`, no `on_close`: it never opened).
pub(crate) struct Prepared<C: Codec, L> {
    session: Session<C>,
    listener: Arc<L>,
    launched: bool,
}

impl<C: Codec, L> Prepared<C, L> {
    /// The session.
    #[cfg_attr(not(feature = "ws"), allow(dead_code))]
    pub(crate) fn session(&self) -> &Session<C> {
        &self.session
    }
}

impl<C: Codec, L> Drop for Prepared<C, L> {
    fn drop(&mut self) {
        if !self.launched {
            self.session.finish_closed();
        }
    }
}

/// Builds a session for a socket of kind `kind_of`, lets `attach` add to it, then runs the
/// new-session callback: its listener, or why the session is refused (the callback's
/// [`Error::Refused`], or [`Error::HandlerPanic`]). A refused session is marked closed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn prepare_session<C, N>(
    dyn_rt: &Arc<dyn DynExecutor>,
    kind_of: TransportKind,
    local: SocketAddr,
    peer: Option<SocketAddr>,
    kind: &str,
    codec: &Arc<C>,
    config: &SessionConfig,
    new_session: &N,
    attach: impl FnOnce(&Session<C>),
) -> Result<Prepared<C, N::Listener>, Error>
where
    C: Codec,
    N: NewSession<C>,
{
    let session = Session::new(
        dyn_rt.clone(),
        codec.clone(),
        local,
        peer,
        kind,
        kind_of,
        config,
    );
    attach(&session);
    let configured =
        std::panic::catch_unwind(AssertUnwindSafe(|| new_session.new_session(&session)));
    match configured {
        Ok(Ok(listener)) => Ok(Prepared {
            session,
            listener,
            launched: false,
        }),
        Ok(Err(reason)) => {
            session.finish_closed();
            Err(Error::Refused(reason))
        }
        Err(payload) => {
            session.finish_closed();
            Err(Error::HandlerPanic {
                handler: "new-session callback",
                message: panic_message(payload.as_ref()),
            })
        }
    }
}

/// Registers a prepared session in `set` and spawns its driver on `transport`.
pub(crate) fn launch_session<R, C, L, T, S>(
    rt: &R,
    mut prepared: Prepared<C, L>,
    transport: Transport<R, T>,
    set: &Arc<SessionSet<S>>,
    pool: Option<&Arc<TaskPool>>,
    group: Option<&SessionGroup<C>>,
    wrap: impl FnOnce(&Session<C>) -> S,
) -> Session<C>
where
    R: Runtime,
    C: Codec,
    L: crate::listener::EventListener<C>,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: SessionControl + Clone + 'static,
{
    prepared.launched = true;
    let session = prepared.session.clone();
    let listener = prepared.listener.clone();
    drop(prepared);
    // From here on the setting is the session's for good.
    let compression = session.inner().settings.fix_compression();
    let entry = wrap(&session);
    set.insert(entry.clone());
    let guard = Deregister {
        set: set.clone(),
        session: entry,
    };
    let id = session.id();
    let established = {
        let set = set.clone();
        let (group, member) = (group.cloned(), session.clone());
        move || {
            if let Some(group) = group {
                group.insert(&member);
            }
            set.notify();
        }
    };
    let (task_rt, task_session, pool) = (rt.clone(), session.clone(), pool.cloned());
    // Each transport spawns its own task type, its driver's future inline in it: a session's
    // task is then only as large as its own driver (an idle session is mostly that task).
    match transport {
        Transport::Stream(io) => {
            #[cfg(feature = "compression")]
            match Compressed::new(io, compression) {
                Ok(io) => {
                    let run = stream::run(task_rt, io, task_session, listener, pool, established);
                    spawn_session(rt, run, id, guard);
                }
                Err(io) => {
                    let run = stream::run(task_rt, io, task_session, listener, pool, established);
                    spawn_session(rt, run, id, guard);
                }
            }
            #[cfg(not(feature = "compression"))]
            {
                // Validated as `None` when the endpoint started.
                let _ = compression;
                let run = stream::run(task_rt, io, task_session, listener, pool, established);
                spawn_session(rt, run, id, guard);
            }
        }
        #[cfg(feature = "ws")]
        Transport::WebSocket {
            io, role, leftover, ..
        } => {
            let run = message::run(
                task_rt,
                io,
                role,
                leftover,
                task_session,
                listener,
                pool,
                established,
            );
            spawn_session(rt, run, id, guard);
        }
        Transport::Datagram { socket, first } => {
            let run = datagram::run(
                task_rt,
                socket,
                task_session,
                listener,
                pool,
                established,
                first,
            );
            spawn_session(rt, run, id, guard);
        }
    }
    session
}

/// Spawns the task of session `id`, which runs `driver`, then deregisters it (`guard`).
fn spawn_session<R, F, S>(rt: &R, driver: F, id: u64, guard: Deregister<S>)
where
    R: Runtime,
    F: Future<Output = ()> + Send + 'static,
    S: SessionControl + Clone + Send + 'static,
{
    rt.spawn(SessionTask {
        driver: Some(driver),
        id,
        guard: Some(guard),
    });
}

pin_project_lite::pin_project! {
    /// A session's task: its driver, then its deregistration. Written by hand, not as an
    /// `async` block, which would hold the driver's future twice (captured, then awaited).
    struct SessionTask<F, S>
    where
        S: SessionControl,
        S: Clone,
    {
        // Dropped as soon as it ends, before `guard`: the session's socket and state go first.
        #[pin]
        driver: Option<F>,
        id: u64,
        guard: Option<Deregister<S>>,
    }
}

impl<F, S> Future for SessionTask<F, S>
where
    F: Future<Output = ()>,
    S: SessionControl + Clone,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let Some(driver) = this.driver.as_mut().as_pin_mut() else {
            return Poll::Ready(());
        };
        // Handlers and codecs are caught where they run; this is the last line of defence, so
        // that no bug can unwind into the executor (smol's would lose a worker thread).
        match std::panic::catch_unwind(AssertUnwindSafe(|| driver.poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(())) => {}
            Err(payload) => log::error!(
                "session {}: driver panicked: {}",
                this.id,
                panic_message(payload.as_ref())
            ),
        }
        this.driver.set(None);
        drop(this.guard.take());
        Poll::Ready(())
    }
}

/// Removes a session from its set when its task ends, and marks it closed if the task ended
/// by a panic (so nobody waits on it forever).
struct Deregister<S: SessionControl + Clone> {
    set: Arc<SessionSet<S>>,
    session: S,
}

impl<S: SessionControl + Clone> Drop for Deregister<S> {
    fn drop(&mut self) {
        self.session.finish_closed();
        self.set.remove(self.session.id());
    }
}
