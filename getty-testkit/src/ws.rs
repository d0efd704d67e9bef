//! WebSocket scenarios: `ws://` and `wss://` sessions between our server and client, and the
//! server driven byte by byte by an independent RFC 6455 client (`rfc6455`).

use getty_core::ErrorKind;
use getty_core::Frame as Outgoing;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::certs::TestCa;
use super::rfc6455::{self, Frame};
use super::support::*;
use getty_core::codec::{LengthDelimited, Message, MessageKind, RawBytes, WsMessages};
use getty_core::endpoint::{Client, TcpClientBuilder, TcpServer, TcpServerBuilder};
use getty_core::runtime::Runtime;
use getty_core::session::CloseReason;
use getty_core::{BoxError, Error, EventListener, Session};

const PATH: &str = "/getty";

/// A hello-framing WebSocket server on [`PATH`], configured by `configure` per session.
async fn ws_server<R: Runtime>(
    rt: &R,
    builder: TcpServerBuilder,
    listener: TestListener,
    configure: impl Fn(&Session<Hello>) -> getty_core::Result<()> + Send + Sync + 'static,
) -> TcpServer {
    let listener = Arc::new(listener);
    builder
        .websocket(PATH)
        .serve_with(
            rt.clone(),
            LengthDelimited::hello(),
            move |s: &Session<Hello>| {
                configure(s)?;
                Ok(listener.clone())
            },
        )
        .expect("server starts")
}

/// A WebSocket client pool of `n` to `addr`, connected.
async fn ws_client<R: Runtime>(
    rt: &R,
    builder: TcpClientBuilder,
    n: usize,
    listener: TestListener,
) -> Client<Hello> {
    let cli = builder
        .websocket(PATH)
        .pool_size(n)
        .reconnect_interval(Duration::from_millis(10))
        .start_with(rt.clone(), LengthDelimited::hello(), listener.factory())
        .expect("client starts");
    within(rt, "WebSocket sessions", cli.wait_for_sessions(n))
        .await
        .expect("client connects");
    cli
}

fn no_config(_: &Session<Hello>) -> getty_core::Result<()> {
    Ok(())
}

/// [`ws_server`] with a new-session callback that may refuse with any error (a
/// [`Reject`](getty_core::ws::Reject) included).
async fn ws_gate<R: Runtime>(
    rt: &R,
    builder: TcpServerBuilder,
    listener: TestListener,
    gate: impl Fn(&Session<Hello>) -> Result<(), BoxError> + Send + Sync + 'static,
) -> TcpServer {
    let listener = Arc::new(listener);
    builder
        .websocket(PATH)
        .serve_with(
            rt.clone(),
            LengthDelimited::hello(),
            move |s: &Session<Hello>| {
                gate(s)?;
                Ok(listener.clone())
            },
        )
        .expect("server starts")
}

fn no_gate(_: &Session<Hello>) -> Result<(), BoxError> {
    Ok(())
}

