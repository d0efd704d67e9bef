//! The session handle: one connection, as user code sees it.
//!
//! A [`Session`] is cheap to clone (an `Arc` inside) and does not name the runtime, so listener
//! code is runtime-free. The session's driver task owns the socket; the
//! handle talks to it through the write queue and a few atomics.
//!
//! # Writing
//!
//! Three ways to wait, for packages and for [`Frame`]s, to the session's peer or (UDP) to an
//! address:
//!
//! | | never waits | waits for room in the queue | waits until written |
//! |---|---|---|---|
//! | a package (through the codec) | [`try_send`](Session::try_send) | [`send`](Session::send) | [`send_and_flush`](Session::send_and_flush) |
//! | raw bytes, a shared payload, WebSocket text | [`try_send_frame`](Session::try_send_frame) | [`send_frame`](Session::send_frame) | [`send_frame_and_flush`](Session::send_frame_and_flush) |
//!
//! [`Session::to`] gives the same six methods for one datagram to an address (UDP).
//!
//! Everything goes through one queue, in order. Queued bytes are written by the session's
//! task, every queued buffer in one vectored write per wake-up, so back-to-back sends cost one
//! system call. The queue is bounded in bytes (see
//! [`write_water_marks`](Session::write_water_marks)): `try_*` is refused with
//! [`Error::WouldBlock`] when it is full, `send*` waits for room (backpressure).
//!
//! The queue's water marks default to 512 KiB and 1 MiB
//! ([`SessionConfig::write_water_marks`]): full at the high mark, writable again at the low
//! mark ([`Session::is_writable`], [`Session::queued_bytes`]).
//!
//! Coming from Go getty: `WritePkg(pkg, timeout)` is `send_and_flush(&pkg).timeout(t)` (and,
//! with a zero timeout, `try_send(&pkg)`); `WriteBytes(b)` is
//! `send_frame_and_flush(Frame::bytes(b))`; `WriteBytesArray(bufs...)` is
//! `send_frame_and_flush(Frame::vectored(bufs))`.
//!
//! # Settings
//! A session starts with its endpoint's [`SessionConfig`] and can be reconfigured as a whole
//! with [`Session::configure`]. The maximum message length (default 4 KiB, as getty; or the
//! codec's own limit) bounds a whole frame, header included; with the length-prefixed codec a
//! too-long frame is refused from its header, before its body is buffered.
//!
//! # Closing
//! [`Session::close`] (or an error, the peer leaving, a timeout) stops reading, flushes what is
//! queued within the close-wait (default 1 s), shuts the socket down, then calls `on_error` (if
//! any) and `on_close`. A handler still running after the close-wait is cancelled, on the task
//! pool too. Nothing queued is dropped uncounted: every package a write accepted ends up in
//! [`Stats::pkgs_written`] or, if it had not fully reached the socket when the session closed,
//! in [`Stats::pkgs_unsent`] (UDP endpoints also count refused sends in
//! [`Stats::send_failures`]). [`Session::is_closing`] is true from the start of that,
//! [`Session::is_closed`] once it is over.
//!
//! Close callbacks ([`Session::add_close_callback`]) run once when the session has closed,
//! after `on_close`, in registration order; the same key replaces a callback in place,
//! [`Session::remove_close_callback`] removes one, a panicking one is logged and the others
//! still run. [`Session::closed`] returns after they ran.

mod attributes;
mod call;
mod close_callbacks;
mod close_reason;
mod config;
mod group;
mod settings;
mod stats;
mod write;
mod write_queue;

pub use close_reason::CloseReason;
pub use config::{SessionConfig, DEFAULT_CLOSE_WAIT, DEFAULT_CRON_PERIOD, DEFAULT_MAX_MSG_LEN};
pub use group::{Broadcast, SessionGroup, SlowMember};
pub use stats::Stats;
pub use write::{Flush, Frame, SendTo};

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_listener::Event;

