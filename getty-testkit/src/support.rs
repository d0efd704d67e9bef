//! Helpers for the conformance scenarios: an event recorder, a configurable test listener,
//! deadlines, and a raw peer speaking the hello framing.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use event_listener::Event;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use getty_core::codec::LengthDelimited;
use getty_core::listener::EventListener;
use getty_core::runtime::{timeout, Runtime};
use getty_core::session::Session;
use getty_core::BoxError;
use getty_core::{Error, ErrorKind};

/// How long any single wait in a scenario may take before the scenario fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The codec of most scenarios: getty's hello framing.
pub type Hello = LengthDelimited;

/// Awaits `future`, failing the scenario (panicking) if it takes longer than [`DEADLINE`].
pub async fn within<R: Runtime, F: IntoFuture>(rt: &R, what: &str, future: F) -> F::Output {
    match timeout(rt, DEADLINE, future.into_future()).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {DEADLINE:?} waiting for {what}"),
    }
}

/// Polls `cond` every millisecond until it holds, failing after [`DEADLINE`]. For conditions
/// that have no event to wait on (such as a byte counter).
pub async fn eventually<R: Runtime>(rt: &R, what: &str, mut cond: impl FnMut() -> bool) {
    within(rt, what, async {
        while !cond() {
            rt.timer(rt.now() + Duration::from_millis(1)).await;
        }
    })
    .await
}

/// One recorded listener event.
#[derive(Debug, Clone)]
pub enum Rec {
    /// `on_open` of a session.
    Open(u64),
    /// `on_message` with the package.
    Msg(u64, Bytes),
    /// `on_cron`, and when it ran.
    Cron(u64, Instant),
    /// `on_error`, with what the error was.
    Error(u64, Failure),
    /// `on_close`.
    Close(u64),
}

impl Rec {
    /// The session the event belongs to.
    pub fn id(&self) -> u64 {
        match self {
            Rec::Open(id)
            | Rec::Msg(id, _)
            | Rec::Cron(id, _)
            | Rec::Error(id, _)
            | Rec::Close(id) => *id,
        }
    }
}

/// An error as `on_error` saw it, kept after the call: its variant, the details scenarios
/// check, and its message with every source's.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The variant.
    pub kind: ErrorKind,
    /// The message, then each source's, joined by ": ".
    pub text: String,
    /// `(len, max)` of an [`Error::FrameTooLarge`].
    pub frame: Option<(usize, usize)>,
    /// The handler of an [`Error::HandlerPanic`], and its panic message.
    pub panic: Option<(&'static str, String)>,
    /// The OS error kind of an [`Error::Io`].
    pub io: Option<std::io::ErrorKind>,
    /// The timeout of a read, idle or write timeout.
    pub timeout: Option<Duration>,
}

impl Failure {
    /// What scenarios keep of `err`.
    pub fn of(err: &Error) -> Self {
        let mut text = err.to_string();
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        Failure {
            kind: err.kind(),
            text,
            frame: match err {
                Error::FrameTooLarge { len, max } => Some((*len, *max)),
                _ => None,
            },
            panic: match err {
                Error::HandlerPanic { handler, message } => Some((*handler, message.clone())),
                _ => None,
            },
            io: match err {
                Error::Io { source, .. } => Some(source.kind()),
                _ => None,
            },
            timeout: match err {
                Error::ReadTimeout(t) | Error::IdleTimeout(t) => Some(*t),
                Error::WriteTimeout { timeout, .. } => Some(*timeout),
                _ => None,
            },
        }
    }

    /// Whether this is a [`Error::HandlerPanic`] of `handler` whose message contains `text`.
    pub fn is_panic_in(&self, handler: &str, text: &str) -> bool {
        matches!(&self.panic, Some((h, m)) if *h == handler && m.contains(text))
    }
}

