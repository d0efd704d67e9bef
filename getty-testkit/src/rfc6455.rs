//! A minimal WebSocket client written from RFC 6455 alone, for conformance scenarios.
//!
//! It shares no code with getty's server side or with tungstenite, so a misreading of the RFC
//! in either is not repeated here: the accept key is computed with the `sha1_smol` and
//! `base64` crates (tungstenite, and so getty's server, uses `sha1` and `data-encoding`),
//! frames are encoded and decoded by hand. It works over any futures-io stream and is
//! deliberately strict about what a server may send (unmasked frames, no RSV bits, well-formed
//! control frames).

use std::io;

use futures_lite::io::{AsyncRead, AsyncReadExt};

/// Opcode of a continuation frame.
pub const CONTINUATION: u8 = 0x0;
/// Opcode of a text frame.
pub const TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub const CLOSE: u8 = 0x8;
/// Opcode of a ping frame.
pub const PING: u8 = 0x9;
/// Opcode of a pong frame.
pub const PONG: u8 = 0xA;

/// Longest HTTP response head [`read_http_head`] reads before giving up.
pub const MAX_HEAD_LEN: usize = 64 * 1024;
/// Largest frame payload [`read_frame`] accepts, so that a corrupt length fails the scenario
/// instead of exhausting memory.
pub const MAX_PAYLOAD_LEN: u64 = 64 * 1024 * 1024;

/// HTTP header fields as `(name, value)`, names as sent, values trimmed.
pub type Headers = Vec<(String, String)>;

/// The opening handshake request of RFC 6455 §4.1 for `path` on `host`, with `key` as the
/// `Sec-WebSocket-Key` (the RFC's example key is `dGhlIHNhbXBsZSBub25jZQ==`).
pub fn upgrade_request(path: &str, host: &str, key: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// The value of the first header called `name`, compared ASCII case-insensitively.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Reads an HTTP response head one byte at a time, so that nothing after it is consumed, up to
/// and including the blank line. Returns the status code, the headers and the head's bytes.
pub async fn read_http_head<S: AsyncRead + Unpin>(
    s: &mut S,
) -> io::Result<(u16, Headers, Vec<u8>)> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD_LEN {
            return Err(invalid("HTTP response head too long"));
        }
        let mut byte = [0u8];
        s.read_exact(&mut byte).await?;
        head.push(byte[0]);
    }
    let text =
        std::str::from_utf8(&head).map_err(|_| invalid("HTTP response head is not UTF-8"))?;
    let mut lines = text.trim_end_matches("\r\n").split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = match status_line.split(' ').collect::<Vec<_>>()[..] {
        [version, code, ..] if version.starts_with("HTTP/1.") && code.len() == 3 => {
            code.parse().map_err(|_| invalid("bad HTTP status code"))?
        }
        _ => return Err(invalid("bad HTTP status line")),
    };
    let headers = lines
        .map(|line| {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| invalid("bad HTTP header line"))?;
            Ok((name.to_owned(), value.trim().to_owned()))
        })
        .collect::<io::Result<Headers>>()?;
    Ok((status, headers, head))
}

/// Reads an HTTP response: the head as [`read_http_head`] does, then a body of
/// `Content-Length` bytes (none if that header is absent). Returns the status code, the headers
/// and the body.
pub async fn read_http_response<S: AsyncRead + Unpin>(
    s: &mut S,
) -> io::Result<(u16, Headers, Vec<u8>)> {
    let (status, headers, _) = read_http_head(s).await?;
    let len = match header(&headers, "content-length") {
        Some(len) => len
            .parse::<usize>()
            .map_err(|_| invalid("bad Content-Length"))?,
        None => 0,
    };
    let mut body = vec![0; len];
    s.read_exact(&mut body).await?;
    Ok((status, headers, body))
}

/// The `Sec-WebSocket-Accept` a server must answer `key` with (RFC 6455 §4.2.2): base64 of the
/// SHA-1 of the key followed by the protocol GUID.
pub fn accept_key(key: &str) -> String {
    const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    base64(&sha1(format!("{key}{GUID}").as_bytes()))
}