use crate::codec::Codec;
use crate::compress::Compression;
use crate::error::{Error, Result};
use crate::runtime::DynExecutor;
use attributes::Attributes;
pub(crate) use call::Calls;
use close_callbacks::CloseCallbacks;
pub(crate) use settings::Settings;
use stats::StatCounters;
pub(crate) use write_queue::{Envelope, Outbox, WriteQueue};
pub use write_queue::{DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER};

static NEXT_SESSION_ID: AtomicU64 = AtomicU64::new(1);

/// How a session's packages travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TransportKind {
    /// A byte stream (TCP, TLS): packages are bytes that follow each other.
    Stream,
    /// UDP: each package is one datagram with a destination.
    Datagram,
    /// WebSocket: each package is one message.
    WebSocket,
}

/// Lifecycle states, in order; a session only moves forward.
const OPEN: u8 = 0;
/// `close()` was called or the driver is closing: no new writes, reading stopped.
const CLOSING: u8 = 1;
/// The driver finished: socket shut down, `on_close` returned.
const CLOSED: u8 = 2;
/// `CLOSED`, and the close callbacks have run: what [`Session::closed`] waits for.
const FINISHED: u8 = 3;

/// One connection: its identity, statistics, settings, attributes and write side.
///
/// Writes: [`try_send`](Session::try_send) never waits, [`send`](Session::send) waits for room
/// in the write queue, [`send_and_flush`](Session::send_and_flush) waits until the bytes
/// reached the socket; the same three for a [`Frame`] (raw bytes, a shared payload, WebSocket
/// text), and [`to`](Session::to) for a datagram to an address. See the
/// table in the [module docs](crate::session#writing).
pub struct Session<C: Codec> {
    inner: Arc<Inner<C>>,
}

impl<C: Codec> Clone for Session<C> {
    fn clone(&self) -> Self {
        Session {
            inner: self.inner.clone(),
        }
    }
}

pub(crate) struct Inner<C: Codec> {
    id: u64,
    name: Mutex<String>,
    local_addr: SocketAddr,
    peer_addr: Option<SocketAddr>,
    /// How packages travel.
    transport: TransportKind,
    /// The opening handshake of a WebSocket session, set before the new-session callback.
    #[cfg(feature = "ws")]
    websocket: std::sync::OnceLock<crate::ws::WebSocketInfo>,
    created: Instant,
    /// Nanoseconds after `created` of the last package read.
    last_active: AtomicU64,
    pub(crate) stats: StatCounters,
    pub(crate) settings: Settings,
    attributes: Attributes,
    pub(crate) queue: WriteQueue,
    state: AtomicU8,
    /// Set once `on_open` accepted the session.
    established: AtomicBool,
    /// Notified when the session reaches `CLOSED`.
    closed: Event,
    close_callbacks: CloseCallbacks<Session<C>>,
    /// Why the session closes, when `close_with` said so (the first reason wins).
    close_reason: Mutex<Option<CloseReason>>,
    /// Request/response calls in flight ([`Session::call`]).
    pub(crate) calls: Calls<C::Inbound>,
    rt: Arc<dyn DynExecutor>,
    codec: Arc<C>,
}

