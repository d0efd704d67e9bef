//! The session's write queue: handles push encoded bytes, the driver drains them.
//!
//! Bytes are numbered from the start of the session: a push learns the offsets `[start, end)`
//! of its bytes, and the driver publishes how many bytes reached the socket. A waiting write is
//! then simply "wait until `written >= end`", and a timed-out one knows how much was sent.
//!
//! The queue is bounded in bytes by two water marks, as Netty's channels are: it becomes *full*
//! when a push takes it to the high mark or beyond, and stays full until the driver has written
//! it down to the low mark. A full queue refuses non-waiting pushes; waiting writers wait for
//! room first.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::Waker;

use bytes::{Bytes, BytesMut};
use event_listener::Event;

use super::lock;
use crate::codec::CodecError;
use crate::error::{Error, Result};

/// Default high-water mark of a session's write queue.
pub const DEFAULT_HIGH_WATER: usize = 1024 * 1024;
/// Default low-water mark of a session's write queue.
pub const DEFAULT_LOW_WATER: usize = 512 * 1024;

pub(crate) struct WriteQueue {
    state: Mutex<QueueState>,
    /// Bytes that reached the socket, counted from the start of the session.
    written: AtomicU64,
    /// Mirror of `QueueState::enqueued`, so the driver can test the low mark without the lock.
    enqueued: AtomicU64,
    /// Above the high mark and not yet written down to the low mark.
    full: AtomicBool,
    low: AtomicUsize,
    high: AtomicUsize,
    /// Set once nothing more will be written (the driver stopped writing).
    dead: AtomicBool,
    /// Whether `QueueState::driver` holds a waker: set only by the driver's `drain`, cleared
    /// wherever the waker is taken, both under the lock. The driver reads it without the lock
    /// to skip `unregister_driver`'s lock when there is nothing to forget (the common case:
    /// every package of a read after the first).
    driver_registered: AtomicBool,
    /// Notified whenever `written` grows, room frees up, or the queue closes or dies.
    progress: Event,
}

impl Default for WriteQueue {
    fn default() -> Self {
        WriteQueue {
            state: Mutex::default(),
            written: AtomicU64::new(0),
            enqueued: AtomicU64::new(0),
            full: AtomicBool::new(false),
            low: AtomicUsize::new(DEFAULT_LOW_WATER),
            high: AtomicUsize::new(DEFAULT_HIGH_WATER),
            dead: AtomicBool::new(false),
            driver_registered: AtomicBool::new(false),
            progress: Event::new(),
        }
    }
}

#[derive(Default)]
struct QueueState {
    bufs: VecDeque<Bytes>,
    /// Encoded packages not yet moved to `bufs`: contiguous, so a run of them is one buffer.
    /// Once every buffer cut from it has been written, its allocation is reused.
    tail: BytesMut,
    /// End offset of every queued package, to count packages as they are written.
    ends: VecDeque<u64>,
    /// How every queued package of a message session leaves (empty for streams).
    dests: VecDeque<Envelope>,
    /// End offset of everything ever queued.
    enqueued: u64,
    /// No more pushes accepted.
    closed: bool,
    /// The driver's waker, woken on push and on close.
    driver: Option<Waker>,
}

impl QueueState {
    /// The tail, ready for one more package to be encoded into it (undone unless committed).
    fn tail_for_encoding(&mut self) -> Rollback<'_> {
        // A package that outgrows the tail's allocation makes the codec's `reserve` copy the
        // tail's contents: keep that copy small by sealing a long tail first.
        if self.tail.len() >= SEAL_AT {
            self.seal_tail();
        }
        if self.tail.capacity() - self.tail.len() < ENCODE_MIN_ROOM {
            self.tail.reserve(ENCODE_CHUNK);
        }
        Rollback::new(&mut self.tail)
    }

    /// Moves the tail's bytes to `bufs`, keeping the order of everything queued.
    fn seal_tail(&mut self) {
        if !self.tail.is_empty() {
            let sealed = self.tail.split().freeze();
            self.bufs.push_back(sealed);
        }
    }
}

/// Encoding starts a new chunk of the tail when less than this is left...
const ENCODE_MIN_ROOM: usize = 512;
/// ...and the new chunk is at least this large.
const ENCODE_CHUNK: usize = 8 * 1024;
/// A tail this long is sealed before the next package is encoded (see `push_encoded`).
const SEAL_AT: usize = 4 * 1024;

/// How one package of a message session leaves: as a datagram to an address (UDP), or as a
/// binary or text message (WebSocket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Envelope {
    Datagram(SocketAddr),
    Binary,
    Text,
}

