//! The stream driver: one session over a byte stream (TCP, and later TLS).
//!
//! One task per session polls the read side, the write queue, the cron timer and the close
//! request together (see the module docs of [`crate::driver`]). Reading is a plain `read` into
//! the session's `BytesMut`: partial frames stay in the buffer, never in a cancelled future.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::panic::AssertUnwindSafe;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use futures_lite::future::poll_fn;
use futures_lite::io::{AsyncRead, AsyncWrite};

use super::{catch_handler, panic_message};
use crate::codec::{Codec, CodecError, Decoded};
use crate::error::Error;
use crate::listener::EventListener;
use crate::runtime::{timeout_at, Runtime, Timer};
use crate::session::Session;

/// The smallest (and first) read: getty reads 4 KiB at a time.
const MIN_READ: usize = 4 * 1024;
/// The largest read. Reads adapt between the two, as Netty's receive buffers do: a read that
/// fills what it was offered doubles the next offer, one that fills less than half halves it.
/// (Offered space is zeroed before each read: offering more than is read costs.)
const MAX_READ: usize = 64 * 1024;
/// Buffers handed to one vectored write.
const MAX_IOV: usize = 64;
/// Reads and packages handled in a row before the driver yields to its executor, so a
/// flooding peer cannot starve other sessions on executors without a cooperative budget.
const YIELD_BUDGET: u32 = 64;

/// Runs one stream session to its end: `on_open`, the event loop, then the close sequence.
pub(crate) async fn run<R, C, T>(
    rt: R,
    io: T,
    session: Session<C>,
    listener: Arc<dyn EventListener<C>>,
    on_established: impl FnOnce(),
) where
    R: Runtime,
    C: Codec,
    T: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut io = StreamIo::new(io);
    let opened = pump_while(
        &rt,
        &mut io,
        &session,
        "on_open",
        listener.on_open(&session),
    )
    .await;
    match opened {
        Ok(Some(Ok(()))) => {}
        Ok(Some(Err(reason))) => {
            log::info!("session {} refused by on_open: {reason}", session.id());
            return abort(&rt, io, &session).await;
        }
        Ok(None) => {
            log::info!("session {} closed while on_open was running", session.id());
            return abort(&rt, io, &session).await;
        }
        Err(panic) => {
            log::error!("session {} refused: {panic}", session.id());
            return abort(&rt, io, &session).await;
        }
    }
    log::debug!("session {} open", session.id());
    session.mark_established();
    on_established();

    let mut driver = Driver::new(rt, io, session, listener);
    let reason = driver.serve().await;
    driver.close(reason).await;
}

/// Shuts down a session that never opened: no `on_error`, no `on_close`.
async fn abort<R: Runtime, C: Codec, T: AsyncRead + AsyncWrite + Unpin>(
    rt: &R,
    mut io: StreamIo<T>,
    session: &Session<C>,
) {
    session.begin_closing();
    let deadline = rt.now() + session.close_wait();
    let _ = timeout_at(
        rt,
        deadline,
        poll_fn(|cx| Pin::new(&mut io.io).poll_close(cx)),
    )
    .await;
    session.finish_closed();
}

/// What woke the event loop.
enum Event<P> {
    Message(P),
    Cron,
    /// `close()` was called.
    CloseRequested,
    /// The peer ended the stream cleanly, between frames.
    Eof,
    Failed(Error),
}

struct Driver<R: Runtime, C: Codec, T> {
    rt: R,
    io: StreamIo<T>,
    session: Session<C>,
    listener: Arc<dyn EventListener<C>>,
    cron: R::Timer,
    cron_deadline: Instant,
    /// Present while a read timeout is set.
    read_timer: Option<R::Timer>,
    /// Since when the session has been waiting for the peer (for the read timeout).
    waiting_since: Instant,
    /// When the bytes being decoded were read: the arrival time of their packages.
    read_at: Instant,
    /// Reads and packages left before the next voluntary yield.
    budget: u32,
}