impl<C: Codec> Session<C> {
    pub(crate) fn new(
        rt: Arc<dyn DynExecutor>,
        codec: Arc<C>,
        local_addr: SocketAddr,
        peer_addr: Option<SocketAddr>,
        kind: &str,
        transport: TransportKind,
        config: &SessionConfig,
    ) -> Self {
        let id = NEXT_SESSION_ID.fetch_add(1, Ordering::Relaxed);
        let name = match peer_addr {
            Some(peer) => format!("{kind}-{id} {local_addr}->{peer}"),
            None => format!("{kind}-{id} {local_addr}"),
        };
        let session = Session {
            inner: Arc::new(Inner {
                id,
                name: Mutex::new(name),
                local_addr,
                peer_addr,
                transport,
                #[cfg(feature = "ws")]
                websocket: std::sync::OnceLock::new(),
                created: rt.now(),
                last_active: AtomicU64::new(0),
                stats: StatCounters::default(),
                settings: Settings::default(),
                attributes: Attributes::default(),
                queue: WriteQueue::default(),
                state: AtomicU8::new(OPEN),
                established: AtomicBool::new(false),
                closed: Event::new(),
                close_callbacks: CloseCallbacks::default(),
                close_reason: Mutex::new(None),
                calls: Calls::default(),
                rt,
                codec,
            }),
        };
        // The endpoint validated `config`, and nothing is fixed yet: this cannot fail.
        if let Err(err) = session.inner.settings.apply(config) {
            log::error!("session {id}: {err}");
        }
        let (low, high) = config.water_marks;
        if let Err(err) = session.inner.queue.set_water_marks(low, high) {
            log::error!("session {id}: {err}");
        }
        session
    }

    pub(crate) fn inner(&self) -> &Inner<C> {
        &self.inner
    }

    // ----- identity ---------------------------------------------------------------------------

    /// A process-unique id.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The session's name (for logs); by default `"<kind>-<id> <local>-><peer>"`.
    pub fn name(&self) -> String {
        lock(&self.inner.name).clone()
    }

    /// Renames the session.
    pub fn set_name(&self, name: impl Into<String>) {
        *lock(&self.inner.name) = name.into();
    }

