//! The WebSocket opening handshake (RFC 6455 §4): the server side ([`accept`]) and the client
//! side ([`connect`]).
//!
//! Done by hand rather than with tungstenite's `accept_hdr` so that every refusal is answered
//! with a complete HTTP response (status, `Content-Length`, short text body) that a browser or
//! load balancer can show, and so that the bytes a client sent right after its request head are
//! kept for the framing layer instead of being lost.
//!
//! No subprotocol or extension is negotiated: `Sec-WebSocket-Protocol` and
//! `Sec-WebSocket-Extensions` are never echoed, so permessage-deflate is never enabled.
use std::io;

use async_tungstenite::tungstenite::handshake::client::generate_key;
use async_tungstenite::tungstenite::handshake::derive_accept_key;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Most headers a request head may have; more is answered with 431.
const MAX_HEADERS: usize = 64;

/// What the server accepts.
#[derive(Debug, Clone)]
pub(crate) struct HandshakeOptions {
    /// The only path (the request target before any `?`) that is upgraded; others get 404.
    pub path: String,
    /// `Some`: the `Origin` header must be present and equal (ASCII case-insensitively) to one
    /// of these, else 403. `None`: any origin, or none, is accepted.
    pub allowed_origins: Option<Vec<String>>,
    /// Longest request head (request line, headers, final blank line) accepted; longer is 431.
    pub max_head_len: usize,
}

impl Default for HandshakeOptions {
    fn default() -> Self {
        HandshakeOptions {
            path: "/".to_owned(),
            allowed_origins: None,
            max_head_len: 8 * 1024,
        }
    }
}

/// A completed upgrade: the `101` has been written and flushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Upgrade {
    /// The request target as sent, query string included.
    pub path_and_query: String,
    /// The `Origin` header, if any.
    pub origin: Option<String>,
    /// Bytes read after the request head: the start of the client's first frames, which the
    /// framing layer must see before anything read from the stream.
    pub leftover: Vec<u8>,
}

/// Why the handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// The request was refused; an HTTP response with `status` was written (as far as the
    /// peer let us) and the connection should be closed.
    #[error("WebSocket upgrade refused with {status}: {reason}")]
    Refused {
        /// The HTTP status sent.
        status: u16,
        /// Why, for logs (also the response body).
        reason: String,
    },
    /// Reading the request or writing the `101` failed, including EOF before a full head.
    #[error("WebSocket handshake I/O: {0}")]
    Io(#[from] io::Error),
}

/// A refusal decided by the checks, before it is written.
#[derive(Debug)]
struct Refusal {
    status: u16,
    reason: &'static str,
    /// Extra header lines, each ending in CRLF.
    headers: &'static str,
}

impl Refusal {
    const fn new(status: u16, reason: &'static str) -> Self {
        Refusal {
            status,
            reason,
            headers: "",
        }
    }
}

/// Reads the request head from `stream`, checks it against `opts` and answers it: `101` and
/// `Ok` if it is a valid upgrade, otherwise an HTTP error response and `Err(Refused)`.
pub(crate) async fn accept<S>(
    stream: &mut S,
    opts: &HandshakeOptions,
) -> Result<Upgrade, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    let checked = match read_head(stream, &mut buf, opts.max_head_len).await? {
        Ok(head_len) => check(&buf[..head_len], opts).map(|ok| (ok, head_len)),
        Err(refusal) => Err(refusal),
    };
    match checked {
        Ok(((path_and_query, origin, accept_key), head_len)) => {
            let response = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {accept_key}\r\n\r\n"
            );
            stream.write_all(response.as_bytes()).await?;
            stream.flush().await?;
            buf.drain(..head_len);
            Ok(Upgrade {
                path_and_query,
                origin,
                leftover: buf,
            })
        }
        Err(refusal) => {
            let body = format!("{}\n", refusal.reason);
            let response = format!(
                "HTTP/1.1 {} {}\r\n{}Content-Type: text/plain; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                refusal.status,
                reason_phrase(refusal.status),
                refusal.headers,
                body.len(),
            );
            // The refusal is the outcome worth reporting; a peer that is already gone and
            // cannot read the response changes nothing.
            let written = async {
                stream.write_all(response.as_bytes()).await?;
                stream.flush().await
            };
            if let Err(e) = written.await {
                log::debug!("writing the {} refusal failed: {e}", refusal.status);
            }
            Err(HandshakeError::Refused {
                status: refusal.status,
                reason: refusal.reason.to_owned(),
            })
        }
    }
}