impl<R, C, T> Driver<R, C, T>
where
    R: Runtime,
    C: Codec,
    T: AsyncRead + AsyncWrite + Unpin + Send,
{
    fn new(
        rt: R,
        io: StreamIo<T>,
        session: Session<C>,
        listener: Arc<dyn EventListener<C>>,
    ) -> Self {
        let now = rt.now();
        let cron_deadline = now + session.cron_period();
        Driver {
            cron: rt.timer(cron_deadline),
            cron_deadline,
            read_timer: None,
            waiting_since: now,
            read_at: now,
            budget: YIELD_BUDGET,
            rt,
            io,
            session,
            listener,
        }
    }

    /// The event loop. Returns why it stopped: `None` for a clean end (EOF, `close()`).
    async fn serve(&mut self) -> Option<Error> {
        loop {
            let event = poll_fn(|cx| self.poll_event(cx)).await;
            let outcome = match event {
                Event::Message(pkg) => {
                    self.session.touch(self.read_at);
                    // The driver drains the queue right after the handler: replies it queues
                    // need no wake-up (which would cost a spurious poll and read).
                    self.session.inner().queue.unregister_driver();
                    let counters = &self.session.inner().stats;
                    counters.add_pkgs_read(1);
                    pump_while(
                        &self.rt,
                        &mut self.io,
                        &self.session,
                        "on_message",
                        self.listener.on_message(&self.session, pkg),
                    )
                    .await
                }
                Event::Cron => {
                    let outcome = pump_while(
                        &self.rt,
                        &mut self.io,
                        &self.session,
                        "on_cron",
                        self.listener.on_cron(&self.session),
                    )
                    .await;
                    self.cron_deadline = self.rt.now() + self.session.cron_period();
                    self.cron.reset(self.cron_deadline);
                    outcome
                }
                Event::CloseRequested | Event::Eof => return None,
                Event::Failed(err) => return Some(err),
            };
            match outcome {
                Ok(Some(())) => {}
                // Cancelled after the close-wait: the loop sees the close request next.
                Ok(None) => {}
                Err(panic) => return Some(panic),
            }
            // Time spent in a handler is not time spent waiting for the peer.
            if self.read_timer.is_some() {
                self.waiting_since = self.rt.now();
            }
        }
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Event<C::Inbound>> {
        if let Some(err) = self.io.write_error.take() {
            return Poll::Ready(Event::Failed(err));
        }
        if self.session.is_closing() {
            return Poll::Ready(Event::CloseRequested);
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
                    Ok(None) if self.io.eof => return Poll::Ready(Event::Eof),
                    Ok(None) => {}
                    Err(err) => return Poll::Ready(Event::Failed(err)),
                }
            }
            // Also registers for pushes and close requests (see `poll_drain_inner`).
            if let Poll::Ready(Err(err)) = self.io.poll_drain(cx, &self.session) {
                return Poll::Ready(Event::Failed(err));
            }
            // Checked again now that the waker is registered: a close requested before the
            // registration found no waker to wake, and must be seen here.
            if self.session.is_closing() {
                return Poll::Ready(Event::CloseRequested);
            }
            if self.budget == 0 {
                self.budget = YIELD_BUDGET;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if self.poll_cron(cx).is_ready() {
                return Poll::Ready(Event::Cron);
            }
            if let Poll::Ready(err) = self.poll_read_timeout(cx) {
                return Poll::Ready(Event::Failed(err));
            }
            let Poll::Ready(read) = self.io.poll_fill(cx) else {
                self.budget = YIELD_BUDGET;
                if self.io.read_buf.capacity() == 0 && self.io.out.is_empty() {
                    // Idle: no partial frame, nothing to write. Keep no buffers.
                    self.session.release_write_buffer();
                }
                return Poll::Pending;
            };
            match read {
                Ok(0) => self.io.eof = true,
                Ok(n) => {
                    self.budget -= 1;
                    self.session.inner().stats.add_bytes_read(n as u64);
                    self.read_at = self.rt.now();
                    self.waiting_since = self.read_at;
                }
                Err(err) => return Poll::Ready(Event::Failed(Error::io("read", err))),
            }
        }
    }

    /// Decodes one package from the read buffer, enforcing the maximum message length.
    fn decode(&mut self) -> Result<Option<C::Inbound>, Error> {
        let buf = &mut self.io.read_buf;
        if buf.is_empty() {
            return Ok(None);
        }
        let codec = self.session.codec();
        let eof = self.io.eof;
        let buffered = buf.len();
        // The codec is user code: a panic in it closes this session like a handler's would.
        let decoded = std::panic::catch_unwind(AssertUnwindSafe(|| {
            if eof {
                codec.decode_eof(buf)
            } else {
                codec.decode(buf)
            }
        }))
        .map_err(|payload| Error::HandlerPanic {
            handler: "decode",
            message: panic_message(payload.as_ref()),
        })??;
        let max = self.session.max_msg_len();
        match decoded {
            // A codec that hands out frames without consuming input would loop forever.
            Decoded::Frame(_) if buf.len() >= buffered => Err(Error::Codec(CodecError::invalid(
                "the codec returned a frame without consuming any input",
            ))),
            Decoded::Frame(pkg) => {
                self.io.frame_hint = 0;
                Ok(Some(pkg))
            }
            _ if self.io.eof => Err(Error::UnexpectedEof {
                buffered: buf.len(),
            }),
            Decoded::Incomplete(Some(len)) if len > max => Err(Error::FrameTooLarge { len, max }),
            Decoded::Incomplete(Some(len)) => {
                self.io.frame_hint = len;
                Ok(None)
            }
            Decoded::Incomplete(None) if buf.len() > max => Err(Error::FrameTooLarge {
                len: buf.len(),
                max,
            }),
            Decoded::Incomplete(None) => Ok(None),
        }
    }

    fn poll_cron(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            ready!(Pin::new(&mut self.cron).poll(cx));
            // A timer may fire late, never early; still, trust the clock over the timer.
            if self.rt.now() >= self.cron_deadline {
                return Poll::Ready(());
            }
            self.cron.reset(self.cron_deadline);
        }
    }

    fn poll_read_timeout(&mut self, cx: &mut Context<'_>) -> Poll<Error> {
        let Some(timeout) = self.session.read_timeout() else {
            self.read_timer = None;
            return Poll::Pending;
        };
        if self.read_timer.is_none() {
            // Handlers only keep `waiting_since` current while a timer exists.
            self.waiting_since = self.rt.now();
        }
        let deadline = self.waiting_since + timeout;
        let timer = self
            .read_timer
            .get_or_insert_with(|| self.rt.timer(deadline));
        loop {
            ready!(Pin::new(&mut *timer).poll(cx));
            let deadline = self.waiting_since + timeout;
            if self.rt.now() >= deadline {
                return Poll::Ready(Error::ReadTimeout(timeout));
            }
            // Data arrived since the timer was armed: move it instead of re-arming per read.
            timer.reset(deadline);
        }
    }

    /// The close sequence: stop reading, flush within the close-wait, shut down, then
    /// `on_error` (if `reason`) and `on_close`.
    async fn close(mut self, reason: Option<Error>) {
        let session = &self.session;
        session.begin_closing();
        let deadline = self.rt.now() + session.close_wait();
        let mut reason = reason;
        if !self.io.write_dead {
            let io = &mut self.io;
            let flushed = timeout_at(&self.rt, deadline, poll_fn(|cx| io.poll_drain(cx, session)));
            match flushed.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    log::debug!("session {}: flush on close failed: {err}", session.id());
                    reason.get_or_insert(err);
                }
                Err(_elapsed) => log::warn!(
                    "session {}: close-wait of {:?} passed with {} bytes unsent; they are dropped",
                    session.id(),
                    session.close_wait(),
                    session.inner().queue.queued()
                ),
            }
            let io = &mut self.io.io;
            let _ = timeout_at(
                &self.rt,
                deadline,
                poll_fn(|cx| Pin::new(&mut *io).poll_close(cx)),
            )
            .await;
        }
        session.inner().queue.kill();

        let handler_deadline = self.rt.now() + session.close_wait();
        if let Some(err) = &reason {
            log::info!("session {} failed: {err}", session.id());
            let on_error = catch_handler("on_error", self.listener.on_error(session, err));
            match timeout_at(&self.rt, handler_deadline, on_error).await {
                Ok(Ok(())) => {}
                Ok(Err(panic)) => log::error!("session {}: {panic}", session.id()),
                Err(_) => log::warn!(
                    "session {}: on_error cancelled after the close-wait",
                    session.id()
                ),
            }
        }
        let handler_deadline = handler_deadline.max(self.rt.now() + session.close_wait());
        let on_close = catch_handler("on_close", self.listener.on_close(session));
        match timeout_at(&self.rt, handler_deadline, on_close).await {
            Ok(Ok(())) => {}
            Ok(Err(panic)) => log::error!("session {}: {panic}", session.id()),
            Err(_) => log::warn!(
                "session {}: on_close cancelled after the close-wait",
                session.id()
            ),
        }
        log::debug!("session {} closed: {}", session.id(), session.stat());
        session.finish_closed();
    }
}

