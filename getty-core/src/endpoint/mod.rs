//! Endpoints: servers that accept sessions and clients that keep a pool of them.
//!
//! What servers and clients share lives here: the set of live sessions (to close them all and
//! wait for their tasks), a one-shot signal, and how a connected stream becomes a running
//! session (new-session callback, then a driver task that always deregisters itself).

mod client;
mod server;
mod udp;

pub use client::{
    Client, ClientBuilder, ClientKind, Tcp, TcpClient, TcpClientBuilder, Udp, UdpClient,
    UdpClientBuilder,
};
pub use server::{TcpServer, TcpServerBuilder};
pub use udp::{UdpEndpoint, UdpEndpointBuilder};

use std::collections::HashMap;

#[cfg(feature = "ws")]
use async_tungstenite::tungstenite::protocol::Role;
use bytes::Bytes;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use event_listener::Event;
use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_lite::FutureExt;

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
use crate::runtime::{DynRuntime, Runtime};
use crate::session::{lock, Session, SessionConfig, SessionControl, TransportKind};

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
    map: HashMap<u64, S>,
    /// Set by `close_all`: a session inserted afterwards is closed at once, so none started
    /// concurrently with an endpoint's close outlives it.
    closed: bool,
}

impl<S> Default for SessionSet<S> {
    fn default() -> Self {
        SessionSet {
            inner: Mutex::new(SetInner {
                map: HashMap::new(),
                closed: false,
            }),
            changed: Event::new(),
        }
    }
}

impl<S: SessionControl + Clone> SessionSet<S> {
    pub(crate) fn insert(&self, session: S) {
        let mut inner = lock(&self.inner);
        if inner.closed {
            session.close();
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

    /// The live session with the lowest id (the oldest).
    pub(crate) fn oldest_live(&self) -> Option<S> {
        lock(&self.inner)
            .map
            .values()
            .filter(|s| s.is_live())
            .min_by_key(|s| s.id())
            .cloned()
    }

    /// Wakes everything waiting on the set (a session's state changed).
    pub(crate) fn notify(&self) {
        self.changed.notify(usize::MAX);
    }

    /// Closes every session, and every session inserted from now on.
    pub(crate) fn close_all(&self) {
        let mut inner = lock(&self.inner);
        inner.closed = true;
        let sessions: Vec<S> = inner.map.values().cloned().collect();
        drop(inner);
        for session in sessions {
            session.close();
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
    /// read after the handshake.
    #[cfg(feature = "ws")]
    WebSocket {
        io: T,
        role: Role,
        leftover: Vec<u8>,
    },
    /// A UDP socket, with a datagram that arrived before the session started.
    Datagram {
        socket: R::Udp,
        first: Option<(Bytes, SocketAddr)>,
    },
}

/// Turns a connected socket into a running session: builds the session, runs the new-session
/// callback (a refusal or a panic there drops the socket), registers it in `set`, and spawns
/// its driver. The driver task deregisters the session when it ends, even by a panic.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start_session<R, C, N, T, S>(
    rt: &R,
    dyn_rt: &Arc<dyn DynRuntime>,
    transport: Transport<R, T>,
    local: SocketAddr,
    peer: Option<SocketAddr>,
    kind: &str,
    codec: &Arc<C>,
    config: &SessionConfig,
    new_session: &N,
    set: &Arc<SessionSet<S>>,
    pool: Option<&Arc<TaskPool>>,
    wrap: impl FnOnce(&Session<C>) -> S,
) -> Result<Session<C>, Error>
where
    R: Runtime,
    C: Codec,
    N: NewSession<C>,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: SessionControl + Clone + 'static,
{
    let kind_of = match transport {
        Transport::Stream(_) => TransportKind::Stream,
        Transport::Datagram { .. } => TransportKind::Datagram,
        #[cfg(feature = "ws")]
        Transport::WebSocket { .. } => TransportKind::WebSocket,
    };
    let session = Session::new(
        dyn_rt.clone(),
        codec.clone(),
        local,
        peer,
        kind,
        kind_of,
        config,
    );
    let configured =
        std::panic::catch_unwind(AssertUnwindSafe(|| new_session.new_session(&session)));
    let listener = match configured {
        Ok(Ok(listener)) => listener,
        Ok(Err(reason)) => {
            session.finish_closed();
            return Err(Error::Refused(reason));
        }
        Err(payload) => {
            session.finish_closed();
            return Err(Error::HandlerPanic {
                handler: "new-session callback",
                message: panic_message(payload.as_ref()),
            });
        }
    };
    // From here on the setting is the session's for good.
    let compression = session.inner().settings.fix_compression();
    let entry = wrap(&session);
    set.insert(entry.clone());
    let guard = Deregister {
        set: set.clone(),
        session: entry,
    };
    let task_rt = rt.clone();
    let task_session = session.clone();
    let task_set = set.clone();
    let pool = pool.cloned();
    rt.spawn(async move {
        // Handlers and codecs are caught where they run; this is the last line of defence, so
        // that no bug can unwind into the executor (smol's would lose a worker thread).
        let id = task_session.id();
        let established = move || task_set.notify();
        let run = async move {
            match transport {
                Transport::Stream(io) => {
                    #[cfg(feature = "compression")]
                    match Compressed::new(io, compression) {
                        Ok(io) => {
                            stream::run(task_rt, io, task_session, listener, pool, established)
                                .await
                        }
                        Err(io) => {
                            stream::run(task_rt, io, task_session, listener, pool, established)
                                .await
                        }
                    }
                    #[cfg(not(feature = "compression"))]
                    {
                        // Validated as `None` when the endpoint started.
                        let _ = compression;
                        stream::run(task_rt, io, task_session, listener, pool, established).await
                    }
                }
                #[cfg(feature = "ws")]
                Transport::WebSocket { io, role, leftover } => {
                    let session = task_session;
                    message::run(
                        task_rt,
                        io,
                        role,
                        leftover,
                        session,
                        listener,
                        pool,
                        established,
                    )
                    .await
                }
                Transport::Datagram { socket, first } => {
                    let session = task_session;
                    datagram::run(task_rt, socket, session, listener, pool, established, first)
                        .await
                }
            }
        };
        if let Err(payload) = AssertUnwindSafe(run).catch_unwind().await {
            log::error!(
                "session {id}: driver panicked: {}",
                panic_message(payload.as_ref())
            );
        }
        drop(guard);
    });
    Ok(session)
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