/// Packages go both ways as WebSocket messages; both ends are WebSocket sessions.
pub async fn ws_echo<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let srv = ws_server(
        &rt,
        TcpServer::builder(),
        TestListener::echo(&rec),
        no_config,
    )
    .await;
    let client_rec = Recorder::new();
    let cli = ws_client(
        &rt,
        TcpClientBuilder::new(srv.local_addr()),
        2,
        TestListener::silent(&client_rec),
    )
    .await;
    for (i, session) in cli.sessions().iter().enumerate() {
        assert!(session.is_websocket());
        assert!(session.name().starts_with("ws-client"));
        for j in 0..50 {
            session.try_send(&payload(i * 100 + j)).expect("send");
        }
    }
    client_rec.wait_msgs(&rt, 100).await;
    for session in cli.sessions() {
        let got: Vec<Bytes> = client_rec
            .of(session.id())
            .iter()
            .filter_map(|r| match r {
                Rec::Msg(_, p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(got.len(), 50);
    }
    let server_session = &rec.sessions()[0];
    assert!(server_session.is_websocket());
    assert!(server_session.name().starts_with("ws-"));
    cli.close().await;
    srv.close().await;
    // Both sides closed cleanly: close frames, no errors.
    assert!(!rec.events().iter().any(|r| matches!(r, Rec::Error(..))));
    assert!(!client_rec
        .events()
        .iter()
        .any(|r| matches!(r, Rec::Error(..))));
}

/// `wss://`: WebSocket over TLS, verified against the test CA; also built from a URL.
pub async fn wss_echo<R: Runtime>(rt: R) {
    let ca = TestCa::new("wss CA");
    let rec = Recorder::new();
    let srv = ws_server(
        &rt,
        TcpServer::builder().tls(ca.server_config(None)),
        TestListener::echo(&rec),
        no_config,
    )
    .await;
    let client_rec = Recorder::new();
    let url = format!("wss://localhost:{}{PATH}", srv.local_addr().port());
    let cli = TcpClientBuilder::websocket_url(&url)
        .expect("url")
        .tls(ca.client_config(None))
        .start_with(
            rt.clone(),
            LengthDelimited::hello(),
            TestListener::silent(&client_rec).factory(),
        )
        .expect("client starts");
    within(&rt, "wss session", cli.wait_for_sessions(1))
        .await
        .expect("connects");
    let session = cli.sessions()[0].clone();
    assert!(session.name().starts_with("wss-client"));
    session.try_send(b"secure and framed").expect("send");
    session.try_send(&[9; 3000]).expect("send");
    client_rec.wait_msgs(&rt, 2).await;
    assert_eq!(
        payloads(&client_rec.events()),
        vec![
            Bytes::from_static(b"secure and framed"),
            Bytes::from(vec![9; 3000])
        ]
    );
    // A wss:// client without a TLS configuration is refused when started.
    let no_tls = TcpClientBuilder::websocket_url(&url)
        .expect("url")
        .start_with(
            rt.clone(),
            LengthDelimited::hello(),
            TestListener::silent(&client_rec).factory(),
        );
    assert!(matches!(no_tls, Err(Error::InvalidConfig(_))));
    cli.close().await;
    srv.close().await;
}

/// Sends one raw HTTP request and reads the response: `(status, headers)`.
async fn raw_request<R: Runtime>(
    rt: &R,
    addr: SocketAddr,
    request: &str,
) -> (u16, rfc6455::Headers) {
    let mut raw = rt.connect(addr, None).await.expect("connect");
    raw.write_all(request.as_bytes()).await.expect("write");
    let (status, headers, _body) =
        within(rt, "HTTP response", rfc6455::read_http_response(&mut raw))
            .await
            .expect("response");
    (status, headers)
}

/// Requests that are not a valid upgrade on the path get the right HTTP status and no
/// session: another path 404, another method 405, no upgrade 400, another version 426, a
/// foreign origin 403 (when origins are restricted).
pub async fn ws_refusals_get_http_statuses<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let srv = ws_server(
        &rt,
        TcpServer::builder().websocket_allowed_origins(["https://good.example"]),
        TestListener::echo(&rec),
        no_config,
    )
    .await;
    let addr = srv.local_addr();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let good = |path: &str| {
        rfc6455::upgrade_request(path, "localhost", key)
            .replace("\r\n\r\n", "\r\nOrigin: https://good.example\r\n\r\n")
    };
    assert_eq!(raw_request(&rt, addr, &good("/elsewhere")).await.0, 404);
    assert_eq!(
        raw_request(&rt, addr, &good(PATH).replacen("GET", "POST", 1))
            .await
            .0,
        405
    );
    assert_eq!(
        raw_request(
            &rt,
            addr,
            &format!("GET {PATH} HTTP/1.1\r\nHost: x\r\n\r\n")
        )
        .await
        .0,
        400
    );
    let (status, headers) = raw_request(
        &rt,
        addr,
        &good(PATH).replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
    )
    .await;
    assert_eq!(status, 426);
    assert_eq!(
        rfc6455::header(&headers, "sec-websocket-version"),
        Some("13")
    );
    let foreign = rfc6455::upgrade_request(PATH, "localhost", key)
        .replace("\r\n\r\n", "\r\nOrigin: https://evil.example\r\n\r\n");
    assert_eq!(raw_request(&rt, addr, &foreign).await.0, 403);
    assert!(rec.events().is_empty(), "no session for a refused request");
    // The allowed origin upgrades.
    let (status, headers) = raw_request(&rt, addr, &good(PATH)).await;
    assert_eq!(status, 101);
    assert_eq!(
        rfc6455::header(&headers, "sec-websocket-accept"),
        Some(rfc6455::accept_key(key).as_str())
    );
    srv.close().await;
}

/// The server, driven by an independent RFC 6455 client over a plain socket: the 101 carries
/// the accept key computed independently; a masked text frame ("Hello", the RFC's example) is
/// delivered as raw bytes (no codec) and echoed as an unmasked binary frame; a ping is answered
/// by a pong with the same payload; a close frame is answered with a close frame and the
/// session ends without `on_error`.
pub async fn ws_independent_client_byte_by_byte<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let srv = TcpServer::builder()
        .websocket(PATH)
        .serve_with(rt.clone(), RawBytes, Probe::new(&rec, true).factory())
        .expect("server");
    let mut raw = rt.connect(srv.local_addr(), None).await.expect("connect");
    let key = "x3JJHMbDL1EzLkh9GBhXDw==";
    raw.write_all(rfc6455::upgrade_request(PATH, "localhost", key).as_bytes())
        .await
        .expect("write");
    let (status, headers, _) = within(&rt, "101", rfc6455::read_http_head(&mut raw))
        .await
        .expect("head");
    assert_eq!(status, 101);
    assert_eq!(
        rfc6455::header(&headers, "upgrade").map(str::to_ascii_lowercase),
        Some("websocket".into())
    );
    assert_eq!(
        rfc6455::header(&headers, "sec-websocket-accept"),
        Some(rfc6455::accept_key(key).as_str())
    );
    assert_eq!(rfc6455::accept_key(key), "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");

    // RFC 6455 §5.7: a single-frame masked text message "Hello".
    let hello = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(
        rfc6455::client_frame(rfc6455::TEXT, true, b"Hello", [0x37, 0xfa, 0x21, 0x3d]),
        hello
    );
    raw.write_all(&hello).await.expect("write");
    let echo = within(&rt, "echo", rfc6455::read_frame(&mut raw))
        .await
        .expect("frame");
    assert_eq!(
        echo,
        Frame {
            fin: true,
            opcode: rfc6455::BINARY,
            payload: b"Hello".to_vec()
        }
    );
    // A binary message split over two frames is one package.
    raw.write_all(&rfc6455::client_frame(
        rfc6455::BINARY,
        false,
        b"frag",
        [1, 2, 3, 4],
    ))
    .await
    .expect("write");
    raw.write_all(&rfc6455::client_frame(
        rfc6455::CONTINUATION,
        true,
        b"mented",
        [5, 6, 7, 8],
    ))
    .await
    .expect("write");
    let echo = within(&rt, "echo", rfc6455::read_frame(&mut raw))
        .await
        .expect("frame");
    assert_eq!(echo.payload, b"fragmented");

    raw.write_all(&rfc6455::client_frame(
        rfc6455::PING,
        true,
        b"are you there",
        [9, 9, 9, 9],
    ))
    .await
    .expect("write");
    let pong = within(&rt, "pong", rfc6455::read_frame(&mut raw))
        .await
        .expect("frame");
    assert_eq!(
        (pong.opcode, pong.payload.as_slice()),
        (rfc6455::PONG, &b"are you there"[..])
    );

    let bye = rfc6455::close_payload(1000, "bye");
    raw.write_all(&rfc6455::client_frame(
        rfc6455::CLOSE,
        true,
        &bye,
        [4, 3, 2, 1],
    ))
    .await
    .expect("write");
    let close = within(&rt, "close reply", rfc6455::read_frame(&mut raw))
        .await
        .expect("frame");
    assert_eq!(close.opcode, rfc6455::CLOSE);
    assert_eq!(&close.payload[..2], &1000u16.to_be_bytes());
    let mut rest = Vec::new();
    within(&rt, "EOF", raw.read_to_end(&mut rest))
        .await
        .expect("EOF");
    let id = rec.events()[0].id();
    rec.wait_closed(&rt, id).await;
    let events = rec.of(id);
    assert!(
        !events.iter().any(|r| matches!(r, Rec::Error(..))),
        "{events:?}"
    );
    assert_eq!(
        payloads(&events),
        vec![
            Bytes::from_static(b"Hello"),
            Bytes::from_static(b"fragmented")
        ]
    );
    srv.close().await;
}

