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
//!
//! A codec with a size limit of its own reports it with [`Codec::frame_limit`]. There is one
//! message-size limit per session: sessions on such a codec take the codec's as their maximum
//! message length, and a different
//! [`SessionConfig::max_msg_len`](crate::session::SessionConfig::max_msg_len) is refused: set
//! the limit in one place.
//!
//! Provided: [`LengthDelimited`] (a length header, then the payload; getty's hello framing),
//! [`Lines`] (UTF-8 text lines) and [`RawBytes`] (no framing), and for WebSocket (feature
//! `ws`) `WsMessages`, whose packages are whole text or binary messages. Other formats
//! implement [`Codec`] (see its example). On WebSocket sessions a codec can also tell text
//! from binary messages ([`Codec::decode_message`]) and choose the kind of each outbound
//! message ([`Codec::outbound_kind`]).

mod length;
mod lines;
mod raw;
#[cfg(feature = "ws")]
mod ws_messages;

pub use length::{Endian, LengthDelimited};
pub use lines::Lines;
pub use raw::RawBytes;
#[cfg(feature = "ws")]
pub use ws_messages::{Message, WsMessages};

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
///
/// A framing of your own: each payload (up to 255 bytes) after a 1-byte length.
///
/// ```
/// use getty_core::bytes::{Buf, BufMut, Bytes, BytesMut};
/// use getty_core::codec::{Codec, CodecError, Decoded};
///
/// struct ShortFrames;
///
/// impl Codec for ShortFrames {
///     type Inbound = Bytes;
///     type Outbound = [u8];
///
///     fn decode(&self, buf: &mut BytesMut) -> Result<Decoded<Bytes>, CodecError> {
///         let Some(&len) = buf.first() else {
///             return Ok(Decoded::Incomplete(None)); // no header yet
///         };
///         let total = 1 + usize::from(len);
///         if buf.len() < total {
///             // The header is known: say how long the whole frame is, leave the buffer as is.
///             return Ok(Decoded::Incomplete(Some(total)));
///         }
///         buf.advance(1);
///         Ok(Decoded::Frame(buf.split_to(usize::from(len)).freeze()))
///     }
///
///     fn encode(&self, pkg: &[u8], dst: &mut BytesMut) -> Result<(), CodecError> {
///         let len = u8::try_from(pkg.len())
///             .map_err(|_| CodecError::FrameTooLarge { len: pkg.len(), max: 255 })?;
///         dst.put_u8(len);
///         dst.put_slice(pkg);
///         Ok(())
///     }
/// }
///
/// let mut wire = BytesMut::new();
/// ShortFrames.encode(b"abc", &mut wire)?;
/// assert_eq!(&wire[..], b"\x03abc");
///
/// // Two bytes of the four have arrived: the frame will be 4 bytes long.
/// let mut partial = BytesMut::from(&wire[..2]);
/// assert_eq!(ShortFrames.decode(&mut partial)?, Decoded::Incomplete(Some(4)));
/// assert_eq!(partial.len(), 2);
///
/// assert_eq!(ShortFrames.decode(&mut wire)?, Decoded::Frame(Bytes::from_static(b"abc")));
/// assert!(wire.is_empty());
/// assert!(ShortFrames.encode(&[0; 256], &mut wire).is_err());
/// # Ok::<(), CodecError>(())
/// ```
pub trait Codec: Send + Sync + 'static {
    /// The package type handed to `on_message`.
    type Inbound: Send + 'static;
    /// The package type [`Session::send`](crate::Session::send) and its siblings take (by
    /// reference; may be unsized, like `[u8]` or `str`).
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

    /// Decodes what is left when the peer closes its side. By default, as [`decode`]: a partial
    /// frame still in the buffer at end of stream is then
    /// [`Error::UnexpectedEof`](crate::Error::UnexpectedEof). Override it for formats
    /// whose last frame may end with the stream (as [`Lines`] does).
    ///
    /// [`decode`]: Codec::decode
    fn decode_eof(&self, buf: &mut BytesMut) -> Result<Decoded<Self::Inbound>, CodecError> {
        self.decode(buf)
    }

    /// Request/response ([`Session::call`](crate::Session::call)): appends the encoding of
    /// `request` carrying the correlation `id`, which the peer's reply will carry back (see
    /// [`reply_id`](Codec::reply_id)). The default says the format has no ids
    /// ([`CodecError::Unsupported`]), and `call` then fails at once.
    fn encode_request(
        &self,
        id: u64,
        request: &Self::Outbound,
        dst: &mut BytesMut,
    ) -> Result<(), CodecError> {
        let _ = (id, request, dst);
        Err(CodecError::Unsupported(
            "request/response: the codec does not override Codec::encode_request",
        ))
    }

    /// Request/response: the correlation id of an inbound package that is a reply, `None` for
    /// any other package. A reply whose caller is waiting goes to that caller and not to
    /// `on_message`; a reply nobody waits for (its call timed out, say) and every package
    /// this returns `None` for go to `on_message`. The default, `None`, suits codecs without
    /// request/response.
    fn reply_id(&self, pkg: &Self::Inbound) -> Option<u64> {
        let _ = pkg;
        None
    }

    /// WebSocket: decodes from one whole inbound message of `kind` (text or binary). The
    /// session calls it until the message is used up, every frame decoded being one package,
    /// so a codec can tell text from binary messages. The default ignores `kind` and decodes
    /// as [`decode_eof`](Codec::decode_eof) does (a message ending inside a frame is an
    /// error). Text messages are valid UTF-8 (the WebSocket layer checked it: a peer sending
    /// invalid UTF-8 is closed with 1007). Other transports never call it.
    ///
    /// ```
    /// use getty_core::bytes::{Bytes, BytesMut};
    /// use getty_core::codec::{Codec, CodecError, Decoded, MessageKind, RawBytes};
    ///
    /// /// Raw bytes, but text messages are refused.
    /// struct BinaryOnly;
    ///
    /// impl Codec for BinaryOnly {
    ///     type Inbound = Bytes;
    ///     type Outbound = [u8];
    ///
    ///     fn decode(&self, buf: &mut BytesMut) -> Result<Decoded<Bytes>, CodecError> {
    ///         RawBytes.decode(buf)
    ///     }
    ///
    ///     fn encode(&self, pkg: &[u8], dst: &mut BytesMut) -> Result<(), CodecError> {
    ///         RawBytes.encode(pkg, dst)
    ///     }
    ///
    ///     fn decode_message(
    ///         &self,
    ///         kind: MessageKind,
    ///         msg: &mut BytesMut,
    ///     ) -> Result<Decoded<Bytes>, CodecError> {
    ///         match kind {
    ///             MessageKind::Binary => self.decode(msg),
    ///             MessageKind::Text => Err(CodecError::invalid("text messages are not spoken here")),
    ///         }
    ///     }
    /// }
    ///
    /// let mut msg = BytesMut::from(&b"\x01\x02"[..]);
    /// let pkg = BinaryOnly.decode_message(MessageKind::Binary, &mut msg)?;
    /// assert_eq!(pkg, Decoded::Frame(Bytes::from_static(b"\x01\x02")));
    /// assert!(BinaryOnly.decode_message(MessageKind::Text, &mut BytesMut::from("hi")).is_err());
    /// # Ok::<(), CodecError>(())
    /// ```
    fn decode_message(
        &self,
        kind: MessageKind,
        msg: &mut BytesMut,
    ) -> Result<Decoded<Self::Inbound>, CodecError> {
        let _ = kind;
        self.decode_eof(msg)
    }

    /// WebSocket: which kind of message an outbound package is sent as, one message per
    /// package. The default is [`MessageKind::Binary`]; a codec returning
    /// [`MessageKind::Text`] must encode that package as UTF-8 (a package that is not cannot
    /// be sent, and closes the session). Other transports never call it. See `WsMessages`
    /// for a codec that sends either kind.
    fn outbound_kind(&self, pkg: &Self::Outbound) -> MessageKind {
        let _ = pkg;
        MessageKind::Binary
    }
}

/// The two kinds of WebSocket data message (RFC 6455 §5.6): what
/// [`Codec::decode_message`] is told and [`Codec::outbound_kind`] tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// A text message: UTF-8.
    Text,
    /// A binary message.
    Binary,
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