/// Reads into `buf` until it holds a complete request head, returning the head's length (the
/// rest of `buf` is leftover). The outer error is I/O (EOF included), the inner one a refusal.
async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    max_head_len: usize,
) -> io::Result<Result<usize, Refusal>> {
    const TOO_LARGE: Refusal = Refusal::new(431, "request head too large");
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the end of the WebSocket request head",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        // Re-parsing from the start on each read is quadratic only up to max_head_len, and it
        // refuses garbage (say a TLS ClientHello) on its first bytes instead of at the limit.
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::Request::new(&mut headers).parse(buf) {
            Ok(httparse::Status::Complete(len)) if len <= max_head_len => return Ok(Ok(len)),
            Ok(httparse::Status::Complete(_)) => return Ok(Err(TOO_LARGE)),
            // Incomplete, so the head is longer than what we have.
            Ok(httparse::Status::Partial) if buf.len() > max_head_len => return Ok(Err(TOO_LARGE)),
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => return Ok(Err(TOO_LARGE)),
            Err(_) => return Ok(Err(Refusal::new(400, "malformed HTTP request"))),
        }
    }
}

/// Checks a complete head, returning the request target, the origin and the
/// `Sec-WebSocket-Accept` value. The order of the checks decides which status a request with
/// several faults gets: method, path, upgrade headers, version, origin.
fn check(
    head: &[u8],
    opts: &HandshakeOptions,
) -> Result<(String, Option<String>, String), Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        // read_head already parsed this same head successfully.
        _ => return Err(Refusal::new(400, "malformed HTTP request")),
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(Refusal::new(400, "malformed HTTP request"));
    };
    let headers = &*req.headers;

    if method != "GET" {
        return Err(Refusal {
            headers: "Allow: GET\r\n",
            ..Refusal::new(405, "only GET can be upgraded")
        });
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    if path != opts.path {
        return Err(Refusal::new(404, "no WebSocket endpoint at this path"));
    }
    // RFC 6455 §4.2.1: HTTP/1.1 or higher (httparse only knows 1.0 and 1.1).
    if version != 1 {
        return Err(Refusal::new(400, "WebSocket upgrade needs HTTP/1.1"));
    }
    if !has_token(headers, "upgrade", "websocket") {
        return Err(Refusal::new(400, "missing Upgrade: websocket"));
    }
    if !has_token(headers, "connection", "upgrade") {
        return Err(Refusal::new(400, "missing Connection: Upgrade"));
    }
    let mut keys = values(headers, "sec-websocket-key");
    let key = match (keys.next(), keys.next()) {
        (Some(key), None) if is_valid_key(key.trim()) => key.trim(),
        _ => return Err(Refusal::new(400, "missing or invalid Sec-WebSocket-Key")),
    };
    if values(headers, "sec-websocket-version")
        .next()
        .map(str::trim)
        != Some("13")
    {
        return Err(Refusal {
            // 426 must name the upgrade (RFC 9110 §15.5.22), and RFC 6455 §4.4 the versions.
            headers: "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
            ..Refusal::new(426, "unsupported WebSocket version, 13 is")
        });
    }
    let origin = values(headers, "origin")
        .next()
        .map(|o| o.trim().to_owned());
    if let Some(allowed) = &opts.allowed_origins {
        let ok = origin
            .as_deref()
            .is_some_and(|o| allowed.iter().any(|a| a.eq_ignore_ascii_case(o)));
        if !ok {
            return Err(Refusal::new(403, "origin not allowed"));
        }
    }
    Ok((target.to_owned(), origin, accept_key(key)))
}