/// How a package leaves: `None` on a byte stream (its bytes simply follow the previous ones),
/// its envelope on a message session.
pub(crate) type Dest = Option<Envelope>;

/// The largest UDP payload: 65,535 minus the IP and UDP headers.
pub(crate) fn max_datagram(to: SocketAddr) -> usize {
    match to {
        SocketAddr::V4(_) => 65_507,
        SocketAddr::V6(_) => 65_527,
    }
}

/// Refuses a datagram package that cannot be sent whole.
fn fits_datagram(dest: Dest, len: usize) -> Result<()> {
    match dest {
        Some(Envelope::Datagram(to)) if len > max_datagram(to) => Err(Error::DatagramTooLarge {
            len,
            max: max_datagram(to),
        }),
        _ => Ok(()),
    }
}

/// The driver's side of the queue: what it took out and is writing.
#[derive(Default)]
pub(crate) struct Outbox {
    /// Buffers not yet fully written.
    pub(crate) bufs: VecDeque<Bytes>,
    /// End offsets of the packages in `bufs`, to count packages written (and, for datagrams,
    /// to find where each one ends).
    pub(crate) ends: VecDeque<u64>,
    /// Envelopes of the packages in `bufs` (empty for streams).
    pub(crate) dests: VecDeque<Envelope>,
}

impl Outbox {
    /// Whether everything taken out has been written.
    pub(crate) fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }

    /// Drops `n` written bytes from the front of `bufs`.
    pub(crate) fn consume(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.bufs.front_mut() else {
                return;
            };
            if front.len() <= n {
                n -= front.len();
                self.bufs.pop_front();
            } else {
                bytes::Buf::advance(front, n);
                n = 0;
            }
        }
    }

    /// The front package of a message session, as one buffer (shared when it lies in one
    /// queued buffer, copied when it spans several, such as a header and a shared payload),
    /// with its envelope. `written` is the queue's written offset (where the package starts).
    pub(crate) fn front_package(&self, written: u64) -> Option<(Bytes, Envelope)> {
        let (&end, &envelope) = (self.ends.front()?, self.dests.front()?);
        let len = usize::try_from(end - written).unwrap_or(usize::MAX);
        if len == 0 {
            // An empty message (WebSocket) has no buffer.
            return Some((Bytes::new(), envelope));
        }
        let front = self.bufs.front()?;
        if front.len() >= len {
            return Some((front.slice(..len), envelope));
        }
        let mut package = BytesMut::with_capacity(len);
        for buf in &self.bufs {
            let take = (len - package.len()).min(buf.len());
            package.extend_from_slice(&buf[..take]);
            if package.len() == len {
                break;
            }
        }
        Some((package.freeze(), envelope))
    }

    /// Drops the front package (`len` bytes) once it has been sent.
    pub(crate) fn pop_package(&mut self, len: usize) {
        self.consume(len);
        self.ends.pop_front();
        self.dests.pop_front();
    }

    /// Forgets the packages ending at or before byte offset `written`; returns how many.
    pub(crate) fn complete(&mut self, written: u64) -> u64 {
        let mut pkgs = 0;
        while self.ends.front().is_some_and(|&end| end <= written) {
            self.ends.pop_front();
            pkgs += 1;
        }
        pkgs
    }
}

/// Appends to a buffer, undoing the append if it is not committed (an error, or a panic in the
/// code that appends, unwinding through it).
struct Rollback<'a> {
    buf: &'a mut BytesMut,
    len: usize,
    committed: bool,
}

impl<'a> Rollback<'a> {
    fn new(buf: &'a mut BytesMut) -> Self {
        let len = buf.len();
        Rollback {
            buf,
            len,
            committed: false,
        }
    }

    /// How much has been appended so far.
    fn appended(&self) -> usize {
        self.buf.len() - self.len
    }

    /// Keeps what was appended; returns how much that was.
    fn commit(mut self) -> usize {
        self.committed = true;
        self.buf.len() - self.len
    }
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        if !self.committed {
            self.buf.truncate(self.len);
        }
    }
}

impl WriteQueue {
    /// Encodes one package straight into the queue's contiguous tail (so that a run of small
    /// packages leaves as one buffer, one iovec) and returns its `[start, end)` byte offsets.
    ///
    /// A full queue refuses the package with [`Error::WouldBlock`] unless `force` is set (a
    /// writer that already waited for room: the queue may then exceed the high mark by one
    /// package per writer that raced for the same room). An encoding error, or a panic in the
    /// codec, leaves the queue as it was.
    pub(crate) fn push_encoded(
        &self,
        id: u64,
        force: bool,
        dest: Dest,
        encode: impl FnOnce(&mut BytesMut) -> std::result::Result<(), CodecError>,
    ) -> Result<(u64, u64)> {
        let mut state = self.admit(id, force)?;
        let state = &mut *state;
        let tail = state.tail_for_encoding();
        encode(tail.buf)?;
        fits_datagram(dest, tail.appended())?;
        let added = tail.commit();
        Ok(self.finish_push(state, added, dest))
    }

