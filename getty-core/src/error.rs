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
    /// was refused. Wait for room with `send` / `send_and_flush`, or check `is_writable`.
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
    /// The WebSocket protocol failed (an invalid frame, bad UTF-8 in a text message, ...);
    /// the source is the WebSocket implementation's error.
    #[error("WebSocket protocol error: {0}")]
    WebSocket(#[source] BoxError),
    /// A WebSocket client's upgrade was refused or answered wrongly.
    #[error("WebSocket upgrade with {peer} failed: {source}")]
    WebSocketHandshake {
        /// The server.
        peer: SocketAddr,
        /// The refusal (status and why) or the failure.
        #[source]
        source: BoxError,
    },
    /// An HTTP header given for a WebSocket handshake is not valid: a malformed name or value,
    /// or one of the handshake's own headers (`Upgrade`, `Sec-WebSocket-Key`, ...), which
    /// getty writes itself. The source is `http`'s error, or says which header and why.
    #[error("invalid HTTP header: {0}")]
    InvalidHeader(#[source] BoxError),
    /// A TLS configuration could not be built: a missing or unreadable file, PEM without the
    /// expected certificate or key, a key that does not match its certificate, ...
    #[error("TLS configuration: {what}: {source}")]
    TlsConfig {
        /// What was being read or built (which file, which part).
        what: String,
        /// What went wrong (a PEM, rustls or I/O error).
        #[source]
        source: BoxError,
    },
    /// A TLS handshake failed (an untrusted or mismatched certificate, a peer that does not
    /// speak TLS, a refused client certificate, ...). The source holds rustls's error when
    /// rustls refused (`source.get_ref()` downcasts to `rustls::Error`).
    #[error("TLS handshake with {peer} failed: {source}")]
    TlsHandshake {
        /// The other side.
        peer: SocketAddr,
        /// What rustls (or the socket) reported.
        #[source]
        source: io::Error,
    },
    /// The peer's compressed stream could not be decompressed: it is corrupt, or the peer does
    /// not use the same [`Compression`](crate::Compression).
    #[error("{format} stream from the peer cannot be decompressed: {source}")]
    Decompress {
        /// The compression format ("deflate", "snappy").
        format: &'static str,
        /// What is wrong with it.
        #[source]
        source: io::Error,
    },
    /// The endpoint was closed: a client no longer connects, nor waits for sessions.
    #[error("the endpoint is closed")]
    EndpointClosed,
    /// A client stopped reconnecting after too many consecutive failed connects.
    #[error("gave up connecting to {addr} after {attempts} consecutive failures")]
    GaveUp {
        /// The server address.
        addr: SocketAddr,
        /// The consecutive failures.
        attempts: u32,
        /// The last failure.
        #[source]
        last: Option<std::sync::Arc<Error>>,
    },
    /// A setting was given a value it cannot take.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A request/response call got no reply within its deadline
    /// ([`Session::call`](crate::Session::call), [`Client::call`](crate::endpoint::Client::call)).
    #[error("no reply on session {id} within {timeout:?}")]
    CallTimeout {
        /// The session that carried the request (0 when a client had no session to send it
        /// on before the deadline).
        id: u64,
        /// The call's deadline.
        timeout: Duration,
    },
}

/// Which [`Error`] variant an error is, without its data: for matching in handlers (such as
/// `on_error`), counting, or keeping after the error is gone (it is `Copy`).
///
/// ```
/// use getty_core::{Error, ErrorKind};
///
/// let err = Error::SessionClosed { id: 7 };
/// assert_eq!(err.kind(), ErrorKind::SessionClosed);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`Error::SessionClosed`].
    SessionClosed,
    /// [`Error::Io`].
    Io,
    /// [`Error::Codec`].
    Codec,
    /// [`Error::FrameTooLarge`].
    FrameTooLarge,
    /// [`Error::UnexpectedEof`].
    UnexpectedEof,
    /// [`Error::ReadTimeout`].
    ReadTimeout,
    /// [`Error::IdleTimeout`].
    IdleTimeout,
    /// [`Error::WriteTimeout`].
    WriteTimeout,
    /// [`Error::WouldBlock`].
    WouldBlock,
    /// [`Error::HandlerPanic`].
    HandlerPanic,
    /// [`Error::Refused`].
    Refused,
    /// [`Error::TooManySessions`].
    TooManySessions,
    /// [`Error::Connect`].
    Connect,
    /// [`Error::ConnectTimeout`].
    ConnectTimeout,
    /// [`Error::SelfConnect`].
    SelfConnect,
    /// [`Error::Unsupported`].
    Unsupported,
    /// [`Error::DatagramTooLarge`].
    DatagramTooLarge,
    /// [`Error::WebSocket`].
    WebSocket,
    /// [`Error::WebSocketHandshake`].
    WebSocketHandshake,
    /// [`Error::InvalidHeader`].
    InvalidHeader,
    /// [`Error::TlsConfig`].
    TlsConfig,
    /// [`Error::TlsHandshake`].
    TlsHandshake,
    /// [`Error::Decompress`].
    Decompress,
    /// [`Error::EndpointClosed`].
    EndpointClosed,
    /// [`Error::GaveUp`].
    GaveUp,
    /// [`Error::InvalidConfig`].
    InvalidConfig,
    /// [`Error::CallTimeout`].
    CallTimeout,
}

