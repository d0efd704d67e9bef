//! The message driver: one session over a WebSocket (`ws://`, and `wss://` over TLS).
//!
//! Same life cycle as the other drivers (see [`crate::driver`]); the I/O is whole messages,
//! framed by async-tungstenite. Each binary or text message is one package: all the frames
//! the codec finds in it are delivered, in order; a message the codec refuses closes the
//! session (a stream peer that sends garbage is broken, as on TCP). Heartbeats: every cron
//! tick sends a ping; a ping or pong from the peer counts as activity; pongs are answered by
//! tungstenite and flushed by the driver. A close frame from the peer is a clean end.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use async_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Message, Utf8Bytes};
use async_tungstenite::WebSocketStream;
use bytes::{Bytes, BytesMut};
use futures_lite::future::poll_fn;
use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_util::{Sink, Stream};

use super::{cron, guarded_decode, run_session, Core, DriverIo, Event, Serve, YIELD_BUDGET};
use crate::codec::{Codec, CodecError, Decoded, MessageKind};
use crate::error::Error;
use crate::listener::EventListener;
use crate::pool::TaskPool;
use crate::runtime::Runtime;
use crate::session::{CloseReason, Envelope, Outbox, Session};

/// The read buffer a WebSocket session starts with (tungstenite's default is 128 KiB).
const WS_READ_BUFFER: usize = 16 * 1024;

/// Runs one WebSocket session to its end. `io` has completed the opening handshake as
/// `role`; `leftover` holds bytes read after the handshake (the peer's first frames).
// The upgraded stream comes with its role and leftover bytes: three of the eight.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run<R, C, L, T>(
    rt: R,
    io: T,
    role: Role,
    leftover: Vec<u8>,
    session: Session<C>,
    listener: Arc<L>,
    pool: Option<Arc<TaskPool>>,
    on_established: impl FnOnce(),
) where
    R: Runtime,
    C: Codec,
    L: EventListener<C>,
    T: AsyncRead + AsyncWrite + Unpin + Send,
{
    // Built after the new-session callback configured the session: tungstenite refuses a
    // message over the session's maximum length before buffering it whole.
    let max = session.max_msg_len();
    let config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        // tungstenite allocates its read buffer up front (128 KiB by default) and grows it
        // for larger frames: a smaller start keeps idle WebSocket sessions cheap.
        .read_buffer_size(WS_READ_BUFFER);
    let ws = WebSocketStream::from_partially_read(io, leftover, role, Some(config)).await;
    let io = MessageIo {
        ws,
        out: Outbox::default(),
        unflushed: None,
        ping_due: false,
        close_sent: false,
        close_frame: None,
        need_flush: false,
        write_dead: false,
        write_error: None,
    };
    run_session(rt, io, session, listener, pool, on_established, |core| {
        Driver {
            core,
            pending: VecDeque::new(),
            budget: YIELD_BUDGET,
        }
    })
    .await;
}

struct Driver<R: Runtime, C: Codec, L, T> {
    core: Core<R, C, L, MessageIo<T>>,
    /// Packages decoded from the messages read, not yet handed out.
    pending: VecDeque<C::Inbound>,
    budget: u32,
}

impl<R, C, L, T> Serve<R, C, L, MessageIo<T>> for Driver<R, C, L, T>
where
    R: Runtime,
    C: Codec,
    L: EventListener<C>,
    T: AsyncRead + AsyncWrite + Unpin + Send,
{
    fn core(&mut self) -> &mut Core<R, C, L, MessageIo<T>> {
        &mut self.core
    }

    fn serve(&mut self) -> impl std::future::Future<Output = Option<Error>> + Send {
        self.event_loop()
    }
}

