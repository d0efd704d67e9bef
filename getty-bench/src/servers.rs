//! The echo servers under test, and the child-process mode that runs one of them.
//!
//! Every server speaks getty's hello framing (a 4-byte little-endian payload length, then the
//! payload) and echoes each frame back unchanged. The bench binary runs each server in its own
//! child process (`getty-bench serve --impl <name> --threads <n>`): the child binds
//! 127.0.0.1:0, prints `LISTENING <addr>` on stdout, and serves until its stdin reaches EOF.

use getty::Frame;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use async_executor::Executor;
use bytes::{Bytes, BytesMut};
use clap::ValueEnum;
use futures_util::{SinkExt, StreamExt};
use getty::codec::LengthDelimited;
use getty::{BoxError, EventListener, Runtime, Session, TcpServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// The largest payload every server accepts (1 MiB).
pub const MAX_PAYLOAD: usize = 1 << 20;

/// The first line a server child prints on stdout, followed by its address.
pub const LISTENING: &str = "LISTENING";

/// The read buffer of `raw-tokio` (it grows only for a frame larger than this).
const RAW_READ_BUF: usize = 64 * 1024;

/// One echo server implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
pub enum ServerImpl {
    /// getty's `TcpServer` on `TokioRuntime`; the listener echoes with
    /// `send_frame(Frame::payload(..)).await`, as the README teaches (queued, waiting only when
    /// the queue is full; the replies of one read leave in one vectored write; payloads of
    /// 1 KiB or more not copied).
    GettyTokio,
    /// The same getty server on `SmolRuntime::with_executor`, the executor run by N threads.
    GettySmol,
    /// tokio-util `Framed<TcpStream, LengthDelimitedCodec>`, one `send` (= flush) per frame:
    /// what most code does.
    TokioUtilPerFrame,
    /// The same codec, `stream.forward(sink)`: flushes only when the stream is pending, the
    /// best batching tokio-util offers.
    TokioUtilBatched,
    /// Hand-written: read into a 64 KiB buffer, write every complete frame back with one
    /// `write_all` per read, keep the partial frame. The practical ceiling.
    RawTokio,
}

impl ServerImpl {
    /// Every implementation, in report order.
    pub const ALL: [ServerImpl; 5] = [
        ServerImpl::GettyTokio,
        ServerImpl::GettySmol,
        ServerImpl::TokioUtilPerFrame,
        ServerImpl::TokioUtilBatched,
        ServerImpl::RawTokio,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            ServerImpl::GettyTokio => "getty-tokio",
            ServerImpl::GettySmol => "getty-smol",
            ServerImpl::TokioUtilPerFrame => "tokio-util-per-frame",
            ServerImpl::TokioUtilBatched => "tokio-util-batched",
            ServerImpl::RawTokio => "raw-tokio",
        }
    }

    /// Whether this is one of getty's servers.
    pub fn is_getty(self) -> bool {
        matches!(self, ServerImpl::GettyTokio | ServerImpl::GettySmol)
    }
}

impl fmt::Display for ServerImpl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Runs the child-process mode: serves `imp` with `threads` threads until stdin reaches EOF.
pub fn serve(imp: ServerImpl, threads: usize) -> Result<(), BoxError> {
    crate::proc::raise_fd_limit();
    exit_on_stdin_eof();
    let threads = threads.max(1);
    match imp {
        ServerImpl::GettyTokio => tokio_runtime(threads)?.block_on(async {
            let server = getty_echo(getty::TokioRuntime::current()).await?;
            announce(server.local_addr())?;
            std::future::pending::<Result<(), BoxError>>().await
        }),
        ServerImpl::GettySmol => {
            let executor = Arc::new(Executor::new());
            for _ in 1..threads {
                let executor = executor.clone();
                thread::spawn(move || {
                    async_io::block_on(executor.run(std::future::pending::<()>()));
                });
            }
            let rt = getty::SmolRuntime::with_executor(executor.clone());
            async_io::block_on(executor.run(async {
                let server = getty_echo(rt).await?;
                announce(server.local_addr())?;
                std::future::pending::<Result<(), BoxError>>().await
            }))
        }
        ServerImpl::TokioUtilPerFrame | ServerImpl::TokioUtilBatched | ServerImpl::RawTokio => {
            tokio_runtime(threads)?.block_on(tokio_echo(imp))
        }
    }
}

/// Exits the process once stdin reaches EOF: the parent holds the other end of the pipe, so
/// this also ends the child when the parent dies.
fn exit_on_stdin_eof() {
    thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
}

