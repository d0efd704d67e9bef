//! Length-prefixed framing: each frame is a fixed-width length header followed by the payload.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{Codec, CodecError, Decoded};

/// The byte order of a [`LengthDelimited`] length header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endian {
    /// Most significant byte first (network order).
    Big,
    /// Least significant byte first.
    Little,
}

/// A codec that prefixes each payload with its length in a 1, 2, 4 or 8 byte header.
///
/// The header carries the payload length only; it does not count itself. Decoded packages are
/// the payloads, split off the read buffer without copying.
///
/// ```
/// use getty_core::bytes::{Bytes, BytesMut};
/// use getty_core::codec::{Codec, CodecError, Decoded, Endian, LengthDelimited};
///
/// // getty's hello framing: a 4-byte little-endian payload length, then the payload.
/// let codec = LengthDelimited::hello();
/// let mut wire = BytesMut::new();
/// codec.encode(b"hi", &mut wire)?;
/// assert_eq!(&wire[..], &[2, 0, 0, 0, b'h', b'i']);
///
/// let mut partial = BytesMut::from(&wire[..5]);
/// assert_eq!(codec.decode(&mut partial)?, Decoded::Incomplete(Some(6)));
/// assert_eq!(codec.decode(&mut wire)?, Decoded::Frame(Bytes::from_static(b"hi")));
/// assert!(wire.is_empty());
///
/// // Without a limit of its own, the codec leaves the limit to the session settings.
/// assert_eq!(codec.frame_limit(), None);
/// // With one, sessions on it take the limit plus the header as their maximum message length.
/// let limited = LengthDelimited::hello().with_max_frame_len(1024);
/// assert_eq!(limited.frame_limit(), Some(1024 + 4));
/// assert!(matches!(
///     limited.encode(&[0; 1025], &mut wire),
///     Err(CodecError::FrameTooLarge { len: 1025, max: 1024 })
/// ));
///
/// // Other layouts: a 2-byte big-endian header.
/// let short = LengthDelimited::new(2, Endian::Big)?;
/// short.encode(b"hi", &mut wire)?;
/// assert_eq!(&wire[..], &[0, 2, b'h', b'i']);
/// # Ok::<(), CodecError>(())
/// ```
#[derive(Debug, Clone)]
pub struct LengthDelimited {
    width: usize,
    endian: Endian,
    max_frame_len: usize,
    /// Whether `with_max_frame_len` set the limit (rather than the header's ceiling).
    limited: bool,
}

impl LengthDelimited {
    /// Creates a codec with a `width`-byte header in `endian` byte order.
    ///
    /// The payload limit starts at the largest length the header can express (see
    /// [`max_frame_len`](Self::max_frame_len)). Fails with [`CodecError::Invalid`] unless
    /// `width` is 1, 2, 4 or 8.
    pub fn new(width: usize, endian: Endian) -> Result<Self, CodecError> {
        if !matches!(width, 1 | 2 | 4 | 8) {
            return Err(CodecError::invalid(format!(
                "length header width must be 1, 2, 4 or 8 bytes, not {width}"
            )));
        }
        Ok(LengthDelimited {
            width,
            endian,
            max_frame_len: Self::ceiling(width),
            limited: false,
        })
    }

    /// Creates getty's hello framing: a 4-byte little-endian payload length, then the payload.
    pub fn hello() -> Self {
        LengthDelimited {
            width: 4,
            endian: Endian::Little,
            max_frame_len: Self::ceiling(4),
            limited: false,
        }
    }

    /// Sets the largest payload length accepted when decoding and encoding.
    ///
    /// A limit above what the header can express is lowered to that. The sessions on this
    /// codec then take it (plus the header) as their maximum message length
    /// ([`Codec::frame_limit`]); without it, the session's setting alone limits inbound frames.
    pub fn with_max_frame_len(mut self, max: usize) -> Self {
        self.max_frame_len = max.min(Self::ceiling(self.width));
        self.limited = true;
        self
    }

    /// Returns the header width in bytes.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Returns the header byte order.
    pub fn endian(&self) -> Endian {
        self.endian
    }