impl Error {
    /// Which variant this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::SessionClosed { .. } => ErrorKind::SessionClosed,
            Error::Io { .. } => ErrorKind::Io,
            Error::Codec(..) => ErrorKind::Codec,
            Error::FrameTooLarge { .. } => ErrorKind::FrameTooLarge,
            Error::UnexpectedEof { .. } => ErrorKind::UnexpectedEof,
            Error::ReadTimeout(..) => ErrorKind::ReadTimeout,
            Error::IdleTimeout(..) => ErrorKind::IdleTimeout,
            Error::WriteTimeout { .. } => ErrorKind::WriteTimeout,
            Error::WouldBlock { .. } => ErrorKind::WouldBlock,
            Error::HandlerPanic { .. } => ErrorKind::HandlerPanic,
            Error::Refused(..) => ErrorKind::Refused,
            Error::TooManySessions(..) => ErrorKind::TooManySessions,
            Error::Connect { .. } => ErrorKind::Connect,
            Error::ConnectTimeout { .. } => ErrorKind::ConnectTimeout,
            Error::SelfConnect(..) => ErrorKind::SelfConnect,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::DatagramTooLarge { .. } => ErrorKind::DatagramTooLarge,
            Error::WebSocket(..) => ErrorKind::WebSocket,
            Error::WebSocketHandshake { .. } => ErrorKind::WebSocketHandshake,
            Error::InvalidHeader(..) => ErrorKind::InvalidHeader,
            Error::TlsConfig { .. } => ErrorKind::TlsConfig,
            Error::TlsHandshake { .. } => ErrorKind::TlsHandshake,
            Error::Decompress { .. } => ErrorKind::Decompress,
            Error::EndpointClosed => ErrorKind::EndpointClosed,
            Error::GaveUp { .. } => ErrorKind::GaveUp,
            Error::InvalidConfig(..) => ErrorKind::InvalidConfig,
            Error::CallTimeout { .. } => ErrorKind::CallTimeout,
        }
    }

    /// An [`Error::Io`] for operation `op`.
    pub fn io(op: &'static str, source: io::Error) -> Self {
        Error::Io { op, source }
    }

    /// The error of a failed read: [`Error::Decompress`] when the compression layer refused
    /// the peer's bytes, [`Error::Io`] otherwise.
    pub(crate) fn read(source: io::Error) -> Self {
        #[cfg(feature = "compression")]
        if let Some(corrupt) = source
            .get_ref()
            .and_then(|e| e.downcast_ref::<crate::compress::CorruptStream>())
        {
            return Error::Decompress {
                format: corrupt.format,
                source,
            };
        }
        Error::io("read", source)
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