    /// The local address of the connection.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The peer's address; `None` for a session that has no single peer (an unconnected UDP
    /// endpoint).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.inner.peer_addr
    }

    /// Whether this is a UDP session: every package is one datagram, and
    /// [`to`](Session::to) chooses its destination.
    pub fn is_datagram(&self) -> bool {
        self.inner.transport == TransportKind::Datagram
    }

    /// Whether this is a WebSocket session: every package is one message (binary unless sent
    /// as [`Frame::text`]).
    pub fn is_websocket(&self) -> bool {
        self.inner.transport == TransportKind::WebSocket
    }

    /// What a WebSocket session knows of its opening handshake: the request's path, query
    /// and headers, the offered and the chosen subprotocol (see [`WebSocketInfo`]); `None`
    /// on other sessions. On a server it is there from the new-session callback on, which may
    /// use it to choose the subprotocol, add headers to the `101`, or refuse the upgrade.
    ///
    /// ```no_run
    /// # use getty_core::{codec::RawBytes, Session};
    /// # fn f(session: &Session<RawBytes>) {
    /// if let Some(ws) = session.websocket() {
    ///     println!("{} speaks {:?}", ws.path(), ws.protocol());
    /// }
    /// # }
    /// ```
    ///
    /// [`WebSocketInfo`]: crate::ws::WebSocketInfo
    #[cfg(feature = "ws")]
    pub fn websocket(&self) -> Option<&crate::ws::WebSocketInfo> {
        self.inner.websocket.get()
    }

    /// Attaches the handshake of a WebSocket session (once; before the new-session callback).
    #[cfg(feature = "ws")]
    pub(crate) fn set_websocket(&self, info: crate::ws::WebSocketInfo) {
        if self.inner.websocket.set(info).is_err() {
            log::error!("session {}: WebSocket handshake attached twice", self.id());
        }
    }

    /// The codec this session encodes and decodes with.
    pub fn codec(&self) -> &C {
        &self.inner.codec
    }

    // ----- activity and statistics ------------------------------------------------------------

    /// The current time on the clock of the session's runtime: the clock its timeouts, cron
    /// and statistics follow (virtual under a simulated runtime). Handlers that measure time
    /// should read this rather than `Instant::now()`, so that they behave the same in a
    /// simulation.
    pub fn now(&self) -> Instant {
        self.inner.rt.now()
    }

    /// When the last package was read (the session's creation time before the first one).
    pub fn last_active(&self) -> Instant {
        self.inner.created + Duration::from_nanos(self.inner.last_active.load(Ordering::Relaxed))
    }

    /// Records activity now (called on every package read; transports with heartbeats call it
    /// on every heartbeat too).
    pub(crate) fn touch(&self, now: Instant) {
        let nanos = now.saturating_duration_since(self.inner.created).as_nanos();
        self.inner
            .last_active
            .store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// A snapshot of the session's counters.
    pub fn stats(&self) -> Stats {
        self.inner.stats.snapshot()
    }

    // ----- attributes -------------------------------------------------------------------------

    /// Stores `value` as the session's attribute of type `T`, returning the previous one.
    pub fn set_attribute<T: Any + Send + Sync>(&self, value: T) -> Option<T> {
        self.inner.attributes.insert(value)
    }

    /// A clone of the session's attribute of type `T`.
    pub fn attribute<T: Any + Send + Sync + Clone>(&self) -> Option<T> {
        self.inner.attributes.get_cloned()
    }

    /// Runs `f` on the attribute of type `T` (if any) without cloning it.
    pub fn with_attribute<T: Any + Send + Sync, R>(
        &self,
        f: impl FnOnce(Option<&mut T>) -> R,
    ) -> R {
        self.inner.attributes.with(f)
    }

    /// Removes and returns the attribute of type `T`.
    pub fn remove_attribute<T: Any + Send + Sync>(&self) -> Option<T> {
        self.inner.attributes.remove()
    }

    // ----- settings ---------------------------------------------------------------------------

    /// The session's settings now (see [`SessionConfig`]).
    pub fn config(&self) -> SessionConfig {
        let settings = &self.inner.settings;
        let (low, high) = self.write_water_marks();
        SessionConfig::new()
            .max_msg_len(settings.max_msg_len())
            .read_timeout(settings.read_timeout())
            .idle_timeout(settings.idle_timeout())
            .write_timeout(settings.write_timeout())
            .cron_period(settings.cron_period())
            .close_wait(settings.close_wait())
            .write_water_marks(low, high)
            .compression(settings.compression())
    }

    /// Changes this session's settings: `change` gets the current ones and returns the new
    /// ones, which are validated as a whole (as an endpoint's [`SessionConfig`] is); on an
    /// error nothing changes. New timeouts and cron period take effect at once. The place for it is the new-session callback, where one session
    /// can differ from its endpoint's defaults; compression can only change there, before the
    /// session starts.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use getty_core::{codec::Lines, Session};
    /// # fn f(session: &Session<Lines>) -> getty_core::Result<()> {
    /// session.configure(|config| config.idle_timeout(Duration::from_secs(30)))?;
    /// # Ok(()) }
    /// ```
    pub fn configure(&self, change: impl FnOnce(SessionConfig) -> SessionConfig) -> Result<()> {
        let config = change(self.config()).resolve(self.codec())?;
        config.check_transport(self.inner.transport == TransportKind::Stream)?;
        self.inner.settings.apply(&config)?;
        let (low, high) = config.water_marks;
        self.inner.queue.set_water_marks(low, high)?;
        // New timeouts or cron period take effect now, not at the driver's next wake-up.
        self.inner.queue.wake_driver();
        Ok(())
    }

    /// The longest inbound frame accepted, header included. A longer frame closes the session
    /// with [`Error::FrameTooLarge`].
    pub fn max_msg_len(&self) -> usize {
        self.inner.settings.max_msg_len()
    }

    /// How long the session may wait for bytes from the peer; `None` waits forever.
    pub fn read_timeout(&self) -> Option<Duration> {
        self.inner.settings.read_timeout()
    }

    /// How long the session may go without receiving a whole package; `None` waits forever.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.inner.settings.idle_timeout()
    }

    /// The timeout of [`send_and_flush`](Session::send_and_flush) when it is given none.
    pub fn write_timeout(&self) -> Option<Duration> {
        self.inner.settings.write_timeout()
    }

    /// The period of `on_cron`.
    pub fn cron_period(&self) -> Duration {
        self.inner.settings.cron_period()
    }

    /// How long closing may spend flushing queued writes.
    pub fn close_wait(&self) -> Duration {
        self.inner.settings.close_wait()
    }

    /// How the session's byte stream is compressed.
    pub fn compression(&self) -> Compression {
        self.inner.settings.compression()
    }

    // ----- the write queue ------------------------------------------------------------------

    /// The write queue's (low, high) water marks in bytes (default 512 KiB, 1 MiB).
    pub fn write_water_marks(&self) -> (usize, usize) {
        self.inner.queue.water_marks()
    }

    /// Drops the write queue's encode buffer if nothing is queued (an idle session keeps none).
    pub(crate) fn release_write_buffer(&self) {
        self.inner.queue.release_idle();
    }

    // ----- closing ----------------------------------------------------------------------------

    /// Asks the session to close: reading stops, queued writes are flushed within the
    /// close-wait, then `on_error` (if the session failed) and `on_close` run. Returns at once;
    /// [`closed`](Session::closed) waits for the end.
    pub fn close(&self) {
        if self.begin_closing() {
            log::debug!("session {} closing on request", self.id());
        }
    }

    /// Closes the session as [`close`](Session::close) does, telling the peer why where the
    /// transport can (a WebSocket close frame with the reason's code and text). If the session
    /// is already closing, the reason is used only if none was given before and the close
    /// frame has not been sent yet.
    ///
    /// ```no_run
    /// # use getty_core::{codec::Lines, session::CloseReason, Session};
    /// # fn f(session: &Session<Lines>) {
    /// session.close_with(CloseReason::policy("flooding"));
    /// # }
    /// ```
    pub fn close_with(&self, reason: CloseReason) {
        lock(&self.inner.close_reason).get_or_insert(reason);
        self.close();
    }

    /// Why this side closes the session: the reason given to
    /// [`close_with`](Session::close_with) (a server's or client's `close()` gives
    /// [`CloseReason::going_away`]), or, once the close has begun (as `on_error` and
    /// `on_close` see it), the one chosen from how the session ended ([`CloseReason::normal`]
    /// when the peer left or `close()` was called, [`CloseReason::for_error`] of a failure).
    /// `None` while the session is open and no reason was given.
    ///
    /// ```no_run
    /// # use getty_core::{codec::Lines, Session};
    /// # fn on_close(session: &Session<Lines>) {
    /// // 1001, going away: the server is shutting down, nobody needs to hear who left.
    /// if session.close_reason().is_some_and(|r| r.code() == 1001) {
    /// }
    /// # }
    /// ```
    pub fn close_reason(&self) -> Option<CloseReason> {
        lock(&self.inner.close_reason).clone()
    }

    /// Records `reason` as the close reason unless one was given before.
    pub(crate) fn settle_close_reason(&self, reason: &CloseReason) {
        lock(&self.inner.close_reason).get_or_insert_with(|| reason.clone());
    }

    /// Whether the session is closed: its socket is shut down and `on_close` has returned.
    pub fn is_closed(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) >= CLOSED
    }

    /// Whether the session is closing or closed: reading has stopped and writes are refused
    /// (queued ones are still being flushed until it is closed).
    pub fn is_closing(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) != OPEN
    }

    /// Waits until the session is closed and its close callbacks have run.
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let inner = self.inner.clone();
        async move {
            loop {
                if inner.state.load(Ordering::Acquire) == FINISHED {
                    return;
                }
                let listener = inner.closed.listen();
                if inner.state.load(Ordering::Acquire) == FINISHED {
                    return;
                }
                listener.await;
            }
        }
    }

    /// Marks the session as accepted by `on_open`.
    pub(crate) fn mark_established(&self) {
        self.inner.established.store(true, Ordering::Release);
    }

    /// Whether `on_open` accepted the session and it is not closing.
    pub(crate) fn is_live(&self) -> bool {
        self.inner.established.load(Ordering::Acquire) && !self.is_closing()
    }

    /// Moves to `CLOSING` (refusing new writes) and wakes the driver. True the first time.
    pub(crate) fn begin_closing(&self) -> bool {
        let first = self
            .inner
            .state
            .compare_exchange(OPEN, CLOSING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        self.inner.queue.close();
        if first {
            // Reading has stopped: no reply can come any more.
            self.inner.calls.close(self.id());
        }
        first
    }

    /// Marks the session closed, runs the close callbacks (once), and wakes everything
    /// waiting on it.
    pub(crate) fn finish_closed(&self) {
        // Through closing (a session refused before it ran never was): callbacks see
        // `is_closed()`.
        self.begin_closing();
        self.inner.queue.kill();
        if self.inner.state.fetch_max(CLOSED, Ordering::AcqRel) >= CLOSED {
            return;
        }
        // Callbacks before `FINISHED`: once `closed()` returns, they have all run.
        self.inner.close_callbacks.run(self, self.id());
        self.inner.state.store(FINISHED, Ordering::Release);
        self.inner.closed.notify(usize::MAX);
    }

    /// Registers `callback` to run once when the session has closed: after `on_close`, in
    /// registration order with the others (newer getty's `AddCloseCallback`). A callback
    /// under the same `key` is replaced (the new one takes its place in the order). A
    /// panicking callback is logged and the others still run. Sessions refused before they
    /// opened run their callbacks too. Once the callbacks have run, registering is
    /// [`Error::SessionClosed`].
    pub fn add_close_callback<F>(&self, key: impl Into<String>, callback: F) -> Result<()>
    where
        F: FnOnce(&Session<C>) + Send + 'static,
    {
        if self
            .inner
            .close_callbacks
            .add(key.into(), Box::new(callback))
        {
            Ok(())
        } else {
            Err(Error::SessionClosed { id: self.id() })
        }
    }

    /// Removes the close callback registered under `key`; whether there was one.
    pub fn remove_close_callback(&self, key: &str) -> bool {
        self.inner.close_callbacks.remove(key)
    }
}