    /// Returns the largest payload length accepted, in bytes.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// The largest payload a `width`-byte header can carry such that header plus payload still
    /// fits a `usize` (so the total frame length reported by `Incomplete` never overflows).
    fn ceiling(width: usize) -> usize {
        let by_width = match width {
            1 => u64::from(u8::MAX),
            2 => u64::from(u16::MAX),
            4 => u64::from(u32::MAX),
            _ => u64::MAX,
        };
        let by_usize = usize::MAX - width;
        usize::try_from(by_width).map_or(by_usize, |w| w.min(by_usize))
    }

    /// Appends the header of a frame with a `len`-byte payload.
    fn put_header(&self, len: usize, dst: &mut BytesMut) -> Result<(), CodecError> {
        if len > self.max_frame_len {
            return Err(CodecError::FrameTooLarge {
                len,
                max: self.max_frame_len,
            });
        }
        // max_frame_len fits both the header and u64 (it is capped by the width's maximum),
        // so this conversion only fails if that invariant is broken.
        let value = u64::try_from(len).map_err(|_| CodecError::FrameTooLarge {
            len,
            max: self.max_frame_len,
        })?;
        match self.endian {
            Endian::Big => dst.put_uint(value, self.width),
            Endian::Little => dst.put_uint_le(value, self.width),
        }
        Ok(())
    }
}

impl Default for LengthDelimited {
    /// Returns getty's hello framing, as [`LengthDelimited::hello`].
    fn default() -> Self {
        Self::hello()
    }
}

impl Codec for LengthDelimited {
    type Inbound = Bytes;
    type Outbound = [u8];

    fn frame_limit(&self) -> Option<usize> {
        self.limited
            .then(|| self.max_frame_len.saturating_add(self.width))
    }

    fn decode(&self, buf: &mut BytesMut) -> Result<Decoded<Bytes>, CodecError> {
        let Some(mut header) = buf.get(..self.width) else {
            return Ok(Decoded::Incomplete(None));
        };
        let declared = match self.endian {
            Endian::Big => header.get_uint(self.width),
            Endian::Little => header.get_uint_le(self.width),
        };
        // An 8-byte length may not fit a 32-bit usize; such a frame is too large either way.
        let len = usize::try_from(declared).unwrap_or(usize::MAX);
        if len > self.max_frame_len {
            return Err(CodecError::FrameTooLarge {
                len,
                max: self.max_frame_len,
            });
        }
        // Cannot overflow: max_frame_len <= usize::MAX - width.
        let total = self.width + len;
        if buf.len() < total {
            return Ok(Decoded::Incomplete(Some(total)));
        }
        buf.advance(self.width);
        Ok(Decoded::Frame(buf.split_to(len).freeze()))
    }

    fn encode(&self, pkg: &[u8], dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.reserve(self.width + pkg.len());
        self.put_header(pkg.len(), dst)?;
        dst.put_slice(pkg);
        Ok(())
    }