/// Heartbeats are liveness, not activity: with pings every 20 ms both ways, a session with a
/// 100 ms read timeout stays open through many of them, while a session with a 150 ms idle
/// timeout that carries no data message is closed with `IdleTimeout` (a silent chat user is
/// kicked even though its browser answers pings). `last_active` moves only with data.
pub async fn ws_pings_keep_the_read_timeout_not_the_idle_timeout<R: Runtime>(rt: R) {
    const IDLE: Duration = Duration::from_millis(150);
    let rec = Recorder::new();
    let srv = ws_server(&rt, TcpServer::builder(), TestListener::silent(&rec), |s| {
        s.configure(|c| {
            c.cron_period(Duration::from_millis(20))
                .read_timeout(Duration::from_millis(100))
        })
    })
    .await;
    let client_rec = Recorder::new();
    let cli = TcpClientBuilder::new(srv.local_addr())
        .websocket(PATH)
        .start_with(rt.clone(), LengthDelimited::hello(), {
            let listener = Arc::new(TestListener::silent(&client_rec));
            move |s: &Session<Hello>| {
                s.configure(|c| {
                    c.cron_period(Duration::from_millis(20))
                        .read_timeout(Duration::from_millis(100))
                })?;
                Ok(listener.clone())
            }
        })
        .expect("client");
    within(&rt, "session", cli.wait_for_sessions(1))
        .await
        .expect("connects");
    rec.wait(&rt, "server session", |e| !e.is_empty()).await;
    let server_session = rec.sessions()[0].clone();
    let client_session = cli.sessions()[0].clone();
    let (server_t0, client_t0) = (server_session.last_active(), client_session.last_active());
    // Five read timeouts' worth of pings only, on the runtime's clock.
    let start = rt.now();
    eventually(&rt, "half a second of heartbeats", || {
        rt.now() >= start + Duration::from_millis(500)
    })
    .await;
    assert!(!server_session.is_closing() && !client_session.is_closing());
    assert!(errors(&rec.events()).is_empty(), "{:?}", rec.events());
    assert_eq!(
        (server_session.last_active(), client_session.last_active()),
        (server_t0, client_t0),
        "pings and pongs are not activity"
    );
    assert_eq!(server_session.stats().pkgs_read, 0, "no data flowed");
    assert_eq!(count_msgs(&client_rec.events()), 0);

    // Now an idle timeout on the server side: pings keep flowing, the session is kicked.
    server_session
        .configure(|c| c.idle_timeout(IDLE))
        .expect("idle timeout");
    within(&rt, "the idle kick", server_session.closed()).await;
    let kicked = errors(&rec.events());
    assert_eq!(kicked.len(), 1, "{kicked:?}");
    assert_eq!(
        (kicked[0].kind, kicked[0].timeout),
        (ErrorKind::IdleTimeout, Some(IDLE))
    );
    cli.close().await;
    srv.close().await;
}

/// A message longer than `max_msg_len` closes that session with `FrameTooLarge`; the other
/// sessions are unaffected.
pub async fn ws_oversize_message_closes_only_that_session<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let srv = ws_server(&rt, TcpServer::builder(), TestListener::echo(&rec), |s| {
        s.configure(|c| c.max_msg_len(100))
    })
    .await;
    let client_rec = Recorder::new();
    let cli = ws_client(
        &rt,
        TcpClientBuilder::new(srv.local_addr()),
        2,
        TestListener::silent(&client_rec),
    )
    .await;
    let (big, small) = (cli.sessions()[0].clone(), cli.sessions()[1].clone());
    big.try_send(&[1; 200]).expect("send");
    rec.wait(&rt, "the oversize session closes", |e| {
        e.iter()
            .any(|r| matches!(r, Rec::Error(_, m) if m.kind == ErrorKind::FrameTooLarge))
            && e.iter().any(|r| matches!(r, Rec::Close(_)))
    })
    .await;
    small.try_send(b"fine").expect("send");
    client_rec
        .wait(&rt, "the echo", |e| {
            e.iter()
                .any(|r| matches!(r, Rec::Msg(id, p) if *id == small.id() && &p[..] == b"fine"))
        })
        .await;
    cli.close().await;
    srv.close().await;
}

/// Text messages: `Frame::text` sends a text frame, which a server without a codec (raw bytes)
/// receives as its bytes; other transports refuse it (`Error::Unsupported`).
pub async fn ws_text_messages<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let srv = TcpServer::builder()
        .websocket(PATH)
        .serve_with(rt.clone(), RawBytes, Probe::new(&rec, false).factory())
        .expect("server");
    let client_rec = Recorder::new();
    let cli = TcpClientBuilder::new(srv.local_addr())
        .websocket(PATH)
        .start_with(
            rt.clone(),
            RawBytes,
            Probe::new(&client_rec, false).factory(),
        )
        .expect("client");
    within(&rt, "session", cli.wait_for_sessions(1))
        .await
        .expect("connects");
    let session = cli.sessions()[0].clone();
    session
        .try_send_frame(Outgoing::text("héllo, text"))
        .expect("text");
    let written = session
        .send_frame_and_flush(Outgoing::text("second"))
        .await
        .expect("text");
    assert_eq!(written, "second".len());
    rec.wait_msgs(&rt, 2).await;
    assert_eq!(
        payloads(&rec.events()),
        vec![Bytes::from("héllo, text"), Bytes::from_static(b"second")]
    );
    cli.close().await;
    srv.close().await;

    let tcp_rec = Recorder::new();
    let (_cli, tcp, _raw) = client_with_raw_peer(
        &rt,
        LengthDelimited::hello(),
        TestListener::silent(&tcp_rec).factory(),
    )
    .await;
    assert!(matches!(
        tcp.try_send_frame(Outgoing::text("no")),
        Err(Error::Unsupported { .. })
    ));
}

