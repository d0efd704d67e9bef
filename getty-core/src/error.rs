//! The error type of every getty operation.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::codec::CodecError;

/// A boxed error from user code (a refused `on_open`, a new-session callback).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in a session or an endpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The session is closed (or closing): nothing more can be written to it.
    #[error("session {id} is closed")]
    SessionClosed {
        /// The session's id.
        id: u64,
    },
    /// A socket operation failed.
    #[error("{op} failed: {source}")]
    Io {
        /// What was being done ("read", "write", "accept", ...).
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The codec refused the input or the package.
    #[error("codec error: {0}")]
    Codec(#[from] CodecError),
    /// An inbound frame is longer than the session's maximum message length (which is the
    /// codec's own limit when it has one). A codec refusing an inbound frame as too long is
    /// reported as this too; [`CodecError::FrameTooLarge`] inside [`Error::Codec`] is then
    /// only about outbound packages.
    #[error(
        "inbound frame of {len} bytes exceeds the maximum message length of {max} bytes \
         (raise it with SessionConfig::max_msg_len, or the codec's own limit)"
    )]
    FrameTooLarge {
        /// Declared (or buffered) length of the frame.
        len: usize,
        /// The session's maximum message length.
        max: usize,
    },
    /// The peer closed the connection in the middle of a frame.
    #[error("peer closed the connection with {buffered} bytes of an incomplete frame buffered")]
    UnexpectedEof {
        /// Bytes of the unfinished frame.
        buffered: usize,
    },
    /// Nothing arrived from the peer within the read timeout.
    #[error("no data from the peer within the read timeout of {0:?}")]
    ReadTimeout(Duration),
    /// No package arrived from the peer within the idle timeout (bytes that complete no
    /// package, such as a frame trickled a byte at a time, do not count).
    #[error("no package from the peer within the idle timeout of {0:?}")]
    IdleTimeout(Duration),
    /// Queued bytes did not reach the socket in time.
    #[error("write timed out after {timeout:?}: {sent} of {total} bytes sent")]
    WriteTimeout {
        /// The timeout that elapsed.
        timeout: Duration,
        /// Bytes in the write.
        total: usize,
        /// Bytes of it that reached the socket before the timeout.
        sent: usize,
    },
    /// The session's write queue is full (above its high-water mark): the non-waiting write
    /// was refused. Wait for room with `feed_pkg` / `write_pkg`, or check `is_writable`.
    #[error("write queue is full: {queued} bytes queued, high-water mark {high} bytes")]
    WouldBlock {
        /// Bytes queued and not yet written.
        queued: usize,
        /// The queue's high-water mark.
        high: usize,
    },
    /// A user handler panicked; the session was closed.
    #[error("{handler} panicked: {message}")]
    HandlerPanic {
        /// The handler ("on_message", "on_cron", ...).
        handler: &'static str,
        /// The panic payload, when it was a string.
        message: String,
    },
    /// The new-session callback or `on_open` refused the session.
    #[error("session refused: {0}")]
    Refused(#[source] BoxError),
    /// An endpoint has reached its session limit.
    #[error("session limit of {0} reached")]
    TooManySessions(usize),
    /// Connecting to a server failed.
    #[error("connect to {addr} failed: {source}")]
    Connect {
        /// The server address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Connecting took longer than the connect timeout.
    #[error("connect to {addr} timed out after {timeout:?}")]
    ConnectTimeout {
        /// The server address.
        addr: SocketAddr,
        /// The connect timeout.
        timeout: Duration,
    },
    /// A TCP connection ended up connected to itself (simultaneous open on the local port).
    #[error("connection to {0} is connected to itself")]
    SelfConnect(SocketAddr),
    /// The write does not fit this session's transport: a write to an address on a TCP, TLS
    /// or WebSocket session, a write without an address on a UDP endpoint (it has no single
    /// peer), or a text message on a session that is not WebSocket.
    #[error("session {id}: {what}")]
    Unsupported {
        /// The session's id.
        id: u64,
        /// What does not fit, and what would.
        what: &'static str,
    },
    /// An outbound package does not fit in one UDP datagram.
    #[error("package of {len} bytes does not fit in one UDP datagram (at most {max} bytes)")]
    DatagramTooLarge {
        /// The package's encoded length.
        len: usize,
        /// The largest datagram payload for the destination's address family.
        max: usize,
    },
    /// The WebSocket protocol failed (an invalid frame, bad UTF-8 in a text message, ...).
    #[error("WebSocket: {0}")]
    WebSocket(String),
    /// A WebSocket client's upgrade was refused or answered wrongly.
    #[error("WebSocket upgrade with {peer} failed: {reason}")]
    WebSocketHandshake {
        /// The server.
        peer: SocketAddr,
        /// The status and why.
        reason: String,
    },
    /// A TLS configuration could not be built: a missing or unreadable file, PEM without the
    /// expected certificate or key, a key that does not match its certificate, ...
    #[error("TLS configuration: {0}")]
    TlsConfig(String),
    /// A TLS handshake failed (an untrusted or mismatched certificate, a peer that does not
    /// speak TLS, a refused client certificate, ...).
    #[error("TLS handshake with {peer} failed: {reason}")]
    TlsHandshake {
        /// The other side.
        peer: SocketAddr,
        /// What rustls (or the socket) reported.
        reason: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The peer's compressed stream could not be decompressed: it is corrupt, or the peer does
    /// not use the same [`Compression`](crate::Compression).
    #[error("{format} stream from the peer is corrupt: {reason}")]
    Decompress {
        /// The compression format ("deflate", "snappy").
        format: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting was given a value it cannot take.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}

impl Error {
    /// An [`Error::Io`] for operation `op`.
    pub fn io(op: &'static str, source: io::Error) -> Self {
        Error::Io { op, source }
    }

    /// An [`Error::TlsHandshake`] with `peer`, naming rustls's reason when there is one.
    pub(crate) fn tls_handshake(peer: SocketAddr, source: io::Error) -> Self {
        let reason = match source
            .get_ref()
            .and_then(|e| e.downcast_ref::<futures_rustls::rustls::Error>())
        {
            Some(tls) => tls.to_string(),
            None => source.to_string(),
        };
        Error::TlsHandshake {
            peer,
            reason,
            source,
        }
    }

    /// The error of a failed read: [`Error::Decompress`] when the compression layer refused
    /// the peer's bytes, [`Error::Io`] otherwise.
    pub(crate) fn read(source: io::Error) -> Self {
        match source
            .get_ref()
            .and_then(|e| e.downcast_ref::<crate::compress::CorruptStream>())
        {
            Some(corrupt) => Error::Decompress {
                format: corrupt.format,
                reason: corrupt.reason.clone(),
            },
            None => Error::io("read", source),
        }
    }

    /// The error of a codec that refused inbound bytes: a frame too long is
    /// [`Error::FrameTooLarge`], whichever limit refused it.
    pub(crate) fn decoding(err: CodecError) -> Self {
        match err {
            CodecError::FrameTooLarge { len, max } => Error::FrameTooLarge { len, max },
            other => Error::Codec(other),
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidConfig(msg.into())
    }
}

/// `Result<T, getty_core::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
