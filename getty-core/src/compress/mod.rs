//! Stream compression of a session's bytes (getty's `SetCompressType`).
//!
//! A TCP or TLS session can carry its byte stream compressed. The choice is per session, made
//! with [`SessionConfig::compression`](crate::session::SessionConfig::compression) (an endpoint's or, in the new-session callback, [`Session::configure`](crate::Session::configure)),
//! before any byte is read or written, and both peers must make the same one: the stream has no
//! negotiation. The driver then runs the session over `Compressed`, a wrapper around the
//! socket (inside TLS, when there is TLS), so codecs and handlers only ever see plain bytes.
//!
//! The wire formats are those Go getty writes:
//! - **deflate**: one raw DEFLATE stream (RFC 1951, no zlib or gzip header) per direction,
//!   at one of four settings ([`Compression`]);
//! - **snappy**: the snappy framing format (stream identifier, then checksummed chunks).
//!
//! Three properties hold for every format:
//! - **Every write is flushed.** Each write compresses all of its buffers and ends on a flush
//!   point (a DEFLATE sync flush, whole snappy chunks), so the peer can decode every package
//!   sent so far: nothing waits inside the compressor for more input. Vectored writes go
//!   through the compressor like any other.
//! - **Backpressure is kept.** Compressed output waits in one buffer, and no new input is taken
//!   until that buffer has reached the socket: a session holds at most one write's output.
//! - **Expansion is bounded.** Decompressed bytes go straight into the driver's read buffer, at
//!   most as many as it offers, so a small input that expands enormously is cut into frames and
//!   limited by the session's maximum message length like any other input.
//!
//! A corrupt or mismatched stream closes the session with [`Error::Decompress`](crate::Error).
//!
//! Cost: a deflate session holds about 270 KB of compressor and decompressor state; a snappy
//! one keeps a few buffers of at most one chunk (about 76 KB) each once it has been busy.
//!
//! Compressing inside TLS can leak secrets when attacker-chosen data shares a stream with them
//! (the CRIME and BREACH attacks); do not mix the two on such sessions.

#[cfg(feature = "compression")]
mod deflate;
#[cfg(feature = "compression")]
mod snappy;
#[cfg(feature = "compression")]
mod stream;

#[cfg(feature = "compression")]
pub(crate) use stream::Compressed;

#[cfg(feature = "compression")]
use std::io::{self, IoSlice};

/// How a session's byte stream is compressed; both peers must choose the same.
///
/// Applies to TCP and TLS sessions. WebSocket sessions cannot be compressed (the
/// permessage-deflate extension is not supported by async-tungstenite), nor can UDP ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Compression {
    /// Plain bytes (the default).
    #[default]
    None,
    /// Raw DEFLATE at the default level (6).
    Deflate,
    /// Raw DEFLATE at the fastest level (1).
    DeflateBestSpeed,
    /// Raw DEFLATE at the smallest level (9).
    DeflateBestCompression,
    /// Raw DEFLATE with Huffman coding only (no string matching): fast, for data with no
    /// repeats but a skewed byte distribution.
    DeflateHuffmanOnly,
    /// The snappy framing format.
    Snappy,
}

impl Compression {
    /// Every setting, `None` first.
    pub const ALL: [Compression; 6] = [
        Compression::None,
        Compression::Deflate,
        Compression::DeflateBestSpeed,
        Compression::DeflateBestCompression,
        Compression::DeflateHuffmanOnly,
        Compression::Snappy,
    ];

    /// A small number for atomic storage.
    pub(crate) fn code(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Deflate => 1,
            Compression::DeflateBestSpeed => 2,
            Compression::DeflateBestCompression => 3,
            Compression::DeflateHuffmanOnly => 4,
            Compression::Snappy => 5,
        }
    }

    pub(crate) fn from_code(code: u8) -> Compression {
        Compression::ALL
            .get(usize::from(code))
            .copied()
            .unwrap_or_default()
    }
}