/// Records listener events and lets a scenario wait for them.
#[derive(Debug, Default)]
pub struct Recorder {
    events: Mutex<Vec<Rec>>,
    changed: Event,
    sessions: Mutex<Vec<Session<Hello>>>,
}

impl Recorder {
    /// A new, shared recorder.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Appends an event.
    pub fn push(&self, rec: Rec) {
        lock(&self.events).push(rec);
        self.changed.notify(usize::MAX);
    }

    /// A copy of every event so far.
    pub fn events(&self) -> Vec<Rec> {
        lock(&self.events).clone()
    }

    /// The events of session `id`.
    pub fn of(&self, id: u64) -> Vec<Rec> {
        self.events().into_iter().filter(|r| r.id() == id).collect()
    }

    /// The sessions opened so far, in order.
    pub fn sessions(&self) -> Vec<Session<Hello>> {
        lock(&self.sessions).clone()
    }

    /// Waits (with the scenario deadline) until `pred` holds over the events.
    pub async fn wait<R: Runtime>(&self, rt: &R, what: &str, pred: impl Fn(&[Rec]) -> bool) {
        within(rt, what, async {
            loop {
                let listener = self.changed.listen();
                if pred(&lock(&self.events)) {
                    return;
                }
                listener.await;
            }
        })
        .await
    }

    /// Waits until `n` messages were recorded in total.
    pub async fn wait_msgs<R: Runtime>(&self, rt: &R, n: usize) {
        self.wait(rt, &format!("{n} messages"), |e| count_msgs(e) >= n)
            .await
    }

    /// Waits until session `id` is closed (`on_close` recorded).
    pub async fn wait_closed<R: Runtime>(&self, rt: &R, id: u64) {
        self.wait(rt, &format!("on_close of session {id}"), |e| {
            e.iter().any(|r| matches!(r, Rec::Close(i) if *i == id))
        })
        .await
    }
}

/// The number of `Msg` events.
pub fn count_msgs(events: &[Rec]) -> usize {
    events.iter().filter(|r| matches!(r, Rec::Msg(..))).count()
}

/// A listener that records everything and, depending on its flags, echoes, refuses or panics.
#[derive(Debug, Clone)]
pub struct TestListener {
    /// Where events go.
    pub rec: Arc<Recorder>,
    /// Echo every package back with `try_send`.
    pub echo: bool,
    /// Echo with `send`, waiting for room, instead: no echo is refused when the peer reads
    /// slower than the session writes (for scenarios that count every echo).
    pub echo_waits: bool,
    /// Refuse every session in `on_open`.
    pub refuse: bool,
    /// Panic in `on_message` when the package equals this.
    pub panic_on: Option<Bytes>,
    /// Panic in `on_message` when the package equals this, as the handler makes its future
    /// (before anything polls it), as a hand-written handler can.
    pub panic_making_future_on: Option<Bytes>,
}

impl TestListener {
    /// An echoing recorder.
    pub fn echo(rec: &Arc<Recorder>) -> Self {
        TestListener {
            rec: rec.clone(),
            echo: true,
            echo_waits: false,
            refuse: false,
            panic_on: None,
            panic_making_future_on: None,
        }
    }

    /// An echoing recorder whose echoes wait for room in the write queue (none is refused).
    pub fn echo_waiting(rec: &Arc<Recorder>) -> Self {
        TestListener {
            echo_waits: true,
            ..Self::echo(rec)
        }
    }

    /// A recorder that does not answer.
    pub fn silent(rec: &Arc<Recorder>) -> Self {
        TestListener {
            echo: false,
            ..Self::echo(rec)
        }
    }

    /// As a new-session callback.
    pub fn factory(
        self,
    ) -> impl Fn(&Session<Hello>) -> Result<Arc<Self>, BoxError> + Send + Sync + 'static {
        let listener = Arc::new(self);
        move |_| Ok(listener.clone())
    }
}
impl EventListener<Hello> for TestListener {
    async fn on_open(&self, session: &Session<Hello>) -> Result<(), BoxError> {
        if self.refuse {
            return Err("refused by the test listener".into());
        }
        lock(&self.rec.sessions).push(session.clone());
        self.rec.push(Rec::Open(session.id()));
        Ok(())
    }