/// Tells the parent where we listen.
fn announce(addr: SocketAddr) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{LISTENING} {addr}")?;
    stdout.flush()
}

/// A tokio runtime: current-thread for one thread, multi-thread with `threads` workers else.
fn tokio_runtime(threads: usize) -> io::Result<tokio::runtime::Runtime> {
    if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

// ----- getty -----------------------------------------------------------------------------------

/// getty's echo listener, written as the README's server is: queue every package back on its
/// session, waiting while the write queue is full. `Frame::payload` hands the received `Bytes`
/// to the write queue without copying it (the codec adds only the header).
struct GettyEcho;
impl EventListener<LengthDelimited> for GettyEcho {
    async fn on_message(&self, session: &Session<LengthDelimited>, pkg: Bytes) {
        let _ = session.send_frame(Frame::payload(pkg)).await;
    }
}

/// Starts getty's echo server on `rt` at a random port of 127.0.0.1.
async fn getty_echo<R: Runtime>(rt: R) -> Result<TcpServer, BoxError> {
    // The codec's payload limit is the sessions' limit too (plus the 4-byte header).
    let codec = LengthDelimited::hello().with_max_frame_len(MAX_PAYLOAD);
    let server = TcpServer::builder()
        .addr(SocketAddr::from(([127, 0, 0, 1], 0)))
        .serve(rt, codec, GettyEcho)?;
    Ok(server)
}

// ----- tokio servers ---------------------------------------------------------------------------

/// Accepts connections on a tokio listener and echoes each with `imp`'s handler.
async fn tokio_echo(imp: ServerImpl) -> Result<(), BoxError> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    announce(listener.local_addr()?)?;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Typically EMFILE: back off instead of spinning.
                eprintln!("{imp}: accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Fails only if the peer is already gone; the handler then sees it.
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            // A peer resetting its connection is normal at the end of a workload.
            let _ = match imp {
                ServerImpl::TokioUtilPerFrame => echo_per_frame(stream).await,
                ServerImpl::TokioUtilBatched => echo_batched(stream).await,
                _ => echo_raw(stream).await,
            };
        });
    }
}

/// The hello framing as a tokio-util codec.
fn hello_codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .little_endian()
        .max_frame_length(MAX_PAYLOAD)
        .new_codec()
}

/// `tokio-util-per-frame`: one `send` (encode + flush) per frame.
async fn echo_per_frame(stream: TcpStream) -> io::Result<()> {
    let mut framed = Framed::new(stream, hello_codec());
    while let Some(frame) = framed.next().await {
        framed.send(frame?.freeze()).await?;
    }
    Ok(())
}

/// `tokio-util-batched`: `forward` feeds the sink and flushes only when the stream is pending.
async fn echo_batched(stream: TcpStream) -> io::Result<()> {
    let (sink, stream) = Framed::new(stream, hello_codec()).split();
    stream
        .map(|frame| frame.map(BytesMut::freeze))
        .forward(sink)
        .await
}

/// `raw-tokio`: one read, one `write_all` of every complete frame it finished.
async fn echo_raw(mut stream: TcpStream) -> io::Result<()> {
    // `read_buf` fills spare capacity without zeroing it first, so an idle connection keeps
    // only the pages it touched resident.
    let mut buf = Vec::with_capacity(RAW_READ_BUF);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity());
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
        let complete = complete_frames(&buf)?;
        if complete > 0 {
            stream.write_all(&buf[..complete]).await?;
            buf.drain(..complete);
        }
    }
}

/// The length of the longest prefix of `buf` made of complete frames.
fn complete_frames(buf: &[u8]) -> io::Result<usize> {
    let mut end = 0;
    while let Some(header) = buf.get(end..end + 4) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("frame of {len} bytes exceeds {MAX_PAYLOAD}"),
            ));
        }
        if buf.len() < end + 4 + len {
            break;
        }
        end += 4 + len;
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_frames_stops_at_a_partial_frame() {
        let mut buf = vec![2, 0, 0, 0, b'h', b'i', 1, 0, 0, 0];
        assert_eq!(complete_frames(&buf).unwrap(), 6);
        buf.push(b'!');
        assert_eq!(complete_frames(&buf).unwrap(), 11);
        assert_eq!(complete_frames(&buf[..3]).unwrap(), 0);
    }

    #[test]
    fn complete_frames_refuses_oversized_frames() {
        let len = (MAX_PAYLOAD as u32 + 1).to_le_bytes();
        assert!(complete_frames(&len).is_err());
    }
}
