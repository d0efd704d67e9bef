//! Hostile peers and faults: each offender gets a clear error and closes only its own
//! session, and the server goes on serving a well-behaved one.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use event_listener::Event;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::certs::TestCa;
use super::rfc6455;
use super::support::*;
use getty_core::codec::{LengthDelimited, Lines, RawBytes};
use getty_core::endpoint::{TcpClientBuilder, TcpServer};
use getty_core::runtime::os::OsNetwork;
use getty_core::runtime::Runtime;
use getty_core::ErrorKind;
use getty_core::{BoxError, EventListener, Session, SessionConfig};

/// Whether session `id` has closed, in `events`.
fn closed(events: &[Rec], id: u64) -> bool {
    events
        .iter()
        .any(|r| matches!(r, Rec::Close(i) if *i == id))
}

/// A hello echo server whose first `offenders` sessions get `configure`d.
async fn echo_server<R: Runtime>(
    rt: &R,
    rec: &Arc<Recorder>,
    offenders: usize,
    configure: impl Fn(&Session<Hello>) -> getty_core::Result<()> + Send + Sync + 'static,
) -> TcpServer {
    let listener = Arc::new(TestListener::echo(rec));
    let seen = AtomicUsize::new(0);
    TcpServer::builder()
        .serve_with(
            rt.clone(),
            LengthDelimited::hello(),
            move |session: &Session<Hello>| -> Result<_, BoxError> {
                if seen.fetch_add(1, Ordering::SeqCst) < offenders {
                    configure(session)?;
                }
                Ok(listener.clone())
            },
        )
        .expect("server starts")
}

/// A raw connection that sends one hello frame and reads its echo.
async fn well_behaved<R: Runtime>(rt: &R, srv: &TcpServer, body: &[u8]) {
    let mut raw = rt.connect(srv.local_addr(), None).await.expect("connect");
    raw.write_all(&hello_frame(body)).await.expect("write");
    let echo = within(rt, "the well-behaved echo", read_hello_frame(&mut raw))
        .await
        .expect("echo");
    assert_eq!(echo, body);
}

/// A peer trickling a frame one byte at a time (slowloris) keeps a read timeout from firing,
/// and a peer that vanished says nothing at all: the idle timeout (no whole package within
/// it) closes both with `IdleTimeout`, and only them.
pub async fn idle_timeout_closes_trickling_and_vanished_peers<R: Runtime>(rt: R) {
    const IDLE: Duration = Duration::from_millis(300);
    let rec = Recorder::new();
    let srv = echo_server(&rt, &rec, 2, |s| s.configure(|c| c.idle_timeout(IDLE))).await;
    let mut trickler = rt.connect(srv.local_addr(), None).await.expect("connect");
    let vanished = rt.connect(srv.local_addr(), None).await.expect("connect");
    rec.wait(&rt, "two sessions", |e| {
        e.iter().filter(|r| matches!(r, Rec::Open(_))).count() == 2
    })
    .await;
    // A header announcing 1,000 bytes, then a byte every 20 ms: never a whole package.
    let trickle = async {
        trickler.write_all(&1000u32.to_le_bytes()).await?;
        loop {
            rt.timer(rt.now() + Duration::from_millis(20)).await;
            trickler.write_all(b"x").await?;
        }
    };
    let both_closed = rec.wait(&rt, "both offenders closed", |e| {
        e.iter().filter(|r| matches!(r, Rec::Close(_))).count() == 2
    });
    // The trickle ends when the server drops the connection, or goes on while we wait.
    futures_lite::future::or(both_closed, async {
        let _: std::io::Result<()> = trickle.await;
        std::future::pending::<()>().await
    })
    .await;
    let errors = errors(&rec.events());
    assert_eq!(errors.len(), 2, "{errors:?}");
    for err in &errors {
        assert_eq!(
            (err.kind, err.timeout),
            (ErrorKind::IdleTimeout, Some(IDLE))
        );
    }
    drop(vanished);
    // The third session has no idle timeout: it is served.
    well_behaved(&rt, &srv, b"still serving").await;
    srv.close().await;
}

