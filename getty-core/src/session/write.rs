//! Writing to a session: see the table in the [`session`](super) module docs.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::write_queue::{Dest, Envelope};
use super::{Session, TransportKind};
use crate::codec::{Codec, CodecError, MessageKind};
use crate::error::{Error, Result};

/// Why a package [`Codec::outbound_kind`] calls text is refused.
const TEXT_NOT_UTF8: &str =
    "the codec encoded a text message (Codec::outbound_kind) that is not UTF-8";

/// Payloads shorter than this are copied into the write queue even as [`Frame::payload`]: an
/// extra iovec costs more than copying a few hundred bytes.
const SHARE_PAYLOAD_FROM: usize = 1024;

/// Something written to a session without its codec's `encode`: raw bytes, a shared payload
/// the codec frames with a header, or a WebSocket text message.
///
/// ```
/// use getty_core::bytes::Bytes;
/// use getty_core::session::Frame;
///
/// let raw = Frame::bytes(&b"\x00\x00\x00\x02hi"[..]); // sent as it is
/// let parts = Frame::vectored([Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
/// let shared = Frame::payload(Bytes::from(vec![7; 64 * 1024])); // framed, not copied
/// assert_eq!(raw.len(), 6);
/// assert_eq!(parts.len(), 2);
/// assert_eq!(shared.len(), 64 * 1024);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    kind: FrameKind,
    /// The first buffer; the only one but for vectored frames, so that a frame of one buffer
    /// (the per-message case) allocates nothing.
    first: Bytes,
    /// The buffers after `first` (vectored frames only).
    rest: Vec<Bytes>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameKind {
    Raw,
    Payload,
    Text,
}

impl Frame {
    /// Bytes sent exactly as they are, bypassing the codec (getty's `WriteBytes`). On a
    /// WebSocket session, one binary message; on UDP, one datagram.
    pub fn bytes(bytes: impl Into<Bytes>) -> Self {
        Frame {
            kind: FrameKind::Raw,
            first: bytes.into(),
            rest: Vec::new(),
        }
    }

    /// Several buffers sent as one unit, in one vectored write, without being copied into one
    /// buffer (getty's `WriteBytesArray`).
    pub fn vectored(bufs: impl IntoIterator<Item = Bytes>) -> Self {
        let mut bufs = bufs.into_iter();
        Frame {
            kind: FrameKind::Raw,
            first: bufs.next().unwrap_or_default(),
            rest: bufs.collect(),
        }
    }

    /// A payload framed by the codec as one package (the codec's header, then the bytes as they
    /// are) without copying a large payload: the queue keeps a reference to it until it is
    /// written. An echo of a received `Bytes` package is then zero-copy. Needs a codec whose
    /// frames are a header plus the payload ([`Codec::encode_header`]); with another codec the
    /// write fails with [`CodecError::Unsupported`].
    pub fn payload(payload: Bytes) -> Self {
        Frame {
            kind: FrameKind::Payload,
            first: payload,
            rest: Vec::new(),
        }
    }

    /// A WebSocket text message (bypassing the codec). On other transports the write fails
    /// with [`Error::Unsupported`].
    pub fn text(text: impl Into<String>) -> Self {
        Frame {
            kind: FrameKind::Text,
            first: Bytes::from(text.into()),
            rest: Vec::new(),
        }
    }

    /// The frame's length in bytes (a payload's without the codec's header).
    pub fn len(&self) -> usize {
        self.first.len() + self.rest.iter().map(Bytes::len).sum::<usize>()
    }

    /// Whether the frame has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("kind", &self.kind)
            .field("len", &self.len())
            .finish()
    }
}

/// What a waiting write carries.
enum Item<'a, C: Codec> {
    Pkg(&'a C::Outbound),
    Frame(Frame),
}

/// A write that completes once its bytes reached the socket: await it, optionally after
/// setting a [`timeout`](Self::timeout). Made by [`Session::send_and_flush`] and
/// [`Session::send_frame_and_flush`].
///
/// Its output is the number of bytes written (the encoded length). When the timeout passes
/// first, it is [`Error::WriteTimeout`] with how many bytes were sent; the rest stays queued
/// and is still sent in order, so the stream's framing stays intact.
#[must_use = "a flush does nothing unless awaited"]
pub struct Flush<'a, C: Codec> {
    session: &'a Session<C>,
    item: Item<'a, C>,
    to: Option<SocketAddr>,
    timeout: Option<Duration>,
}

