//! The WebSocket opening handshake (RFC 6455 §4): the server side ([`read_request`], then
//! [`switching_protocols`] or [`refusal`]) and the client side ([`connect`]).
//!
//! Done by hand rather than with tungstenite's `accept_hdr` so that every refusal is answered
//! with a complete HTTP response (status, `Content-Length`, short text body) that a browser or
//! load balancer can show, so that the new-session callback sees the request before the
//! answer is written (and can refuse it or add headers to the `101`), and so that the bytes a
//! client sent right after its request head are kept for the framing layer instead of being
//! lost.
//!
//! Subprotocols (`Sec-WebSocket-Protocol`) are negotiated: the server picks one of those the
//! client offered (its own order of preference, or the new-session callback's choice) and
//! echoes it; a client fails a `101` naming a protocol it did not offer, or naming none when
//! it offered some (as browsers do). No extension is negotiated: `Sec-WebSocket-Extensions`
//! is never echoed, so permessage-deflate is never enabled, and a client fails a `101` that
//! names one.
use std::io;

use async_tungstenite::tungstenite::handshake::derive_accept_key;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

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
    /// The subprotocols the server speaks, most preferred first.
    pub protocols: Vec<String>,
}

impl Default for HandshakeOptions {
    fn default() -> Self {
        HandshakeOptions {
            path: "/".to_owned(),
            allowed_origins: None,
            max_head_len: 8 * 1024,
            protocols: Vec::new(),
        }
    }
}

/// A valid upgrade request, read and checked; nothing has been answered yet.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// The request target as sent, query string included.
    pub path_and_query: String,
    /// Every header of the request.
    pub headers: HeaderMap,
    /// The subprotocols the client offered, in its order.
    pub offered: Vec<String>,
    /// The `Sec-WebSocket-Accept` value the `101` must carry.
    pub accept_key: String,
    /// Bytes read after the request head: the start of the client's first frames, which the
    /// framing layer must see before anything read from the stream.
    pub leftover: Vec<u8>,
}

impl Request {
    /// The server's default choice: the first protocol of `preference` the client offered.
    pub fn preferred_protocol(&self, preference: &[String]) -> Option<usize> {
        preference
            .iter()
            .find_map(|p| self.offered.iter().position(|o| o == p))
    }
}

/// A client's completed handshake.
#[derive(Debug, Clone)]
pub(crate) struct Connected {
    /// Bytes read after the response head (the server's first frames).
    pub leftover: Vec<u8>,
    /// The headers of the server's `101`.
    pub headers: HeaderMap,
    /// Which of the offered protocols the server chose (an index into them).
    pub protocol: Option<usize>,
}

/// Why the handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// The request was refused; an HTTP response with `status` was written (as far as the
    /// peer let us) and the connection should be closed. On the client side: the server
    /// answered with `status`, not `101`.
    #[error("WebSocket upgrade refused with {status}: {reason}")]
    Refused {
        /// The HTTP status sent.
        status: u16,
        /// Why, for logs (also the response body).
        reason: String,
    },
    /// The client side: the server's answer is not a valid `101` for the request sent.
    #[error("invalid WebSocket handshake response: {0}")]
    InvalidResponse(String),
    /// Reading the request or writing the answer failed, including EOF before a full head.
    #[error("WebSocket handshake I/O: {0}")]
    Io(#[from] io::Error),
}

/// A refusal decided by the checks, before it is written.
#[derive(Debug)]
struct Refusal {
    status: u16,
    reason: &'static str,
    /// Extra headers, as `(name, value)`.
    headers: &'static [(&'static str, &'static str)],
}

impl Refusal {
    const fn new(status: u16, reason: &'static str) -> Self {
        Refusal {
            status,
            reason,
            headers: &[],
        }
    }
}

/// Reads the request head from `stream` and checks it against `opts`. A valid upgrade is
/// returned unanswered; anything else is answered with an HTTP error response and is
/// `Err(Refused)`.
pub(crate) async fn read_request<S>(
    stream: &mut S,
    opts: &HandshakeOptions,
) -> Result<Request, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    let checked = match read_head(stream, &mut buf, opts.max_head_len).await? {
        Ok(head_len) => check(&buf[..head_len], opts).map(|ok| (ok, head_len)),
        Err(refusal) => Err(refusal),
    };
    match checked {
        Ok((mut request, head_len)) => {
            buf.drain(..head_len);
            request.leftover = buf;
            Ok(request)
        }
        Err(refusal) => {
            let mut headers = HeaderMap::new();
            for (name, value) in refusal.headers {
                headers.append(
                    HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                );
            }
            let response = self::refusal(refusal.status, refusal.reason, &headers);
            write_refusal(stream, refusal.status, &response).await;
            Err(HandshakeError::Refused {
                status: refusal.status,
                reason: refusal.reason.to_owned(),
            })
        }
    }
}