/// Input the codec refuses (a line that is not UTF-8) is a `Codec` error for that session;
/// the next session is served.
pub async fn codec_error_closes_only_its_session<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let listener = Arc::new(Probe {
        rec: rec.clone(),
        echo: true,
    });
    let srv = TcpServer::builder()
        .serve_with(rt.clone(), Lines::new(), move |_: &Session<Lines>| {
            Ok(listener.clone())
        })
        .expect("server");
    let mut bad = rt.connect(srv.local_addr(), None).await.expect("connect");
    bad.write_all(b"\xff\xfe not utf-8\n").await.expect("write");
    let mut rest = Vec::new();
    let _ = within(&rt, "the server drops it", bad.read_to_end(&mut rest)).await;
    rec.wait(&rt, "the close", |e| {
        e.iter().any(|r| matches!(r, Rec::Close(_)))
    })
    .await;
    let errors = errors(&rec.events());
    assert!(
        errors.len() == 1 && errors[0].kind == ErrorKind::Codec && errors[0].text.contains("UTF-8"),
        "{errors:?}"
    );
    let mut good = rt.connect(srv.local_addr(), None).await.expect("connect");
    good.write_all(b"fine\n").await.expect("write");
    let mut echo = [0u8; 5];
    within(&rt, "the echo", good.read_exact(&mut echo))
        .await
        .expect("echo");
    assert_eq!(&echo, b"fine\n");
    srv.close().await;
}

/// A connection reset in the middle of a frame is an error for that session (the reset, or
/// the frame cut short), and only that session closes.
pub async fn reset_mid_frame_closes_only_its_session<R: Runtime + OsNetwork>(rt: R) {
    let rec = Recorder::new();
    let srv = echo_server(&rt, &rec, 0, |_| Ok(())).await;
    let mut raw = rt.connect(srv.local_addr(), None).await.expect("connect");
    let mut half = 100u32.to_le_bytes().to_vec();
    half.extend_from_slice(&[7; 40]);
    raw.write_all(&half).await.expect("write");
    rec.wait(&rt, "the session", |e| {
        e.iter().any(|r| matches!(r, Rec::Open(_)))
    })
    .await;
    // Closing with a zero linger time sends a reset instead of a FIN.
    rt.os_socket(&raw)
        .set_linger(Some(Duration::ZERO))
        .expect("linger");
    drop(raw);
    rec.wait(&rt, "the close", |e| {
        e.iter().any(|r| matches!(r, Rec::Close(_)))
    })
    .await;
    let errors = errors(&rec.events());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].io == Some(std::io::ErrorKind::ConnectionReset)
            || errors[0].kind == ErrorKind::UnexpectedEof,
        "{errors:?}"
    );
    well_behaved(&rt, &srv, b"next").await;
    srv.close().await;
}

/// A listener whose `on_message` blocks on "block" until released.
struct Blocking {
    rec: Arc<Recorder>,
    released: AtomicBool,
    release: Event,
}
impl EventListener<Hello> for Blocking {
    async fn on_message(&self, session: &Session<Hello>, pkg: Bytes) {
        self.rec.push(Rec::Msg(session.id(), pkg.clone()));
        if &pkg[..] == b"block" {
            while !self.released.load(Ordering::Acquire) {
                let listener = self.release.listen();
                if self.released.load(Ordering::Acquire) {
                    break;
                }
                listener.await;
            }
        }
        let _ = session.try_send(&pkg);
    }
}

/// A handler that blocks for a long time stalls only its own session (handlers run on the
/// session's task): another session's traffic flows meanwhile, and the blocked one resumes,
/// in order, once released.
pub async fn blocked_handler_stalls_only_its_session<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let blocking = Arc::new(Blocking {
        rec: rec.clone(),
        released: AtomicBool::new(false),
        release: Event::new(),
    });
    let listener = blocking.clone();
    let srv = TcpServer::builder()
        .serve_with(
            rt.clone(),
            LengthDelimited::hello(),
            move |_: &Session<Hello>| Ok(listener.clone()),
        )
        .expect("server");
    let mut stuck = rt.connect(srv.local_addr(), None).await.expect("connect");
    stuck
        .write_all(&hello_frame(b"block"))
        .await
        .expect("write");
    stuck
        .write_all(&hello_frame(b"after"))
        .await
        .expect("write");
    rec.wait(&rt, "the blocking handler", |e| count_msgs(e) == 1)
        .await;
    let mut other = rt.connect(srv.local_addr(), None).await.expect("connect");
    for i in 0..50 {
        other
            .write_all(&hello_frame(&payload(i)))
            .await
            .expect("write");
        let echo = within(
            &rt,
            "the other session's echo",
            read_hello_frame(&mut other),
        )
        .await
        .expect("echo");
        assert_eq!(echo, payload(i));
    }
    blocking.released.store(true, Ordering::Release);
    blocking.release.notify(usize::MAX);
    for body in [&b"block"[..], b"after"] {
        let echo = within(&rt, "the released echoes", read_hello_frame(&mut stuck))
            .await
            .expect("echo");
        assert_eq!(echo, body);
    }
    srv.close().await;
}

