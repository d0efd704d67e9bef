//! The event listener: what user code sees of a session.
//!
//! A listener is a type of yours implementing [`EventListener`] with plain `async fn`s (no
//! macro). Hand a server or client either
//! - **one value shared by every session** (`serve(rt, codec, MyListener)`; it is kept in an
//!   `Arc`, so its handlers take `&self`: put shared state behind a `Mutex` or atomics), or
//! - **a factory** that makes one value per session (`serve_with(rt, codec, |session| ...)`),
//!   for per-connection state without a map keyed by session id. The factory is the
//!   new-session callback: it can also configure the session, or refuse it with an `Err`.
//!
//! Handlers are called through static dispatch: no boxed future per event.
//!
//! The same listener, handed over the ways users write it; none needs a type annotation:
//!
//! ```no_run
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//! use getty_core::prelude::*;
//!
//! #[derive(Default)]
//! struct Counter {
//!     seen: AtomicU64,
//! }
//!
//! impl EventListener<LengthDelimited> for Counter {
//!     async fn on_message(&self, session: &Session<LengthDelimited>, pkg: Bytes) {
//!         self.seen.fetch_add(1, Ordering::Relaxed);
//!         let _ = session.send_frame(Frame::payload(pkg)).await;
//!     }
//! }
//!
//! # fn demo<R: Runtime>(rt: R) -> getty_core::Result<()> {
//! // A value, shared by every session.
//! let a = TcpServer::builder().serve(rt.clone(), LengthDelimited::hello(), Counter::default())?;
//! // An `Arc` kept by the caller too, to read the count later.
//! let shared = Arc::new(Counter::default());
//! let b = TcpServer::builder().serve(rt.clone(), LengthDelimited::hello(), shared.clone())?;
//! // A `move` closure handing out the shared value (it could configure each session first).
//! let c = TcpServer::builder().serve_with(rt.clone(), LengthDelimited::hello(), move |_| {
//!     Ok(shared.clone())
//! })?;
//! // A fresh value per session: per-connection state.
//! let d = TcpServer::builder().serve_with(rt, LengthDelimited::hello(), |_| Ok(Counter::default()))?;
//! # drop((a, b, c, d)); Ok(()) }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::codec::Codec;
use crate::error::{BoxError, Error};
use crate::session::Session;

/// Receives a session's events.
///
/// Order guarantees, for every session whose `on_open` succeeded:
/// `on_open` first; then `on_message` and `on_cron` (never two at once for one session);
/// then `on_error` at most once, only for a real error (a clean end of stream is not one);
/// then `on_close` exactly once, last.
///
/// Handlers run on the session's task, in order: a slow handler delays only its own session
/// (that is its backpressure). While a handler is pending the session keeps writing, so a
/// handler may await [`Session::send_and_flush`] without deadlocking. A handler that panics
/// closes its session only; the panic is logged and reported to `on_error` as
/// [`Error::HandlerPanic`].
///
/// Implement the methods as `async fn`; the futures must be `Send` (they may run on any
/// worker thread), so do not hold a `std::sync::MutexGuard` across an `.await`.
///
/// ```
/// use getty_core::codec::Lines;
/// use getty_core::{EventListener, Session};
///
/// /// Shouts every line back.
/// struct Shout;
///
/// impl EventListener<Lines> for Shout {
///     async fn on_message(&self, session: &Session<Lines>, line: String) {
///         let _ = session.send(&line.to_uppercase()).await;
///     }
/// }
/// ```
pub trait EventListener<C: Codec>: Send + Sync + 'static {
    /// The session is connected. Returning an error refuses it: it is closed and gets no other
    /// event (no `on_error`, no `on_close`).
    fn on_open(&self, session: &Session<C>) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = session;
        async { Ok(()) }
    }

    /// A package arrived.
    fn on_message(&self, session: &Session<C>, pkg: C::Inbound) -> impl Future<Output = ()> + Send;

    /// A package arrived in a datagram from `peer` (UDP sessions only; getty's `UDPContext`).
    /// Reply with [`Session::to`]. By default it calls
    /// [`on_message`](EventListener::on_message), which suits a connected UDP client (its peer
    /// is always the server); a UDP endpoint's listener overrides it to learn the sender.
    fn on_datagram(
        &self,
        session: &Session<C>,
        pkg: C::Inbound,
        peer: SocketAddr,
    ) -> impl Future<Output = ()> + Send {
        let _ = peer;
        self.on_message(session, pkg)
    }

    /// The session's cron period elapsed (for heartbeats and idle checks).
    fn on_cron(&self, session: &Session<C>) -> impl Future<Output = ()> + Send {
        let _ = session;
        async {}
    }

    /// The session's read or idle timeout passed (`err` says which): it closes next. Unlike in
    /// `on_error`, writes are still taken here, and what this queues (a goodbye, a reason) is
    /// flushed by the close, within the close-wait, which also bounds this handler.
    fn on_timeout(&self, session: &Session<C>, err: &Error) -> impl Future<Output = ()> + Send {
        let _ = (session, err);
        async {}
    }

    /// The session is closing because of `err`. Called at most once, before `on_close`.
    fn on_error(&self, session: &Session<C>, err: &Error) -> impl Future<Output = ()> + Send {
        let _ = (session, err);
        async {}
    }

    /// The session is closed. Called exactly once, last.
    fn on_close(&self, session: &Session<C>) -> impl Future<Output = ()> + Send {
        let _ = session;
        async {}
    }
}

