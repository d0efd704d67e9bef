//! The datagram driver: one session over a UDP socket.
//!
//! Same life cycle as the stream driver (see [`crate::driver`]); only the I/O differs. Every
//! datagram is decoded on its own: all the frames it holds are delivered, in order, or (when
//! it is too long, or the codec refuses any part of it) none, with a logged warning and a
//! count in [`Stats::pkgs_dropped`](crate::Stats). A bad datagram never closes the session.
//! Every queued package leaves as one datagram to its destination.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_lite::future::poll_fn;

use super::{cron, guarded_decode, run_session, Core, DriverIo, Event, Serve, YIELD_BUDGET};
use crate::codec::{Codec, CodecError, Decoded};
use crate::error::Error;
use crate::listener::{Call, EventListener};
use crate::pool::TaskPool;
use crate::runtime::{Runtime, UdpSocket};
use crate::session::{Envelope, Outbox, Session};

/// What a UDP client sends to check that its server is there (getty's connect-ping). Sessions
/// never deliver a datagram holding exactly these bytes.
pub(crate) const CONNECT_PING: &[u8] = b"connect-ping";

/// The receive buffer never needs more: no UDP payload is longer than 65,535 bytes.
const MAX_RECV: usize = 64 * 1024;

/// Runs one UDP session to its end. `first` is a datagram that arrived before the session
/// started (the answer to a client's connect-ping), handled as if it had just arrived.
pub(crate) async fn run<R, C, L>(
    rt: R,
    socket: R::Udp,
    session: Session<C>,
    listener: Arc<L>,
    pool: Option<Arc<TaskPool>>,
    on_established: impl FnOnce(),
    first: Option<(Bytes, SocketAddr)>,
) where
    R: Runtime,
    C: Codec,
    L: EventListener<C>,
{
    let io = DatagramIo::new(socket, session.peer_addr().is_some());
    run_session(rt, io, session, listener, pool, on_established, |core| {
        Driver {
            core,
            pending: VecDeque::new(),
            budget: YIELD_BUDGET,
            first,
        }
    })
    .await;
}

struct Driver<R: Runtime, C: Codec, L> {
    core: Core<R, C, L, DatagramIo<R::Udp>>,
    /// Packages decoded from the datagrams read, not yet handed out.
    pending: VecDeque<(C::Inbound, SocketAddr)>,
    budget: u32,
    /// A datagram that arrived before the session started, handled once it is open (its
    /// `on_open` may have changed how it is read).
    first: Option<(Bytes, SocketAddr)>,
}

impl<R: Runtime, C: Codec, L: EventListener<C>> Serve<R, C, L, DatagramIo<R::Udp>>
    for Driver<R, C, L>
{
    fn core(&mut self) -> &mut Core<R, C, L, DatagramIo<R::Udp>> {
        &mut self.core
    }

    fn serve(&mut self) -> impl std::future::Future<Output = Option<Error>> + Send {
        self.event_loop()
    }
}