/// The values of every header called `name` (ASCII case-insensitively); non-UTF-8 values are
/// skipped, which makes them count as absent.
fn values<'a>(
    headers: &'a [httparse::Header<'a>],
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
}

/// Whether some header `name` has `token` in its comma-separated list: browsers send
/// `Connection: keep-alive, Upgrade`.
fn has_token(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    values(headers, name).any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// A key must be base64 of 16 bytes (RFC 6455 §4.2.1): 22 significant characters and `==`.
fn is_valid_key(key: &str) -> bool {
    key.len() == 24
        && key.ends_with("==")
        && key
            .bytes()
            .take(22)
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    }
}

/// The client side: sends the upgrade request for `path_and_query` on `host` and checks the
/// server's answer (status 101, `Upgrade`, `Connection`, and `Sec-WebSocket-Accept` matching
/// the key sent). Returns the bytes read after the response head (the server's first frames).
/// Any other answer is `Refused` with its status.
pub(crate) async fn connect<S>(
    stream: &mut S,
    host: &str,
    path_and_query: &str,
    origin: Option<&str>,
    max_head_len: usize,
) -> Result<Vec<u8>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let key = generate_key();
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
         {origin}\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;

    let refused = |status: u16, reason: &str| HandshakeError::Refused {
        status,
        reason: reason.to_owned(),
    };
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the end of the WebSocket response head",
            )
            .into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let head_len = match response.parse(&buf) {
            Ok(httparse::Status::Complete(len)) if len <= max_head_len => len,
            Ok(httparse::Status::Partial) if buf.len() <= max_head_len => continue,
            Ok(_) | Err(httparse::Error::TooManyHeaders) => {
                return Err(refused(0, "response head too large"))
            }
            Err(_) => return Err(refused(0, "malformed HTTP response")),
        };
        let status = response.code.unwrap_or(0);
        if status != 101 {
            return Err(refused(status, "the server did not switch protocols"));
        }
        let headers = response.headers;
        if !has_token(headers, "upgrade", "websocket")
            || !has_token(headers, "connection", "upgrade")
        {
            return Err(refused(status, "101 without the WebSocket upgrade headers"));
        }
        let accept = values(headers, "sec-websocket-accept").next();
        if accept != Some(accept_key(&key).as_str()) {
            return Err(refused(status, "wrong Sec-WebSocket-Accept"));
        }
        buf.drain(..head_len);
        return Ok(buf);
    }
}

