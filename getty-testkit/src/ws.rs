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
use getty_core::codec::{LengthDelimited, RawBytes};
use getty_core::endpoint::{Client, TcpClientBuilder, TcpServer, TcpServerBuilder};
use getty_core::runtime::Runtime;
use getty_core::session::CloseReason;
use getty_core::{Error, Session};

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
async fn raw_ws_client<R: Runtime>(rt: &R, srv: &TcpServer) -> R::Tcp {
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
