//! Entry points for the `cargo fuzz` targets in `fuzz/` (feature `fuzzing`).
//!
//! Not a stable API: it exposes crate-private layers (the compression wrapper, the stream
//! driver) in the shape the fuzz targets need. Everything runs in memory, on the calling
//! thread, with no real sockets and no real sleeping:
//! - [`decompress`] and [`compress`] run bytes through the session compression layer;
//! - [`run_stream_session`] runs one real stream session (the driver TCP and TLS sessions
//!   use) over an in-memory stream, on a tiny runtime whose timers never fire.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use bytes::Bytes;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::codec::LengthDelimited;
use crate::compress::{Compressed, Compression, CorruptStream};
use crate::driver::stream;
use crate::error::Error;
use crate::listener::EventListener;
use crate::runtime::{os, DynExecutor, Executor, Network, TcpOptions, Timer, UdpSocket};
use crate::session::{lock, Session, SessionConfig, TransportKind};

/// [`decompress`] stops once it has produced this many bytes, so that a small input that
/// inflates enormously does not make a fuzz iteration slow.
pub const DECOMPRESS_LIMIT: usize = 1 << 20;

/// [`run_stream_session`] ends the stream (as if the peer closed it) once the session has read
/// this many (decompressed) bytes, for the same reason; the report then says `truncated`.
pub const SESSION_READ_LIMIT: usize = 128 * 1024;

/// A reader that yields `chunks` one per read (a chunk longer than the buffer offered is
/// handed out over several reads), then the end of the stream. An empty chunk is one
/// `Pending` (with an immediate wake-up), as a socket with nothing to read yet. Writes are
/// taken at most `write_step` bytes at a time and discarded.
#[derive(Debug)]
struct ChunkStream {
    chunks: Vec<Vec<u8>>,
    next: usize,
    pos: usize,
    write_step: usize,
    written: Arc<Mutex<Vec<u8>>>,
    keep_written: bool,
}

impl ChunkStream {
    fn new(chunks: &[&[u8]], write_step: usize) -> Self {
        ChunkStream {
            chunks: chunks.iter().map(|c| c.to_vec()).collect(),
            next: 0,
            pos: 0,
            write_step: write_step.max(1),
            written: Arc::default(),
            keep_written: false,
        }
    }
}