/// Writes and flushes a response.
pub(crate) async fn write_response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    response: &[u8],
) -> io::Result<()> {
    stream.write_all(response).await?;
    stream.flush().await
}

/// Writes a refusal; a peer that is already gone and cannot read it changes nothing (the
/// refusal is the outcome worth reporting).
pub(crate) async fn write_refusal<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    response: &[u8],
) {
    if let Err(e) = write_response(stream, response).await {
        log::debug!("writing the {status} refusal failed: {e}");
    }
}

/// The `101 Switching Protocols` for a request whose key gave `accept_key`, naming `protocol`
/// if one was chosen, with `extra` headers after the handshake's own.
pub(crate) fn switching_protocols(
    accept_key: &str,
    protocol: Option<&str>,
    extra: &HeaderMap,
) -> Vec<u8> {
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept_key}\r\n"
    )
    .into_bytes();
    if let Some(protocol) = protocol {
        response.extend_from_slice(format!("Sec-WebSocket-Protocol: {protocol}\r\n").as_bytes());
    }
    put_headers(&mut response, extra);
    response.extend_from_slice(b"\r\n");
    response
}

/// A complete refusal: status line, `headers`, a plain-text body of `reason` and a newline
/// (`Content-Type` unless `headers` has one, `Content-Length`, `Connection: close`).
pub(crate) fn refusal(status: u16, reason: &str, headers: &HeaderMap) -> Vec<u8> {
    let body = format!("{reason}\n");
    let phrase = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let mut response = format!("HTTP/1.1 {status} {phrase}\r\n").into_bytes();
    put_headers(&mut response, headers);
    if !headers.contains_key(header::CONTENT_TYPE) {
        response.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n");
    }
    response.extend_from_slice(
        format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    response
}

/// Appends `headers` as header lines (values as their bytes: `HeaderValue` holds no CR or LF).
fn put_headers(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
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

/// Checks a complete head, returning the request (without its leftover). The order of the
/// checks decides which status a request with several faults gets: method, path, upgrade
/// headers, version, origin.
fn check(head: &[u8], opts: &HandshakeOptions) -> Result<Request, Refusal> {
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
            headers: &[("allow", "GET")],
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
            headers: &[("upgrade", "websocket"), ("sec-websocket-version", "13")],
            ..Refusal::new(426, "unsupported WebSocket version, 13 is")
        });
    }
    if let Some(allowed) = &opts.allowed_origins {
        let origin = values(headers, "origin").next().map(str::trim);
        let ok = origin.is_some_and(|o| allowed.iter().any(|a| a.eq_ignore_ascii_case(o)));
        if !ok {
            return Err(Refusal::new(403, "origin not allowed"));
        }
    }
    let offered = token_list(headers, "sec-websocket-protocol");
    let header_map = header_map(headers)?;
    Ok(Request {
        path_and_query: target.to_owned(),
        headers: header_map,
        offered,
        accept_key: accept_key(key),
        leftover: Vec::new(),
    })
}

