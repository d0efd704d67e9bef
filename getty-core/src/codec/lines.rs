//! Newline-delimited UTF-8 text: each package is one line.

use bytes::{Buf, BufMut, BytesMut};

use super::{Codec, CodecError, Decoded};

/// The default [`Lines::max_line_len`]: 64 KiB.
const DEFAULT_MAX_LINE_LEN: usize = 64 * 1024;

/// A codec for UTF-8 text lines ending in `\n`.
///
/// Decoding strips the `\n` and a `\r` just before it, so `\r\n` peers are understood; encoding
/// appends a bare `\n`. A line that itself ends in `\r` therefore loses it on the peer.
///
/// The line limit is the sessions' maximum message length too (plus two bytes for `\r\n`):
/// raise it here, not in the session's settings.
///
/// ```
/// use getty_core::codec::{Codec, Decoded, Lines};
/// use getty_core::bytes::BytesMut;
///
/// let codec = Lines::new();
/// let mut buf = BytesMut::from(&b"hello\r\nwor"[..]);
/// assert_eq!(codec.decode(&mut buf).unwrap(), Decoded::Frame("hello".to_string()));
/// assert_eq!(codec.decode(&mut buf).unwrap(), Decoded::Incomplete(None));
/// let mut out = BytesMut::new();
/// codec.encode("hi", &mut out).unwrap();
/// assert_eq!(&out[..], b"hi\n");
/// assert_eq!(codec.frame_limit(), Some(64 * 1024 + 2));
/// ```
#[derive(Debug, Clone)]
pub struct Lines {
    max_line_len: usize,
}

impl Lines {
    /// Creates a line codec with a 64 KiB line length limit.
    pub fn new() -> Self {
        Lines {
            max_line_len: DEFAULT_MAX_LINE_LEN,
        }
    }

    /// Sets the longest line accepted, in bytes, not counting the line ending.
    pub fn with_max_line_len(mut self, max: usize) -> Self {
        self.max_line_len = max;
        self
    }

    /// Returns the longest line accepted, in bytes, not counting the line ending.
    pub fn max_line_len(&self) -> usize {
        self.max_line_len
    }

    /// Checks the length of `line` (its ending already removed) and converts it to a string.
    fn to_line(&self, line: &[u8]) -> Result<String, CodecError> {
        if line.len() > self.max_line_len {
            return Err(CodecError::FrameTooLarge {
                len: line.len(),
                max: self.max_line_len,
            });
        }
        std::str::from_utf8(line)
            .map(str::to_owned)
            .map_err(|e| CodecError::invalid(format!("line is not valid UTF-8: {e}")))
    }
}

impl Default for Lines {
    /// Returns [`Lines::new`].
    fn default() -> Self {
        Self::new()
    }
}