#[cfg(feature = "compression")]
/// At most this many input bytes are taken by one write: it bounds the output buffered per
/// session (one DEFLATE sync flush or one snappy chunk's worth).
const MAX_INPUT: usize = 64 * 1024;

#[cfg(feature = "compression")]
/// Why a peer's compressed stream could not be decompressed. Carried inside the `io::Error`
/// of a failed read, and turned into [`Error::Decompress`](crate::Error) by the driver.
#[derive(Debug, thiserror::Error)]
#[error("{format} stream is corrupt: {reason}")]
pub(crate) struct CorruptStream {
    pub(crate) format: &'static str,
    pub(crate) reason: String,
}

#[cfg(feature = "compression")]
impl CorruptStream {
    fn new(format: &'static str, reason: impl Into<String>) -> Self {
        CorruptStream {
            format,
            reason: reason.into(),
        }
    }
}

#[cfg(feature = "compression")]
impl From<CorruptStream> for io::Error {
    fn from(err: CorruptStream) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, err)
    }
}

#[cfg(feature = "compression")]
/// The compressing half: plain bytes in, compressed bytes appended to an output buffer.
enum Encoder {
    Deflate(deflate::Encoder),
    Snappy(snappy::Encoder),
}

#[cfg(feature = "compression")]
impl Encoder {
    fn new(compression: Compression) -> Option<Self> {
        match compression {
            Compression::None => None,
            Compression::Snappy => Some(Encoder::Snappy(snappy::Encoder::new())),
            deflate => Some(Encoder::Deflate(deflate::Encoder::new(deflate))),
        }
    }

    /// Compresses up to [`MAX_INPUT`] bytes of `bufs`, in order, ending on a flush point.
    /// Returns how many bytes it took.
    fn encode(&mut self, bufs: &[IoSlice<'_>], out: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Encoder::Deflate(e) => e.encode(bufs, out),
            Encoder::Snappy(e) => e.encode(bufs, out),
        }
    }

    /// Ends the stream (DEFLATE's final block; snappy has no trailer).
    fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        match self {
            Encoder::Deflate(e) => e.finish(out),
            Encoder::Snappy(_) => Ok(()),
        }
    }
}

#[cfg(feature = "compression")]
/// The decompressing half: compressed bytes in, plain bytes out into the caller's buffer.
enum Decoder {
    Deflate(deflate::Decoder),
    Snappy(snappy::Decoder),
}

#[cfg(feature = "compression")]
impl Decoder {
    fn new(compression: Compression) -> Option<Self> {
        match compression {
            Compression::None => None,
            Compression::Snappy => Some(Decoder::Snappy(snappy::Decoder::new())),
            _ => Some(Decoder::Deflate(deflate::Decoder::new())),
        }
    }

    /// Decompresses from `input` into `output`: `(input bytes used, output bytes written)`.
    /// `(0, 0)` means it needs more input. Output held back from an earlier call (for lack of
    /// room) comes first, even when `input` is empty.
    fn decode(&mut self, input: &[u8], output: &mut [u8]) -> Result<(usize, usize), CorruptStream> {
        match self {
            Decoder::Deflate(d) => d.decode(input, output),
            Decoder::Snappy(d) => d.decode(input, output),
        }
    }

    /// How many input bytes must be buffered, at least, for the next step (`input` being what
    /// is buffered now).
    fn wants(&self, input: &[u8]) -> usize {
        match self {
            Decoder::Deflate(_) => input.len() + 1,
            Decoder::Snappy(_) => snappy::Decoder::wants(input),
        }
    }

    /// Checks the stream may end here, `leftover` being the input not yet used.
    fn check_end(&self, leftover: &[u8]) -> Result<(), CorruptStream> {
        match self {
            Decoder::Deflate(d) => d.check_end(leftover),
            Decoder::Snappy(_) => snappy::Decoder::check_end(leftover),
        }
    }
}