/// A shared listener: `Arc<MyListener>` is a listener too, so one value can serve sessions of
/// several endpoints.
impl<C: Codec, L: EventListener<C>> EventListener<C> for Arc<L> {
    fn on_open(&self, session: &Session<C>) -> impl Future<Output = Result<(), BoxError>> + Send {
        (**self).on_open(session)
    }
    fn on_message(&self, session: &Session<C>, pkg: C::Inbound) -> impl Future<Output = ()> + Send {
        (**self).on_message(session, pkg)
    }
    fn on_datagram(
        &self,
        session: &Session<C>,
        pkg: C::Inbound,
        peer: SocketAddr,
    ) -> impl Future<Output = ()> + Send {
        (**self).on_datagram(session, pkg, peer)
    }
    fn on_cron(&self, session: &Session<C>) -> impl Future<Output = ()> + Send {
        (**self).on_cron(session)
    }
    fn on_timeout(&self, session: &Session<C>, err: &Error) -> impl Future<Output = ()> + Send {
        (**self).on_timeout(session, err)
    }
    fn on_error(&self, session: &Session<C>, err: &Error) -> impl Future<Output = ()> + Send {
        (**self).on_error(session, err)
    }
    fn on_close(&self, session: &Session<C>) -> impl Future<Output = ()> + Send {
        (**self).on_close(session)
    }
}

/// The new-session callback of servers and clients: configures a fresh session (name,
/// attributes, per-session settings) and returns the listener for its events, or an error to
/// refuse it.
///
/// Endpoints build one from what they are given: `serve` shares a listener value
/// (kept in an `Arc`), `serve_with` calls a closure `Fn(&Session<C>) -> Result<L, BoxError>`.
pub trait NewSession<C: Codec>: Send + Sync + 'static {
    /// The listener of each session.
    type Listener: EventListener<C>;

    /// Configures `session` and returns its listener (in an `Arc`, so that one shared value
    /// is handed out without another indirection).
    fn new_session(&self, session: &Session<C>) -> Result<Arc<Self::Listener>, BoxError>;
}

impl<C, F, L> NewSession<C> for F
where
    C: Codec,
    F: Fn(&Session<C>) -> Result<L, BoxError> + Send + Sync + 'static,
    L: EventListener<C>,
{
    type Listener = L;

    fn new_session(&self, session: &Session<C>) -> Result<Arc<L>, BoxError> {
        self(session).map(Arc::new)
    }
}

/// One listener value shared by every session (each session holds an `Arc` of it).
#[derive(Debug)]
pub(crate) struct SharedListener<L>(pub(crate) Arc<L>);

impl<C: Codec, L: EventListener<C>> NewSession<C> for SharedListener<L> {
    type Listener = L;

    fn new_session(&self, _session: &Session<C>) -> Result<Arc<L>, BoxError> {
        Ok(self.0.clone())
    }
}

/// Which handler a driver calls for an event: the per-message path is statically dispatched
/// through [`invoke`].
pub(crate) enum Call<P> {
    /// `on_message`.
    Message(P),
    /// `on_datagram`, with the sender.
    Datagram(P, SocketAddr),
    /// `on_cron`.
    Cron,
}

impl<P> Call<P> {
    /// The handler's name, for logs and [`Error::HandlerPanic`].
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Call::Message(_) => "on_message",
            Call::Datagram(..) => "on_datagram",
            Call::Cron => "on_cron",
        }
    }
}

/// Runs the handler `call` names.
pub(crate) async fn invoke<C: Codec, L: EventListener<C>>(
    listener: &L,
    session: &Session<C>,
    call: Call<C::Inbound>,
) {
    match call {
        Call::Message(pkg) => listener.on_message(session, pkg).await,
        Call::Datagram(pkg, peer) => listener.on_datagram(session, pkg, peer).await,
        Call::Cron => listener.on_cron(session).await,
    }
}