/// `Sec-WebSocket-Accept` for `key` (RFC 6455 §4.2.2).
fn accept_key(key: &str) -> String {
    derive_accept_key(key.as_bytes())
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Read};
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use futures_lite::future::block_on;

    use super::*;

    /// An in-memory stream: reads come from `input`, at most `max_read` bytes each; writes
    /// collect in `output`.
    struct Duplex {
        input: Cursor<Vec<u8>>,
        max_read: usize,
        output: Vec<u8>,
    }

    impl AsyncRead for Duplex {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            let n = buf.len().min(this.max_read);
            Poll::Ready(this.input.read(&mut buf[..n]))
        }
    }

    impl AsyncWrite for Duplex {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().output.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// The RFC 6455 §1.3 example key and its accept value.
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    /// A valid upgrade request for `/ws`, one header a line.
    const VALID: &[&str] = &[
        "GET /ws HTTP/1.1",
        "Host: example.com",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ];

    fn head(lines: &[&str]) -> Vec<u8> {
        format!("{}\r\n\r\n", lines.join("\r\n")).into_bytes()
    }

    /// `VALID` with the line starting with `prefix` replaced by `with` (or removed if empty).
    fn valid_with(prefix: &str, with: &str) -> Vec<u8> {
        let lines: Vec<&str> = VALID
            .iter()
            .map(|l| if l.starts_with(prefix) { with } else { l })
            .filter(|l| !l.is_empty())
            .collect();
        head(&lines)
    }

    fn opts() -> HandshakeOptions {
        HandshakeOptions {
            path: "/ws".to_owned(),
            ..HandshakeOptions::default()
        }
    }

    fn run_chunked(
        input: Vec<u8>,
        opts: &HandshakeOptions,
        max_read: usize,
    ) -> (Result<Upgrade, HandshakeError>, String) {
        let mut io = Duplex {
            input: Cursor::new(input),
            max_read,
            output: Vec::new(),
        };
        let result = block_on(accept(&mut io, opts));
        (result, String::from_utf8(io.output).unwrap())
    }

    fn run(input: Vec<u8>, opts: &HandshakeOptions) -> (Result<Upgrade, HandshakeError>, String) {
        run_chunked(input, opts, usize::MAX)
    }

    fn expected_101() -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
        )
    }

    /// Checks a refusal: the result, the status line, `Connection: close`, `Content-Length`
    /// equal to the body's length, and that `header` (if not empty) is among the headers.
    fn assert_refused(input: Vec<u8>, opts: &HandshakeOptions, status: u16, header: &str) {
        let (result, output) = run(input, opts);
        match result {
            Err(HandshakeError::Refused { status: s, .. }) => assert_eq!(s, status, "{output}"),
            other => panic!("expected a {status} refusal, got {other:?}"),
        }
        let (head, body) = output
            .split_once("\r\n\r\n")
            .expect("a complete response head");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(
            status_line.starts_with(&format!("HTTP/1.1 {status} ")),
            "{status_line}"
        );
        let headers: Vec<&str> = lines.collect();
        assert!(headers.contains(&"Connection: close"), "{headers:?}");
        assert!(
            headers.contains(&format!("Content-Length: {}", body.len()).as_str()),
            "{headers:?}"
        );
        assert!(!body.is_empty());
        if !header.is_empty() {
            assert!(headers.contains(&header), "{header} not in {headers:?}");
        }
    }

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(accept_key(KEY), ACCEPT);
    }

    #[test]
    fn valid_upgrade_gets_exact_101() {
        let (result, output) = run(head(VALID), &opts());
        assert_eq!(output, expected_101());
        let upgrade = result.unwrap();
        assert_eq!(
            upgrade,
            Upgrade {
                path_and_query: "/ws".to_owned(),
                origin: None,
                leftover: vec![]
            }
        );
    }

    #[test]
    fn bytes_after_the_head_are_leftover() {
        // A masked text frame "Hello" (RFC 6455 §5.7) sent along with the request.
        let frame = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let mut input = head(VALID);
        input.extend_from_slice(&frame);
        let (result, output) = run(input, &opts());
        assert_eq!(output, expected_101());
        assert_eq!(result.unwrap().leftover, frame);
    }

    #[test]
    fn query_string_is_allowed_and_reported() {
        let (result, output) = run(valid_with("GET", "GET /ws?token=abc&x=1 HTTP/1.1"), &opts());
        assert_eq!(output, expected_101());
        assert_eq!(result.unwrap().path_and_query, "/ws?token=abc&x=1");
    }

    #[test]
    fn connection_token_list_and_header_case_are_accepted() {
        let mut lines = VALID.to_vec();
        lines[2] = "upgrade: WebSocket";
        lines[3] = "CONNECTION: keep-alive, Upgrade";
        let (result, output) = run(head(&lines), &opts());
        assert_eq!(output, expected_101());
        result.unwrap();
    }

    #[test]
    fn other_path_is_404() {
        assert_refused(valid_with("GET", "GET /other HTTP/1.1"), &opts(), 404, "");
        assert_refused(valid_with("GET", "GET /ws/ HTTP/1.1"), &opts(), 404, "");
    }

    #[test]
    fn other_method_is_405_with_allow_get() {
        assert_refused(
            valid_with("GET", "POST /ws HTTP/1.1"),
            &opts(),
            405,
            "Allow: GET",
        );
        // The method is checked first.
        assert_refused(
            head(&["POST /other HTTP/1.1", "Host: x"]),
            &opts(),
            405,
            "Allow: GET",
        );
    }

    #[test]
    fn missing_upgrade_parts_are_400() {
        assert_refused(valid_with("Upgrade:", ""), &opts(), 400, "");
        assert_refused(valid_with("Upgrade:", "Upgrade: h2c"), &opts(), 400, "");
        assert_refused(valid_with("Connection:", ""), &opts(), 400, "");
        assert_refused(
            valid_with("Connection:", "Connection: keep-alive"),
            &opts(),
            400,
            "",
        );
        assert_refused(valid_with("Sec-WebSocket-Key:", ""), &opts(), 400, "");
        assert_refused(
            valid_with("Sec-WebSocket-Key:", "Sec-WebSocket-Key: c2hvcnQ="),
            &opts(),
            400,
            "",
        );
        assert_refused(
            valid_with(
                "Sec-WebSocket-Key:",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ!==",
            ),
            &opts(),
            400,
            "",
        );
        assert_refused(valid_with("GET", "GET /ws HTTP/1.0"), &opts(), 400, "");
    }

    #[test]
    fn malformed_http_is_400() {
        // The start of a TLS ClientHello: refused on its first bytes, without waiting for more.
        assert_refused(
            vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00],
            &opts(),
            400,
            "",
        );
    }

    #[test]
    fn other_version_is_426_naming_13() {
        let version = "Sec-WebSocket-Version: 13";
        assert_refused(
            valid_with("Sec-WebSocket-Version:", "Sec-WebSocket-Version: 8"),
            &opts(),
            426,
            version,
        );
        assert_refused(
            valid_with("Sec-WebSocket-Version:", ""),
            &opts(),
            426,
            version,
        );
    }

    #[test]
    fn origin_outside_the_list_is_403() {
        let opts = HandshakeOptions {
            allowed_origins: Some(vec!["https://good.example".to_owned()]),
            ..opts()
        };
        assert_refused(head(VALID), &opts, 403, "");
        let mut lines = VALID.to_vec();
        lines.push("Origin: https://evil.example");
        assert_refused(head(&lines), &opts, 403, "");

        lines.pop();
        lines.push("Origin: https://GOOD.example");
        let (result, output) = run(head(&lines), &opts);
        assert_eq!(output, expected_101());
        assert_eq!(
            result.unwrap().origin.as_deref(),
            Some("https://GOOD.example")
        );
    }

    #[test]
    fn oversize_head_is_431() {
        let padding = format!("X-Padding: {}", "a".repeat(9000));
        let mut lines = VALID.to_vec();
        lines.push(&padding);
        assert_refused(head(&lines), &opts(), 431, "");
        // Also while the head is still incomplete: the server must not wait for its end.
        let mut partial = head(&lines);
        partial.truncate(partial.len() - 4);
        assert_refused(partial, &opts(), 431, "");
        // Too many headers.
        let many: Vec<String> = (0..MAX_HEADERS).map(|i| format!("X-{i}: y")).collect();
        let mut lines = VALID.to_vec();
        lines.extend(many.iter().map(String::as_str));
        assert_refused(head(&lines), &opts(), 431, "");
    }

    #[test]
    fn eof_mid_head_is_io_error() {
        let mut input = head(VALID);
        input.truncate(input.len() - 2);
        let (result, output) = run(input, &opts());
        match result {
            Err(HandshakeError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
            other => panic!("expected EOF, got {other:?}"),
        }
        assert_eq!(output, "");
        assert!(matches!(run(vec![], &opts()).0, Err(HandshakeError::Io(_))));
    }

    #[test]
    fn head_in_one_byte_reads() {
        let mut input = head(VALID);
        input.extend_from_slice(b"rest");
        let (result, output) = run_chunked(input, &opts(), 1);
        assert_eq!(output, expected_101());
        // One-byte reads never read past the head.
        assert_eq!(result.unwrap().leftover, b"");
    }
}