impl AsyncRead for ChunkStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let Some(chunk) = this.chunks.get(this.next) else {
            return Poll::Ready(Ok(0));
        };
        if chunk.is_empty() {
            this.next += 1;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let n = buf.len().min(chunk.len() - this.pos);
        buf[..n].copy_from_slice(&chunk[this.pos..this.pos + n]);
        this.pos += n;
        if this.pos == chunk.len() {
            this.next += 1;
            this.pos = 0;
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for ChunkStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = buf.len().min(self.write_step);
        if self.keep_written {
            lock(&self.written).extend_from_slice(&buf[..n]);
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Decompresses the stream made of `chunks` (one per read of the underlying stream) through
/// the session compression layer, reading with a buffer of `read_len` bytes (at least one),
/// until the end of the stream or [`DECOMPRESS_LIMIT`] bytes of output.
///
/// [`Compression::None`] passes the bytes through. Errors are those the session would see:
/// [`is_corrupt_stream`] tells a corrupt stream from other I/O errors.
///
/// # Panics
/// If a read returns more than `read_len` bytes (an invariant of `AsyncRead`).
pub fn decompress(
    compression: Compression,
    chunks: &[&[u8]],
    read_len: usize,
) -> io::Result<Vec<u8>> {
    let io = ChunkStream::new(chunks, 1);
    match Compressed::new(io, compression) {
        Ok(reader) => read_all(reader, read_len),
        Err(io) => read_all(io, read_len),
    }
}

fn read_all<T: AsyncRead + Unpin>(mut reader: T, read_len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; read_len.max(1)];
    let mut out = Vec::new();
    block_on(async {
        while out.len() < DECOMPRESS_LIMIT {
            let n = reader.read(&mut buf).await?;
            assert!(
                n <= buf.len(),
                "a read into {} bytes returned {n}",
                buf.len()
            );
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        Ok(out)
    })
}

/// Whether `err` is the error a read returns for a corrupt compressed stream: `InvalidData`,
/// carrying the layer's description of what is wrong.
pub fn is_corrupt_stream(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::InvalidData
        && err
            .get_ref()
            .is_some_and(|e| e.downcast_ref::<CorruptStream>().is_some())
}

/// Compresses `writes`, one `write_all` each, through the session compression layer over a
/// sink that takes at most `sink_step` bytes per write (at least one), then closes the stream.
/// Returns the bytes the sink took. [`Compression::None`] passes the bytes through.
pub fn compress(
    compression: Compression,
    writes: &[&[u8]],
    sink_step: usize,
) -> io::Result<Vec<u8>> {
    let mut io = ChunkStream::new(&[], sink_step);
    io.keep_written = true;
    let written = io.written.clone();
    match Compressed::new(io, compression) {
        Ok(writer) => write_all(writer, writes)?,
        Err(io) => write_all(io, writes)?,
    }
    let wire = std::mem::take(&mut *lock(&written));
    Ok(wire)
}

fn write_all<T: AsyncWrite + Unpin>(mut writer: T, writes: &[&[u8]]) -> io::Result<()> {
    block_on(async {
        for w in writes {
            writer.write_all(w).await?;
        }
        writer.close().await
    })
}

/// Polls `future` on this thread until it completes. Everything here is in memory: a
/// `Pending` with no wake-up would never end, so it panics instead.
fn block_on<F: Future>(future: F) -> F::Output {
    let (out, _) = drive(future, usize::MAX);
    out
}

/// Remembers whether a waker was woken since the flag was last cleared.
struct Woken(AtomicBool);

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Polls `future` until it completes, at most `max_polls` times; returns its output and the
/// number of polls.
///
/// # Panics
/// If the future is pending without having woken itself (nothing in memory would ever wake
/// it: it hangs), or is still pending after `max_polls` polls (it spins).
fn drive<F: Future>(future: F, max_polls: usize) -> (F::Output, usize) {
    let woken = Arc::new(Woken(AtomicBool::new(false)));
    let waker = Waker::from(woken.clone());
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    let mut polls = 0;
    loop {
        woken.0.store(false, Ordering::SeqCst);
        polls += 1;
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return (out, polls);
        }
        assert!(
            woken.0.load(Ordering::SeqCst),
            "hang: pending with no wake-up after {polls} polls, though all I/O is in memory"
        );
        assert!(polls < max_polls, "spin: still pending after {polls} polls");
    }
}

/// A runtime with no sockets whose timers never fire: enough for a session over an
/// in-memory stream that ends by itself.
#[derive(Debug, Clone, Copy)]
struct FuzzRuntime;

/// A timer that never fires (the fuzzed sessions end before any timeout would matter).
#[derive(Debug)]
struct NeverTimer;

impl Future for NeverTimer {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

impl Timer for NeverTimer {
    fn reset(&mut self, _at: Instant) {}
}

/// No socket: the fuzz runtime has none.
#[derive(Debug)]
enum NoSocket {}

impl AsyncRead for NoSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match *self {}
    }
}

impl AsyncWrite for NoSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match *self {}
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match *self {}
    }
    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match *self {}
    }
}

impl UdpSocket for NoSocket {
    fn poll_recv_from(
        &self,
        _cx: &mut Context<'_>,
        _buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        match *self {}
    }
    fn poll_send_to(
        &self,
        _cx: &mut Context<'_>,
        _buf: &[u8],
        _to: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        match *self {}
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        match *self {}
    }
}

fn no_sockets() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "the fuzz runtime has no sockets",
    )
}

impl Executor for FuzzRuntime {
    type Timer = NeverTimer;

    fn spawn<F>(&self, _future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        panic!("a fuzzed stream session spawned a task: the fuzz runtime cannot run it");
    }

    fn timer(&self, _at: Instant) -> NeverTimer {
        NeverTimer
    }

    fn now(&self) -> Instant {
        os::now()
    }

    fn random_u64(&self) -> u64 {
        os::random_u64()
    }
}

impl Network for FuzzRuntime {
    type Tcp = NoSocket;
    type Listener = NoSocket;
    type Udp = NoSocket;