impl<'a, C: Codec> Flush<'a, C> {
    /// Bounds the whole wait (room in the queue, then the socket) by `timeout`, instead of the
    /// session's [`write_timeout`](Session::write_timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl<C: Codec> fmt::Debug for Flush<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flush")
            .field("session", &self.session.id())
            .field("to", &self.to)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<'a, C: Codec> IntoFuture for Flush<'a, C> {
    type Output = Result<usize>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<usize>> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let session = self.session;
            let timeout = session.deadline(self.timeout);
            match self.item {
                Item::Pkg(pkg) => {
                    let dest = session.dest(self.to)?;
                    session
                        .wait_room(timeout, || session.encoded_len(pkg))
                        .await?;
                    let queued = session.push_pkg(pkg, true, dest)?;
                    session.wait_written(queued, timeout).await
                }
                Item::Frame(frame) => {
                    let dest = session.frame_dest(&frame, self.to)?;
                    let total = frame.len();
                    session.wait_room(timeout, || total).await?;
                    let queued = session.push_frame(frame, true, dest)?;
                    session.wait_written(queued, timeout).await
                }
            }
        })
    }
}

/// A write that waits for room in the queue, then queues: the future of [`Session::send`],
/// [`Session::send_frame`] and their [`SendTo`] forms.
///
/// Written by hand, not as an `async fn`: when the queue has room (the per-message case) its
/// one poll checks the destination and queues, with no layers of state to build and move.
/// The wait for room, rare, is boxed.
struct Enqueue<'a, C: Codec> {
    session: &'a Session<C>,
    /// Taken when queued (or refused).
    item: Option<Item<'a, C>>,
    to: Option<SocketAddr>,
    /// Present while waiting for room.
    room: Option<Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>>,
}

impl<'a, C: Codec> Enqueue<'a, C> {
    fn new(session: &'a Session<C>, item: Item<'a, C>, to: Option<SocketAddr>) -> Self {
        Enqueue {
            session,
            item: Some(item),
            to,
            room: None,
        }
    }
}

impl<C: Codec> Future for Enqueue<'_, C> {
    type Output = Result<usize>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<usize>> {
        let this = self.get_mut();
        let session = this.session;
        // As an `async fn`'s future does, this one panics when polled after it completed.
        let Some(item) = this.item.take() else {
            panic!("a send future polled after it completed");
        };
        // Checked before waiting, and again after (it cannot change): a write that can never
        // go out fails at once, not once there is room.
        let dest = match &item {
            Item::Pkg(_) => session.dest(this.to),
            Item::Frame(frame) => session.frame_dest(frame, this.to),
        };
        let dest = match dest {
            Ok(dest) => dest,
            Err(err) => return Poll::Ready(Err(err)),
        };
        if this.room.is_none() && !session.inner.queue.has_room() {
            this.room = Some(Box::pin(session.wait_room(None, || 0)));
        }
        if let Some(room) = &mut this.room {
            let Poll::Ready(waited) = room.as_mut().poll(cx) else {
                this.item = Some(item);
                return Poll::Pending;
            };
            this.room = None;
            if let Err(err) = waited {
                return Poll::Ready(Err(err));
            }
        }
        // A writer that waited for room is not refused for want of it: forced.
        let queued = match item {
            Item::Pkg(pkg) => session.push_pkg(pkg, true, dest),
            Item::Frame(frame) => session.push_frame(frame, true, dest),
        };
        Poll::Ready(queued.map(len_of))
    }
}

/// One datagram to an address, written through a UDP session: [`Session::to`].
///
/// A UDP endpoint has no single peer, so its writes name their destination this way; on a
/// connected UDP session the plain methods write to its peer. On a TCP, TLS or WebSocket
/// session every write through this view fails with [`Error::Unsupported`].
#[derive(Debug)]
pub struct SendTo<'a, C: Codec> {
    session: &'a Session<C>,
    to: SocketAddr,
}

impl<'a, C: Codec> SendTo<'a, C> {
    /// [`Session::try_send`] as one datagram to the address.
    pub fn try_send(&self, pkg: &C::Outbound) -> Result<usize> {
        self.session.try_send_pkg(pkg, Some(self.to))
    }

    /// [`Session::send`] as one datagram to the address.
    pub fn send<'b>(&'b self, pkg: &'b C::Outbound) -> impl Future<Output = Result<usize>> + 'b {
        Enqueue::new(self.session, Item::Pkg(pkg), Some(self.to))
    }