impl<R: Runtime, C: Codec, L: EventListener<C>> Driver<R, C, L> {
    /// The event loop. Returns why it stopped: `None` for `close()`.
    async fn event_loop(&mut self) -> Option<Error> {
        if let Some((bytes, from)) = self.first.take() {
            self.accept(&bytes, from);
        }
        loop {
            let event = poll_fn(|cx| self.poll_event(cx)).await;
            let for_peer = matches!(event, Event::Message(..));
            let started = self.core.handler_start();
            let outcome = match event {
                Event::Message((pkg, from)) => {
                    let now = self.core.rt.now();
                    self.core.deliver(now, Call::Datagram(pkg, from)).await
                }
                Event::Cron => cron(&mut self.core).await,
                Event::CloseRequested | Event::Eof => return None,
                Event::Failed(err) => return Some(self.core.failing(err).await),
            };
            match outcome {
                // An endpoint serves every peer: a datagram that makes the handler panic must
                // not stop it for all of them. A connected session closes, as a stream would
                // (its pool reconnects), and so does a panic in `on_cron`.
                Err(panic) if for_peer && !self.core.io.connected => log::error!(
                    "session {}: {panic}; the datagram is lost, the endpoint goes on",
                    self.core.session.id()
                ),
                Err(panic) => return Some(panic),
                Ok(_) => {}
            }
            self.core.handler_done(started);
        }
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Event<(C::Inbound, SocketAddr)>> {
        if let Some(event) = self.core.poll_start() {
            return Poll::Ready(event);
        }
        loop {
            if self.budget > 0 {
                if let Some((pkg, from)) = self.pending.pop_front() {
                    self.budget -= 1;
                    return Poll::Ready(Event::Message((pkg, from)));
                }
            }
            if let Some(event) = ready!(self.core.poll_turn(&mut self.budget, cx)) {
                return Poll::Ready(event);
            }
            let max = self.core.session.max_msg_len();
            let Poll::Ready(received) = self.core.io.poll_recv(cx, max) else {
                self.budget = YIELD_BUDGET;
                return Poll::Pending;
            };
            self.budget -= 1;
            match received {
                Ok((n, from)) => {
                    // Lent out for the call, so `accept` can borrow the driver mutably.
                    let buf = std::mem::take(&mut self.core.io.recv_buf);
                    self.accept(&buf[..n], from);
                    self.core.io.recv_buf = buf;
                }
                Err(err) if self.core.io.connected => {
                    // A connected socket reports the server's ICMP "port unreachable" here.
                    return Poll::Ready(Event::Failed(Error::io("receive", err)));
                }
                Err(err) if is_peer_error(&err) => {
                    // Some systems report an earlier send's ICMP error on an unconnected
                    // socket: it concerns one peer, not the endpoint.
                    log::debug!("session {}: receive: {err}", self.core.session.id());
                }
                Err(err) => return Poll::Ready(Event::Failed(Error::io("receive", err))),
            }
        }
    }

    /// Takes in one datagram: its packages join `pending`, or it is dropped and counted.
    fn accept(&mut self, datagram: &[u8], from: SocketAddr) {
        if datagram == CONNECT_PING {
            log::debug!(
                "session {}: connect-ping from {from} ignored",
                self.core.session.id()
            );
            return;
        }
        let session = &self.core.session;
        let stats = &session.inner().stats;
        stats.add_bytes_read(datagram.len() as u64);
        self.core.timers.waiting_from(self.core.rt.now());
        let max = session.max_msg_len();
        let decoded = if datagram.len() > max {
            // The buffer holds `max + 1` bytes: the OS cut anything longer to that, so the
            // datagram was at least this long.
            Err(Error::FrameTooLarge {
                len: datagram.len(),
                max,
            })
        } else {
            decode_all(session.codec(), datagram)
        };
        match decoded {
            Ok(pkgs) => self.pending.extend(pkgs.into_iter().map(|pkg| (pkg, from))),
            Err(err) => {
                stats.add_pkgs_dropped(1);
                log::warn!(
                    "session {}: datagram of {} bytes from {from} dropped: {err}",
                    session.id(),
                    datagram.len()
                );
            }
        }
    }
}

/// Decodes every frame of one datagram; any error (a frame cut short included) refuses all.
pub(crate) fn decode_all<C: Codec>(codec: &C, datagram: &[u8]) -> Result<Vec<C::Inbound>, Error> {
    let mut buf = BytesMut::from(datagram);
    let mut pkgs = Vec::new();
    while !buf.is_empty() {
        let before = buf.len();
        // The codec is user code: a panic drops this datagram, not the endpoint.
        let decoded = guarded_decode(|| codec.decode_eof(&mut buf))?;
        match decoded {
            Decoded::Frame(_) if buf.len() >= before => {
                return Err(Error::Codec(CodecError::invalid(
                    "the codec returned a frame without consuming any input",
                )))
            }
            Decoded::Frame(pkg) => pkgs.push(pkg),
            Decoded::Incomplete(_) => {
                return Err(Error::Codec(CodecError::invalid(format!(
                    "the datagram ends inside a frame ({} bytes left over)",
                    buf.len()
                ))))
            }
        }
    }
    Ok(pkgs)
}

/// Errors a receive on an unconnected socket can report about one peer.
fn is_peer_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
    )
}