/// Frames that break RFC 6455 (a reserved opcode; an unmasked frame from a client) are a
/// `WebSocket` error for that session only.
pub async fn ws_invalid_frame_closes_only_that_session<R: Runtime>(rt: R) {
    const PATH: &str = "/hostile";
    let rec = Recorder::new();
    let srv = TcpServer::builder()
        .websocket(PATH)
        .serve_with(rt.clone(), RawBytes, Probe::new(&rec, true).factory())
        .expect("server");
    let upgraded = || async {
        let mut raw = rt.connect(srv.local_addr(), None).await.expect("connect");
        let request = rfc6455::upgrade_request(PATH, "localhost", "dGhlIHNhbXBsZSBub25jZQ==");
        raw.write_all(request.as_bytes()).await.expect("write");
        let (status, _, _) = within(&rt, "101", rfc6455::read_http_head(&mut raw))
            .await
            .expect("head");
        assert_eq!(status, 101);
        raw
    };
    let reserved_opcode = rfc6455::client_frame(0x3, true, b"what", [1, 2, 3, 4]);
    let mut unmasked = rfc6455::client_frame(rfc6455::BINARY, true, b"bare", [0; 4]);
    unmasked[1] &= 0x7f;
    unmasked.drain(2..6);
    for (i, frame) in [reserved_opcode, unmasked].into_iter().enumerate() {
        let mut raw = upgraded().await;
        raw.write_all(&frame).await.expect("write");
        let mut rest = Vec::new();
        let _ = within(&rt, "the server drops it", raw.read_to_end(&mut rest)).await;
        rec.wait(&rt, "the error and the close", |e| {
            e.iter().filter(|r| matches!(r, Rec::Close(_))).count() == i + 1
        })
        .await;
    }
    let errors = errors(&rec.events());
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors.iter().all(|e| e.kind == ErrorKind::WebSocket),
        "{errors:?}"
    );
    assert_eq!(
        count_msgs(&rec.events()),
        0,
        "no invalid frame was delivered"
    );
    let mut good = upgraded().await;
    good.write_all(&rfc6455::client_frame(rfc6455::BINARY, true, b"ok", [9; 4]))
        .await
        .expect("write");
    let echo = within(&rt, "the echo", rfc6455::read_frame(&mut good))
        .await
        .expect("frame");
    assert_eq!(echo.payload, b"ok");
    srv.close().await;
}

/// Connections stuck in their TLS handshake count toward `max_sessions`: past the limit the
/// next one is dropped at once; when one gives up, a real client gets in; closing the server
/// ends the handshakes still under way instead of waiting out their timeout.
pub async fn pending_handshakes_count_toward_max_sessions<R: Runtime>(rt: R) {
    let ca = TestCa::new("handshake CA");
    let rec = Recorder::new();
    let srv = TcpServer::builder()
        .tls(ca.server_config(None))
        .max_sessions(2)
        .handshake_timeout(Duration::from_secs(600))
        .serve_with(
            rt.clone(),
            LengthDelimited::hello(),
            TestListener::echo(&rec).factory(),
        )
        .expect("server");
    // Two connections that never send a ClientHello hold both places.
    let first = rt.connect(srv.local_addr(), None).await.expect("connect");
    let _second = rt.connect(srv.local_addr(), None).await.expect("connect");
    let mut third = rt.connect(srv.local_addr(), None).await.expect("connect");
    let mut rest = Vec::new();
    let dropped = within(&rt, "the third is dropped", third.read_to_end(&mut rest)).await;
    assert!(dropped.is_err() || rest.is_empty(), "{dropped:?} {rest:?}");
    // The first gives up; its place goes to a real client.
    drop(first);
    let client_rec = Recorder::new();
    let cli = TcpClientBuilder::new(srv.local_addr())
        .tls(ca.client_config(None))
        .reconnect_interval(Duration::from_millis(10))
        .start_with(
            rt.clone(),
            LengthDelimited::hello(),
            TestListener::silent(&client_rec).factory(),
        )
        .expect("client");
    within(&rt, "the real client's session", cli.wait_for_sessions(1))
        .await
        .expect("connects");
    cli.sessions()[0].try_send(b"in").expect("send");
    client_rec.wait_msgs(&rt, 1).await;
    cli.close().await;
    // The second connection's handshake would last 600 s: close does not wait for it.
    within(&rt, "close with a handshake under way", srv.close()).await;
}