    /// [`Session::send_and_flush`] as one datagram to the address.
    pub fn send_and_flush(&self, pkg: &'a C::Outbound) -> Flush<'a, C> {
        self.session.flush(Item::Pkg(pkg), Some(self.to))
    }

    /// [`Session::try_send_frame`] as one datagram to the address.
    pub fn try_send_frame(&self, frame: Frame) -> Result<usize> {
        self.session.try_send_frame_to(frame, Some(self.to))
    }

    /// [`Session::send_frame`] as one datagram to the address.
    pub fn send_frame(&self, frame: Frame) -> impl Future<Output = Result<usize>> + '_ {
        Enqueue::new(self.session, Item::Frame(frame), Some(self.to))
    }

    /// [`Session::send_frame_and_flush`] as one datagram to the address.
    pub fn send_frame_and_flush(&self, frame: Frame) -> Flush<'a, C> {
        self.session.flush(Item::Frame(frame), Some(self.to))
    }
}

impl<C: Codec> Session<C> {
    /// Encodes `pkg` and queues it; returns its encoded length once queued (not yet written).
    /// Never waits: when the write queue is full the package is refused with
    /// [`Error::WouldBlock`]. Consecutive sends leave in one vectored write.
    ///
    /// ```no_run
    /// # use getty_core::{codec::Lines, Session};
    /// # fn f(session: &Session<Lines>) -> getty_core::Result<()> {
    /// session.try_send("hello")?;
    /// # Ok(()) }
    /// ```
    pub fn try_send(&self, pkg: &C::Outbound) -> Result<usize> {
        self.try_send_pkg(pkg, None)
    }

    /// Encodes `pkg` and queues it, first waiting while the write queue is full; returns its
    /// encoded length once queued (not yet written).
    ///
    /// This is the write for handlers: it batches like [`try_send`](Session::try_send) and,
    /// when the peer reads slower than the session writes, holds the handler (and so the
    /// session's reading) instead of growing the queue.
    ///
    /// ```no_run
    /// # use getty_core::{codec::Lines, Session};
    /// # async fn f(session: &Session<Lines>) -> getty_core::Result<()> {
    /// session.send("hello").await?;
    /// # Ok(()) }
    /// ```
    pub fn send<'a>(&'a self, pkg: &'a C::Outbound) -> impl Future<Output = Result<usize>> + 'a {
        Enqueue::new(self, Item::Pkg(pkg), None)
    }

    /// Encodes `pkg`, queues it (waiting for room) and waits until its bytes reached the
    /// socket, within the session's [`write_timeout`](Session::write_timeout) or the one given
    /// with [`Flush::timeout`].
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use getty_core::{codec::Lines, Session};
    /// # async fn f(session: &Session<Lines>) -> getty_core::Result<()> {
    /// let written = session.send_and_flush("bye").timeout(Duration::from_secs(1)).await?;
    /// assert_eq!(written, 4); // "bye\n"
    /// # Ok(()) }
    /// ```
    pub fn send_and_flush<'a>(&'a self, pkg: &'a C::Outbound) -> Flush<'a, C> {
        self.flush(Item::Pkg(pkg), None)
    }

    /// Queues `frame` like [`try_send`](Session::try_send) (never waits); returns its length
    /// on the wire once queued.
    pub fn try_send_frame(&self, frame: Frame) -> Result<usize> {
        self.try_send_frame_to(frame, None)
    }