    async fn connect(&self, _addr: SocketAddr, _local: Option<SocketAddr>) -> io::Result<NoSocket> {
        Err(no_sockets())
    }

    fn listen(&self, _addr: SocketAddr, _reuse_port: bool) -> io::Result<NoSocket> {
        Err(no_sockets())
    }

    fn listener_addr(&self, listener: &NoSocket) -> io::Result<SocketAddr> {
        match *listener {}
    }

    async fn accept<'a>(&'a self, listener: &'a NoSocket) -> io::Result<(NoSocket, SocketAddr)> {
        match *listener {}
    }

    fn tcp_addrs(&self, stream: &NoSocket) -> io::Result<(SocketAddr, SocketAddr)> {
        match *stream {}
    }

    fn set_tcp_options(&self, stream: &NoSocket, _options: &TcpOptions) -> io::Result<()> {
        match *stream {}
    }

    fn bind_udp(&self, _addr: SocketAddr) -> io::Result<NoSocket> {
        Err(no_sockets())
    }

    fn connect_udp(&self, _peer: SocketAddr, _local: Option<SocketAddr>) -> io::Result<NoSocket> {
        Err(no_sockets())
    }
}

/// One fuzzed stream session: its settings and what the peer sends.
#[derive(Debug, Clone)]
pub struct StreamCase<'a> {
    /// The session's codec.
    pub codec: LengthDelimited,
    /// The session's maximum message length (at least 1).
    pub max_msg_len: usize,
    /// How the session's byte stream is compressed (`chunks` are then compressed bytes).
    pub compression: Compression,
    /// Whether `on_message` sends each package back (exercising the write side).
    pub echo: bool,
    /// The most bytes the in-memory socket takes per write (at least 1).
    pub write_step: usize,
    /// What the peer sends, one chunk per read, then the end of the stream. An empty chunk is
    /// a read that is not ready yet.
    pub chunks: &'a [&'a [u8]],
}

/// What a session's listener saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// `on_open`.
    Open,
    /// `on_message` with this package.
    Message(Bytes),
    /// `on_error`, with the error's `Debug` form (such as `FrameTooLarge { len: 9, max: 8 }`).
    Error(String),
    /// `on_close`.
    Close,
}

/// What [`run_stream_session`] observed.
#[derive(Debug, Clone, Default)]
pub struct StreamReport {
    /// The listener's events, in order.
    pub events: Vec<SessionEvent>,
    /// The most bytes the driver held in its read buffer just before a read: what it read,
    /// less the frames (header and payload) it handed out.
    pub max_buffered_before_read: usize,
    /// The most bytes the driver held in its read buffer just after a read.
    pub max_buffered: usize,
    /// The largest buffer the driver offered to one read.
    pub max_offer: usize,
    /// The bytes the session read (after decompression).
    pub bytes_read: usize,
    /// The stream was cut at [`SESSION_READ_LIMIT`] bytes: what the session saw is only a
    /// prefix of what was sent.
    pub truncated: bool,
    /// How many times the session's future was polled.
    pub polls: usize,
}

/// Shared by the probe on the stream and the listener.
#[derive(Debug, Default)]
struct Observed {
    report: StreamReport,
    /// Bytes of frames handed out (header included).
    consumed: usize,
    width: usize,
    echo: bool,
}

/// The listener of a fuzzed session: records every event.
#[derive(Debug)]
struct Recorder(Arc<Mutex<Observed>>);

impl EventListener<LengthDelimited> for Recorder {
    async fn on_open(&self, _session: &Session<LengthDelimited>) -> Result<(), crate::BoxError> {
        lock(&self.0).report.events.push(SessionEvent::Open);
        Ok(())
    }

    async fn on_message(&self, session: &Session<LengthDelimited>, pkg: Bytes) {
        let echo = {
            let mut seen = lock(&self.0);
            seen.consumed += seen.width + pkg.len();
            seen.report.events.push(SessionEvent::Message(pkg.clone()));
            seen.echo
        };
        if echo {
            // A full queue refuses it: that is fine, the read side is what is fuzzed.
            let _ = session.try_send(&pkg);
        }
    }