/// Closing a session whose peer reads nothing: what reached the socket within the
/// close-wait is counted written, the rest counted unsent; nothing is lost uncounted.
pub async fn close_under_heavy_writes_counts_every_package<R: Runtime>(rt: R) {
    const PKGS: usize = 512;
    const LEN: usize = 64 * 1024;
    let rec = Recorder::new();
    let srv = echo_server(&rt, &rec, 0, |_| Ok(())).await;
    // The peer never reads: at most the kernel's socket buffers (a few MiB) take the 32 MiB.
    let _silent = rt.connect(srv.local_addr(), None).await.expect("connect");
    rec.wait(&rt, "the session", |e| {
        e.iter().any(|r| matches!(r, Rec::Open(_)))
    })
    .await;
    let session = rec.sessions()[0].clone();
    session
        .configure(|c| c.write_water_marks(1, 2 * PKGS * (LEN + 4)))
        .expect("room for everything");
    session
        .configure(|c| c.close_wait(Duration::from_millis(50)))
        .expect("close-wait");
    let body = vec![5u8; LEN];
    for _ in 0..PKGS {
        session.try_send(&body).expect("queued");
    }
    session.close();
    within(&rt, "the close", session.closed()).await;
    let stats = session.stats();
    assert_eq!(
        stats.pkgs_written + stats.pkgs_unsent,
        PKGS as u64,
        "{stats:?}"
    );
    assert!(stats.pkgs_unsent > 0, "{stats:?}");
    assert!(closed(&rec.events(), session.id()));
    well_behaved(&rt, &srv, b"unaffected").await;
    srv.close().await;
}

/// Says goodbye when a timeout closes its session, and records what follows.
struct Goodbye {
    rec: Arc<Recorder>,
}

impl EventListener<Lines> for Goodbye {
    async fn on_message(&self, session: &Session<Lines>, line: String) {
        let _ = session.send(&line).await;
    }

    async fn on_timeout(&self, session: &Session<Lines>, err: &getty_core::Error) {
        assert!(!session.is_closing(), "writes are still taken");
        session
            .send(&format!("bye: {}", err.kind() == ErrorKind::IdleTimeout))
            .await
            .expect("a last message is queued");
    }

    async fn on_error(&self, session: &Session<Lines>, err: &getty_core::Error) {
        self.rec.push(Rec::Error(session.id(), Failure::of(err)));
    }
}

/// A timeout close lets the listener send a last message first (`on_timeout`): the peer reads
/// it, then the end of the stream; `on_error` still reports the timeout.
pub async fn timeout_close_sends_a_last_message<R: Runtime>(rt: R) {
    const IDLE: Duration = Duration::from_millis(100);
    let rec = Recorder::new();
    let srv = TcpServer::builder()
        .session_config(SessionConfig::new().idle_timeout(IDLE))
        .serve(rt.clone(), Lines::new(), Goodbye { rec: rec.clone() })
        .expect("server");
    let mut raw = rt.connect(srv.local_addr(), None).await.expect("connect");
    raw.write_all(b"hello\n").await.expect("write");
    let mut all = Vec::new();
    within(
        &rt,
        "the echo, the goodbye and the end",
        raw.read_to_end(&mut all),
    )
    .await
    .expect("read");
    assert_eq!(all, b"hello\nbye: true\n");
    rec.wait(&rt, "on_error", |e| !e.is_empty()).await;
    let errors = errors(&rec.events());
    assert_eq!(
        (errors[0].kind, errors[0].timeout),
        (ErrorKind::IdleTimeout, Some(IDLE))
    );
    within(&rt, "srv close", srv.close()).await;
}