/// The request's headers as a [`HeaderMap`]; httparse already checked their syntax, so a
/// failure here is a value `http` refuses (a control character): 400.
fn header_map(headers: &[httparse::Header<'_>]) -> Result<HeaderMap, Refusal> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for h in headers {
        let name = HeaderName::from_bytes(h.name.as_bytes());
        let value = HeaderValue::from_bytes(h.value);
        match (name, value) {
            (Ok(name), Ok(value)) => {
                map.append(name, value);
            }
            _ => return Err(Refusal::new(400, "malformed HTTP header")),
        }
    }
    Ok(map)
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

/// The comma-separated elements of every header called `name`, in order, trimmed, empty
/// elements skipped: `Sec-WebSocket-Protocol: a, b` and two headers `a` and `b` are the same.
fn token_list(headers: &[httparse::Header<'_>], name: &str) -> Vec<String> {
    values(headers, name)
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
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

/// Whether `s` is an HTTP token (RFC 9110 §5.6.2), as a subprotocol name must be (RFC 6455
/// §4.1).
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// What a client sends and expects.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientRequest<'a> {
    /// The `Host` header.
    pub host: &'a str,
    /// The request target.
    pub path_and_query: &'a str,
    /// The `Origin` header, if any.
    pub origin: Option<&'a str>,
    /// The subprotocols offered, most preferred first (none: no header).
    pub protocols: &'a [String],
    /// More headers, after the handshake's own.
    pub headers: &'a HeaderMap,
    /// The longest response head accepted.
    pub max_head_len: usize,
    /// The 16 random bytes of `Sec-WebSocket-Key` (drawn from the runtime, so a seeded runtime
    /// fixes them).
    pub key: [u8; 16],
}

/// `Sec-WebSocket-Key`: the 16 bytes in base64 (RFC 6455, section 4.1), always 24 characters.
fn encode_key(bytes: &[u8; 16]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(24);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The client side: sends the upgrade request and checks the server's answer (status 101,
/// `Upgrade`, `Connection`, `Sec-WebSocket-Accept` matching the key sent, a subprotocol among
/// those offered, and one if any was offered; no extension). Any other status is `Refused`
/// with it; a `101` that is wrong is `InvalidResponse`.
pub(crate) async fn connect<S>(
    stream: &mut S,
    req: ClientRequest<'_>,
) -> Result<Connected, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let key = encode_key(&req.key);
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
        req.path_and_query, req.host
    )
    .into_bytes();
    if let Some(origin) = req.origin {
        request.extend_from_slice(format!("Origin: {origin}\r\n").as_bytes());
    }
    if !req.protocols.is_empty() {
        let list = req.protocols.join(", ");
        request.extend_from_slice(format!("Sec-WebSocket-Protocol: {list}\r\n").as_bytes());
    }
    put_headers(&mut request, req.headers);
    request.extend_from_slice(b"\r\n");
    write_response(stream, &request).await?;

    let invalid = |why: String| HandshakeError::InvalidResponse(why);
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
            Ok(httparse::Status::Complete(len)) if len <= req.max_head_len => len,
            Ok(httparse::Status::Partial) if buf.len() <= req.max_head_len => continue,
            Ok(_) | Err(httparse::Error::TooManyHeaders) => {
                return Err(invalid("response head too large".into()))
            }
            Err(_) => return Err(invalid("malformed HTTP response".into())),
        };
        let status = response.code.unwrap_or(0);
        if status != 101 {
            return Err(HandshakeError::Refused {
                status,
                reason: "the server did not switch protocols".into(),
            });
        }
        let headers = response.headers;
        if !has_token(headers, "upgrade", "websocket")
            || !has_token(headers, "connection", "upgrade")
        {
            return Err(invalid("101 without the WebSocket upgrade headers".into()));
        }
        let accept = values(headers, "sec-websocket-accept").next();
        if accept != Some(accept_key(&key).as_str()) {
            return Err(invalid("wrong Sec-WebSocket-Accept".into()));
        }
        let protocol = chosen_protocol(headers, req.protocols).map_err(invalid)?;
        if let Some(extensions) = token_list(headers, "sec-websocket-extensions").first() {
            return Err(invalid(format!(
                "the server enabled the extension {extensions:?}, which was not offered"
            )));
        }
        let map = header_map(headers).map_err(|r| invalid(r.reason.into()))?;
        buf.drain(..head_len);
        return Ok(Connected {
            leftover: buf,
            headers: map,
            protocol,
        });
    }
}

