//! No framing: whatever bytes have arrived form one package.

use bytes::{Bytes, BytesMut};

use super::{Codec, CodecError, Decoded};

/// A codec that hands out everything buffered as one package and writes packages as they are.
///
/// Package boundaries are those of the reads, so the peer's writes may be split or merged.
/// On WebSocket and UDP sessions a package is one message or datagram. On a TCP or TLS session
/// a package is what one read brought, up to 64 KiB, and the session's maximum message length
/// applies to it as to any package: give such sessions a maximum of at least 64 KiB
/// ([`SessionConfig::max_msg_len`](crate::session::SessionConfig::max_msg_len)), or a busy
/// stream closes with `FrameTooLarge`.
///
/// ```
/// use getty_core::bytes::{Bytes, BytesMut};
/// use getty_core::codec::{Codec, CodecError, Decoded, RawBytes};
/// use getty_core::{SessionConfig, TcpServer};
///
/// let mut wire = BytesMut::new();
/// RawBytes.encode(b"no ", &mut wire)?;
/// RawBytes.encode(b"framing", &mut wire)?;
/// assert_eq!(&wire[..], b"no framing");
/// // Whatever has arrived is one package.
/// assert_eq!(RawBytes.decode(&mut wire)?, Decoded::Frame(Bytes::from_static(b"no framing")));
/// assert_eq!(RawBytes.decode(&mut wire)?, Decoded::Incomplete(None));
///
/// // A TCP server on RawBytes: room for one whole read per package.
/// let builder = TcpServer::builder()
///     .session_config(SessionConfig::new().max_msg_len(64 * 1024));
/// # let _ = builder;
/// # Ok::<(), CodecError>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RawBytes;

impl Codec for RawBytes {
    type Inbound = Bytes;
    type Outbound = [u8];

    fn decode(&self, buf: &mut BytesMut) -> Result<Decoded<Bytes>, CodecError> {
        if buf.is_empty() {
            return Ok(Decoded::Incomplete(None));
        }
        Ok(Decoded::Frame(buf.split().freeze()))
    }

    fn encode(&self, pkg: &[u8], dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.extend_from_slice(pkg);
        Ok(())
    }

    fn encode_header(&self, _: usize, _: &mut BytesMut) -> Option<Result<(), CodecError>> {
        Some(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_buffer_is_incomplete() {
        let mut buf = BytesMut::new();
        assert_eq!(
            RawBytes.decode(&mut buf).unwrap(),
            Decoded::Incomplete(None)
        );
        assert_eq!(
            RawBytes.decode_eof(&mut buf).unwrap(),
            Decoded::Incomplete(None)
        );
    }

    #[test]
    fn decode_takes_everything_buffered() {
        let mut buf = BytesMut::from(&b"abc"[..]);
        assert_eq!(
            RawBytes.decode(&mut buf).unwrap(),
            Decoded::Frame(Bytes::from_static(b"abc"))
        );
        assert!(buf.is_empty());
        assert_eq!(
            RawBytes.decode(&mut buf).unwrap(),
            Decoded::Incomplete(None)
        );
    }

    #[test]
    fn each_byte_fed_is_a_frame() {
        let mut buf = BytesMut::new();
        for byte in b"xyz" {
            buf.extend_from_slice(&[*byte]);
            assert_eq!(
                RawBytes.decode(&mut buf).unwrap(),
                Decoded::Frame(Bytes::copy_from_slice(&[*byte]))
            );
        }
    }

    #[test]
    fn encode_appends_as_is() {
        let mut dst = BytesMut::from(&b"x"[..]);
        RawBytes.encode(b"yz", &mut dst).unwrap();
        RawBytes.encode(b"", &mut dst).unwrap();
        assert_eq!(&dst[..], b"xyz");
    }

    #[test]
    fn round_trip() {
        let mut buf = BytesMut::new();
        RawBytes.encode(b"\x00\xffbinary\n", &mut buf).unwrap();
        assert_eq!(
            RawBytes.decode(&mut buf).unwrap(),
            Decoded::Frame(Bytes::from_static(b"\x00\xffbinary\n"))
        );
    }
}