    /// Queues one package made of a header, encoded into the tail, and a shared payload that is
    /// not copied. When the codec has no such framing (`header` returned `None`) the payload is
    /// handed back, nothing queued.
    pub(crate) fn push_framed(
        &self,
        id: u64,
        force: bool,
        dest: Dest,
        payload: Bytes,
        header: impl FnOnce(&mut BytesMut) -> Option<std::result::Result<(), CodecError>>,
    ) -> std::result::Result<Result<(u64, u64)>, Bytes> {
        let mut state = match self.admit(id, force) {
            Ok(state) => state,
            Err(err) => return Ok(Err(err)),
        };
        let state = &mut *state;
        let tail = state.tail_for_encoding();
        match header(tail.buf) {
            None => return Err(payload),
            Some(Err(err)) => return Ok(Err(err.into())),
            Some(Ok(())) => {}
        }
        if let Err(err) = fits_datagram(dest, tail.appended() + payload.len()) {
            return Ok(Err(err));
        }
        let mut added = tail.commit();
        if !payload.is_empty() {
            added += payload.len();
            state.seal_tail();
            state.bufs.push_back(payload);
        }
        Ok(Ok(self.finish_push(state, added, dest)))
    }

    /// Queues shared buffers as one package, without copying them; returns its `[start, end)`
    /// byte offsets. Admission as for [`push_encoded`](Self::push_encoded).
    pub(crate) fn push_shared<I>(
        &self,
        id: u64,
        force: bool,
        dest: Dest,
        bufs: I,
    ) -> Result<(u64, u64)>
    where
        I: IntoIterator<Item = Bytes>,
    {
        let mut state = self.admit(id, force)?;
        let state = &mut *state;
        state.seal_tail();
        let before = state.bufs.len();
        let mut added = 0;
        for buf in bufs {
            if !buf.is_empty() {
                added += buf.len();
                state.bufs.push_back(buf);
            }
        }
        if let Err(err) = fits_datagram(dest, added) {
            state.bufs.truncate(before);
            return Err(err);
        }
        Ok(self.finish_push(state, added, dest))
    }