/// Checks the subprotocol a `101` names against those `offered`: which one (an index), or
/// why the answer must be failed (RFC 6455 §4.1, and browsers: a protocol that was not
/// offered, or none when some were).
fn chosen_protocol(
    headers: &[httparse::Header<'_>],
    offered: &[String],
) -> Result<Option<usize>, String> {
    let named = token_list(headers, "sec-websocket-protocol");
    match (named.as_slice(), offered.is_empty()) {
        ([], true) => Ok(None),
        ([], false) => Err(format!(
            "the server chose none of the offered subprotocols {offered:?}"
        )),
        ([one], _) => offered
            .iter()
            .position(|o| o == one)
            .map(Some)
            .ok_or_else(|| {
                format!("the server chose the subprotocol {one:?}, which was not offered (offered: {offered:?})")
            }),
        (many, _) => Err(format!(
            "the server named several subprotocols {many:?}; it must choose one"
        )),
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

    /// What the server does without a new-session callback: reads the request and answers
    /// `101` with the protocol of its preference.
    async fn accept(io: &mut Duplex, opts: &HandshakeOptions) -> Result<Request, HandshakeError> {
        let request = read_request(io, opts).await?;
        let protocol = request
            .preferred_protocol(&opts.protocols)
            .map(|i| request.offered[i].clone());
        let response =
            switching_protocols(&request.accept_key, protocol.as_deref(), &HeaderMap::new());
        write_response(io, &response).await?;
        Ok(request)
    }

    fn run_chunked(
        input: Vec<u8>,
        opts: &HandshakeOptions,
        max_read: usize,
    ) -> (Result<Request, HandshakeError>, String) {
        let mut io = Duplex {
            input: Cursor::new(input),
            max_read,
            output: Vec::new(),
        };
        let result = block_on(accept(&mut io, opts));
        (result, String::from_utf8(io.output).unwrap())
    }

    fn run(input: Vec<u8>, opts: &HandshakeOptions) -> (Result<Request, HandshakeError>, String) {
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
            // Names are case-insensitive: ours are written as `http` spells them, lowercase.
            assert!(
                headers.iter().any(|h| h.eq_ignore_ascii_case(header)),
                "{header} not in {headers:?}"
            );
        }
    }

    #[test]
    fn client_key_is_the_base64_of_its_bytes() {
        // RFC 6455 §1.3's example: the nonce "the sample nonce".
        assert_eq!(encode_key(b"the sample nonce"), KEY);
        assert_eq!(encode_key(&[0; 16]), "AAAAAAAAAAAAAAAAAAAAAA==");
        assert_eq!(encode_key(&[0xff; 16]), "/////////////////////w==");
        // The request carries the key made of the bytes it was given.
        let (_, sent) = client("HTTP/1.1 400 Bad Request\r\n\r\n", &[], &HeaderMap::new());
        assert!(
            sent.contains(&format!("Sec-WebSocket-Key: {KEY}\r\n")),
            "{sent}"
        );
    }

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(accept_key(KEY), ACCEPT);
    }

    #[test]
    fn valid_upgrade_gets_exact_101() {
        let (result, output) = run(head(VALID), &opts());
        assert_eq!(output, expected_101());
        let request = result.unwrap();
        assert_eq!(request.path_and_query, "/ws");
        assert!(request.leftover.is_empty());
        assert!(request.offered.is_empty());
        assert_eq!(request.headers.len(), VALID.len() - 1);
        assert_eq!(request.headers["host"], "example.com");
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
        assert_eq!(result.unwrap().headers["origin"], "https://GOOD.example");
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

    fn with_lines(extra: &[&str]) -> Vec<u8> {
        let mut lines = VALID.to_vec();
        lines.extend_from_slice(extra);
        head(&lines)
    }

    #[test]
    fn offered_protocols_come_from_every_header_and_list() {
        let input = with_lines(&[
            "Sec-WebSocket-Protocol: chat.v2, , chat.v1",
            "sec-websocket-protocol: json",
        ]);
        let (result, _) = run(input, &opts());
        let request = result.unwrap();
        assert_eq!(request.offered, ["chat.v2", "chat.v1", "json"]);
        let prefs = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // The server's order decides, not the client's.
        assert_eq!(
            request.preferred_protocol(&prefs(&["json", "chat.v2"])),
            Some(2)
        );
        assert_eq!(request.preferred_protocol(&prefs(&["chat.v1"])), Some(1));
        // Names are compared exactly.
        assert_eq!(request.preferred_protocol(&prefs(&["JSON", "mqtt"])), None);
        assert_eq!(request.preferred_protocol(&[]), None);
    }

    #[test]
    fn the_101_echoes_the_chosen_protocol_only() {
        let opts = HandshakeOptions {
            protocols: vec!["mqtt".into(), "chat".into()],
            ..opts()
        };
        let (_, output) = run(with_lines(&["Sec-WebSocket-Protocol: chat, mqtt"]), &opts);
        let expected =
            expected_101().replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n");
        assert_eq!(output, expected);
        // Nothing in common: no header at all (RFC 6455 §4.2.2), the upgrade still succeeds.
        let (result, output) = run(with_lines(&["Sec-WebSocket-Protocol: xmpp"]), &opts);
        assert_eq!(output, expected_101());
        assert_eq!(result.unwrap().offered, ["xmpp"]);
        // Nothing offered: nothing chosen.
        let (_, output) = run(head(VALID), &opts);
        assert_eq!(output, expected_101());
    }

    #[test]
    fn request_headers_are_kept_with_repeats() {
        let (result, _) = run(
            with_lines(&[
                "Cookie: a=1",
                "cookie: b=2",
                "Authorization: Bearer abc",
                "X-Opaque: caf\u{e9}",
            ]),
            &opts(),
        );
        let headers = result.unwrap().headers;
        let cookies: Vec<_> = headers.get_all("cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(headers["authorization"], "Bearer abc");
        assert_eq!(headers["x-opaque"].as_bytes(), "caf\u{e9}".as_bytes());
    }

    #[test]
    fn extra_101_headers_follow_the_handshake_ones() {
        let mut extra = HeaderMap::new();
        extra.append("set-cookie", HeaderValue::from_static("sid=1; HttpOnly"));
        extra.append("set-cookie", HeaderValue::from_static("theme=dark"));
        let response =
            String::from_utf8(switching_protocols(ACCEPT, Some("chat"), &extra)).unwrap();
        assert_eq!(
            response,
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {ACCEPT}\r\nSec-WebSocket-Protocol: chat\r\n\
                 set-cookie: sid=1; HttpOnly\r\nset-cookie: theme=dark\r\n\r\n"
            )
        );
    }

    #[test]
    fn refusals_are_complete_responses() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "www-authenticate",
            HeaderValue::from_static("Bearer realm=\"chat\""),
        );
        let response = String::from_utf8(refusal(401, "log in first", &headers)).unwrap();
        assert_eq!(
            response,
            "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer realm=\"chat\"\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Length: 13\r\n\
             Connection: close\r\n\r\nlog in first\n"
        );
        // A status without a standard phrase, and the user's own content type.
        headers.clear();
        headers.insert("content-type", HeaderValue::from_static("text/html"));
        let response = String::from_utf8(refusal(499, "<p>no</p>", &headers)).unwrap();
        assert!(response.starts_with("HTTP/1.1 499 Error\r\ncontent-type: text/html\r\n"));
        assert!(!response.contains("text/plain"));
    }

    #[test]
    fn tokens() {
        for ok in ["chat", "v2.json", "a-b_c~d!", "x|y"] {
            assert!(is_token(ok), "{ok}");
        }
        for bad in ["", "a b", "a,b", "é", "a\r\n", "(x)", "a:b", "\"q\""] {
            assert!(!is_token(bad), "{bad:?}");
        }
    }

    /// Runs the client side against `response` (sent whatever the request): the result and
    /// the request written.
    fn client(
        response: &str,
        protocols: &[&str],
        headers: &HeaderMap,
    ) -> (Result<Connected, HandshakeError>, String) {
        let mut io = Duplex {
            input: Cursor::new(response.as_bytes().to_vec()),
            max_read: usize::MAX,
            output: Vec::new(),
        };
        let protocols: Vec<String> = protocols.iter().map(|p| p.to_string()).collect();
        let request = ClientRequest {
            host: "example.com",
            path_and_query: "/ws?room=1",
            origin: Some("https://example.com"),
            protocols: &protocols,
            headers,
            max_head_len: 8 * 1024,
            key: *b"the sample nonce",
        };
        let result = block_on(connect(&mut io, request));
        (result, String::from_utf8(io.output).unwrap())
    }

    /// A 101 answering the request in `sent` (its key), with `extra` header lines.
    fn answer(sent: &str, extra: &[&str]) -> String {
        let key = sent
            .split("\r\n")
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .expect("a key");
        let mut lines = vec![
            "HTTP/1.1 101 Switching Protocols".to_string(),
            "Upgrade: websocket".into(),
            "Connection: Upgrade".into(),
            format!("Sec-WebSocket-Accept: {}", accept_key(key)),
        ];
        lines.extend(extra.iter().map(|l| l.to_string()));
        format!("{}\r\n\r\nfirst frame", lines.join("\r\n"))
    }

    /// The client against a server answering its request with `answer(extra)` (the key is
    /// random per connect, so the answer is made once the request is written).
    fn client_answered(
        protocols: &[&str],
        extra: &[&str],
    ) -> (Result<Connected, HandshakeError>, String) {
        let mut io = Duplex {
            input: Cursor::new(Vec::new()),
            max_read: usize::MAX,
            output: Vec::new(),
        };
        let protocols: Vec<String> = protocols.iter().map(|p| p.to_string()).collect();
        let headers = HeaderMap::new();
        let request = ClientRequest {
            host: "example.com",
            path_and_query: "/ws",
            origin: None,
            protocols: &protocols,
            headers: &headers,
            max_head_len: 8 * 1024,
            key: [0x5a; 16],
        };
        // A stream that answers once it has seen the request.
        let mut answering = Answering {
            extra: extra.iter().map(|l| l.to_string()).collect(),
            inner: &mut io,
            answered: false,
        };
        let result = block_on(connect(&mut answering, request));
        (result, String::from_utf8(io.output).unwrap())
    }

    /// A server that answers the request written to it with [`answer`].
    struct Answering<'a> {
        extra: Vec<String>,
        inner: &'a mut Duplex,
        answered: bool,
    }

    impl AsyncRead for Answering<'_> {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            if !this.answered {
                this.answered = true;
                let sent = String::from_utf8(this.inner.output.clone()).unwrap();
                let extra: Vec<&str> = this.extra.iter().map(String::as_str).collect();
                this.inner.input = Cursor::new(answer(&sent, &extra).into_bytes());
            }
            Pin::new(&mut *this.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Answering<'_> {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut *self.get_mut().inner).poll_write(cx, buf)
        }
        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
        }
        fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut *self.get_mut().inner).poll_close(cx)
        }
    }

    #[test]
    fn client_request_offers_protocols_and_sends_headers() {
        let mut headers = HeaderMap::new();
        headers.append("authorization", HeaderValue::from_static("Bearer t0k"));
        headers.append("cookie", HeaderValue::from_static("a=1"));
        let (result, sent) = client("", &["chat.v2", "chat.v1"], &headers);
        assert!(
            matches!(result, Err(HandshakeError::Io(_))),
            "EOF: {result:?}"
        );
        let lines: Vec<&str> = sent.trim_end().split("\r\n").collect();
        assert_eq!(lines[0], "GET /ws?room=1 HTTP/1.1");
        for line in [
            "Host: example.com",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Version: 13",
            "Origin: https://example.com",
            "Sec-WebSocket-Protocol: chat.v2, chat.v1",
            "authorization: Bearer t0k",
            "cookie: a=1",
        ] {
            assert!(lines.contains(&line), "{line} not in {lines:?}");
        }
        assert!(sent.ends_with("\r\n\r\n"));
        // Nothing offered: no header.
        let (_, sent) = client("", &[], &HeaderMap::new());
        assert!(!sent.contains("Sec-WebSocket-Protocol"));
    }

    #[test]
    fn client_takes_the_servers_choice_among_those_offered() {
        let (result, _) = client_answered(
            &["a", "b"],
            &["Sec-WebSocket-Protocol: b", "Set-Cookie: s=1"],
        );
        let connected = result.unwrap();
        assert_eq!(connected.protocol, Some(1));
        assert_eq!(connected.headers["set-cookie"], "s=1");
        assert_eq!(connected.leftover, b"first frame");
        let (result, _) = client_answered(&[], &[]);
        assert_eq!(result.unwrap().protocol, None);
    }

    #[test]
    fn client_fails_a_bad_or_absent_choice() {
        let cases: &[(&[&str], &[&str], &str)] = &[
            (&["a", "b"], &["Sec-WebSocket-Protocol: c"], "not offered"),
            (&[], &["Sec-WebSocket-Protocol: a"], "not offered"),
            (&["a", "b"], &[], "none of the offered"),
            (&["a", "b"], &["Sec-WebSocket-Protocol: a, b"], "several"),
            (
                &["a"],
                &["Sec-WebSocket-Protocol: a", "Sec-WebSocket-Protocol: a"],
                "several",
            ),
            (
                &[],
                &["Sec-WebSocket-Extensions: permessage-deflate"],
                "extension",
            ),
        ];
        for (offered, extra, why) in cases {
            let (result, _) = client_answered(offered, extra);
            match result {
                Err(err @ HandshakeError::InvalidResponse(_)) => {
                    assert!(err.to_string().contains(why), "{err} lacks {why:?}")
                }
                other => panic!("{offered:?} {extra:?}: expected a failure, got {other:?}"),
            }
        }
    }

    #[test]
    fn client_reports_a_refusal_with_its_status() {
        let (result, _) = client(
            "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n",
            &[],
            &HeaderMap::new(),
        );
        assert!(
            matches!(result, Err(HandshakeError::Refused { status: 401, .. })),
            "{result:?}"
        );
    }
}