    fn encode_header(
        &self,
        payload_len: usize,
        dst: &mut BytesMut,
    ) -> Option<Result<(), CodecError>> {
        Some(self.put_header(payload_len, dst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIDTHS: [usize; 4] = [1, 2, 4, 8];
    const ENDIANS: [Endian; 2] = [Endian::Big, Endian::Little];

    fn encoded(codec: &LengthDelimited, pkg: &[u8]) -> BytesMut {
        let mut dst = BytesMut::new();
        codec.encode(pkg, &mut dst).expect("encode");
        dst
    }

    fn frame(decoded: Decoded<Bytes>) -> Bytes {
        match decoded {
            Decoded::Frame(b) => b,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[test]
    fn new_rejects_bad_widths() {
        for width in [0, 3, 5, 6, 7, 9, 16] {
            assert!(matches!(
                LengthDelimited::new(width, Endian::Big),
                Err(CodecError::Invalid(_))
            ));
        }
        for width in WIDTHS {
            let codec = LengthDelimited::new(width, Endian::Little).expect("valid width");
            assert_eq!(codec.width(), width);
            assert_eq!(codec.endian(), Endian::Little);
        }
    }

    #[test]
    fn default_max_is_width_max() {
        let max = |w| {
            LengthDelimited::new(w, Endian::Big)
                .unwrap()
                .max_frame_len()
        };
        assert_eq!(max(1), 255);
        assert_eq!(max(2), 65_535);
        assert_eq!(
            max(4),
            usize::try_from(u32::MAX).unwrap().min(usize::MAX - 4)
        );
        assert_eq!(max(8), usize::MAX - 8);
        let raised = LengthDelimited::new(1, Endian::Big)
            .unwrap()
            .with_max_frame_len(1000);
        assert_eq!(raised.max_frame_len(), 255);
    }

    #[test]
    fn default_is_hello() {
        let d = LengthDelimited::default();
        let h = LengthDelimited::hello();
        assert_eq!((d.width(), d.endian()), (4, Endian::Little));
        assert_eq!(d.max_frame_len(), h.max_frame_len());
    }

    #[test]
    fn encode_header_is_the_frame_without_its_payload() {
        let codec = LengthDelimited::new(2, Endian::Big).expect("codec");
        let mut header = BytesMut::new();
        codec
            .encode_header(3, &mut header)
            .expect("framed")
            .expect("ok");
        assert_eq!(&header[..], &encoded(&codec, b"abc")[..2]);
        let limited = LengthDelimited::hello().with_max_frame_len(2);
        let refused = limited.encode_header(3, &mut BytesMut::new());
        assert!(matches!(
            refused,
            Some(Err(CodecError::FrameTooLarge { len: 3, max: 2 }))
        ));
    }

    #[test]
    fn hello_framing_bytes() {
        let codec = LengthDelimited::hello();
        let payload = b"hello getty";
        let dst = encoded(&codec, payload);
        let mut expected = (payload.len() as u32).to_le_bytes().to_vec();
        expected.extend_from_slice(payload);
        assert_eq!(&dst[..], &expected[..]);
    }

    #[test]
    fn decode_no_header_yet() {
        let codec = LengthDelimited::hello();
        let mut buf = BytesMut::new();
        assert_eq!(codec.decode(&mut buf).unwrap(), Decoded::Incomplete(None));
        buf.extend_from_slice(&[5, 0, 0]);
        assert_eq!(codec.decode(&mut buf).unwrap(), Decoded::Incomplete(None));
        assert_eq!(&buf[..], &[5, 0, 0]);
    }

    #[test]
    fn decode_body_incomplete_gives_hint_and_keeps_buffer() {
        let codec = LengthDelimited::hello();
        let mut buf = BytesMut::from(&[10u8, 0, 0, 0, b'a', b'b', b'c'][..]);
        let before = buf.clone();
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Decoded::Incomplete(Some(14))
        );
        assert_eq!(buf, before);
    }

    #[test]
    fn decode_one_frame() {
        let codec = LengthDelimited::new(2, Endian::Big).unwrap();
        let mut buf = BytesMut::from(&[0u8, 3, b'x', b'y', b'z'][..]);
        assert_eq!(&frame(codec.decode(&mut buf).unwrap())[..], b"xyz");
        assert!(buf.is_empty());
        assert_eq!(codec.decode(&mut buf).unwrap(), Decoded::Incomplete(None));
    }

    #[test]
    fn decode_several_frames_in_one_buffer() {
        let codec = LengthDelimited::hello();
        let mut buf = BytesMut::new();
        for pkg in [&b"one"[..], b"", b"three"] {
            codec.encode(pkg, &mut buf).unwrap();
        }
        buf.extend_from_slice(&[9, 0]); // the start of a fourth frame's header
        assert_eq!(&frame(codec.decode(&mut buf).unwrap())[..], b"one");
        assert_eq!(&frame(codec.decode(&mut buf).unwrap())[..], b"");
        assert_eq!(&frame(codec.decode(&mut buf).unwrap())[..], b"three");
        assert_eq!(codec.decode(&mut buf).unwrap(), Decoded::Incomplete(None));
        assert_eq!(&buf[..], &[9, 0]);
    }

    #[test]
    fn decode_one_byte_at_a_time() {
        let codec = LengthDelimited::new(2, Endian::Little).unwrap();
        let wire = encoded(&codec, b"trickle");
        let mut buf = BytesMut::new();
        for (i, byte) in wire.iter().enumerate() {
            buf.put_u8(*byte);
            let got = codec.decode(&mut buf).unwrap();
            if i + 1 < 2 {
                assert_eq!(got, Decoded::Incomplete(None));
            } else if i + 1 < wire.len() {
                assert_eq!(got, Decoded::Incomplete(Some(wire.len())));
                assert_eq!(buf.len(), i + 1);
            } else {
                assert_eq!(&frame(got)[..], b"trickle");
            }
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn round_trip_every_width_and_endian() {
        for width in WIDTHS {
            for endian in ENDIANS {
                let max =
                    300usize.min(LengthDelimited::new(width, endian).unwrap().max_frame_len());
                let codec = LengthDelimited::new(width, endian)
                    .unwrap()
                    .with_max_frame_len(max);
                let at_max: Vec<u8> = (0..max).map(|i| i as u8).collect();
                for pkg in [&b""[..], b"a", b"payload", &at_max[..]] {
                    let mut buf = encoded(&codec, pkg);
                    assert_eq!(buf.len(), width + pkg.len());
                    let got = frame(codec.decode(&mut buf).unwrap());
                    assert_eq!(&got[..], pkg, "width {width} {endian:?}");
                    assert!(buf.is_empty());
                }
            }
        }
    }

    #[test]
    fn header_byte_order() {
        let big = LengthDelimited::new(4, Endian::Big).unwrap();
        let little = LengthDelimited::new(4, Endian::Little).unwrap();
        let pkg = [0u8; 258];
        assert_eq!(&encoded(&big, &pkg)[..4], &[0, 0, 1, 2]);
        assert_eq!(&encoded(&little, &pkg)[..4], &[2, 1, 0, 0]);
    }

    #[test]
    fn encode_over_width_is_too_large() {
        let codec = LengthDelimited::new(1, Endian::Big).unwrap();
        let mut dst = BytesMut::new();
        let err = codec.encode(&[0u8; 256], &mut dst).unwrap_err();
        assert!(matches!(
            err,
            CodecError::FrameTooLarge { len: 256, max: 255 }
        ));
        assert!(dst.is_empty());
        codec.encode(&[0u8; 255], &mut dst).unwrap();
        assert_eq!(dst.len(), 256);
    }

    #[test]
    fn encode_over_max_is_too_large() {
        let codec = LengthDelimited::hello().with_max_frame_len(4);
        let mut dst = BytesMut::new();
        let err = codec.encode(b"12345", &mut dst).unwrap_err();
        assert!(matches!(err, CodecError::FrameTooLarge { len: 5, max: 4 }));
        assert!(dst.is_empty());
    }

    #[test]
    fn decode_over_max_is_detected_from_header() {
        let codec = LengthDelimited::hello().with_max_frame_len(16);
        // Only the header has arrived; the error must not wait for the body.
        let mut buf = BytesMut::from(&17u32.to_le_bytes()[..]);
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(matches!(
            err,
            CodecError::FrameTooLarge { len: 17, max: 16 }
        ));
        let mut ok = BytesMut::from(&16u32.to_le_bytes()[..]);
        assert_eq!(
            codec.decode(&mut ok).unwrap(),
            Decoded::Incomplete(Some(20))
        );
    }

    #[test]
    fn decode_u64_max_length_is_too_large() {
        for endian in ENDIANS {
            let codec = LengthDelimited::new(8, endian).unwrap();
            let mut buf = BytesMut::from(&[0xffu8; 8][..]);
            let err = codec.decode(&mut buf).unwrap_err();
            assert!(matches!(
                err,
                CodecError::FrameTooLarge {
                    len: usize::MAX,
                    ..
                }
            ));
        }
    }
}