/// Upgrades a raw connection to `srv` with the independent client of [`rfc6455`].
async fn raw_ws_client<R: Runtime, C: getty_core::Codec>(rt: &R, srv: &TcpServer<C>) -> R::Tcp {
    let mut raw = rt.connect(srv.local_addr(), None).await.expect("connect");
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    raw.write_all(rfc6455::upgrade_request(PATH, "localhost", key).as_bytes())
        .await
        .expect("write");
    let (status, _, _) = within(rt, "101", rfc6455::read_http_head(&mut raw))
        .await
        .expect("head");
    assert_eq!(status, 101);
    raw
}

/// Reads frames until the close frame: its status code and text.
async fn read_close<R: Runtime>(rt: &R, raw: &mut R::Tcp) -> (u16, String) {
    loop {
        let frame = within(rt, "a close frame", rfc6455::read_frame(raw))
            .await
            .expect("frame");
        if frame.opcode == rfc6455::CLOSE {
            assert!(frame.payload.len() >= 2, "a status code: {frame:?}");
            let code = u16::from_be_bytes([frame.payload[0], frame.payload[1]]);
            let text = String::from_utf8(frame.payload[2..].to_vec()).expect("UTF-8 text");
            return (code, text);
        }
    }
}

/// The peer learns why its session closes, with the codes browsers expect: the reason given
/// to `close_with`, 1000 for a plain `close()`, 1001 for an idle kick and for the server's
/// `close()`, 1009 for a message over the maximum length, 1007 for invalid UTF-8 in a text
/// message.
pub async fn ws_close_codes_tell_the_peer_why<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let srv = ws_server(&rt, TcpServer::builder(), TestListener::silent(&rec), |s| {
        s.configure(|c| c.max_msg_len(100))
    })
    .await;
    let server_session = |n: usize| {
        let rec = rec.clone();
        let rt = rt.clone();
        async move {
            rec.wait(&rt, "the server session", |e| {
                e.iter().filter(|r| matches!(r, Rec::Open(_))).count() >= n
            })
            .await;
            rec.sessions()[n - 1].clone()
        }
    };

    let mut raw = raw_ws_client(&rt, &srv).await;
    let session = server_session(1).await;
    session.close_with(CloseReason::policy("bye"));
    assert_eq!(read_close(&rt, &mut raw).await, (1008, "bye".to_string()));

    let mut raw = raw_ws_client(&rt, &srv).await;
    server_session(2).await.close();
    assert_eq!(read_close(&rt, &mut raw).await.0, 1000);

    let mut raw = raw_ws_client(&rt, &srv).await;
    server_session(3)
        .await
        .configure(|c| c.idle_timeout(Duration::from_millis(50)))
        .expect("idle");
    assert_eq!(read_close(&rt, &mut raw).await.0, 1001);

    let mut raw = raw_ws_client(&rt, &srv).await;
    server_session(4).await;
    let big = rfc6455::client_frame(rfc6455::BINARY, true, &[7; 200], [1, 2, 3, 4]);
    raw.write_all(&big).await.expect("write");
    assert_eq!(read_close(&rt, &mut raw).await.0, 1009);

    let mut raw = raw_ws_client(&rt, &srv).await;
    server_session(5).await;
    let bad = rfc6455::client_frame(rfc6455::TEXT, true, &[0xff, 0xfe], [1, 2, 3, 4]);
    raw.write_all(&bad).await.expect("write");
    assert_eq!(read_close(&rt, &mut raw).await.0, 1007);

    let mut raw = raw_ws_client(&rt, &srv).await;
    server_session(6).await;
    within(&rt, "srv close", srv.close()).await;
    let (code, text) = read_close(&rt, &mut raw).await;
    assert_eq!((code, text.as_str()), (1001, "the server is shutting down"));
}

/// Reads an HTTP request head (up to its blank line) from a raw socket, byte by byte.
async fn read_request_head<R: Runtime>(rt: &R, raw: &mut R::Tcp) -> String {
    within(rt, "a request head", async {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8];
            raw.read_exact(&mut byte).await.expect("request byte");
            head.push(byte[0]);
        }
        String::from_utf8(head).expect("UTF-8 head")
    })
    .await
}