/// A one-line summary for logs: id, name, age, idle time and counters.
impl<C: Codec> fmt::Display for Session<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.stats();
        let now = self.inner.rt.now();
        write!(
            f,
            "session {} [{}]: age {:?}, idle {:?}, read {} pkgs / {} bytes, written {} pkgs / {} bytes",
            self.id(),
            self.name(),
            now.saturating_duration_since(self.inner.created),
            now.saturating_duration_since(self.last_active()),
            s.pkgs_read,
            s.bytes_read,
            s.pkgs_written,
            s.bytes_written,
        )
    }
}

impl<C: Codec> fmt::Debug for Session<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id())
            .field("name", &self.name())
            .field("local_addr", &self.local_addr())
            .field("peer_addr", &self.peer_addr())
            .field("closing", &self.is_closing())
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Type-erased control of a session, for endpoints that track sessions of any codec.
pub(crate) trait SessionControl: Send + Sync {
    fn close_with(&self, reason: CloseReason);
    fn finish_closed(&self);
    fn is_live(&self) -> bool;
    fn id(&self) -> u64;
}

impl<C: Codec> SessionControl for Session<C> {
    fn close_with(&self, reason: CloseReason) {
        Session::close_with(self, reason)
    }
    fn finish_closed(&self) {
        Session::finish_closed(self)
    }
    fn is_live(&self) -> bool {
        Session::is_live(self)
    }
    fn id(&self) -> u64 {
        Session::id(self)
    }
}

impl<T: SessionControl + ?Sized> SessionControl for Arc<T> {
    fn close_with(&self, reason: CloseReason) {
        (**self).close_with(reason)
    }
    fn finish_closed(&self) {
        (**self).finish_closed()
    }
    fn is_live(&self) -> bool {
        (**self).is_live()
    }
    fn id(&self) -> u64 {
        (**self).id()
    }
}

/// Locks `m`, ignoring poisoning: every critical section here leaves the data consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
