//! The UDP endpoint (getty's `NewUDPPEndPoint`): one session on a bound socket, serving every
//! peer that sends to it. Each datagram reaches
//! [`EventListener::on_datagram`](crate::EventListener::on_datagram) with its sender's address;
//! replies name their destination ([`Session::to`]).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use super::{start_session, SessionSet, Transport};
use crate::codec::Codec;
use crate::error::BoxError;
use crate::error::{Error, Result};
use crate::listener::{EventListener, NewSession, SharedListener};
use crate::runtime::{DynExecutor, Runtime, UdpSocket};
use crate::session::{Session, SessionConfig};

/// Options of a [`UdpEndpoint`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until it is used"]
pub struct UdpEndpointBuilder {
    addr: SocketAddr,
    session_config: SessionConfig,
}

impl Default for UdpEndpointBuilder {
    fn default() -> Self {
        UdpEndpointBuilder {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            session_config: SessionConfig::default(),
        }
    }
}

impl UdpEndpointBuilder {
    /// A builder binding 127.0.0.1 at a random free port.
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds `addr` (port 0 picks a free port; see [`UdpEndpoint::local_addr`]).
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// The settings the endpoint's session starts with (validated at bind).
    pub fn session_config(mut self, config: SessionConfig) -> Self {
        self.session_config = config;
        self
    }

    /// Binds the socket and starts its session on `rt`, its events going to `listener`. Returns
    /// once `on_open` accepted the session; a refusal (by `on_open`) is
    /// [`Error::Refused`] and releases the socket.
    pub async fn bind<R, C, L>(self, rt: R, codec: C, listener: L) -> Result<UdpEndpoint<C>>
    where
        R: Runtime,
        C: Codec,
        L: EventListener<C>,
    {
        self.bind_new_session(rt, codec, SharedListener(Arc::new(listener)))
            .await
    }

    /// Binds the socket as [`bind`](Self::bind) does, its session getting the listener
    /// `new_session` returns (which may also configure the session, or refuse it).
    pub async fn bind_with<R, C, F, L>(
        self,
        rt: R,
        codec: C,
        new_session: F,
    ) -> Result<UdpEndpoint<C>>
    where
        R: Runtime,
        C: Codec,
        F: Fn(&Session<C>) -> Result<L, BoxError> + Send + Sync + 'static,
        L: EventListener<C>,
    {
        self.bind_new_session(rt, codec, new_session).await
    }

    async fn bind_new_session<R, C, N>(
        self,
        rt: R,
        codec: C,
        new_session: N,
    ) -> Result<UdpEndpoint<C>>
    where
        R: Runtime,
        C: Codec,
        N: NewSession<C>,
    {
        let config = self.session_config.resolve(&codec)?;
        config.check_transport(false)?;
        let socket = rt.bind_udp(self.addr).map_err(|e| Error::io("bind", e))?;
        let local_addr = socket.local_addr().map_err(|e| Error::io("bind", e))?;
        let sessions = Arc::new(SessionSet::default());
        let dyn_rt: Arc<dyn DynExecutor> = Arc::new(rt.clone());
        let session = start_session::<R, C, N, R::Tcp, _>(
            &rt,
            &dyn_rt,
            Transport::Datagram {
                socket,
                first: None,
            },
            local_addr,
            None,
            "udp",
            &Arc::new(codec),
            &config,
            &new_session,
            &sessions,
            None,
            None,
            Session::clone,
        )?;
        sessions
            .wait_until(|set| session.is_live() || set.len() == 0)
            .await;
        if !session.is_live() {
            return Err(Error::Refused(
                "on_open refused the UDP endpoint's session (see the log)".into(),
            ));
        }
        Ok(UdpEndpoint {
            session,
            sessions,
            local_addr,
        })
    }
}

/// A bound UDP socket and its one session. [`close`](Self::close) closes the session and waits
/// until the socket is released; dropping the endpoint closes it without waiting.
#[must_use = "dropping the endpoint closes it"]
pub struct UdpEndpoint<C: Codec> {
    session: Session<C>,
    sessions: Arc<SessionSet<Session<C>>>,
    local_addr: SocketAddr,
}

impl<C: Codec> UdpEndpoint<C> {
    /// The address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The endpoint's session: its statistics, settings, and the `*_to` writes.
    pub fn session(&self) -> &Session<C> {
        &self.session
    }

    /// Closes the session (queued datagrams are sent within its close-wait) and waits until
    /// its task has ended and the socket is closed, so the port can be bound again.
    pub async fn close(&self) {
        self.session.close();
        self.sessions.wait_until(|set| set.len() == 0).await;
    }
}

impl<C: Codec> Drop for UdpEndpoint<C> {
    fn drop(&mut self) {
        self.session.close();
    }
}

impl<C: Codec> fmt::Debug for UdpEndpoint<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpEndpoint")
            .field("local_addr", &self.local_addr)
            .field("session", &self.session.id())
            .finish()
    }
}
