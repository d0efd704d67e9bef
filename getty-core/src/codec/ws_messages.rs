//! WebSocket messages as packages: text or binary, told apart both ways.

use bytes::{Bytes, BytesMut};

use super::{Codec, CodecError, Decoded, MessageKind};

/// One WebSocket data message: the package of [`WsMessages`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Message {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    /// Which kind of message this is.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Text(_) => MessageKind::Text,
            Message::Binary(_) => MessageKind::Binary,
        }
    }

    /// The text, for a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(text) => Some(text),
            Message::Binary(_) => None,
        }
    }

    /// The message's bytes (a text message's UTF-8).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(bytes) => bytes,
        }
    }
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Message::Text(text)
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Message::Text(text.to_owned())
    }
}

impl From<Bytes> for Message {
    fn from(bytes: Bytes) -> Self {
        Message::Binary(bytes)
    }
}

impl From<Vec<u8>> for Message {
    fn from(bytes: Vec<u8>) -> Self {
        Message::Binary(bytes.into())
    }
}

/// A codec for WebSocket sessions whose packages are whole messages, text or binary: each
/// inbound message is one [`Message`], `Text` or `Binary` as the peer sent it, and
/// `session.send(&Message::Text(..))` sends a text message, `Message::Binary` a binary one
/// (as browsers' `ws.send(string)` and `ws.send(arrayBuffer)` do). The session's maximum
/// message length caps messages. An empty inbound message is a package (`Text("")` or an
/// empty `Binary`), and an empty outbound one is sent as an empty message.
///
/// On a TCP or TLS session (where there are no messages) it decodes as [`RawBytes`](super::RawBytes)
/// does, into `Binary`, and writes either kind's bytes as they are.
///
/// ```
/// use getty_core::bytes::{Bytes, BytesMut};
/// use getty_core::codec::{Codec, Decoded, Message, MessageKind, WsMessages};
///
/// // Inbound: the kind of message decides the variant.
/// let mut text = BytesMut::from("héllo");
/// assert_eq!(
///     WsMessages.decode_message(MessageKind::Text, &mut text)?,
///     Decoded::Frame(Message::Text("héllo".into()))
/// );
/// let mut binary = BytesMut::from(&[0xff, 0x00][..]);
/// assert_eq!(
///     WsMessages.decode_message(MessageKind::Binary, &mut binary)?,
///     Decoded::Frame(Message::Binary(Bytes::from_static(&[0xff, 0x00])))
/// );
///
/// // Outbound: the variant decides the kind of message.
/// assert_eq!(WsMessages.outbound_kind(&Message::from("hi")), MessageKind::Text);
/// assert_eq!(WsMessages.outbound_kind(&Message::from(vec![1, 2])), MessageKind::Binary);
/// # Ok::<(), getty_core::CodecError>(())
/// ```
///
/// A chat server answering each kind with the same kind:
///
/// ```no_run
/// use getty_core::codec::{Message, WsMessages};
/// use getty_core::prelude::*;
///
/// struct Chat;
///
/// impl EventListener<WsMessages> for Chat {
///     async fn on_message(&self, session: &Session<WsMessages>, msg: Message) {
///         let reply = match msg {
///             Message::Text(text) => Message::Text(text.to_uppercase()),
///             Message::Binary(bytes) => Message::Binary(bytes),
///         };
///         let _ = session.send(&reply).await;
///     }
/// }
///
/// # fn demo<R: Runtime>(rt: R) -> getty_core::Result<()> {
/// let server = TcpServer::builder().websocket("/chat").serve(rt, WsMessages, Chat)?;
/// # let _ = server; Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct WsMessages;

impl Codec for WsMessages {
    type Inbound = Message;
    type Outbound = Message;

    fn decode(&self, buf: &mut BytesMut) -> Result<Decoded<Message>, CodecError> {
        if buf.is_empty() {
            return Ok(Decoded::Incomplete(None));
        }
        Ok(Decoded::Frame(Message::Binary(buf.split().freeze())))
    }

    fn encode(&self, pkg: &Message, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.extend_from_slice(pkg.as_bytes());
        Ok(())
    }

    /// A shared payload (`Frame::payload`) is sent as it is, as a binary message.
    fn encode_header(&self, _: usize, _: &mut BytesMut) -> Option<Result<(), CodecError>> {
        Some(Ok(()))
    }

    fn decode_message(
        &self,
        kind: MessageKind,
        msg: &mut BytesMut,
    ) -> Result<Decoded<Message>, CodecError> {
        let data = msg.split();
        match kind {
            MessageKind::Binary => Ok(Decoded::Frame(Message::Binary(data.freeze()))),
            // Without a copy when the buffer is the message's alone.
            MessageKind::Text => String::from_utf8(Vec::from(data))
                .map(|text| Decoded::Frame(Message::Text(text)))
                .map_err(|_| CodecError::invalid("a text message that is not UTF-8")),
        }
    }

    fn outbound_kind(&self, pkg: &Message) -> MessageKind {
        pkg.kind()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_messages_are_packages_too() {
        // The driver only calls decode_message for a message with bytes; an empty one is
        // still one package when asked.
        let mut empty = BytesMut::new();
        assert_eq!(
            WsMessages
                .decode_message(MessageKind::Text, &mut empty)
                .unwrap(),
            Decoded::Frame(Message::Text(String::new()))
        );
        assert_eq!(
            WsMessages.decode(&mut BytesMut::new()).unwrap(),
            Decoded::Incomplete(None)
        );
    }

    #[test]
    fn invalid_utf8_text_is_a_codec_error() {
        let mut bad = BytesMut::from(&[0xff, 0xfe][..]);
        assert!(WsMessages
            .decode_message(MessageKind::Text, &mut bad)
            .is_err());
    }

    #[test]
    fn encoding_writes_the_bytes_of_either_kind() {
        let mut dst = BytesMut::new();
        WsMessages.encode(&Message::from("ab"), &mut dst).unwrap();
        WsMessages
            .encode(&Message::from(Bytes::from_static(b"\x00")), &mut dst)
            .unwrap();
        assert_eq!(&dst[..], b"ab\x00");
        assert_eq!(Message::from("x").as_text(), Some("x"));
        assert_eq!(Message::from(vec![1]).as_text(), None);
    }
}