/// The value of header `name` in a raw request head.
fn request_header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// An upgrade request for `target` with `extra` header lines.
fn request_with(target: &str, extra: &[&str]) -> String {
    let mut request = rfc6455::upgrade_request(target, "localhost", "dGhlIHNhbXBsZSBub25jZQ==");
    request.truncate(request.len() - 2);
    for line in extra {
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request
}

/// Sends a raw request and reads the whole response: `(status, headers, body)`, and the
/// socket (still open after a `101`).
async fn raw_exchange<R: Runtime>(
    rt: &R,
    addr: SocketAddr,
    request: &str,
) -> (u16, rfc6455::Headers, Vec<u8>, R::Tcp) {
    let mut raw = rt.connect(addr, None).await.expect("connect");
    raw.write_all(request.as_bytes()).await.expect("write");
    let (status, headers, body) =
        within(rt, "HTTP response", rfc6455::read_http_response(&mut raw))
            .await
            .expect("response");
    (status, headers, body, raw)
}

/// What a new-session callback saw of the upgrade, per session.
#[derive(Debug, Clone, Default, PartialEq)]
struct Seen {
    path: String,
    query: Option<String>,
    cookie: Option<String>,
    authorization: Option<String>,
    offered: Vec<String>,
    protocol: Option<String>,
}

impl Seen {
    fn of(ws: &getty_core::ws::WebSocketInfo) -> Self {
        let header = |name: &str| {
            ws.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Seen {
            path: ws.path().to_owned(),
            query: ws.query().map(str::to_owned),
            cookie: header("cookie"),
            authorization: header("authorization"),
            offered: ws.offered_protocols().to_vec(),
            protocol: ws.protocol().map(str::to_owned),
        }
    }
}

/// Subprotocols: the server picks the first of *its* list that the client offered, names it
/// in the `101`, and both sessions show it (with the offer); the new-session callback can
/// choose another offered one but not one that was not offered; with none in common the
/// `101` names none and the session still opens.
pub async fn ws_subprotocol_chosen_by_server_preference<R: Runtime>(rt: R) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let rec = Recorder::new();
    let srv = ws_gate(
        &rt,
        TcpServer::builder().websocket_protocols(["chat.v3", "chat.v2", "chat.v1"]),
        TestListener::silent(&rec),
        {
            let seen = seen.clone();
            move |s| {
                let ws = s.websocket().expect("a WebSocket session");
                lock(&seen).push(Seen::of(ws));
                // Not offered: refused, and the choice stays.
                assert!(matches!(
                    ws.select_protocol("chat.v3"),
                    Err(Error::InvalidConfig(_))
                ));
                if ws.query() == Some("prefer=v1") {
                    ws.select_protocol("chat.v1")?;
                }
                Ok(())
            }
        },
    )
    .await;
    let client_rec = Recorder::new();
    let cli = ws_client(
        &rt,
        TcpClientBuilder::new(srv.local_addr()).websocket_protocols(["chat.v1", "chat.v2"]),
        1,
        TestListener::silent(&client_rec),
    )
    .await;
    let client_session = cli.sessions()[0].clone();
    let client_ws = client_session.websocket().expect("ws");
    assert_eq!(
        client_ws.protocol(),
        Some("chat.v2"),
        "the server's preference wins"
    );
    assert_eq!(client_ws.offered_protocols(), ["chat.v1", "chat.v2"]);
    rec.wait(&rt, "the server session", |e| !e.is_empty()).await;
    let server_session = rec.sessions()[0].clone();
    let server_ws = server_session.websocket().expect("ws");
    assert_eq!(server_ws.protocol(), Some("chat.v2"));
    assert_eq!(server_ws.offered_protocols(), ["chat.v1", "chat.v2"]);
    // Outside the callback the choice is final.
    assert!(server_ws.select_protocol("chat.v1").is_err());
    assert_eq!(
        lock(&seen)[0],
        Seen {
            path: PATH.into(),
            offered: vec!["chat.v1".into(), "chat.v2".into()],
            protocol: Some("chat.v2".into()),
            ..Seen::default()
        }
    );
    cli.close().await;

    // The callback overrides the preference (the client offered both).
    let cli = TcpClientBuilder::new(srv.local_addr())
        .websocket(format!("{PATH}?prefer=v1"))
        .websocket_protocols(["chat.v2", "chat.v1"])
        .start_with(
            rt.clone(),
            LengthDelimited::hello(),
            TestListener::silent(&client_rec).factory(),
        )
        .expect("client");
    within(&rt, "session", cli.wait_for_sessions(1))
        .await
        .expect("connects");
    let session = cli.sessions()[0].clone();
    assert_eq!(session.websocket().expect("ws").protocol(), Some("chat.v1"));
    cli.close().await;

    // Several headers and a list, as the independent client sends them; nothing in common.
    let offer = [
        "Sec-WebSocket-Protocol: mqtt",
        "Sec-WebSocket-Protocol: chat.v1, chat.v2",
    ];
    let (status, headers, _, _raw) =
        raw_exchange(&rt, srv.local_addr(), &request_with(PATH, &offer)).await;
    assert_eq!(status, 101);
    assert_eq!(
        rfc6455::header(&headers, "sec-websocket-protocol"),
        Some("chat.v2")
    );
    let (status, headers, _, _raw2) = raw_exchange(
        &rt,
        srv.local_addr(),
        &request_with(PATH, &["Sec-WebSocket-Protocol: xmpp"]),
    )
    .await;
    assert_eq!(status, 101, "no protocol in common still upgrades");
    assert_eq!(rfc6455::header(&headers, "sec-websocket-protocol"), None);
    assert_eq!(lock(&seen)[3].offered, ["xmpp"]);
    assert_eq!(lock(&seen)[3].protocol, None);
    srv.close().await;
}

/// The client's failure after a failed handshake: the `GaveUp`'s last error, as a failure.
async fn handshake_failure<R: Runtime>(rt: &R, cli: &Client<Hello>) -> Failure {
    match within(rt, "the client gives up", cli.wait_for_sessions(1)).await {
        Err(Error::GaveUp {
            last: Some(last), ..
        }) => Failure::of(&last),
        other => panic!("expected GaveUp with a last error, got {other:?}"),
    }
}

/// A client that tries once (`configure` sets its WebSocket options) against a raw listener of
/// the runtime under test: the client, the connection it made, and its request head.
async fn client_against_raw_listener<R: Runtime>(
    rt: &R,
    client_rec: &Arc<Recorder>,
    configure: impl FnOnce(TcpClientBuilder) -> TcpClientBuilder,
) -> (Client<Hello>, R::Tcp, String) {
    let any = SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0));
    let listener = rt.listen(any, false).expect("listen");
    let addr = rt.listener_addr(&listener).expect("addr");
    let cli = configure(TcpClientBuilder::new(addr))
        .max_reconnect_attempts(Some(1))
        .start_with(
            rt.clone(),
            LengthDelimited::hello(),
            TestListener::silent(client_rec).factory(),
        )
        .expect("client");
    let (mut raw, _) = within(rt, "accept", rt.accept(&listener))
        .await
        .expect("accept");
    let head = read_request_head(rt, &mut raw).await;
    (cli, raw, head)
}

/// A client fails the handshake, as browsers do, when the server chose a protocol it did not
/// offer, or none although it offered some; the error is `WebSocketHandshake` with the
/// reason in its source.
pub async fn ws_client_refuses_a_bad_or_absent_protocol_choice<R: Runtime>(rt: R) {
    // A getty server that speaks no subprotocol: the 101 names none.
    let rec = Recorder::new();
    let srv = ws_gate(
        &rt,
        TcpServer::builder(),
        TestListener::silent(&rec),
        no_gate,
    )
    .await;
    let client_rec = Recorder::new();
    let cli = TcpClientBuilder::new(srv.local_addr())
        .websocket(PATH)
        .websocket_protocols(["chat"])
        .max_reconnect_attempts(Some(1))
        .start_with(
            rt.clone(),
            LengthDelimited::hello(),
            TestListener::silent(&client_rec).factory(),
        )
        .expect("client");
    let failure = handshake_failure(&rt, &cli).await;
    assert_eq!(failure.kind, ErrorKind::WebSocketHandshake);
    assert!(
        failure.text.contains("none of the offered subprotocols"),
        "{}",
        failure.text
    );
    assert!(client_rec.events().is_empty(), "no session");
    srv.close().await;

    // A hand-written server that names a protocol that was not offered.
    let (cli, mut raw, head) = client_against_raw_listener(&rt, &client_rec, |b| {
        b.websocket(PATH).websocket_protocols(["chat"])
    })
    .await;
    assert_eq!(
        request_header(&head, "sec-websocket-protocol"),
        Some("chat")
    );
    let key = request_header(&head, "sec-websocket-key").expect("a key");
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
        rfc6455::accept_key(key)
    );
    raw.write_all(answer.as_bytes()).await.expect("write");
    let failure = handshake_failure(&rt, &cli).await;
    assert_eq!(failure.kind, ErrorKind::WebSocketHandshake);
    assert!(
        failure.text.contains("\"mqtt\", which was not offered"),
        "{}",
        failure.text
    );
    assert!(client_rec.events().is_empty(), "no session");
}