/// The socket, its receive buffer, and the driver's side of the write queue.
struct DatagramIo<U> {
    socket: U,
    /// Holds one datagram, plus one byte to tell a datagram longer than the maximum message
    /// length from one of exactly that length (the OS truncates what does not fit).
    recv_buf: Vec<u8>,
    out: Outbox,
    /// Connected (a client's socket): errors are the session's; otherwise (an endpoint) a
    /// failed send concerns one destination only.
    connected: bool,
    write_dead: bool,
    write_error: Option<Error>,
}

impl<U: UdpSocket> DatagramIo<U> {
    fn new(socket: U, connected: bool) -> Self {
        DatagramIo {
            socket,
            recv_buf: Vec::new(),
            out: Outbox::default(),
            connected,
            write_dead: false,
            write_error: None,
        }
    }

    /// Receives one datagram into `recv_buf`, sized for `max` bytes plus one.
    fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        let size = max.saturating_add(1).min(MAX_RECV);
        if self.recv_buf.len() != size {
            // Zeroed once per size, not per datagram.
            self.recv_buf.resize(size, 0);
            self.recv_buf.shrink_to(size);
        }
        self.socket.poll_recv_from(cx, &mut self.recv_buf)
    }

    fn poll_drain_inner<C: Codec>(
        &mut self,
        cx: &mut Context<'_>,
        session: &Session<C>,
    ) -> Poll<Result<(), Error>> {
        let inner = session.inner();
        loop {
            inner.queue.drain(cx.waker(), &mut self.out);
            let Some((datagram, envelope)) = self.out.front_package(inner.queue.written()) else {
                return Poll::Ready(Ok(()));
            };
            let len = datagram.len();
            let Envelope::Datagram(to) = envelope else {
                // Not reachable: `Session::dest` gives a datagram session's writes an address.
                // Still, a bug here costs one package, not a panic.
                log::error!(
                    "session {}: a package without an address dropped",
                    session.id()
                );
                inner.stats.add_send_failures(1);
                self.out.pop_package(len);
                inner.queue.advance(len);
                continue;
            };
            let sent = ready!(self.socket.poll_send_to(cx, &datagram, to));
            match sent {
                Ok(_) => {
                    inner.stats.add_bytes_written(len as u64);
                    inner.stats.add_pkgs_written(1);
                }
                Err(err) if !self.connected => {
                    inner.stats.add_send_failures(1);
                    log::warn!(
                        "session {}: datagram of {len} bytes to {to} not sent: {err}",
                        session.id()
                    );
                }
                Err(err) => return Poll::Ready(Err(Error::io("send", err))),
            }
            self.out.pop_package(len);
            inner.queue.advance(len);
        }
    }
}

impl<U: UdpSocket> DriverIo for DatagramIo<U> {
    fn poll_drain<C: Codec>(
        &mut self,
        cx: &mut Context<'_>,
        session: &Session<C>,
    ) -> Poll<Result<(), Error>> {
        if self.write_dead {
            return Poll::Ready(Ok(()));
        }
        let result = ready!(self.poll_drain_inner(cx, session));
        if result.is_err() {
            // Nothing more can be sent: refuse new writes and release waiting writers.
            self.write_dead = true;
            session.begin_closing();
            session.inner().queue.kill();
        }
        Poll::Ready(result)
    }

    fn set_write_error(&mut self, err: Error) {
        self.write_error = Some(err);
    }

    fn take_write_error(&mut self) -> Option<Error> {
        self.write_error.take()
    }

    fn write_dead(&self) -> bool {
        self.write_dead
    }

    fn poll_shutdown(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Nothing to tell the peer: UDP has no connection to end. The socket closes on drop.
        Poll::Ready(Ok(()))
    }

    fn unsent_packages(&self) -> usize {
        self.out.ends.len()
    }
}