    fn on_message(
        &self,
        session: &Session<Hello>,
        pkg: Bytes,
    ) -> impl std::future::Future<Output = ()> + Send {
        if self.panic_making_future_on.as_ref() == Some(&pkg) {
            panic!("test listener asked to panic before its future");
        }
        async move {
            if self.panic_on.as_ref() == Some(&pkg) {
                panic!("test listener asked to panic");
            }
            if self.echo && self.echo_waits {
                let _ = session.send(&pkg).await;
            } else if self.echo {
                // The session may be closing; a refused echo is part of some scenarios.
                let _ = session.try_send(&pkg);
            }
            self.rec.push(Rec::Msg(session.id(), pkg));
        }
    }

    async fn on_datagram(&self, session: &Session<Hello>, pkg: Bytes, peer: SocketAddr) {
        if self.panic_on.as_ref() == Some(&pkg) {
            panic!("test listener asked to panic");
        }
        if self.echo {
            let _ = session.to(peer).try_send(&pkg);
        }
        self.rec.push(Rec::Msg(session.id(), pkg));
    }

    async fn on_cron(&self, session: &Session<Hello>) {
        self.rec.push(Rec::Cron(session.id(), session.now()));
    }

    async fn on_error(&self, session: &Session<Hello>, err: &Error) {
        self.rec.push(Rec::Error(session.id(), Failure::of(err)));
    }

    async fn on_close(&self, session: &Session<Hello>) {
        self.rec.push(Rec::Close(session.id()));
    }
}

/// A listener for sessions of any codec: records opens, messages (as bytes), errors and
/// closes, and optionally echoes each package back.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Where events go.
    pub rec: Arc<Recorder>,
    /// Echo every package back with `try_send`.
    pub echo: bool,
}

impl Probe {
    /// A probe recording into `rec`, echoing when `echo` is set.
    pub fn new(rec: &Arc<Recorder>, echo: bool) -> Self {
        Probe {
            rec: rec.clone(),
            echo,
        }
    }

    /// As a new-session callback for sessions of codec `C`.
    pub fn factory<C>(
        self,
    ) -> impl Fn(&Session<C>) -> Result<Arc<Self>, BoxError> + Send + Sync + 'static
    where
        C: getty_core::Codec,
        C::Inbound: AsRef<C::Outbound> + Into<Bytes>,
    {
        let listener = Arc::new(self);
        move |_| Ok(listener.clone())
    }
}
impl<C> EventListener<C> for Probe
where
    C: getty_core::Codec,
    C::Inbound: AsRef<C::Outbound> + Into<Bytes>,
{
    async fn on_open(&self, session: &Session<C>) -> Result<(), BoxError> {
        self.rec.push(Rec::Open(session.id()));
        Ok(())
    }

    async fn on_message(&self, session: &Session<C>, pkg: C::Inbound) {
        if self.echo {
            let _ = session.try_send(pkg.as_ref());
        }
        self.rec.push(Rec::Msg(session.id(), pkg.into()));
    }

    async fn on_datagram(&self, session: &Session<C>, pkg: C::Inbound, peer: SocketAddr) {
        if self.echo {
            let _ = session.to(peer).try_send(pkg.as_ref());
        }
        self.rec.push(Rec::Msg(session.id(), pkg.into()));
    }

    async fn on_error(&self, session: &Session<C>, err: &Error) {
        self.rec.push(Rec::Error(session.id(), Failure::of(err)));
    }

    async fn on_close(&self, session: &Session<C>) {
        self.rec.push(Rec::Close(session.id()));
    }
}