/// `line` without one trailing `\r`, if it has one.
fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl Codec for Lines {
    type Inbound = String;
    type Outbound = str;

    fn frame_limit(&self) -> Option<usize> {
        Some(self.max_line_len.saturating_add(2))
    }

    fn decode(&self, buf: &mut BytesMut) -> Result<Decoded<String>, CodecError> {
        // A line within the limit ends by index max + 1 (max bytes, `\r`, `\n`), so looking
        // further would only rescan a line already known to be too long.
        let window = buf.len().min(self.max_line_len.saturating_add(2));
        match buf[..window].iter().position(|&b| b == b'\n') {
            Some(end) => {
                let line = self.to_line(strip_cr(&buf[..end]))?;
                buf.advance(end + 1);
                Ok(Decoded::Frame(line))
            }
            None => {
                // A trailing `\r` may yet be part of the line ending, so it does not count.
                let known = strip_cr(buf).len();
                if known > self.max_line_len {
                    return Err(CodecError::FrameTooLarge {
                        len: known,
                        max: self.max_line_len,
                    });
                }
                Ok(Decoded::Incomplete(None))
            }
        }
    }

    fn decode_eof(&self, buf: &mut BytesMut) -> Result<Decoded<String>, CodecError> {
        match self.decode(buf)? {
            Decoded::Incomplete(_) if !buf.is_empty() => {
                // The peer closed without ending its last line: that line is complete anyway.
                let line = self.to_line(strip_cr(buf))?;
                buf.clear();
                Ok(Decoded::Frame(line))
            }
            other => Ok(other),
        }
    }

    fn encode(&self, pkg: &str, dst: &mut BytesMut) -> Result<(), CodecError> {
        if pkg.contains('\n') {
            return Err(CodecError::invalid(
                "a line to send contains '\\n' and would reach the peer as several lines",
            ));
        }
        if pkg.len() > self.max_line_len {
            return Err(CodecError::FrameTooLarge {
                len: pkg.len(),
                max: self.max_line_len,
            });
        }
        dst.reserve(pkg.len() + 1);
        dst.put_slice(pkg.as_bytes());
        dst.put_u8(b'\n');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(decoded: Decoded<String>) -> String {
        match decoded {
            Decoded::Frame(s) => s,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[test]
    fn default_limit_is_64k() {
        assert_eq!(Lines::default().max_line_len(), 64 * 1024);
        assert_eq!(Lines::new().with_max_line_len(7).max_line_len(), 7);
    }

    #[test]
    fn no_newline_yet_is_incomplete() {
        let codec = Lines::new();
        let mut buf = BytesMut::new();
        assert_eq!(codec.decode(&mut buf).unwrap(), Decoded::Incomplete(None));
        buf.extend_from_slice(b"partial\r");
        assert_eq!(codec.decode(&mut buf).unwrap(), Decoded::Incomplete(None));
        assert_eq!(&buf[..], b"partial\r");
    }

    #[test]
    fn decode_one_line() {
        let codec = Lines::new();
        let mut buf = BytesMut::from(&b"hello\n"[..]);
        assert_eq!(frame(codec.decode(&mut buf).unwrap()), "hello");
        assert!(buf.is_empty());
    }

    #[test]
    fn crlf_is_stripped() {
        let codec = Lines::new();
        let mut buf = BytesMut::from(&b"hello\r\n\r\na\rb\n"[..]);
        assert_eq!(frame(codec.decode(&mut buf).unwrap()), "hello");
        assert_eq!(frame(codec.decode(&mut buf).unwrap()), "");
        assert_eq!(frame(codec.decode(&mut buf).unwrap()), "a\rb");
        assert!(buf.is_empty());
    }

    #[test]
    fn decode_several_lines_in_one_buffer() {
        let codec = Lines::new();
        let mut buf = BytesMut::from(&b"one\ntwo\n\nthree\nfou"[..]);
        for want in ["one", "two", "", "three"] {
            assert_eq!(frame(codec.decode(&mut buf).unwrap()), want);
        }
        assert_eq!(codec.decode(&mut buf).unwrap(), Decoded::Incomplete(None));
        assert_eq!(&buf[..], b"fou");
    }

    #[test]
    fn decode_one_byte_at_a_time() {
        let codec = Lines::new();
        let wire = "héllo wörld\r\n".as_bytes();
        let mut buf = BytesMut::new();
        for (i, byte) in wire.iter().enumerate() {
            buf.put_u8(*byte);
            let got = codec.decode(&mut buf).unwrap();
            if i + 1 < wire.len() {
                assert_eq!(got, Decoded::Incomplete(None));
                assert_eq!(buf.len(), i + 1);
            } else {
                assert_eq!(frame(got), "héllo wörld");
            }
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn invalid_utf8_is_invalid() {
        let codec = Lines::new();
        let mut buf = BytesMut::from(&b"ab\xff\xfecd\n"[..]);
        match codec.decode(&mut buf) {
            Err(CodecError::Invalid(msg)) => assert!(msg.contains("UTF-8"), "{msg}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn too_long_without_newline_is_too_large() {
        let codec = Lines::new().with_max_line_len(4);
        let mut buf = BytesMut::from(&b"abcd"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), Decoded::Incomplete(None));
        // A `\r` after a line at the limit may start its ending: still fine.
        buf.put_u8(b'\r');
        assert_eq!(codec.decode(&mut buf).unwrap(), Decoded::Incomplete(None));
        buf.put_u8(b'\n');
        assert_eq!(frame(codec.decode(&mut buf).unwrap()), "abcd");

        let mut long = BytesMut::from(&b"abcde"[..]);
        let err = codec.decode(&mut long).unwrap_err();
        assert!(matches!(err, CodecError::FrameTooLarge { len: 5, max: 4 }));
    }

    #[test]
    fn too_long_with_newline_is_too_large() {
        let codec = Lines::new().with_max_line_len(4);
        let mut buf = BytesMut::from(&b"abcde\nok\n"[..]);
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(matches!(err, CodecError::FrameTooLarge { len: 5, max: 4 }));
        let mut far = BytesMut::from(&b"abcdefghij\n"[..]);
        assert!(matches!(
            codec.decode(&mut far),
            Err(CodecError::FrameTooLarge { max: 4, .. })
        ));
    }

    #[test]
    fn eof_delivers_unterminated_last_line() {
        let codec = Lines::new();
        let mut buf = BytesMut::from(&b"first\nlast"[..]);
        assert_eq!(frame(codec.decode_eof(&mut buf).unwrap()), "first");
        assert_eq!(frame(codec.decode_eof(&mut buf).unwrap()), "last");
        assert!(buf.is_empty());
        assert_eq!(
            codec.decode_eof(&mut buf).unwrap(),
            Decoded::Incomplete(None)
        );
    }

    #[test]
    fn eof_checks_last_line() {
        let codec = Lines::new().with_max_line_len(3);
        let mut bad = BytesMut::from(&b"\xff"[..]);
        assert!(matches!(
            codec.decode_eof(&mut bad),
            Err(CodecError::Invalid(_))
        ));
        let mut cr = BytesMut::from(&b"abc\r"[..]);
        assert_eq!(frame(codec.decode_eof(&mut cr).unwrap()), "abc");
    }

    #[test]
    fn encode_appends_newline() {
        let codec = Lines::new();
        let mut dst = BytesMut::new();
        codec.encode("hi", &mut dst).unwrap();
        codec.encode("", &mut dst).unwrap();
        assert_eq!(&dst[..], b"hi\n\n");
    }

    #[test]
    fn encode_rejects_embedded_newline() {
        let codec = Lines::new();
        let mut dst = BytesMut::new();
        assert!(matches!(
            codec.encode("two\nlines", &mut dst),
            Err(CodecError::Invalid(_))
        ));
        assert!(dst.is_empty());
    }

    #[test]
    fn encode_rejects_too_long() {
        let codec = Lines::new().with_max_line_len(2);
        let mut dst = BytesMut::new();
        assert!(matches!(
            codec.encode("abc", &mut dst),
            Err(CodecError::FrameTooLarge { len: 3, max: 2 })
        ));
        codec.encode("ab", &mut dst).unwrap();
        assert_eq!(&dst[..], b"ab\n");
    }

    #[test]
    fn round_trip() {
        let codec = Lines::new();
        let mut buf = BytesMut::new();
        let lines = ["plain", "", "ünïcödé ✓", "tab\there"];
        for line in lines {
            codec.encode(line, &mut buf).unwrap();
        }
        for line in lines {
            assert_eq!(frame(codec.decode(&mut buf).unwrap()), line);
        }
        assert!(buf.is_empty());
    }
}
