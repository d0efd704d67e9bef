//! The event listener: what user code sees of a session.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;

use crate::codec::Codec;
use crate::error::{BoxError, Error};
use crate::session::Session;

/// Receives a session's events. One listener value may serve many sessions.
///
/// Order guarantees, for every session whose `on_open` succeeded:
/// `on_open` first; then `on_message` and `on_cron` (never two at once for one session);
/// then `on_error` at most once, only for a real error (a clean end of stream is not one);
/// then `on_close` exactly once, last.
///
/// Handlers run on the session's task, in order: a slow handler delays only its own session
/// (that is its backpressure). While a handler is pending the session keeps writing, so a
/// handler may await [`Session::write_pkg`] without deadlocking. A handler that panics closes its
/// session only; the panic is logged and reported to `on_error` as
/// [`Error::HandlerPanic`].
#[async_trait]
pub trait EventListener<C: Codec>: Send + Sync + 'static {
    /// The session is connected. Returning an error refuses it: it is closed and gets no other
    /// event (no `on_error`, no `on_close`).
    async fn on_open(&self, session: &Session<C>) -> Result<(), BoxError> {
        let _ = session;
        Ok(())
    }

    /// A package arrived.
    async fn on_message(&self, session: &Session<C>, pkg: C::Inbound);

    /// A package arrived in a datagram from `peer` (UDP sessions only; getty's `UDPContext`).
    /// Reply with [`Session::send_pkg_to`] and friends. By default it calls
    /// [`on_message`](EventListener::on_message), which suits a connected UDP client (its peer
    /// is always the server); a UDP endpoint's listener overrides it to learn the sender.
    async fn on_datagram(&self, session: &Session<C>, pkg: C::Inbound, peer: SocketAddr) {
        let _ = peer;
        self.on_message(session, pkg).await
    }

    /// The session's cron period elapsed (for heartbeats and idle checks).
    async fn on_cron(&self, session: &Session<C>) {
        let _ = session;
    }

    /// The session is closing because of `err`. Called at most once, before `on_close`.
    async fn on_error(&self, session: &Session<C>, err: &Error) {
        let _ = (session, err);
    }

    /// The session is closed. Called exactly once, last.
    async fn on_close(&self, session: &Session<C>) {
        let _ = session;
    }
}

/// The new-session callback of servers and clients: configures a fresh session (name,
/// timeouts, attributes, ...) and returns the listener for its events, or an error to refuse it.
///
/// Implemented for every `Fn(&Session<C>) -> Result<Arc<dyn EventListener<C>>, BoxError>`.
pub trait NewSession<C: Codec>: Send + Sync + 'static {
    /// Configures `session` and returns its listener.
    fn new_session(&self, session: &Session<C>) -> Result<Arc<dyn EventListener<C>>, BoxError>;
}

impl<C, F> NewSession<C> for F
where
    C: Codec,
    F: Fn(&Session<C>) -> Result<Arc<dyn EventListener<C>>, BoxError> + Send + Sync + 'static,
{
    fn new_session(&self, session: &Session<C>) -> Result<Arc<dyn EventListener<C>>, BoxError> {
        self(session)
    }
}