    /// Queues `frame` like [`send`](Session::send) (waits for room); returns its length on the
    /// wire once queued.
    ///
    /// ```no_run
    /// # use getty_core::{bytes::Bytes, codec::LengthDelimited, session::Frame, Session};
    /// # async fn f(session: &Session<LengthDelimited>, pkg: Bytes) -> getty_core::Result<()> {
    /// // An echo that does not copy a large payload: the queue keeps a reference to it.
    /// session.send_frame(Frame::payload(pkg)).await?;
    /// # Ok(()) }
    /// ```
    pub fn send_frame(&self, frame: Frame) -> impl Future<Output = Result<usize>> + '_ {
        Enqueue::new(self, Item::Frame(frame), None)
    }

    /// Queues `frame` and waits until it is written, like
    /// [`send_and_flush`](Session::send_and_flush).
    pub fn send_frame_and_flush(&self, frame: Frame) -> Flush<'_, C> {
        self.flush(Item::Frame(frame), None)
    }

    /// Writes to `to` instead of the session's peer: one datagram per write (UDP).
    ///
    /// ```no_run
    /// # use getty_core::{codec::LengthDelimited, Session};
    /// # async fn f(session: &Session<LengthDelimited>, peer: std::net::SocketAddr) {
    /// let _ = session.to(peer).send(b"pong").await;
    /// # }
    /// ```
    pub fn to(&self, to: SocketAddr) -> SendTo<'_, C> {
        SendTo { session: self, to }
    }

    /// Whether the write queue has room: a non-waiting send would be accepted now.
    pub fn is_writable(&self) -> bool {
        self.inner.queue.has_room()
    }

    /// Bytes queued and not yet written to the socket.
    pub fn queued_bytes(&self) -> usize {
        self.inner.queue.queued()
    }

    fn flush<'a>(&'a self, item: Item<'a, C>, to: Option<SocketAddr>) -> Flush<'a, C> {
        Flush {
            session: self,
            item,
            to,
            timeout: None,
        }
    }

    fn try_send_pkg(&self, pkg: &C::Outbound, to: Option<SocketAddr>) -> Result<usize> {
        let dest = self.dest(to)?;
        self.push_pkg(pkg, false, dest).map(len_of)
    }

    fn try_send_frame_to(&self, frame: Frame, to: Option<SocketAddr>) -> Result<usize> {
        let dest = self.frame_dest(&frame, to)?;
        self.push_frame(frame, false, dest).map(len_of)
    }

    /// Where a package goes: a stream writes to its peer (an address is an error); a datagram
    /// session to `to`, else to its peer (an endpoint has none: an error).
    pub(crate) fn dest(&self, to: Option<SocketAddr>) -> Result<Dest> {
        match (self.inner.transport, to) {
            (TransportKind::Stream, None) => Ok(None),
            (TransportKind::WebSocket, None) => Ok(Some(Envelope::Binary)),
            (TransportKind::Stream | TransportKind::WebSocket, Some(_)) => {
                Err(self.unsupported("a write to an address needs a UDP session"))
            }
            (TransportKind::Datagram, to) => match to.or(self.inner.peer_addr) {
                Some(to) => Ok(Some(Envelope::Datagram(to))),
                None => Err(self.unsupported(
                    "a UDP endpoint has no single peer: write with session.to(address)",
                )),
            },
        }
    }

    fn frame_dest(&self, frame: &Frame, to: Option<SocketAddr>) -> Result<Dest> {
        match frame.kind {
            FrameKind::Text if self.inner.transport != TransportKind::WebSocket => {
                Err(self.unsupported("a text message needs a WebSocket session"))
            }
            FrameKind::Text if to.is_some() => {
                Err(self.unsupported("a write to an address needs a UDP session"))
            }
            FrameKind::Text => Ok(Some(Envelope::Text)),
            FrameKind::Raw | FrameKind::Payload => self.dest(to),
        }
    }

    fn unsupported(&self, what: &'static str) -> Error {
        Error::Unsupported {
            id: self.id(),
            what,
        }
    }

    /// Encodes `pkg` into the write queue; on WebSocket, as the kind of message the codec says
    /// (binary unless [`Codec::outbound_kind`] says text).
    fn push_pkg(&self, pkg: &C::Outbound, force: bool, dest: Dest) -> Result<(u64, u64)> {
        let codec = &self.inner.codec;
        self.push_encoded_pkg(pkg, force, dest, |dst| codec.encode(pkg, dst))
    }

    /// [`push_pkg`](Self::push_pkg) with `encode` writing `pkg` (a request, say).
    pub(super) fn push_encoded_pkg(
        &self,
        pkg: &C::Outbound,
        force: bool,
        dest: Dest,
        encode: impl FnOnce(&mut BytesMut) -> std::result::Result<(), CodecError>,
    ) -> Result<(u64, u64)> {
        let codec = &self.inner.codec;
        if dest == Some(Envelope::Binary) && codec.outbound_kind(pkg) == MessageKind::Text {
            // A text message must be UTF-8: refused here, the session goes on.
            let text = Some(Envelope::Text);
            return self
                .inner
                .queue
                .push_encoded(self.id(), force, text, |dst| {
                    let start = dst.len();
                    encode(dst)?;
                    match std::str::from_utf8(&dst[start..]) {
                        Ok(_) => Ok(()),
                        Err(_) => Err(CodecError::invalid(TEXT_NOT_UTF8)),
                    }
                });
        }
        self.inner
            .queue
            .push_encoded(self.id(), force, dest, encode)
    }

    fn push_frame(&self, frame: Frame, force: bool, dest: Dest) -> Result<(u64, u64)> {
        let Frame { kind, first, rest } = frame;
        if kind != FrameKind::Payload {
            let bufs = std::iter::once(first).chain(rest);
            return self.inner.queue.push_shared(self.id(), force, dest, bufs);
        }
        let payload = first;
        let codec = &self.inner.codec;
        let len = payload.len();
        if len < SHARE_PAYLOAD_FROM {
            return self
                .inner
                .queue
                .push_encoded(self.id(), force, dest, |dst| {
                    match codec.encode_header(len, dst) {
                        Some(header) => header.map(|()| dst.extend_from_slice(&payload)),
                        None => Err(CodecError::Unsupported("shared payloads")),
                    }
                });
        }
        let framed = self
            .inner
            .queue
            .push_framed(self.id(), force, dest, payload, |dst| {
                codec.encode_header(len, dst)
            });
        match framed {
            Ok(queued) => queued,
            Err(_payload) => Err(Error::Codec(CodecError::Unsupported("shared payloads"))),
        }
    }

    /// The encoded length of `pkg`, for errors raised before it was queued.
    fn encoded_len(&self, pkg: &C::Outbound) -> usize {
        let mut scratch = BytesMut::new();
        match self.inner.codec.encode(pkg, &mut scratch) {
            Ok(()) => scratch.len(),
            Err(_) => 0,
        }
    }

    /// Runs `future` until `deadline` (if any); `None` when the deadline passed first. The
    /// timer is only created when the future does not complete at once.
    pub(super) async fn until<F: Future>(
        &self,
        deadline: Option<Instant>,
        future: F,
    ) -> Option<F::Output> {
        let mut future = std::pin::pin!(future);
        if let Some(out) = futures_lite::future::poll_once(future.as_mut()).await {
            return Some(out);
        }
        let Some(deadline) = deadline else {
            return Some(future.await);
        };
        let timer = self.inner.rt.sleep_until(deadline);
        futures_lite::future::or(async { Some(future.await) }, async {
            timer.await;
            None
        })
        .await
    }

    /// The timeout of a waiting write (the given one or the session's), with its deadline
    /// (none when it is too far to represent).
    fn deadline(&self, timeout: Option<Duration>) -> Option<(Duration, Instant)> {
        let timeout = timeout.or_else(|| self.write_timeout())?;
        self.inner
            .rt
            .now()
            .checked_add(timeout)
            .map(|deadline| (timeout, deadline))
    }

    /// Waits while the queue is full. Past the deadline, the result is a `WriteTimeout` for a
    /// write of `total()` bytes of which nothing was sent.
    async fn wait_room(
        &self,
        timeout: Option<(Duration, Instant)>,
        total: impl FnOnce() -> usize,
    ) -> Result<()> {
        match self
            .until(timeout.map(|t| t.1), self.inner.queue.wait_room())
            .await
        {
            Some(Ok(())) => Ok(()),
            Some(Err(())) => Err(Error::SessionClosed { id: self.id() }),
            None => Err(Error::WriteTimeout {
                timeout: timeout.map(|t| t.0).unwrap_or_default(),
                total: total(),
                sent: 0,
            }),
        }
    }

    /// Waits (until the deadline) for the bytes `[start, end)` to reach the socket.
    async fn wait_written(
        &self,
        (start, end): (u64, u64),
        timeout: Option<(Duration, Instant)>,
    ) -> Result<usize> {
        let total = len_of((start, end));
        match self
            .until(timeout.map(|t| t.1), self.inner.queue.wait_written(end))
            .await
        {
            Some(Ok(())) => Ok(total),
            Some(Err(())) => Err(Error::SessionClosed { id: self.id() }),
            None => {
                let written = self.inner.queue.written();
                Err(Error::WriteTimeout {
                    timeout: timeout.map(|t| t.0).unwrap_or_default(),
                    total,
                    sent: len_of((start, written.clamp(start, end))),
                })
            }
        }
    }
}

/// The length of the byte range `[start, end)`.
fn len_of((start, end): (u64, u64)) -> usize {
    usize::try_from(end - start).unwrap_or(usize::MAX)
}