/// A client's `Sec-WebSocket-Key` is made of two `random_u64` draws of its runtime (so a
/// seeded runtime fixes it): 16 bytes, in base64.
pub async fn ws_client_key_comes_from_the_runtime<R: Runtime>(rt: R) {
    let rt = crate::instrumented::Instrumented::new(rt);
    *lock(&rt.counters.fixed_random) = Some(0x0807_0605_0403_0201);
    let (cli, raw, head) =
        client_against_raw_listener(&rt, &Recorder::new(), |b| b.websocket("/")).await;
    // Bytes 1 to 8 twice (each draw little-endian), in base64.
    assert_eq!(
        request_header(&head, "sec-websocket-key"),
        Some("AQIDBAUGBwgBAgMEBQYHCA==")
    );
    assert!(
        rt.counters
            .random_draws
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 2
    );
    drop(raw);
    within(&rt, "cli close", cli.close()).await;
}

/// The new-session callback sees the upgrade request before it is answered: path, query,
/// `Cookie`, `Authorization`. It refuses with `401` and `WWW-Authenticate` (a complete
/// response, read raw), any other error of its gets a `403` that does not leak the error's
/// text, and an accepted upgrade carries the callback's `Set-Cookie` in its `101`, which a
/// getty client sees in its session's headers. A getty client's custom headers reach the
/// server.
pub async fn ws_callback_reads_the_request_and_refuses_or_accepts<R: Runtime>(rt: R) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let rec = Recorder::new();
    let srv = ws_gate(&rt, TcpServer::builder(), TestListener::silent(&rec), {
        let seen = seen.clone();
        move |s| {
            let ws = s.websocket().expect("a WebSocket session");
            let seen_now = Seen::of(ws);
            lock(&seen).push(seen_now.clone());
            match seen_now.authorization.as_deref() {
                None => Err(getty_core::ws::Reject::status(401, "log in first")?
                    .header("WWW-Authenticate", "Bearer realm=\"getty\"")?
                    .into()),
                Some("Bearer secret-internal") => {
                    Err(Error::InvalidConfig("secret internal detail".into()).into())
                }
                Some(_) => {
                    ws.add_response_header("Set-Cookie", "sid=42; HttpOnly")?;
                    ws.add_response_header("Set-Cookie", "theme=dark")?;
                    Ok(())
                }
            }
        }
    })
    .await;
    let addr = srv.local_addr();

    let (status, headers, body, _) = raw_exchange(
        &rt,
        addr,
        &request_with(&format!("{PATH}?room=7"), &["Cookie: a=1"]),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        rfc6455::header(&headers, "www-authenticate"),
        Some("Bearer realm=\"getty\"")
    );
    assert_eq!(rfc6455::header(&headers, "connection"), Some("close"));
    assert_eq!(body, b"log in first\n");
    assert_eq!(
        lock(&seen)[0],
        Seen {
            path: PATH.into(),
            query: Some("room=7".into()),
            cookie: Some("a=1".into()),
            ..Seen::default()
        }
    );

    let (status, _, body, _) = raw_exchange(
        &rt,
        addr,
        &request_with(PATH, &["Authorization: Bearer secret-internal"]),
    )
    .await;
    assert_eq!(status, 403);
    let body = String::from_utf8(body).expect("UTF-8 body");
    assert!(!body.contains("secret"), "the error's text leaked: {body}");

    let (status, headers, _, _raw) = raw_exchange(
        &rt,
        addr,
        &request_with(PATH, &["Authorization: Bearer ok", "Cookie: sid=1"]),
    )
    .await;
    assert_eq!(status, 101);
    let cookies: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(cookies, ["sid=42; HttpOnly", "theme=dark"]);
    assert_eq!(lock(&seen)[2].authorization.as_deref(), Some("Bearer ok"));
    within(&rt, "the accepted session", srv.wait_for_sessions(1))
        .await
        .expect("session");
    assert_eq!(rec.sessions().len(), 1, "only the accepted upgrade opened");

    // A getty client: its custom headers reach the callback; it sees the 101's headers.
    let client_rec = Recorder::new();
    let cli = ws_client(
        &rt,
        TcpClientBuilder::new(addr)
            .websocket_header("Authorization", "Bearer from-getty")
            .websocket_header("Cookie", "c=3"),
        1,
        TestListener::silent(&client_rec),
    )
    .await;
    let seen_last = lock(&seen).last().cloned().expect("seen");
    assert_eq!(
        (
            seen_last.authorization.as_deref(),
            seen_last.cookie.as_deref()
        ),
        (Some("Bearer from-getty"), Some("c=3"))
    );
    let session = cli.sessions()[0].clone();
    let ws = session.websocket().expect("ws");
    assert!(!ws.is_server());
    assert_eq!(ws.path(), PATH);
    let cookies: Vec<_> = ws.headers().get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["sid=42; HttpOnly", "theme=dark"]);
    cli.close().await;
    srv.close().await;
}