/// Runs a handler while keeping the write side moving, so that a handler awaiting its own
/// writes cannot deadlock the session.
///
/// Returns `Ok(Some(output))`, `Ok(None)` when the session was asked to close and the handler
/// was still running after the close-wait (it is then dropped), or the handler's panic.
async fn pump_while<R, C, T, F>(
    rt: &R,
    io: &mut StreamIo<T>,
    session: &Session<C>,
    handler: &'static str,
    future: F,
) -> Result<Option<F::Output>, Error>
where
    R: Runtime,
    C: Codec,
    T: AsyncRead + AsyncWrite + Unpin,
    F: Future,
{
    let mut future = pin!(catch_handler(handler, future));
    let mut close_timer: Option<(R::Timer, Instant)> = None;
    poll_fn(|cx| {
        if let Poll::Ready(out) = future.as_mut().poll(cx) {
            return Poll::Ready(out.map(Some));
        }
        if let Poll::Ready(Err(err)) = io.poll_drain(cx, session) {
            io.write_error = Some(err);
        }
        if session.is_closing() {
            let (timer, deadline) = close_timer.get_or_insert_with(|| {
                let deadline = rt.now() + session.close_wait();
                (rt.timer(deadline), deadline)
            });
            if Pin::new(timer).poll(cx).is_ready() && rt.now() >= *deadline {
                log::warn!(
                    "session {}: {handler} still running after the close-wait; cancelled",
                    session.id()
                );
                return Poll::Ready(Ok(None));
            }
        }
        Poll::Pending
    })
    .await
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
    out: VecDeque<Bytes>,
    /// End offsets of the packages in `out`, to count packages written.
    out_ends: VecDeque<u64>,
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
            out: VecDeque::new(),
            out_ends: VecDeque::new(),
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

    fn poll_drain_inner<C: Codec>(
        &mut self,
        cx: &mut Context<'_>,
        session: &Session<C>,
    ) -> Poll<io::Result<()>> {
        let inner = session.inner();
        loop {
            // Always, even with bytes still pending: this also registers the waker that a
            // push or a close request wakes, which the socket's waker alone would not.
            inner
                .queue
                .drain(cx.waker(), &mut self.out, &mut self.out_ends);
            if self.out.is_empty() {
                if self.need_flush {
                    ready!(Pin::new(&mut self.io).poll_flush(cx))?;
                    self.need_flush = false;
                }
                return Poll::Ready(Ok(()));
            }
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let mut count = 0;
            for (slot, buf) in slices.iter_mut().zip(self.out.iter()) {
                *slot = IoSlice::new(buf);
                count += 1;
            }
            let n = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.consume(n);
            // Statistics first: a writer waiting on these bytes may look at them as soon as
            // `advance` wakes it.
            let written = inner.queue.written() + n as u64;
            let mut pkgs = 0;
            while self.out_ends.front().is_some_and(|&end| end <= written) {
                self.out_ends.pop_front();
                pkgs += 1;
            }
            inner.stats.add_bytes_written(n as u64);
            inner.stats.add_pkgs_written(pkgs);
            inner.queue.advance(n);
            self.need_flush = true;
        }
    }

    /// Drops `n` written bytes from the front of `out`.
    fn consume(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.out.front_mut() else {
                return;
            };
            if front.len() <= n {
                n -= front.len();
                self.out.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
}
