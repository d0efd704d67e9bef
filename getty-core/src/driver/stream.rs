//! The stream driver: one session over a byte stream (TCP, and later TLS).
//!
//! One task per session polls the read side, the write queue, the cron timer and the close
//! request together (see the module docs of [`crate::driver`]). Reading is a plain `read` into
//! the session's `BytesMut`: partial frames stay in the buffer, never in a cancelled future.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::BytesMut;
use futures_lite::future::poll_fn;
use futures_lite::io::{AsyncRead, AsyncWrite};

use super::{
    cron, guarded_decode, run_session, start_handler, Core, DriverIo, Event, HandlerRun, Serve,
    YIELD_BUDGET,
};
use crate::codec::{Codec, CodecError, Decoded};
use crate::error::Error;
use crate::listener::EventListener;
use crate::pool::TaskPool;
use crate::runtime::Runtime;
use crate::session::{Outbox, Session};

/// The smallest (and first) read: getty reads 4 KiB at a time.
const MIN_READ: usize = 4 * 1024;
/// The largest read. Reads adapt between the two, as Netty's receive buffers do: a read that
/// fills what it was offered doubles the next offer, one that fills less than half halves it.
/// (Offered space is zeroed before each read: offering more than is read costs.)
const MAX_READ: usize = 64 * 1024;
/// Buffers handed to one vectored write.
const MAX_IOV: usize = 64;

/// Runs one stream session to its end (see [`run_session`]).
pub(crate) fn run<R, C, L, T>(
    rt: R,
    io: T,
    session: Session<C>,
    listener: Arc<L>,
    pool: Option<Arc<TaskPool>>,
    on_established: impl FnOnce(),
) -> impl Future<Output = ()>
where
    R: Runtime,
    C: Codec,
    L: EventListener<C>,
    T: AsyncRead + AsyncWrite + Unpin + Send,
{
    let io = StreamIo::new(io);
    run_session(rt, io, session, listener, pool, on_established, |core| {
        Driver {
            read_at: core.rt.now(),
            budget: YIELD_BUDGET,
            running: HandlerRun::new("on_message"),
            started: None,
            core,
        }
    })
}

struct Driver<R: Runtime, C: Codec, L, T> {
    core: Core<R, C, L, StreamIo<T>>,
    /// When the bytes being decoded were read: the arrival time of their packages.
    read_at: Instant,
    /// Reads and packages left before the next voluntary yield.
    budget: u32,
    /// The `on_message` in progress (inline, see `event_loop`), and when it started.
    running: HandlerRun<R>,
    started: Option<Instant>,
}

