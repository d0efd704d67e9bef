//! Codecs: how a session's byte stream is cut into packages, and packages turned into bytes.
//!
//! This is getty's `Reader`/`Writer` pair. [`Codec::decode`] works in place on the session's
//! read buffer and splits off what it consumed, so a payload can be handed out as a zero-copy
//! [`Bytes`](bytes::Bytes). When a frame is incomplete it may say how long the whole frame will
//! be: the driver then refuses a frame over the session's maximum message length before
//! buffering it, and reserves the buffer once instead of growing it step by step.
//!
//! The five cases getty's readers distinguish map to:
//! 1. malformed input: `Err(CodecError)`; the session reports it to `on_error` and closes;
//! 2. no header yet: `Ok(Decoded::Incomplete(None))`;
//! 3. header known, body incomplete: `Ok(Decoded::Incomplete(Some(total_frame_len)))`;
//! 4. one frame: `Ok(Decoded::Frame(pkg))`;
//! 5. several frames in one read: the driver calls `decode` again until it is incomplete.

mod length;
mod lines;
mod raw;

pub use length::{Endian, LengthDelimited};
pub use lines::Lines;
pub use raw::RawBytes;

use bytes::BytesMut;

/// The result of one [`Codec::decode`] call that did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<T> {
    /// A whole package; its bytes were split off the front of the buffer.
    Frame(T),
    /// Not enough bytes yet. `Some(n)` once the header says the whole frame (header included)
    /// will be `n` bytes long; the buffer was left untouched.
    Incomplete(Option<usize>),
}

/// Turns bytes into inbound packages and outbound packages into bytes.
///
/// Both methods take `&self`: one codec value is shared by a session's driver (decoding) and by
/// every task holding the session (encoding), so state that changes per call does not belong
/// here.
pub trait Codec: Send + Sync + 'static {
    /// The package type handed to `on_message`.
    type Inbound: Send + 'static;
    /// The package type `write_pkg` takes (by reference; may be unsized, like `[u8]` or `str`).
    type Outbound: ?Sized + Sync;

    /// Decodes at most one package from the front of `buf`, splitting off the bytes it used.
    ///
    /// On `Incomplete` the buffer must be left as it was. An error closes the session.
    fn decode(&self, buf: &mut BytesMut) -> Result<Decoded<Self::Inbound>, CodecError>;

    /// Appends the encoding of `pkg` to `dst`.
    fn encode(&self, pkg: &Self::Outbound, dst: &mut BytesMut) -> Result<(), CodecError>;

    /// For formats whose frame is a header followed by the payload bytes as they are: appends
    /// the header of a frame carrying `payload_len` bytes and returns `Some(Ok(()))`. Sessions
    /// then send a shared payload without copying it ([`Frame::payload`]). `None`, the
    /// default, says the format does not work that way (the payload is then encoded with
    /// [`encode`](Codec::encode)).
    ///
    /// [`Frame::payload`]: crate::session::Frame::payload
    fn encode_header(
        &self,
        payload_len: usize,
        dst: &mut BytesMut,
    ) -> Option<Result<(), CodecError>> {
        let _ = (payload_len, dst);
        None
    }

    /// The longest whole frame (header or delimiter included) this codec value was configured
    /// to accept, if it has a limit of its own. Sessions on this codec then take it as their
    /// maximum message length, so the two cannot disagree; an endpoint configured with a
    /// different [`max_msg_len`](crate::session::SessionConfig::max_msg_len) refuses to
    /// start. `None`, the default, leaves the limit to the session.
    fn frame_limit(&self) -> Option<usize> {
        None
    }

    /// Decodes whatever is left when the peer closes its side: by default, nothing (a partial
    /// frame left in the buffer at end of stream is then an error).
    fn decode_eof(&self, buf: &mut BytesMut) -> Result<Decoded<Self::Inbound>, CodecError> {
        self.decode(buf)
    }
}

/// Why a codec could not decode or encode.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// A frame declares (or an outbound package has) a length the format cannot carry.
    #[error("frame length {len} exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The declared or actual length.
        len: usize,
        /// The largest length allowed.
        max: usize,
    },
    /// The input is not valid for this format.
    #[error("invalid frame: {0}")]
    Invalid(String),
    /// The codec cannot do what was asked of it (such as framing a shared payload without
    /// encoding it, see [`Codec::encode_header`]).
    #[error("the codec does not support {0}")]
    Unsupported(&'static str),
    /// Any other error, from a user codec.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl CodecError {
    /// An [`Invalid`](CodecError::Invalid) error with this message.
    pub fn invalid(msg: impl Into<String>) -> Self {
        CodecError::Invalid(msg.into())
    }
}