/// A refused upgrade leaves no session behind: no `on_open`, no `on_close`, no error for it,
/// the server's count unchanged, and the session the callback saw is closed. Accepted
/// sessions around it are unaffected, and the server closes cleanly.
pub async fn ws_refused_upgrade_leaves_no_session<R: Runtime>(rt: R) {
    let refused = Arc::new(std::sync::Mutex::new(Vec::<Session<Hello>>::new()));
    let rec = Recorder::new();
    let srv = ws_gate(&rt, TcpServer::builder(), TestListener::silent(&rec), {
        let refused = refused.clone();
        move |s| {
            if s.websocket().and_then(|ws| ws.query()) == Some("no") {
                lock(&refused).push(s.clone());
                return Err(getty_core::ws::Reject::status(403, "not you")?.into());
            }
            Ok(())
        }
    })
    .await;
    let addr = srv.local_addr();
    let (_, _, _, _first) = raw_exchange(&rt, addr, &request_with(PATH, &[])).await;
    within(&rt, "one session", srv.wait_for_sessions(1))
        .await
        .expect("session");
    for _ in 0..3 {
        let (status, _, body, mut raw) =
            raw_exchange(&rt, addr, &request_with(&format!("{PATH}?no"), &[])).await;
        assert_eq!((status, body.as_slice()), (403, &b"not you\n"[..]));
        // The server closes the connection after the refusal.
        let mut rest = Vec::new();
        within(&rt, "EOF after the refusal", raw.read_to_end(&mut rest))
            .await
            .expect("EOF");
        assert!(rest.is_empty());
    }
    let (_, _, _, _last) = raw_exchange(&rt, addr, &request_with(PATH, &[])).await;
    within(&rt, "two sessions", srv.wait_for_session_count(2))
        .await
        .expect("sessions");
    assert_eq!(srv.session_count(), 2);
    assert_eq!(srv.sessions().len(), 2);
    let refused = lock(&refused).clone();
    assert_eq!(refused.len(), 3);
    for session in &refused {
        assert!(session.is_closed(), "a refused session is closed");
        assert!(!srv.sessions().iter().any(|s| s.id() == session.id()));
        assert!(
            rec.of(session.id()).is_empty(),
            "no events for a refused session"
        );
    }
    assert_eq!(
        rec.events()
            .iter()
            .filter(|r| matches!(r, Rec::Open(_)))
            .count(),
        2
    );
    within(&rt, "close", srv.close()).await;
    rec.wait(&rt, "both closes", |e| {
        e.iter().filter(|r| matches!(r, Rec::Close(_))).count() == 2
    })
    .await;
}

/// Client settings are checked when it starts: a malformed header name or value and the
/// handshake's own headers are `InvalidHeader`; bad or repeated subprotocols, and WebSocket
/// settings without a WebSocket path, `InvalidConfig`; the same for the server's list.
pub async fn ws_client_header_and_protocol_settings_are_checked<R: Runtime>(rt: R) {
    let addr = free_addr(&rt).await;
    let start = |builder: TcpClientBuilder| {
        let rec = Recorder::new();
        builder.start_with(
            rt.clone(),
            LengthDelimited::hello(),
            TestListener::silent(&rec).factory(),
        )
    };
    let ws = || TcpClientBuilder::new(addr).websocket(PATH);
    for (name, value) in [
        ("bad name", "x"),
        ("X-Ok", "line\r\nInjected: 1"),
        ("Host", "elsewhere"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Upgrade", "h2c"),
        ("Connection", "close"),
        ("Sec-WebSocket-Version", "8"),
        ("Sec-WebSocket-Protocol", "chat"),
        ("Origin", "https://a.example"),
    ] {
        match start(ws().websocket_header(name, value)) {
            Err(Error::InvalidHeader(_)) => {}
            other => panic!("{name}: {value:?}: expected InvalidHeader, got {other:?}"),
        }
    }
    for protocols in [vec!["a b"], vec![""], vec!["chat", "chat"], vec!["é"]] {
        assert!(
            matches!(
                start(ws().websocket_protocols(protocols.clone())),
                Err(Error::InvalidConfig(_))
            ),
            "{protocols:?}"
        );
    }
    assert!(matches!(
        start(TcpClientBuilder::new(addr).websocket_protocols(["chat"])),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        start(TcpClientBuilder::new(addr).websocket_header("Authorization", "x")),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        start(TcpClientBuilder::new(addr).websocket("/a b")),
        Err(Error::InvalidConfig(_))
    ));
    let serve = |builder: TcpServerBuilder| {
        let rec = Recorder::new();
        builder.serve(
            rt.clone(),
            LengthDelimited::hello(),
            TestListener::silent(&rec),
        )
    };
    assert!(matches!(
        serve(
            TcpServer::builder()
                .websocket(PATH)
                .websocket_protocols(["a,b"])
        ),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        serve(TcpServer::builder().websocket_protocols(["chat"])),
        Err(Error::InvalidConfig(_))
    ));
}

/// A listener of whole messages that records each with its kind (`text:...`, `binary:...`)
/// and echoes it as the same kind.
#[derive(Debug, Clone)]
struct Kinds {
    rec: Arc<Recorder>,
    echo: bool,
}

fn tagged(msg: &Message) -> Bytes {
    match msg {
        Message::Text(text) => Bytes::from(format!("text:{text}")),
        Message::Binary(bytes) => Bytes::from([&b"binary:"[..], bytes].concat()),
    }
}

impl EventListener<WsMessages> for Kinds {
    async fn on_open(&self, session: &Session<WsMessages>) -> Result<(), BoxError> {
        self.rec.push(Rec::Open(session.id()));
        Ok(())
    }

    async fn on_message(&self, session: &Session<WsMessages>, msg: Message) {
        self.rec.push(Rec::Msg(session.id(), tagged(&msg)));
        if self.echo {
            let _ = session.send(&msg).await;
        }
    }

    async fn on_error(&self, session: &Session<WsMessages>, err: &Error) {
        self.rec.push(Rec::Error(session.id(), Failure::of(err)));
    }

    async fn on_close(&self, session: &Session<WsMessages>) {
        self.rec.push(Rec::Close(session.id()));
    }
}

/// Text and binary messages are told apart both ways: with `WsMessages`, a text message
/// arrives as `Message::Text` and a binary one as `Message::Binary` (an empty text message
/// included), and each is sent back as its kind; the independent client reads the echo's
/// opcodes.
pub async fn ws_text_and_binary_told_apart<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let srv = TcpServer::builder()
        .websocket(PATH)
        .serve(
            rt.clone(),
            WsMessages,
            Kinds {
                rec: rec.clone(),
                echo: true,
            },
        )
        .expect("server");
    let client_rec = Recorder::new();
    let cli = TcpClientBuilder::new(srv.local_addr())
        .websocket(PATH)
        .start(
            rt.clone(),
            WsMessages,
            Kinds {
                rec: client_rec.clone(),
                echo: false,
            },
        )
        .expect("client");
    within(&rt, "session", cli.wait_for_sessions(1))
        .await
        .expect("connects");
    let session = cli.session().expect("session");
    let sent = [
        Message::from("héllo"),
        Message::from(vec![0xff, 0x00, b'h']),
        Message::from(Bytes::from_static(b"text-like bytes")),
        Message::from("last"),
    ];
    for msg in &sent {
        session.send(msg).await.expect("send");
    }
    let expected: Vec<Bytes> = sent.iter().map(tagged).collect();
    client_rec.wait_msgs(&rt, sent.len()).await;
    assert_eq!(
        payloads(&rec.events()),
        expected,
        "the server got the kinds"
    );
    assert_eq!(
        payloads(&client_rec.events()),
        expected,
        "the echo kept them"
    );
    cli.close().await;

    // On the wire: the independent client's text frame comes back as a text frame, its
    // binary frame as a binary frame; an empty message, in and out, is a message too.
    let mut raw = raw_ws_client(&rt, &srv).await;
    for (opcode, payload) in [
        (rfc6455::TEXT, &b""[..]),
        (rfc6455::TEXT, &b"abc"[..]),
        (rfc6455::BINARY, &b"\x01\x02"[..]),
        (rfc6455::BINARY, &b""[..]),
    ] {
        raw.write_all(&rfc6455::client_frame(opcode, true, payload, [7, 7, 7, 7]))
            .await
            .expect("write");
        let echo = within(&rt, "echo", rfc6455::read_frame(&mut raw))
            .await
            .expect("frame");
        assert_eq!((echo.opcode, echo.payload.as_slice()), (opcode, payload));
    }
    let opened: Vec<u64> = rec
        .events()
        .iter()
        .filter_map(|r| match r {
            Rec::Open(id) => Some(*id),
            _ => None,
        })
        .collect();
    let raw_id = opened[1];
    let got = payloads(&rec.of(raw_id));
    assert_eq!(
        got,
        [
            Bytes::from_static(b"text:"),
            Bytes::from_static(b"text:abc"),
            Bytes::from_static(b"binary:\x01\x02"),
            Bytes::from_static(b"binary:"),
        ]
    );
    srv.close().await;
    assert!(errors(&rec.events()).is_empty(), "{:?}", rec.events());
}