impl<R, C, L, T> Driver<R, C, L, T>
where
    R: Runtime,
    C: Codec,
    L: EventListener<C>,
    T: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// The event loop. Returns why it stopped: `None` for a clean end (close frame, `close()`).
    async fn event_loop(&mut self) -> Option<Error> {
        loop {
            let event = poll_fn(|cx| self.poll_event(cx)).await;
            let started = self.core.handler_start();
            let outcome = match event {
                Event::Message(pkg) => {
                    let now = self.core.rt.now();
                    self.core.deliver_message(now, pkg).await
                }
                Event::Cron => {
                    // The heartbeat: a ping leaves with the next drain.
                    self.core.io.ping_due = true;
                    cron(&mut self.core).await
                }
                Event::CloseRequested | Event::Eof => return None,
                Event::Failed(err) => return Some(self.core.failing(err).await),
            };
            if let Err(panic) = outcome {
                return Some(panic);
            }
            self.core.handler_done(started);
        }
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Event<C::Inbound>> {
        if let Some(event) = self.core.poll_start() {
            return Poll::Ready(event);
        }
        loop {
            if self.budget > 0 {
                if let Some(pkg) = self.pending.pop_front() {
                    self.budget -= 1;
                    return Poll::Ready(Event::Message(pkg));
                }
            }
            if let Some(event) = ready!(self.core.poll_turn(&mut self.budget, cx)) {
                return Poll::Ready(event);
            }
            let Poll::Ready(next) = Pin::new(&mut self.core.io.ws).poll_next(cx) else {
                self.budget = YIELD_BUDGET;
                return Poll::Pending;
            };
            self.budget -= 1;
            match next {
                // The peer's close frame was answered (tungstenite does that): a clean end.
                None => return Poll::Ready(Event::Eof),
                Some(Ok(message)) => {
                    if let Err(err) = self.accept(message) {
                        return Poll::Ready(Event::Failed(err));
                    }
                }
                Some(Err(err)) => return Poll::Ready(Event::Failed(ws_error(err))),
            }
        }
    }

    /// Takes in one message: data joins `pending`; heartbeats show the peer is alive (the read
    /// timeout restarts) but are no activity (`last_active` and the idle timeout count data
    /// messages only, so a silent user is kicked even while pings flow).
    fn accept(&mut self, message: Message) -> Result<(), Error> {
        let session = &self.core.session;
        let (kind, data): (MessageKind, Bytes) = match message {
            Message::Binary(data) => (MessageKind::Binary, data),
            Message::Text(text) => (MessageKind::Text, text.into()),
            Message::Ping(_) | Message::Pong(_) => {
                // A ping's pong is queued by tungstenite: make sure it leaves now.
                self.core.io.need_flush = true;
                self.core.timers.waiting_from(self.core.rt.now());
                return Ok(());
            }
            // Answered by tungstenite; the stream ends (None) once the answer is out.
            Message::Close(_) => {
                self.core.io.need_flush = true;
                return Ok(());
            }
            Message::Frame(_) => return Ok(()),
        };
        session.inner().stats.add_bytes_read(data.len() as u64);
        self.core.timers.waiting_from(self.core.rt.now());
        let max = session.max_msg_len();
        if data.len() > max {
            return Err(Error::FrameTooLarge {
                len: data.len(),
                max,
            });
        }
        decode_message(session.codec(), kind, data, &mut self.pending)
    }
}

/// Decodes every frame of one message with [`Codec::decode_message`] into `out`; any error (a
/// frame cut short included) refuses the message. An empty message is one package if the
/// codec makes one of it (the default codecs make none).
fn decode_message<C: Codec>(
    codec: &C,
    kind: MessageKind,
    data: Bytes,
    out: &mut VecDeque<C::Inbound>,
) -> Result<(), Error> {
    // No copy when tungstenite's buffer is the message's alone.
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        // The codec is user code: a panic closes this session only.
        let decoded = guarded_decode(|| codec.decode_message(kind, &mut buf))?;
        match decoded {
            Decoded::Frame(pkg) if before == 0 => {
                out.push_back(pkg);
                return Ok(());
            }
            Decoded::Frame(_) if buf.len() >= before => {
                return Err(Error::Codec(CodecError::invalid(
                    "the codec returned a frame without consuming any input",
                )))
            }
            Decoded::Frame(pkg) => out.push_back(pkg),
            Decoded::Incomplete(_) if buf.is_empty() => return Ok(()),
            Decoded::Incomplete(_) => {
                return Err(Error::Codec(CodecError::invalid(format!(
                    "the message ends inside a frame ({} bytes left over)",
                    buf.len()
                ))))
            }
        }
        if buf.is_empty() {
            return Ok(());
        }
    }
}

/// A WebSocket failure as a session error.
fn ws_error(err: WsError) -> Error {
    match err {
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
            Error::FrameTooLarge {
                len: size,
                max: max_size,
            }
        }
        WsError::Io(err) => Error::io("websocket", err),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Error::io(
            "websocket",
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed the connection without a close frame",
            ),
        ),
        other => Error::WebSocket(Box::new(other)),
    }
}