impl<R, C, L, T> Serve<R, C, L, StreamIo<T>> for Driver<R, C, L, T>
where
    R: Runtime,
    C: Codec,
    L: EventListener<C>,
    T: AsyncRead + AsyncWrite + Unpin + Send,
{
    fn core(&mut self) -> &mut Core<R, C, L, StreamIo<T>> {
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
    /// The event loop. Returns why it stopped: `None` for a clean end (EOF, `close()`).
    async fn event_loop(&mut self) -> Option<Error> {
        // The per-package path runs inline, in one poll: decode, start `on_message` in `slot`,
        // poll it, and, when it is done at once (the common case), decode the next package.
        // Its future borrows these clones, not the driver, which the poll needs mutably.
        let listener = self.core.listener.clone();
        let session = self.core.session.clone();
        let start = |pkg| listener.on_message(&session, pkg);
        let mut slot = pin!(None);
        loop {
            let event = poll_fn(|cx| self.poll_inline(cx, &start, slot.as_mut())).await;
            let started = self.core.handler_start();
            let outcome = match event {
                // With a task pool only (inline, a package never leaves `poll_inline`), already
                // counted. Boxed, as the pool's path boxes its job anyway.
                Event::Message(pkg) => Box::pin(self.core.on_message(Some(pkg))).await,
                // Rare: boxed, so that their futures take no room in the event loop's.
                Event::Cron => Box::pin(cron(&mut self.core)).await,
                Event::CloseRequested | Event::Eof => return None,
                Event::Failed(err) => return Some(Box::pin(self.core.failing(err)).await),
            };
            // `Ok(None)`: cancelled after the close-wait; the loop sees the close request next.
            if let Err(panic) = outcome {
                return Some(panic);
            }
            // Time spent in a handler is not time spent waiting for the peer.
            self.core.handler_done(started);
        }
    }

    /// Runs the `on_message` in `slot` (started by `start`) and those of the packages
    /// buffered after it, until one is pending or an event other than a package comes (a
    /// package too, with a task pool: it then goes through [`Core::on_message`]).
    fn poll_inline<F>(
        &mut self,
        cx: &mut Context<'_>,
        start: &impl Fn(C::Inbound) -> F,
        mut slot: Pin<&mut Option<F>>,
    ) -> Poll<Event<C::Inbound>>
    where
        F: Future<Output = ()>,
    {
        loop {
            if let Some(handler) = slot.as_mut().as_pin_mut() {
                let core = &mut self.core;
                let outcome =
                    ready!(self
                        .running
                        .poll(&core.rt, &mut core.io, &core.session, handler, cx));
                slot.set(None);
                // `Ok(None)`: cancelled after the close-wait; `poll_event` sees the close
                // request next.
                if let Err(panic) = outcome {
                    return Poll::Ready(Event::Failed(panic));
                }
                // Time spent in a handler is not time spent waiting for the peer.
                self.core.handler_done(self.started);
            }
            let pkg = match ready!(self.poll_event(cx)) {
                Event::Message(pkg) => pkg,
                event => return Poll::Ready(event),
            };
            self.started = self.core.handler_start();
            let Some(pkg) = self.core.received(self.read_at, pkg) else {
                continue;
            };
            if self.core.pool_or_here().is_some() {
                return Poll::Ready(Event::Message(pkg));
            }
            self.running = HandlerRun::new("on_message");
            match start_handler("on_message", || start(pkg)) {
                Ok(handler) => slot.set(Some(handler)),
                Err(panic) => return Poll::Ready(Event::Failed(panic)),
            }
        }
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Event<C::Inbound>> {
        if let Some(event) = self.core.poll_start() {
            return Poll::Ready(event);
        }
        loop {
            // Hand out every package already buffered before writing: the replies of one read
            // then leave in one vectored write, not one write per package.
            if self.budget > 0 {
                match self.decode() {
                    Ok(Some(pkg)) => {
                        self.budget -= 1;
                        return Poll::Ready(Event::Message(pkg));
                    }
                    Ok(None) if self.core.io.eof => return Poll::Ready(Event::Eof),
                    Ok(None) => {}
                    Err(err) => return Poll::Ready(Event::Failed(err)),
                }
            }
            if let Some(event) = ready!(self.core.poll_turn(&mut self.budget, cx)) {
                return Poll::Ready(event);
            }
            let Poll::Ready(read) = self.core.io.poll_fill(cx) else {
                self.budget = YIELD_BUDGET;
                if self.core.io.read_buf.capacity() == 0 && self.core.io.out.is_empty() {
                    // Idle: no partial frame, nothing to write. Keep no buffers.
                    self.core.session.release_write_buffer();
                }
                return Poll::Pending;
            };
            match read {
                Ok(0) => self.core.io.eof = true,
                Ok(n) => {
                    self.budget -= 1;
                    self.core.session.inner().stats.add_bytes_read(n as u64);
                    self.read_at = self.core.rt.now();
                    self.core.timers.waiting_from(self.read_at);
                }
                Err(err) => return Poll::Ready(Event::Failed(Error::read(err))),
            }
        }
    }

    /// Decodes one package from the read buffer, enforcing the maximum message length.
    fn decode(&mut self) -> Result<Option<C::Inbound>, Error> {
        let buf = &mut self.core.io.read_buf;
        if buf.is_empty() {
            return Ok(None);
        }
        let codec = self.core.session.codec();
        let eof = self.core.io.eof;
        let buffered = buf.len();
        // The codec is user code: a panic in it closes this session like a handler's would.
        let decoded = guarded_decode(|| {
            if eof {
                codec.decode_eof(buf)
            } else {
                codec.decode(buf)
            }
        })?;
        let max = self.core.session.max_msg_len();
        match decoded {
            // A codec that hands out frames without consuming input would loop forever.
            Decoded::Frame(_) if buf.len() >= buffered => Err(Error::Codec(CodecError::invalid(
                "the codec returned a frame without consuming any input",
            ))),
            // A frame that arrived whole never went through the `Incomplete` checks below.
            Decoded::Frame(_) if buffered - buf.len() > max => Err(Error::FrameTooLarge {
                len: buffered - buf.len(),
                max,
            }),
            Decoded::Frame(pkg) => {
                self.core.io.frame_hint = 0;
                Ok(Some(pkg))
            }
            _ if self.core.io.eof => Err(Error::UnexpectedEof {
                buffered: buf.len(),
            }),
            Decoded::Incomplete(Some(len)) if len > max => Err(Error::FrameTooLarge { len, max }),
            Decoded::Incomplete(Some(len)) => {
                self.core.io.frame_hint = len;
                Ok(None)
            }
            Decoded::Incomplete(None) if buf.len() > max => Err(Error::FrameTooLarge {
                len: buf.len(),
                max,
            }),
            Decoded::Incomplete(None) => Ok(None),
        }
    }
}

/// The socket with its read buffer and the driver's side of the write queue.
struct StreamIo<T> {
    io: T,
    read_buf: BytesMut,
    /// Total length of the frame being read, once its header is known (0 otherwise).
    frame_hint: usize,
    /// How many bytes the next read is offered, between `MIN_READ` and `MAX_READ`.
    read_size: usize,
    eof: bool,
    /// Buffers taken from the session's queue, not yet fully written.
    out: Outbox,
    need_flush: bool,
    /// Set once a write failed: nothing more is written.
    write_dead: bool,
    /// A write error seen while a handler was running, reported by the event loop.
    write_error: Option<Error>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> StreamIo<T> {
    fn new(io: T) -> Self {
        StreamIo {
            io,
            read_buf: BytesMut::new(),
            frame_hint: 0,
            read_size: MIN_READ,
            eof: false,
            out: Outbox::default(),
            need_flush: false,
            write_dead: false,
            write_error: None,
        }
    }

    /// Reads once into the buffer, offering the adaptive read size or, when a frame's header
    /// said so, the rest of that frame if larger (reserved at once, not grown step by step).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let len = self.read_buf.len();
        let want = self.frame_hint.saturating_sub(len).max(self.read_size);
        self.read_buf.reserve(want);
        // A large frame is reserved whole but read (and zeroed) at most MAX_READ at a time.
        let offer = want.min(MAX_READ);
        self.read_buf.resize(len + offer, 0);
        let result = Pin::new(&mut self.io).poll_read(cx, &mut self.read_buf[len..]);
        let n = match &result {
            Poll::Ready(Ok(n)) => *n,
            _ => 0,
        };
        self.read_buf.truncate(len + n);
        if result.is_ready() {
            if n == offer {
                self.read_size = (self.read_size * 2).min(MAX_READ);
            } else if n < offer / 2 {
                self.read_size = (self.read_size / 2).max(MIN_READ);
            }
        }
        if result.is_pending() && len == 0 {
            // Nothing buffered and nothing to read: an idle session keeps no read buffer (the
            // next read allocates one), so thousands of idle sessions cost little memory.
            self.read_buf = BytesMut::new();
        }
        result
    }

    fn poll_drain_inner<C: Codec>(
        &mut self,
        cx: &mut Context<'_>,
        session: &Session<C>,
    ) -> Poll<io::Result<()>> {
        let inner = session.inner();
        loop {
            // Always, even with bytes still pending: this also registers the waker that a
            // push or a close request wakes, which the socket's waker alone would not.
            inner.queue.drain(cx.waker(), &mut self.out);
            if self.out.is_empty() {
                if self.need_flush {
                    ready!(Pin::new(&mut self.io).poll_flush(cx))?;
                    self.need_flush = false;
                }
                return Poll::Ready(Ok(()));
            }
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let mut count = 0;
            for (slot, buf) in slices.iter_mut().zip(self.out.bufs.iter()) {
                *slot = IoSlice::new(buf);
                count += 1;
            }
            let n = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.consume(n);
            // Statistics first: a writer waiting on these bytes may look at them as soon as
            // `advance` wakes it.
            let written = inner.queue.written() + n as u64;
            let pkgs = self.out.complete(written);
            inner.stats.add_bytes_written(n as u64);
            inner.stats.add_pkgs_written(pkgs);
            inner.queue.advance(n);
            self.need_flush = true;
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> DriverIo for StreamIo<T> {
    /// Writes everything queued, as vectored writes, then flushes. `Ready(Ok)` once the queue
    /// is empty (the waker is then registered for the next push or close).
    fn poll_drain<C: Codec>(
        &mut self,
        cx: &mut Context<'_>,
        session: &Session<C>,
    ) -> Poll<Result<(), Error>> {
        if self.write_dead {
            return Poll::Ready(Ok(()));
        }
        match self.poll_drain_inner(cx, session) {
            Poll::Ready(Err(err)) => {
                // Nothing more can be written: refuse new writes and release waiting writers.
                self.write_dead = true;
                session.begin_closing();
                session.inner().queue.kill();
                Poll::Ready(Err(Error::io("write", err)))
            }
            other => other.map(|r| r.map_err(|e| Error::io("write", e))),
        }
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

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_close(cx)
    }

    fn unsent_packages(&self) -> usize {
        self.out.ends.len()
    }
}

#[cfg(all(test, feature = "compression"))]
mod tests {
    use crate::codec::{Endian, LengthDelimited};
    use crate::compress::Compression;
    use crate::fuzzing::{run_stream_session, SessionEvent, StreamCase};

    /// Found by the `session_read` fuzz target (input `60 00 60 00 25 00 01 21`): a frame over
    /// the maximum message length was delivered when it arrived whole in one read, since only
    /// an incomplete frame's declared length was checked. Here a 1-byte header and a 1-byte
    /// payload, 2 bytes against a maximum of 1, plain and (as the fuzzer sent it) deflated.
    #[test]
    fn a_whole_frame_over_the_maximum_is_refused() {
        let deflated: &[u8] = &[98, 84, 4, 0, 0, 0, 255, 255, 3, 0];
        for (compression, wire) in [
            (Compression::None, &b"\x01!"[..]),
            (Compression::DeflateBestCompression, deflated),
        ] {
            for (max_msg_len, delivered) in [(1, false), (2, true)] {
                let report = run_stream_session(&StreamCase {
                    codec: LengthDelimited::new(1, Endian::Big).expect("codec"),
                    max_msg_len,
                    compression,
                    echo: false,
                    write_step: 1,
                    chunks: &[wire],
                });
                let expected = match delivered {
                    true => SessionEvent::Message(bytes::Bytes::from_static(b"!")),
                    false => SessionEvent::Error("FrameTooLarge { len: 2, max: 1 }".into()),
                };
                assert_eq!(
                    report.events,
                    [SessionEvent::Open, expected, SessionEvent::Close],
                    "{compression:?}, max {max_msg_len}"
                );
            }
        }
    }
}