/// The `Error` events of `events`, in order.
pub fn errors(events: &[Rec]) -> Vec<Failure> {
    events
        .iter()
        .filter_map(|r| match r {
            Rec::Error(_, e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// The payloads of the `Msg` events, in order.
pub fn payloads(events: &[Rec]) -> Vec<Bytes> {
    events
        .iter()
        .filter_map(|r| match r {
            Rec::Msg(_, p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

/// An address on 127.0.0.1 where nothing listens (a port that was just free).
pub async fn free_addr<R: Runtime>(rt: &R) -> std::net::SocketAddr {
    let any = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0));
    let probe = rt.listen(any, false).expect("probe");
    rt.listener_addr(&probe).expect("probe address")
}

/// A client session (of a one-session pool) connected to a raw peer socket that the scenario
/// drives by hand: `(client, its session, the peer's stream)`.
pub async fn client_with_raw_peer<R, C, N, L>(
    rt: &R,
    codec: C,
    new_session: N,
) -> (getty_core::endpoint::TcpClient<C>, Session<C>, R::Tcp)
where
    R: Runtime,
    C: getty_core::Codec,
    N: Fn(&Session<C>) -> Result<L, BoxError> + Send + Sync + 'static,
    L: EventListener<C>,
{
    let any = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0));
    let listener = rt.listen(any, false).expect("listen");
    let addr = rt.listener_addr(&listener).expect("addr");
    let cli = getty_core::endpoint::TcpClientBuilder::new(addr)
        .start_with(rt.clone(), codec, new_session)
        .expect("client");
    let (peer, _) = within(rt, "accept", rt.accept(&listener))
        .await
        .expect("accept");
    within(rt, "connected", cli.wait_for_sessions(1))
        .await
        .expect("connected");
    let session = cli.sessions()[0].clone();
    (cli, session, peer)
}

/// A hello-framed package: 4-byte little-endian payload length, then the payload.
pub fn hello_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The payload of package `i` of a scenario: distinct, of varying length.
pub fn payload(i: usize) -> Bytes {
    let len = 1 + (i * 7) % 200;
    Bytes::from(
        (0..len)
            .map(|j| (i.wrapping_mul(31) + j) as u8)
            .collect::<Vec<u8>>(),
    )
}

/// Reads one hello frame from a raw stream.
pub async fn read_hello_frame<S: futures_lite::io::AsyncRead + Unpin>(
    stream: &mut S,
) -> std::io::Result<Vec<u8>> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).await?;
    let mut payload = vec![0u8; u32::from_le_bytes(header) as usize];
    stream.read_exact(&mut payload).await?;
    Ok(payload)
}

/// Writes all of `bytes` to a raw stream and flushes.
pub async fn write_all<S: futures_lite::io::AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// Locks `m`, ignoring poisoning: every critical section in the suite leaves its data
/// consistent, and a scenario that panicked has already failed.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A codec like `C` that declares no frame limit of its own
/// ([`Codec::frame_limit`](getty_core::Codec::frame_limit) is `None`), as a user codec may
/// not: the session's maximum message length alone bounds its frames.
#[derive(Debug, Clone)]
pub struct NoFrameLimit<C>(pub C);

impl<C: getty_core::Codec> getty_core::Codec for NoFrameLimit<C> {
    type Inbound = C::Inbound;
    type Outbound = C::Outbound;

    fn decode(
        &self,
        buf: &mut bytes::BytesMut,
    ) -> Result<getty_core::Decoded<C::Inbound>, getty_core::CodecError> {
        self.0.decode(buf)
    }

    fn encode(
        &self,
        pkg: &C::Outbound,
        dst: &mut bytes::BytesMut,
    ) -> Result<(), getty_core::CodecError> {
        self.0.encode(pkg, dst)
    }

    fn decode_eof(
        &self,
        buf: &mut bytes::BytesMut,
    ) -> Result<getty_core::Decoded<C::Inbound>, getty_core::CodecError> {
        self.0.decode_eof(buf)
    }
}