/// One client-to-server frame (RFC 6455 §5.2): masked with `mask`, as clients must, with the
/// shortest length encoding (7-bit, 16-bit or 64-bit). `opcode` is taken mod 16; RSV bits are 0.
pub fn client_frame(opcode: u8, fin: bool, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(u8::from(fin) << 7 | (opcode & 0x0F));
    const MASK_BIT: u8 = 0x80;
    match payload.len() {
        len @ 0..=125 => frame.push(MASK_BIT | len as u8),
        len @ 126..=0xFFFF => {
            frame.push(MASK_BIT | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(MASK_BIT | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    frame
}

/// The payload of a close frame (RFC 6455 §5.5.1): the status code, big-endian, then the reason.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

/// A frame as received from a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Whether this is the final fragment of a message.
    pub fin: bool,
    /// The opcode ([`TEXT`], [`BINARY`], [`CLOSE`], ...).
    pub opcode: u8,
    /// The payload (server frames are unmasked).
    pub payload: Vec<u8>,
}

/// Reads one server-to-client frame. Fails with `InvalidData` on anything a server must not
/// send without extensions: the mask bit (RFC 6455 §5.1), RSV bits, a reserved opcode, a
/// fragmented or longer than 125 bytes control frame, a 64-bit length with its top bit set, or
/// a payload over [`MAX_PAYLOAD_LEN`].
pub async fn read_frame<S: AsyncRead + Unpin>(s: &mut S) -> io::Result<Frame> {
    let mut start = [0u8; 2];
    s.read_exact(&mut start).await?;
    let fin = start[0] & 0x80 != 0;
    let opcode = start[0] & 0x0F;
    if start[0] & 0x70 != 0 {
        return Err(invalid("RSV bits set without a negotiated extension"));
    }
    if !matches!(opcode, CONTINUATION | TEXT | BINARY | CLOSE | PING | PONG) {
        return Err(invalid("reserved opcode"));
    }
    if start[1] & 0x80 != 0 {
        return Err(invalid("server frame is masked"));
    }
    let len = match start[1] & 0x7F {
        126 => {
            let mut len = [0u8; 2];
            s.read_exact(&mut len).await?;
            u64::from(u16::from_be_bytes(len))
        }
        127 => {
            let mut len = [0u8; 8];
            s.read_exact(&mut len).await?;
            let len = u64::from_be_bytes(len);
            if len >> 63 != 0 {
                return Err(invalid(
                    "64-bit frame length with its most significant bit set",
                ));
            }
            len
        }
        len => u64::from(len),
    };
    if opcode >= CLOSE && (!fin || len > 125) {
        return Err(invalid("control frame fragmented or longer than 125 bytes"));
    }
    if len > MAX_PAYLOAD_LEN {
        return Err(invalid("frame payload larger than MAX_PAYLOAD_LEN"));
    }
    let mut payload = vec![0; len as usize];
    s.read_exact(&mut payload).await?;
    Ok(Frame {
        fin,
        opcode,
        payload,
    })
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// SHA-1 (RFC 3174).
fn sha1(data: &[u8]) -> [u8; 20] {
    sha1_smol::Sha1::from(data).digest().bytes()
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use futures_lite::future::block_on;

    use super::*;

    /// The masking key of the RFC 6455 §5.7 examples.
    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn read(bytes: &[u8]) -> io::Result<Frame> {
        block_on(read_frame(&mut &bytes[..]))
    }

    #[test]
    fn sha1_matches_rfc_3174_vectors() {
        let hex = |d: [u8; 20]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex(sha1(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        assert_eq!(
            hex(sha1(&vec![b'a'; 1_000_000])),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
        );
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn upgrade_request_has_every_required_header() {
        assert_eq!(
            upgrade_request("/chat", "server.example.com", "dGhlIHNhbXBsZSBub25jZQ=="),
            "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
    }

    #[test]
    fn client_frames_match_rfc_6455_examples() {
        // §5.7: a single-frame masked text message "Hello".
        assert_eq!(
            client_frame(TEXT, true, b"Hello", MASK),
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        // A fragmented text message: "Hel" then a continuation "lo".
        assert_eq!(client_frame(TEXT, false, b"Hel", MASK)[..2], [0x01, 0x83]);
        assert_eq!(
            client_frame(CONTINUATION, true, b"lo", MASK)[..2],
            [0x80, 0x82]
        );
        // A masked ping with "Hello", and an empty close.
        assert_eq!(client_frame(PING, true, b"Hello", MASK)[..2], [0x89, 0x85]);
        assert_eq!(
            client_frame(CLOSE, true, b"", MASK),
            [0x88, 0x80, 0x37, 0xfa, 0x21, 0x3d]
        );
    }

    #[test]
    fn client_frames_use_the_shortest_length_encoding() {
        let mask = [1, 2, 3, 4];
        let frame = client_frame(BINARY, true, &[0; 125], mask);
        assert_eq!(frame[..6], [0x82, 0xFD, 1, 2, 3, 4]);
        assert_eq!(frame.len(), 6 + 125);
        // §5.7: 256 bytes in a 16-bit length.
        let frame = client_frame(BINARY, true, &[0; 256], mask);
        assert_eq!(frame[..8], [0x82, 0xFE, 0x01, 0x00, 1, 2, 3, 4]);
        assert_eq!(frame[8..], [1, 2, 3, 4].repeat(64));
        let frame = client_frame(BINARY, true, &[0; 0xFFFF], mask);
        assert_eq!(frame[..4], [0x82, 0xFE, 0xFF, 0xFF]);
        // §5.7: 64 KiB in a 64-bit length.
        let frame = client_frame(BINARY, true, &[0; 65536], mask);
        assert_eq!(
            frame[..14],
            [0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4]
        );
        assert_eq!(frame.len(), 14 + 65536);
    }

    #[test]
    fn close_payload_is_code_then_reason() {
        assert_eq!(close_payload(1000, "bye"), [0x03, 0xE8, b'b', b'y', b'e']);
    }

    #[test]
    fn read_frame_decodes_rfc_6455_examples() {
        // §5.7: a single-frame unmasked text message "Hello".
        let hello = Frame {
            fin: true,
            opcode: TEXT,
            payload: b"Hello".to_vec(),
        };
        assert_eq!(
            read(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]).unwrap(),
            hello
        );
        // An unmasked pong, and a first text fragment.
        let pong = read(&[0x8A, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]).unwrap();
        assert_eq!(
            (pong.fin, pong.opcode, &pong.payload[..]),
            (true, PONG, &b"Hello"[..])
        );
        let first = read(&[0x01, 0x03, 0x48, 0x65, 0x6c]).unwrap();
        assert_eq!(
            (first.fin, first.opcode, &first.payload[..]),
            (false, TEXT, &b"Hel"[..])
        );
        // §5.7: 256 bytes (16-bit length) and 64 KiB (64-bit length) binary messages.
        let mut long = vec![0x82, 0x7E, 0x01, 0x00];
        long.extend((0..256).map(|i| i as u8));
        let frame = read(&long).unwrap();
        assert_eq!(frame.payload, (0..256).map(|i| i as u8).collect::<Vec<_>>());
        let mut longer = vec![0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0];
        longer.extend(vec![7; 65536]);
        assert_eq!(read(&longer).unwrap().payload, vec![7; 65536]);
    }

    #[test]
    fn read_frame_reads_exactly_one_frame() {
        let bytes = [0x81, 0x01, b'a', 0x82, 0x00];
        let mut s = &bytes[..];
        assert_eq!(block_on(read_frame(&mut s)).unwrap().payload, b"a");
        assert_eq!(
            block_on(read_frame(&mut s)).unwrap(),
            Frame {
                fin: true,
                opcode: BINARY,
                payload: vec![]
            }
        );
        assert_eq!(
            block_on(read_frame(&mut s)).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn read_frame_rejects_what_a_server_must_not_send() {
        let invalid = |bytes: &[u8]| read(bytes).unwrap_err().kind() == io::ErrorKind::InvalidData;
        // Masked (the client "Hello" of §5.7).
        assert!(invalid(&client_frame(TEXT, true, b"Hello", MASK)));
        // RSV1 (permessage-deflate was never negotiated).
        assert!(invalid(&[0xC1, 0x00]));
        // Reserved opcodes.
        assert!(invalid(&[0x83, 0x00]));
        assert!(invalid(&[0x8B, 0x00]));
        // A fragmented ping; a 126-byte close.
        assert!(invalid(&[0x09, 0x00]));
        assert!(invalid(&[0x88, 0x7E, 0x00, 0x7E]));
        // A 64-bit length with the top bit set; one over MAX_PAYLOAD_LEN.
        assert!(invalid(&[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]));
        let mut huge = vec![0x82, 0x7F];
        huge.extend_from_slice(&(MAX_PAYLOAD_LEN + 1).to_be_bytes());
        assert!(invalid(&huge));
        // Truncated.
        assert_eq!(
            read(&[0x81, 0x05, b'H']).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn http_head_is_read_without_consuming_what_follows() {
        let bytes =
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                      Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x00";
        let mut s = &bytes[..];
        let (status, headers, head) = block_on(read_http_head(&mut s)).unwrap();
        assert_eq!(status, 101);
        assert_eq!(
            header(&headers, "sec-websocket-accept"),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        assert_eq!(header(&headers, "UPGRADE"), Some("websocket"));
        assert_eq!(headers.len(), 3);
        assert_eq!(head, bytes[..bytes.len() - 2]);
        assert_eq!(s, b"\x81\x00");
    }

    #[test]
    fn http_response_body_is_read_by_content_length() {
        let bytes =
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\nConnection: close\r\n\r\nnope\nextra";
        let mut s = &bytes[..];
        let (status, headers, body) = block_on(read_http_response(&mut s)).unwrap();
        assert_eq!(
            (status, header(&headers, "connection"), &body[..]),
            (404, Some("close"), &b"nope\n"[..])
        );
        assert_eq!(s, b"extra");
        let bad = |b: &[u8]| block_on(read_http_head(&mut &b[..])).unwrap_err().kind();
        assert_eq!(bad(b"HTTP/1.1 101 Switching"), io::ErrorKind::UnexpectedEof);
        assert_eq!(bad(b"SSH-2.0-x\r\n\r\n"), io::ErrorKind::InvalidData);
    }
}