/// Raw bytes sent as text messages: a codec whose `outbound_kind` is always text.
#[derive(Debug, Clone, Copy)]
struct TextBytes;

impl getty_core::Codec for TextBytes {
    type Inbound = Bytes;
    type Outbound = [u8];

    fn decode(
        &self,
        buf: &mut bytes::BytesMut,
    ) -> Result<getty_core::Decoded<Bytes>, getty_core::CodecError> {
        RawBytes.decode(buf)
    }

    fn encode(&self, pkg: &[u8], dst: &mut bytes::BytesMut) -> Result<(), getty_core::CodecError> {
        RawBytes.encode(pkg, dst)
    }

    fn outbound_kind(&self, _: &[u8]) -> MessageKind {
        MessageKind::Text
    }
}

/// A package a codec calls text (`outbound_kind`) goes out as a text frame; one that is not
/// UTF-8 is refused at send with a codec error, and the session goes on.
pub async fn ws_outbound_text_must_be_utf8<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let srv = TcpServer::builder()
        .websocket(PATH)
        .serve_with(rt.clone(), TextBytes, Probe::new(&rec, false).factory())
        .expect("server");
    let mut raw = raw_ws_client(&rt, &srv).await;
    within(&rt, "the session", srv.wait_for_sessions(1))
        .await
        .expect("session");
    let session = srv.sessions()[0].clone();
    assert!(matches!(
        session.try_send(&[b'a', 0xff]),
        Err(Error::Codec(_))
    ));
    session.try_send("still open: é".as_bytes()).expect("send");
    let frame = within(&rt, "the text frame", rfc6455::read_frame(&mut raw))
        .await
        .expect("frame");
    assert_eq!(
        (frame.opcode, frame.payload.as_slice()),
        (rfc6455::TEXT, "still open: é".as_bytes())
    );
    srv.close().await;
    assert!(errors(&rec.events()).is_empty(), "{:?}", rec.events());
}

/// Invalid UTF-8 in a text message closes that session with close code 1007, and `on_error`
/// gets a typed `Error::WebSocket` (whatever the codec: raw bytes or `WsMessages`); the
/// server's other sessions go on.
pub async fn ws_invalid_utf8_closes_with_1007<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let srv = TcpServer::builder()
        .websocket(PATH)
        .serve(
            rt.clone(),
            WsMessages,
            Kinds {
                rec: rec.clone(),
                echo: true,
            },
        )
        .expect("server");
    let mut good = raw_ws_client(&rt, &srv).await;
    let mut bad = raw_ws_client(&rt, &srv).await;
    within(&rt, "two sessions", srv.wait_for_sessions(2))
        .await
        .expect("sessions");
    // "é" cut in half.
    let invalid = rfc6455::client_frame(rfc6455::TEXT, true, &[b'a', 0xc3], [1, 2, 3, 4]);
    bad.write_all(&invalid).await.expect("write");
    let (code, _) = read_close(&rt, &mut bad).await;
    assert_eq!(code, 1007);
    rec.wait(&rt, "the bad session's on_error and on_close", |e| {
        e.iter().any(|r| matches!(r, Rec::Error(..)))
            && e.iter().any(|r| matches!(r, Rec::Close(_)))
    })
    .await;
    let failures = errors(&rec.events());
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].kind, ErrorKind::WebSocket);
    assert!(failures[0].text.contains("UTF-8"), "{}", failures[0].text);
    // The other session still echoes.
    good.write_all(&rfc6455::client_frame(
        rfc6455::TEXT,
        true,
        b"still here",
        [5, 5, 5, 5],
    ))
    .await
    .expect("write");
    let echo = within(&rt, "echo", rfc6455::read_frame(&mut good))
        .await
        .expect("frame");
    assert_eq!(
        (echo.opcode, echo.payload.as_slice()),
        (rfc6455::TEXT, &b"still here"[..])
    );
    srv.close().await;
}