    async fn on_error(&self, _session: &Session<LengthDelimited>, err: &Error) {
        lock(&self.0)
            .report
            .events
            .push(SessionEvent::Error(format!("{err:?}")));
    }

    async fn on_close(&self, _session: &Session<LengthDelimited>) {
        lock(&self.0).report.events.push(SessionEvent::Close);
    }
}

/// The session's socket, as the driver sees it: counts what the driver reads, and infers how
/// much its read buffer holds from what the listener was handed.
struct Probe<T> {
    io: T,
    seen: Arc<Mutex<Observed>>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Probe<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let mut seen = lock(&this.seen);
        let consumed = seen.consumed;
        let report = &mut seen.report;
        // The driver decodes every whole frame and runs its handler before reading again.
        let Some(buffered) = report.bytes_read.checked_sub(consumed) else {
            panic!(
                "the session handed out {consumed} bytes of frames but read only {}",
                report.bytes_read
            );
        };
        report.max_buffered_before_read = report.max_buffered_before_read.max(buffered);
        report.max_offer = report.max_offer.max(buf.len());
        if report.bytes_read >= SESSION_READ_LIMIT {
            report.truncated = true;
            return Poll::Ready(Ok(0));
        }
        let limit = buf.len().min(SESSION_READ_LIMIT - report.bytes_read);
        drop(seen);
        let result = Pin::new(&mut this.io).poll_read(cx, &mut buf[..limit]);
        if let Poll::Ready(Ok(n)) = result {
            assert!(n <= limit, "a read into {limit} bytes returned {n}");
            let mut seen = lock(&this.seen);
            let report = &mut seen.report;
            report.bytes_read += n;
            report.max_buffered = report.max_buffered.max(buffered + n);
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Probe<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_close(cx)
    }
}

/// Runs one stream session over an in-memory stream that yields `case.chunks`, then ends; as
/// a TCP session runs (new session, compression chosen, then the stream driver), on the
/// calling thread with a runtime whose timers never fire.
///
/// # Panics
/// If the session hangs (pending with nothing in memory left to wake it) or spins, if a
/// panic escapes the driver, or if the driver's reads are inconsistent with what it handed
/// out.
pub fn run_stream_session(case: &StreamCase<'_>) -> StreamReport {
    let rt = FuzzRuntime;
    let dyn_rt: Arc<dyn DynExecutor> = Arc::new(rt);
    let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 1));
    let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 2));
    let session = Session::new(
        dyn_rt,
        Arc::new(case.codec.clone()),
        local,
        Some(peer),
        "fuzz",
        TransportKind::Stream,
        // What an endpoint's settings would give it (the fuzzed limit, unresolved against the
        // codec's: both limits are exercised).
        &SessionConfig::new()
            .max_msg_len(case.max_msg_len.max(1))
            .compression(case.compression),
    );
    let seen = Arc::new(Mutex::new(Observed {
        width: case.codec.width(),
        echo: case.echo,
        ..Observed::default()
    }));
    let listener = Recorder(seen.clone());
    // What `start_session` does.
    let compression = session.inner().settings.fix_compression();
    let io = ChunkStream::new(case.chunks, case.write_step);
    // Generous: the driver yields every 64 events, and once per chunk that is not ready.
    let max_polls = 100_000 + 4 * case.chunks.len();
    let closed = session.clone();
    let polls = match Compressed::new(io, compression) {
        Ok(io) => run_on(rt, io, session, listener, &seen, max_polls),
        Err(io) => run_on(rt, io, session, listener, &seen, max_polls),
    };
    assert!(closed.is_closed(), "the session ended without being closed");
    let mut seen = lock(&seen);
    seen.report.polls = polls;
    std::mem::take(&mut seen.report)
}

fn run_on<T: AsyncRead + AsyncWrite + Unpin + Send>(
    rt: FuzzRuntime,
    io: T,
    session: Session<LengthDelimited>,
    listener: Recorder,
    seen: &Arc<Mutex<Observed>>,
    max_polls: usize,
) -> usize {
    let io = Probe {
        io,
        seen: seen.clone(),
    };
    let ((), polls) = drive(
        stream::run(rt, io, session, Arc::new(listener), None, || {}),
        max_polls,
    );
    polls
}