/// The WebSocket and the driver's side of the write queue.
struct MessageIo<T> {
    ws: WebSocketStream<T>,
    out: Outbox,
    /// Bytes and packages handed to tungstenite and not yet flushed to the socket.
    unflushed: Option<(usize, u64)>,
    /// A heartbeat ping is to be sent.
    ping_due: bool,
    /// The close frame has been sent (shutting down goes on with the stream underneath).
    close_sent: bool,
    /// The close frame to send: the session's reason for closing.
    close_frame: Option<CloseFrame>,
    /// Something (a pong, a close reply) waits in tungstenite's buffer.
    need_flush: bool,
    write_dead: bool,
    write_error: Option<Error>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> MessageIo<T> {
    fn poll_drain_inner<C: Codec>(
        &mut self,
        cx: &mut Context<'_>,
        session: &Session<C>,
    ) -> Poll<Result<(), WsError>> {
        let inner = session.inner();
        loop {
            inner.queue.drain(cx.waker(), &mut self.out);
            let written = inner.queue.written() + self.unflushed.map_or(0, |(b, _)| b as u64);
            let next = self.out.front_package(written);
            if next.is_none() && !self.ping_due {
                break;
            }
            ready!(Pin::new(&mut self.ws).poll_ready(cx))?;
            if self.ping_due {
                self.ping_due = false;
                Pin::new(&mut self.ws).start_send(Message::Ping(Bytes::new()))?;
                self.need_flush = true;
                continue;
            }
            let Some((data, envelope)) = next else {
                continue;
            };
            let len = data.len();
            let message = match envelope {
                // Text packages are made from `String`s; checked anyway, it costs little.
                Envelope::Text => Message::Text(
                    Utf8Bytes::try_from(data).map_err(|e| WsError::Utf8(e.to_string()))?,
                ),
                _ => Message::Binary(data),
            };
            Pin::new(&mut self.ws).start_send(message)?;
            self.out.pop_package(len);
            let (bytes, pkgs) = self.unflushed.unwrap_or((0, 0));
            self.unflushed = Some((bytes + len, pkgs + 1));
        }
        if self.need_flush || self.unflushed.is_some() {
            ready!(Pin::new(&mut self.ws).poll_flush(cx))?;
            self.need_flush = false;
            if let Some((bytes, pkgs)) = self.unflushed.take() {
                inner.stats.add_bytes_written(bytes as u64);
                inner.stats.add_pkgs_written(pkgs);
                inner.queue.advance(bytes);
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> DriverIo for MessageIo<T> {
    fn poll_drain<C: Codec>(
        &mut self,
        cx: &mut Context<'_>,
        session: &Session<C>,
    ) -> Poll<Result<(), Error>> {
        if self.write_dead {
            return Poll::Ready(Ok(()));
        }
        let result = ready!(self.poll_drain_inner(cx, session));
        Poll::Ready(result.map_err(|err| {
            // Nothing more can be sent: refuse new writes and release waiting writers.
            self.write_dead = true;
            session.begin_closing();
            session.inner().queue.kill();
            ws_error(err)
        }))
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

    fn set_close_reason(&mut self, reason: CloseReason) {
        self.close_frame = Some(CloseFrame {
            code: CloseCode::from(reason.code()),
            reason: Utf8Bytes::from(reason.text().to_string()),
        });
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // First a close frame with the session's reason (or the answer to the peer's, when the
        // peer closed first: tungstenite then ignores ours), flushed...
        if !self.close_sent {
            if self.close_frame.is_some() {
                match ready!(Pin::new(&mut self.ws).poll_ready(cx)) {
                    Ok(()) => {
                        let frame = self.close_frame.take();
                        match Pin::new(&mut self.ws).start_send(Message::Close(frame)) {
                            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {}
                            Err(err) => return Poll::Ready(Err(io::Error::other(err))),
                        }
                    }
                    Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                        self.close_frame = None;
                    }
                    Err(err) => return Poll::Ready(Err(io::Error::other(err))),
                }
            }
            match ready!(Pin::new(&mut self.ws).poll_close(cx)) {
                Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {}
                Err(err) => return Poll::Ready(Err(io::Error::other(err.to_string()))),
            }
            self.close_sent = true;
        }
        // ...then the stream underneath: TLS's close_notify, TCP's FIN.
        Pin::new(self.ws.get_mut()).poll_close(cx)
    }

    fn unsent_packages(&self) -> usize {
        self.out.ends.len()
    }
}