    /// Locks the state for a push, refusing it when closed, or full and not forced.
    fn admit(&self, id: u64, force: bool) -> Result<std::sync::MutexGuard<'_, QueueState>> {
        let state = lock(&self.state);
        if state.closed {
            return Err(Error::SessionClosed { id });
        }
        if !force && self.full.load(Ordering::Acquire) {
            return Err(Error::WouldBlock {
                queued: self.queued(),
                high: self.high.load(Ordering::Relaxed),
            });
        }
        Ok(state)
    }

    /// Accounts for `added` bytes just queued as one package, and wakes the driver.
    fn finish_push(&self, state: &mut QueueState, added: usize, dest: Dest) -> (u64, u64) {
        let start = state.enqueued;
        let end = start + added as u64;
        // An empty package is nothing on a stream or in a datagram (a getty peer would drop
        // it), but an empty WebSocket message is a message.
        if end > start || matches!(dest, Some(Envelope::Binary | Envelope::Text)) {
            state.enqueued = end;
            state.ends.push_back(end);
            if let Some(dest) = dest {
                state.dests.push_back(dest);
            }
            self.enqueued.store(end, Ordering::Release);
            if self.queued() >= self.high.load(Ordering::Relaxed) {
                self.full.store(true, Ordering::Release);
            }
            if let Some(waker) = state.driver.take() {
                self.driver_registered.store(false, Ordering::Relaxed);
                waker.wake();
            }
        }
        (start, end)
    }

    /// Moves everything queued to the driver's `outbox` and registers `waker` to be woken by
    /// the next push or close.
    pub(crate) fn drain(&self, waker: &Waker, outbox: &mut Outbox) {
        let Outbox { bufs, ends, dests } = outbox;
        let mut state = lock(&self.state);
        match &mut state.driver {
            Some(w) if w.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
        self.driver_registered.store(true, Ordering::Relaxed);
        state.seal_tail();
        // `ends` too: empty messages have no buffer.
        if !state.bufs.is_empty() || !state.ends.is_empty() {
            if bufs.is_empty() {
                std::mem::swap(bufs, &mut state.bufs);
            } else {
                bufs.append(&mut state.bufs);
            }
            ends.append(&mut state.ends);
            dests.append(&mut state.dests);
        }
    }

    /// Drops the tail's buffer when nothing is queued (an idle session keeps none).
    pub(crate) fn release_idle(&self) {
        let mut state = lock(&self.state);
        if state.tail.is_empty() && state.bufs.is_empty() {
            state.tail = BytesMut::new();
        }
    }

    /// Forgets the driver's waker: the driver is running and will drain before it sleeps.
    pub(crate) fn unregister_driver(&self) {
        // Only the driver registers, so a `false` it reads is current: nothing to forget.
        if self.driver_registered.load(Ordering::Relaxed) {
            let mut state = lock(&self.state);
            state.driver = None;
            self.driver_registered.store(false, Ordering::Relaxed);
        }
    }

    /// Refuses further pushes and wakes the driver and every writer waiting for room.
    /// Wakes the driver (its settings changed: timers to re-arm), if it waits.
    pub(crate) fn wake_driver(&self) {
        let waker = {
            let mut state = lock(&self.state);
            self.driver_registered.store(false, Ordering::Relaxed);
            state.driver.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    pub(crate) fn close(&self) {
        let mut state = lock(&self.state);
        state.closed = true;
        self.driver_registered.store(false, Ordering::Relaxed);
        let waker = state.driver.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        self.progress.notify(usize::MAX);
    }

    /// Bytes queued and not yet written to the socket.
    pub(crate) fn queued(&self) -> usize {
        let enqueued = self.enqueued.load(Ordering::Acquire);
        let written = self.written.load(Ordering::Acquire);
        usize::try_from(enqueued.saturating_sub(written)).unwrap_or(usize::MAX)
    }

    /// Whether a non-waiting push would be accepted now.
    pub(crate) fn has_room(&self) -> bool {
        !self.full.load(Ordering::Acquire)
    }

    /// The (low, high) water marks.
    pub(crate) fn water_marks(&self) -> (usize, usize) {
        (
            self.low.load(Ordering::Relaxed),
            self.high.load(Ordering::Relaxed),
        )
    }

    /// Sets the water marks; `low` must be below `high`.
    pub(crate) fn set_water_marks(&self, low: usize, high: usize) -> Result<()> {
        if high == 0 || low >= high {
            return Err(Error::invalid(format!(
                "write water marks need 0 <= low < high (got low {low}, high {high})"
            )));
        }
        self.low.store(low, Ordering::Relaxed);
        self.high.store(high, Ordering::Relaxed);
        self.update_room();
        Ok(())
    }

    /// Clears `full` once the queue is at or below the low mark.
    fn update_room(&self) {
        if self.full.load(Ordering::Acquire) && self.queued() <= self.low.load(Ordering::Relaxed) {
            self.full.store(false, Ordering::Release);
        }
    }

    /// Records `n` more bytes written (only the driver writes) and wakes waiting writers.
    pub(crate) fn advance(&self, n: usize) {
        self.written.fetch_add(n as u64, Ordering::AcqRel);
        self.update_room();
        self.progress.notify(usize::MAX);
    }

    /// Waits until the queue has room (`Ok`), or is closed or dead (`Err`).
    pub(crate) async fn wait_room(&self) -> std::result::Result<(), ()> {
        loop {
            if self.has_room() {
                return Ok(());
            }
            if self.is_closed() {
                return Err(());
            }
            let listener = self.progress.listen();
            if self.has_room() {
                return Ok(());
            }
            if self.is_closed() {
                return Err(());
            }
            listener.await;
        }
    }

    fn is_closed(&self) -> bool {
        self.dead.load(Ordering::Acquire) || lock(&self.state).closed
    }

    /// Bytes written so far.
    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Drops what is still queued (the session closed): the number of packages dropped.
    pub(crate) fn discard(&self) -> u64 {
        let mut state = lock(&self.state);
        let pkgs = state.ends.len() as u64;
        state.bufs.clear();
        state.ends.clear();
        state.dests.clear();
        state.tail = BytesMut::new();
        pkgs
    }

    /// Declares that nothing more will be written and wakes every waiting writer.
    pub(crate) fn kill(&self) {
        self.dead.store(true, Ordering::Release);
        self.progress.notify(usize::MAX);
    }

    /// Waits until byte offset `end` was written (`Ok`) or the queue died first (`Err`).
    pub(crate) async fn wait_written(&self, end: u64) -> std::result::Result<(), ()> {
        loop {
            if self.written() >= end {
                return Ok(());
            }
            if self.dead.load(Ordering::Acquire) {
                return Err(());
            }
            let listener = self.progress.listen();
            if self.written() >= end {
                return Ok(());
            }
            if self.dead.load(Ordering::Acquire) {
                return Err(());
            }
            listener.await;
        }
    }
}
