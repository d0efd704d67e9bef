//! TCP scenarios: sessions, servers and clients over real sockets on 127.0.0.1.

use getty_core::ErrorKind;
use getty_core::Frame;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::instrumented::Instrumented;
use super::support::*;
use getty_core::codec::{LengthDelimited, Lines};
use getty_core::endpoint::{TcpClient, TcpClientBuilder, TcpServer};
use getty_core::listener::EventListener;
use getty_core::runtime::{self, Executor as _, Network as _, Runtime};
use getty_core::session::{Session, SessionConfig};
use getty_core::BoxError;
use getty_core::Error;

fn localhost() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// A server on a random port whose sessions run `listener`.
async fn server<R: Runtime>(rt: &R, listener: TestListener) -> TcpServer {
    TcpServer::builder()
        .serve_with(rt.clone(), LengthDelimited::hello(), listener.factory())
        .expect("server starts")
}

/// A server and a client pool connected to it, each recording its sessions' events.
struct Setup {
    srv: TcpServer,
    /// The server sessions' events.
    rec: Arc<Recorder>,
    cli: TcpClient<Hello>,
    /// The client sessions' events.
    client_rec: Arc<Recorder>,
}

/// A server (echoing or silent) and a client pool of `n` silent sessions, all connected.
async fn setup<R: Runtime>(rt: &R, echo: bool, n: usize) -> Setup {
    let rec = Recorder::new();
    let listener = match echo {
        true => TestListener::echo(&rec),
        false => TestListener::silent(&rec),
    };
    let srv = server(rt, listener).await;
    let client_rec = Recorder::new();
    let cli = client(rt, srv.local_addr(), n, TestListener::silent(&client_rec)).await;
    Setup {
        srv,
        rec,
        cli,
        client_rec,
    }
}

/// A silent recording server with one raw peer connected to it:
/// `(server, its events, the server-side session, the peer's stream)`.
async fn server_with_raw_peer<R: Runtime>(
    rt: &R,
) -> (TcpServer, Arc<Recorder>, Session<Hello>, R::Tcp) {
    let rec = Recorder::new();
    let srv = server(rt, TestListener::silent(&rec)).await;
    let raw = rt.connect(srv.local_addr(), None).await.expect("connect");
    rec.wait(rt, "open", |e| !e.is_empty()).await;
    let session = rec.sessions()[0].clone();
    (srv, rec, session, raw)
}

/// A client pool of `n` sessions to `addr`, waited for.
pub(crate) async fn client<R: Runtime>(
    rt: &R,
    addr: SocketAddr,
    n: usize,
    listener: TestListener,
) -> TcpClient<Hello> {
    let client = TcpClientBuilder::new(addr)
        .pool_size(n)
        .reconnect_interval(Duration::from_millis(20))
        .start_with(rt.clone(), LengthDelimited::hello(), listener.factory())
        .expect("client starts");
    within(rt, "client pool", client.wait_for_sessions(n))
        .await
        .expect("client connects");
    client
}

/// 10,000 packages of varying length, sent by a pool of 4 client sessions, come back intact
/// and in order on every session.
pub async fn echo_10000_packages<R: Runtime>(rt: R) {
    const TOTAL: usize = 10_000;
    let server_rec = Recorder::new();
    let srv = server(&rt, TestListener::echo(&server_rec)).await;
    let client_rec = Recorder::new();
    let cli = client(&rt, srv.local_addr(), 4, TestListener::silent(&client_rec)).await;
    let sessions = cli.sessions();
    assert_eq!(sessions.len(), 4);
    for i in 0..TOTAL {
        sessions[i % 4].try_send(&payload(i)).expect("send");
    }
    client_rec.wait_msgs(&rt, TOTAL).await;
    for (k, session) in sessions.iter().enumerate() {
        let got = payloads(&client_rec.of(session.id()));
        let want: Vec<Bytes> = (k..TOTAL).step_by(4).map(payload).collect();
        assert_eq!(got, want, "session {k} got its packages back in order");
    }
    assert!(server_rec
        .events()
        .iter()
        .all(|r| !matches!(r, Rec::Error(..))));
    within(&rt, "cli close", cli.close()).await;
    within(&rt, "srv close", srv.close()).await;
}

/// A frame written one byte per write (each byte read by the server before the next is sent)
/// is delivered once, whole.
pub async fn frame_delivered_one_byte_at_a_time<R: Runtime>(rt: R) {
    let (srv, rec, session, mut raw) = server_with_raw_peer(&rt).await;
    let frame = hello_frame(b"one byte at a time");
    for (i, byte) in frame.iter().enumerate() {
        write_all(&mut raw, &[*byte]).await.expect("write");
        eventually(&rt, "server read the byte", || {
            session.stats().bytes_read == i as u64 + 1
        })
        .await;
        if i + 1 < frame.len() {
            let early = count_msgs(&rec.events());
            assert_eq!(early, 0, "delivered early, after byte {i}");
        }
    }
    rec.wait_msgs(&rt, 1).await;
    assert!(matches!(&rec.events()[1], Rec::Msg(_, p) if p.as_ref() == b"one byte at a time"));
    within(&rt, "srv close", srv.close()).await;
}

/// 500 frames written in one segment are all delivered, in order.
pub async fn many_frames_in_one_segment<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let srv = server(&rt, TestListener::silent(&rec)).await;
    let mut raw = rt.connect(srv.local_addr(), None).await.expect("connect");
    let mut segment = Vec::new();
    for i in 0..500 {
        segment.extend_from_slice(&hello_frame(&payload(i)));
    }
    write_all(&mut raw, &segment).await.expect("write");
    rec.wait_msgs(&rt, 500).await;
    let got = payloads(&rec.events());
    assert_eq!(got, (0..500).map(payload).collect::<Vec<_>>());
    within(&rt, "srv close", srv.close()).await;
}

/// A frame split in two at every offset (the first part read by the server before the second
/// is sent) is delivered whole, every time.
pub async fn frame_split_at_every_offset<R: Runtime>(rt: R) {
    let (srv, rec, session, mut raw) = server_with_raw_peer(&rt).await;
    let frame = hello_frame(b"split me anywhere, I stay whole");
    let mut sent = 0u64;
    for offset in 1..frame.len() {
        write_all(&mut raw, &frame[..offset]).await.expect("write");
        sent += offset as u64;
        eventually(&rt, "first part read", || {
            session.stats().bytes_read == sent
        })
        .await;
        write_all(&mut raw, &frame[offset..]).await.expect("write");
        sent += (frame.len() - offset) as u64;
        rec.wait_msgs(&rt, offset).await;
    }
    let msgs: Vec<Rec> = rec
        .events()
        .into_iter()
        .filter(|r| matches!(r, Rec::Msg(..)))
        .collect();
    assert_eq!(msgs.len(), frame.len() - 1);
    assert!(msgs
        .iter()
        .all(|r| matches!(r, Rec::Msg(_, p) if p.as_ref() == &frame[4..])));
    within(&rt, "srv close", srv.close()).await;
}

/// Frames that arrive together with the peer's end of stream are still delivered, and the
/// clean end gives `on_close` without `on_error`.
pub async fn last_frame_with_eof_is_delivered<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let srv = server(&rt, TestListener::silent(&rec)).await;
    let mut raw = rt.connect(srv.local_addr(), None).await.expect("connect");
    let mut bytes = hello_frame(b"first");
    bytes.extend_from_slice(&hello_frame(b"last"));
    raw.write_all(&bytes).await.expect("write");
    raw.close().await.expect("shutdown");
    rec.wait(&rt, "close", |e| {
        e.iter().any(|r| matches!(r, Rec::Close(_)))
    })
    .await;
    let events = rec.events();
    assert!(
        matches!(&events[1], Rec::Msg(_, p) if p.as_ref() == b"first"),
        "{events:?}"
    );
    assert!(
        matches!(&events[2], Rec::Msg(_, p) if p.as_ref() == b"last"),
        "{events:?}"
    );
    assert!(matches!(&events[3], Rec::Close(_)), "{events:?}");
    assert_eq!(events.len(), 4, "no on_error: {events:?}");
    within(&rt, "srv close", srv.close()).await;
}

/// A header declaring a frame over `max_msg_len` closes that session with `FrameTooLarge`
/// before the body is buffered; another session on the same server keeps working.
pub async fn oversize_frame_closes_only_its_session<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let srv = server(&rt, TestListener::echo(&rec)).await;
    let mut good = rt.connect(srv.local_addr(), None).await.expect("connect");
    let mut bad = rt.connect(srv.local_addr(), None).await.expect("connect");
    rec.wait(&rt, "two opens", |e| e.len() == 2).await;
    // Declares 1 MiB (the default maximum is 4 KiB) and sends only a little of the body.
    let mut bytes = (1u32 << 20).to_le_bytes().to_vec();
    bytes.extend_from_slice(&[7u8; 100]);
    write_all(&mut bad, &bytes).await.expect("write");
    // The server closes the bad session: its peer sees the end of the stream.
    let mut rest = Vec::new();
    within(&rt, "bad session closed", bad.read_to_end(&mut rest))
        .await
        .expect("read to end");
    assert!(rest.is_empty());
    // The socket is shut down first, then on_error runs: wait for it.
    rec.wait(&rt, "on_close of the bad session", |e| {
        e.iter().any(|r| matches!(r, Rec::Close(_)))
    })
    .await;
    let errors: Vec<Rec> = rec
        .events()
        .into_iter()
        .filter(|r| matches!(r, Rec::Error(..)))
        .collect();
    assert_eq!(errors.len(), 1);
    assert!(
        matches!(&errors[0], Rec::Error(_, e) if e.frame.is_some_and(|(len, _)| len == 1048580)),
        "{errors:?}"
    );
    let bad_session = rec
        .sessions()
        .into_iter()
        .find(|s| s.id() == errors[0].id())
        .expect("session");
    assert!(
        bad_session.stats().bytes_read < 4096 + 200,
        "body was not buffered"
    );
    // The other session still echoes.
    write_all(&mut good, &hello_frame(b"still here"))
        .await
        .expect("write");
    let echoed = within(&rt, "echo", read_hello_frame(&mut good))
        .await
        .expect("echo");
    assert_eq!(echoed, b"still here");
    within(&rt, "srv close", srv.close()).await;
}

/// An `on_open` error refuses the session: the peer is disconnected and the session gets no
/// other event.
pub async fn on_open_error_refuses_session<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let refusing = TestListener {
        refuse: true,
        ..TestListener::echo(&rec)
    };
    let srv = server(&rt, refusing).await;
    let mut raw = rt.connect(srv.local_addr(), None).await.expect("connect");
    let _ = raw.write_all(&hello_frame(b"hello?")).await;
    let mut rest = Vec::new();
    // The refused connection ends (cleanly or by reset, depending on timing).
    let _ = within(&rt, "refused connection ends", raw.read_to_end(&mut rest)).await;
    assert!(rest.is_empty());
    within(&rt, "no sessions", srv.wait_for_session_count(0))
        .await
        .expect("the server is open");
    assert!(rec.events().is_empty(), "{:?}", rec.events());
    within(&rt, "srv close", srv.close()).await;
}

/// A new-session callback that returns an error refuses the connection.
pub async fn new_session_callback_refuses_session<R: Runtime>(rt: R) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let srv = TcpServer::builder()
        .serve_with(
            rt.clone(),
            LengthDelimited::hello(),
            move |_: &Session<Hello>| {
                counted.fetch_add(1, Ordering::SeqCst);
                Err::<TestListener, BoxError>("not today".into())
            },
        )
        .expect("server");
    let mut raw = rt.connect(srv.local_addr(), None).await.expect("connect");
    let mut rest = Vec::new();
    let _ = within(&rt, "refused connection ends", raw.read_to_end(&mut rest)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(srv.session_count(), 0);
    within(&rt, "srv close", srv.close()).await;
}

/// Whatever closes a session (its own `close()`, the peer, the server), `on_close` runs
/// exactly once and is its last event.
pub async fn on_close_exactly_once_and_last<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let srv = server(&rt, TestListener::echo(&rec)).await;
    let mut a = rt.connect(srv.local_addr(), None).await.expect("connect");
    let mut b = rt.connect(srv.local_addr(), None).await.expect("connect");
    let c = rt.connect(srv.local_addr(), None).await.expect("connect");
    rec.wait(&rt, "three opens", |e| e.len() == 3).await;
    // a: closed by the server side handle, twice; b: the peer leaves; c: server close.
    write_all(&mut a, &hello_frame(b"x")).await.expect("write");
    rec.wait_msgs(&rt, 1).await;
    let sessions = rec.sessions();
    let first = sessions
        .iter()
        .find(|s| s.stats().pkgs_read == 1)
        .expect("a")
        .clone();
    first.close();
    first.close();
    within(&rt, "closed", first.closed()).await;
    b.close().await.expect("close b");
    drop(b);
    within(&rt, "srv close", srv.close()).await;
    drop(c);
    for session in sessions {
        let events = rec.of(session.id());
        let closes = events.iter().filter(|r| matches!(r, Rec::Close(_))).count();
        assert_eq!(closes, 1, "session {}: {events:?}", session.id());
        assert!(matches!(events.last(), Some(Rec::Close(_))), "{events:?}");
        assert!(session.is_closed());
    }
}

/// A peer that closes cleanly between frames gives `on_close` and no `on_error`.
pub async fn clean_eof_gives_no_error<R: Runtime>(rt: R) {
    let Setup {
        srv,
        rec,
        cli,
        client_rec,
    } = setup(&rt, true, 1).await;
    cli.sessions()[0].try_send(b"bye").expect("send");
    client_rec.wait_msgs(&rt, 1).await;
    within(&rt, "cli close", cli.close()).await;
    rec.wait(&rt, "server close", |e| {
        e.iter().any(|r| matches!(r, Rec::Close(_)))
    })
    .await;
    let errors = rec
        .events()
        .into_iter()
        .chain(client_rec.events())
        .filter(|r| matches!(r, Rec::Error(..)))
        .count();
    assert_eq!(errors, 0, "{:?} {:?}", rec.events(), client_rec.events());
    within(&rt, "srv close", srv.close()).await;
}

/// `on_cron` fires repeatedly, never sooner than its period after the previous tick.
pub async fn cron_fires_at_its_period<R: Runtime>(rt: R) {
    const PERIOD: Duration = Duration::from_millis(30);
    let rec = Recorder::new();
    let listener = Arc::new(TestListener::silent(&rec));
    let srv = TcpServer::builder()
        .serve_with(
            rt.clone(),
            LengthDelimited::hello(),
            move |s: &Session<Hello>| {
                s.configure(|c| c.cron_period(PERIOD))?;
                Ok(listener.clone())
            },
        )
        .expect("server");
    let opened_at = rt.now();
    let _raw = rt.connect(srv.local_addr(), None).await.expect("connect");
    rec.wait(&rt, "4 cron ticks", |e| {
        e.iter().filter(|r| matches!(r, Rec::Cron(..))).count() >= 4
    })
    .await;
    let ticks: Vec<std::time::Instant> = rec
        .events()
        .into_iter()
        .filter_map(|r| match r {
            Rec::Cron(_, at) => Some(at),
            _ => None,
        })
        .collect();
    assert!(ticks[0] >= opened_at + PERIOD);
    for pair in ticks.windows(2) {
        assert!(
            pair[1] >= pair[0] + PERIOD,
            "ticks closer than the period: {ticks:?}"
        );
    }
    within(&rt, "srv close", srv.close()).await;
}

/// The client keeps `n` sessions; one closed by the server is replaced by a new one.
pub async fn client_pool_holds_n_and_replaces_closed<R: Runtime>(rt: R) {
    let Setup { srv, rec, cli, .. } = setup(&rt, true, 3).await;
    within(&rt, "three server sessions", srv.wait_for_session_count(3))
        .await
        .expect("the server is open");
    let before: Vec<u64> = cli.sessions().iter().map(|s| s.id()).collect();
    rec.sessions()[0].close();
    within(&rt, "replacement", async {
        loop {
            let ids: Vec<u64> = cli.sessions().iter().map(|s| s.id()).collect();
            if ids.len() == 3 && ids != before {
                return ids;
            }
            cli.wait_for_sessions(3).await.expect("pool");
            rt.timer(rt.now() + Duration::from_millis(1)).await;
        }
    })
    .await;
    assert_eq!(cli.session_count(), 3);
    let replaced: Vec<u64> = cli
        .sessions()
        .iter()
        .map(|s| s.id())
        .filter(|id| !before.contains(id))
        .collect();
    assert_eq!(replaced.len(), 1);
    within(&rt, "cli close", cli.close()).await;
    within(&rt, "srv close", srv.close()).await;
}

/// A client whose server stops and starts again on the same port gets all its sessions back.
pub async fn client_reconnects_after_server_restart<R: Runtime>(rt: R) {
    let Setup {
        srv,
        rec,
        cli,
        client_rec,
    } = setup(&rt, true, 4).await;
    let addr = srv.local_addr();
    within(&rt, "srv close", srv.close()).await;
    eventually(&rt, "client sessions dropped", || cli.session_count() == 0).await;
    let srv = TcpServer::builder()
        .addr(addr)
        .serve_with(
            rt.clone(),
            LengthDelimited::hello(),
            TestListener::echo(&rec).factory(),
        )
        .expect("server restarts on the same port");
    within(&rt, "reconnected", cli.wait_for_sessions(4))
        .await
        .expect("pool back");
    // Every session of the pool is a working one.
    let before = count_msgs(&client_rec.events());
    let sessions = cli.sessions();
    assert_eq!(sessions.len(), 4);
    for session in &sessions {
        session.try_send(b"after restart").expect("send");
    }
    client_rec.wait_msgs(&rt, before + 4).await;
    let events = client_rec.events();
    for session in &sessions {
        let echoed = events.iter().any(
            |r| matches!(r, Rec::Msg(id, p) if *id == session.id() && &p[..] == b"after restart"),
        );
        assert!(echoed, "session {} echoes", session.id());
    }
    within(&rt, "cli close", cli.close()).await;
    within(&rt, "srv close", srv.close()).await;
}

/// A client bound to the very port it connects to ends up connected to itself (TCP
/// simultaneous open); it must refuse that connection.
pub async fn client_refuses_self_connect<R: Runtime>(rt: R) {
    // A free port: bind one, note it, release it.
    let addr = free_addr(&rt).await;
    let rec = Recorder::new();
    let cli = TcpClientBuilder::new(addr)
        .local_addr(addr)
        .reconnect_interval(Duration::from_millis(5))
        .max_reconnect_attempts(Some(3))
        .start_with(
            rt.clone(),
            LengthDelimited::hello(),
            TestListener::echo(&rec).factory(),
        )
        .expect("client");
    let outcome = within(&rt, "client gives up", cli.wait_for_sessions(1)).await;
    assert!(outcome.is_err(), "a self-connected session was accepted");
    assert!(cli.gave_up());
    assert_eq!(cli.session_count(), 0);
    let last = cli.last_connect_error().expect("an error was recorded");
    assert!(
        matches!(*last, Error::SelfConnect(_)),
        "expected SelfConnect, got {last:?}"
    );
    assert!(rec.events().is_empty());
    within(&rt, "cli close", cli.close()).await;
}

/// With no server, the client retries with backoff and gives up after the configured number
/// of consecutive failures.
pub async fn client_gives_up_after_max_attempts<R: Runtime>(rt: R) {
    let addr = free_addr(&rt).await;
    let cli = TcpClientBuilder::new(addr)
        .reconnect_interval(Duration::from_millis(5))
        .max_reconnect_attempts(Some(4))
        .start_with(
            rt.clone(),
            LengthDelimited::hello(),
            TestListener::echo(&Recorder::new()).factory(),
        )
        .expect("client");
    let started = rt.now();
    assert!(within(&rt, "give up", cli.wait_for_sessions(1))
        .await
        .is_err());
    assert!(cli.gave_up());
    // Three pauses of 5, 10 and 15 ms at least.
    assert!(rt.now() - started >= Duration::from_millis(30));
    let last = cli.last_connect_error().expect("error");
    assert!(
        matches!(&*last, Error::Connect { source, .. } if source.kind() == std::io::ErrorKind::ConnectionRefused),
        "{last:?}"
    );
    within(&rt, "cli close", cli.close()).await;
}

/// Every write form on a closed session fails with `SessionClosed`.
pub async fn write_after_close_is_session_closed<R: Runtime>(rt: R) {
    let Setup { srv, cli, .. } = setup(&rt, true, 1).await;
    let session = cli.sessions()[0].clone();
    assert!(!session.is_closing() && !session.is_closed());
    session.close();
    // Closing at once; closed once the driver finished (not before `closed()` returns).
    assert!(session.is_closing());
    fn is_closed<T>(r: Result<T, Error>, session: u64) -> bool {
        matches!(r, Err(Error::SessionClosed { id }) if id == session)
    }
    let id = session.id();
    let closed = |r: Result<usize, Error>| is_closed(r, id);
    let closed_wait = |r: Result<usize, Error>| is_closed(r, id);
    assert!(closed(session.try_send(b"x")));
    assert!(closed(session.try_send_frame(Frame::bytes(&b"x"[..]))));
    within(&rt, "closed", session.closed()).await;
    assert!(session.is_closing() && session.is_closed());
    assert!(closed(session.try_send(b"x")));
    assert!(closed_wait(session.send_and_flush(b"x").await));
    assert!(closed_wait(
        session.send_frame_and_flush(Frame::bytes(&b"x"[..])).await
    ));
    assert!(closed_wait(
        session
            .send_frame_and_flush(Frame::vectored([Bytes::from_static(b"x")]))
            .await
    ));
    within(&rt, "cli close", cli.close()).await;
    within(&rt, "srv close", srv.close()).await;
}

/// `send_and_flush` to a peer that never reads times out, reporting how much reached the socket.
pub async fn send_and_flush_to_non_reader_times_out_with_partial_count<R: Runtime>(rt: R) {
    // The peer never reads.
    let (cli, session, _peer) = client_with_raw_peer(
        &rt,
        LengthDelimited::hello(),
        TestListener::silent(&Recorder::new()).factory(),
    )
    .await;
    // Larger than any loopback socket buffers.
    let big = vec![0x5a; 64 << 20];
    let outcome = within(
        &rt,
        "send_and_flush",
        session
            .send_and_flush(&big)
            // Long enough for the 64 MiB copy into the queue and a first write on a loaded
            // machine (300 ms was not, under a CI run beside other load).
            .timeout(Duration::from_secs(1)),
    )
    .await;
    match outcome {
        Err(Error::WriteTimeout { total, sent, .. }) => {
            assert_eq!(total, big.len() + 4);
            assert!(sent > 0 && sent < total, "sent {sent} of {total}");
        }
        other => panic!("expected a write timeout, got {other:?}"),
    }
    // Without an explicit timeout, the session's write timeout applies. The queue is still
    // blocked behind the big package, so none of this one is sent.
    session
        .configure(|c| c.write_timeout(Duration::from_millis(50)))
        .expect("write timeout");
    match within(&rt, "send_and_flush", session.send_and_flush(b"small")).await {
        Err(Error::WriteTimeout {
            timeout,
            total,
            sent,
        }) => {
            assert_eq!(timeout, Duration::from_millis(50));
            assert_eq!((total, sent), (9, 0));
        }
        other => panic!("expected a write timeout, got {other:?}"),
    }
    session
        .configure(|c| c.close_wait(Duration::ZERO))
        .expect("close wait");
    within(&rt, "cli close", cli.close()).await;
}

/// Packages queued before `close()` all reach the peer before the connection ends.
pub async fn close_flushes_every_queued_write<R: Runtime>(rt: R) {
    const N: usize = 2000;
    let Setup { srv, rec, cli, .. } = setup(&rt, false, 1).await;
    let session = cli.sessions()[0].clone();
    for i in 0..N {
        session.try_send(&payload(i)).expect("queued");
    }
    session.close();
    within(&rt, "client session closed", session.closed()).await;
    rec.wait(&rt, "server saw all and the end", |e| {
        count_msgs(e) == N && e.iter().any(|r| matches!(r, Rec::Close(_)))
    })
    .await;
    assert_eq!(session.stats().pkgs_written, N as u64);
    assert_eq!(session.stats().pkgs_unsent, 0);
    let got = payloads(&rec.events());
    assert_eq!(got, (0..N).map(payload).collect::<Vec<_>>());
    within(&rt, "cli close", cli.close()).await;
    within(&rt, "srv close", srv.close()).await;
}

/// A panic in `on_message` closes that session (reported to `on_error` as a handler panic);
/// the server and its other sessions go on.
pub async fn panicking_handler_closes_only_its_session<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let panicky = TestListener {
        panic_on: Some(Bytes::from_static(b"panic")),
        ..TestListener::echo(&rec)
    };
    only_the_panicking_session_closes(rt, rec, panicky).await;
}

/// A hand-written `on_message` (a `fn` returning a future) that panics as it makes its
/// future closes its session as a panic inside the future does.
pub async fn handler_panicking_before_its_future_closes_only_its_session<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let panicky = TestListener {
        panic_making_future_on: Some(Bytes::from_static(b"panic")),
        ..TestListener::echo(&rec)
    };
    only_the_panicking_session_closes(rt, rec, panicky).await;
}

/// Two sessions; the one that sends `panic` to `panicky` is closed with a handler panic,
/// the other still echoes.
async fn only_the_panicking_session_closes<R: Runtime>(
    rt: R,
    rec: Arc<Recorder>,
    panicky: TestListener,
) {
    let srv = server(&rt, panicky).await;
    let mut good = rt.connect(srv.local_addr(), None).await.expect("connect");
    let mut bad = rt.connect(srv.local_addr(), None).await.expect("connect");
    rec.wait(&rt, "two opens", |e| e.len() == 2).await;
    write_all(&mut bad, &hello_frame(b"panic"))
        .await
        .expect("write");
    let mut rest = Vec::new();
    within(&rt, "panicking session closed", bad.read_to_end(&mut rest))
        .await
        .expect("clean end");
    rec.wait(&rt, "error and close", |e| {
        e.iter()
            .any(|r| matches!(r, Rec::Error(_, m) if m.is_panic_in("on_message", "")))
            && e.iter().any(|r| matches!(r, Rec::Close(_)))
    })
    .await;
    write_all(&mut good, &hello_frame(b"fine"))
        .await
        .expect("write");
    let echoed = within(&rt, "echo", read_hello_frame(&mut good))
        .await
        .expect("echo");
    assert_eq!(echoed, b"fine");
    assert_eq!(srv.session_count(), 1);
    within(&rt, "srv close", srv.close()).await;
}

/// A listener that answers every package with a 1 MiB package and awaits its delivery.
#[derive(Debug)]
struct BigReply;
impl EventListener<Hello> for BigReply {
    async fn on_message(&self, session: &Session<Hello>, _pkg: Bytes) {
        let reply = vec![0xab; 1 << 20];
        let outcome = session.send_and_flush(&reply).await;
        assert_eq!(outcome.expect("send_and_flush"), reply.len() + 4);
        session.try_send(b"done").expect("send");
    }
}

/// An `on_message` that awaits `send_and_flush` of 1 MiB (more than the socket buffers hold) to a
/// slowly reading peer completes: the session keeps writing while the handler waits.
pub async fn handler_awaiting_large_write_does_not_deadlock<R: Runtime>(rt: R) {
    let srv = TcpServer::builder()
        .serve_with(
            rt.clone(),
            LengthDelimited::hello(),
            |_: &Session<Hello>| Ok(BigReply),
        )
        .expect("server");
    let mut raw = rt.connect(srv.local_addr(), None).await.expect("connect");
    write_all(&mut raw, &hello_frame(b"go"))
        .await
        .expect("write");
    // Read slowly: 16 KiB at a time, pausing between reads.
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    within(&rt, "1 MiB reply", async {
        while got.len() < 4 + (1 << 20) {
            let n = raw.read(&mut chunk).await.expect("read");
            assert!(n > 0, "unexpected end");
            got.extend_from_slice(&chunk[..n]);
            rt.timer(rt.now() + Duration::from_micros(200)).await;
        }
    })
    .await;
    let done = within(&rt, "done", async {
        let mut rest = got.split_off(4 + (1 << 20));
        while rest.len() < 8 {
            let n = raw.read(&mut chunk).await.expect("read");
            rest.extend_from_slice(&chunk[..n]);
        }
        rest
    })
    .await;
    assert_eq!(&got[..4], &(1u32 << 20).to_le_bytes());
    assert!(got[4..].iter().all(|&b| b == 0xab));
    assert_eq!(done, hello_frame(b"done"));
    within(&rt, "srv close", srv.close()).await;
}

/// A vectored write of several buffers arrives as their concatenation, and counts as one
/// package.
pub async fn vectored_write_arrives_whole<R: Runtime>(rt: R) {
    let Setup { srv, rec, cli, .. } = setup(&rt, false, 1).await;
    let session = cli.sessions()[0].clone();
    let payload = b"vectored, no copy";
    let parts = [
        Bytes::copy_from_slice(&(payload.len() as u32).to_le_bytes()),
        Bytes::from_static(&payload[..8]),
        Bytes::from_static(&payload[8..]),
    ];
    let written = within(
        &rt,
        "vectored",
        session.send_frame_and_flush(Frame::vectored(parts)),
    )
    .await
    .expect("write");
    assert_eq!(written, 4 + payload.len());
    rec.wait_msgs(&rt, 1).await;
    assert!(matches!(&rec.events()[1], Rec::Msg(_, p) if p.as_ref() == payload));
    assert_eq!(session.stats().pkgs_written, 1);
    within(&rt, "cli close", cli.close()).await;
    within(&rt, "srv close", srv.close()).await;
}

/// Typed attributes, and statistics that match the traffic exactly.
pub async fn attributes_and_statistics<R: Runtime>(rt: R) {
    const N: usize = 300;
    let Setup {
        srv,
        rec,
        cli,
        client_rec,
    } = setup(&rt, true, 1).await;
    let session = cli.sessions()[0].clone();

    #[derive(Debug, Clone, PartialEq)]
    struct User(String);
    assert_eq!(session.attribute::<User>(), None);
    assert_eq!(session.set_attribute(User("ann".into())), None);
    assert_eq!(session.set_attribute(7u32), None);
    assert_eq!(
        session.set_attribute(User("bob".into())),
        Some(User("ann".into()))
    );
    assert_eq!(session.attribute::<User>(), Some(User("bob".into())));
    session.with_attribute::<u32, _>(|v| *v.expect("present") += 1);
    assert_eq!(session.attribute::<u32>(), Some(8));
    assert_eq!(session.remove_attribute::<u32>(), Some(8));
    assert_eq!(session.attribute::<u32>(), None);
    assert_eq!(session.attribute::<User>(), Some(User("bob".into())));

    let before = session.last_active();
    let mut bytes = 0u64;
    for i in 0..N {
        let p = payload(i);
        bytes += 4 + p.len() as u64;
        session.try_send(&p).expect("send");
    }
    client_rec.wait_msgs(&rt, N).await;
    let c = session.stats();
    assert_eq!((c.pkgs_written, c.bytes_written), (N as u64, bytes));
    assert_eq!((c.pkgs_read, c.bytes_read), (N as u64, bytes));
    assert!(session.last_active() > before);
    let server_session = rec.sessions()[0].clone();
    eventually(&rt, "server stats", || {
        server_session.stats().pkgs_written == N as u64
    })
    .await;
    let s = server_session.stats();
    assert_eq!((s.pkgs_read, s.bytes_read), (N as u64, bytes));
    assert_eq!(s.bytes_written, bytes);
    let line = session.to_string();
    assert!(
        line.contains(&format!("{N} pkgs / {bytes} bytes")),
        "{line}"
    );
    assert_eq!(session.peer_addr(), Some(srv.local_addr()));
    assert_eq!(server_session.peer_addr(), Some(session.local_addr()));
    within(&rt, "cli close", cli.close()).await;
    within(&rt, "srv close", srv.close()).await;
}

/// Setters refuse values they cannot take, with an error and no panic.
pub async fn invalid_settings_are_errors<R: Runtime>(rt: R) {
    let Setup { srv, cli, .. } = setup(&rt, true, 1).await;
    let s = cli.sessions()[0].clone();
    let invalid = |r: getty_core::Result<()>| matches!(r, Err(Error::InvalidConfig(_)));
    assert!(invalid(s.configure(|c| c.max_msg_len(0))));
    assert!(invalid(s.configure(|c| c.cron_period(Duration::ZERO))));
    assert!(invalid(s.configure(|c| c.read_timeout(Duration::ZERO))));
    assert!(invalid(s.configure(|c| c.write_timeout(Duration::ZERO))));
    assert!(invalid(s.configure(|c| c.write_water_marks(10, 10))));
    assert!(invalid(s.configure(|c| c.write_water_marks(0, 0))));
    assert_eq!(
        s.write_water_marks(),
        (
            getty_core::session::DEFAULT_LOW_WATER,
            getty_core::session::DEFAULT_HIGH_WATER
        )
    );
    assert_eq!(s.max_msg_len(), getty_core::session::DEFAULT_MAX_MSG_LEN);
    assert_eq!(s.cron_period(), getty_core::session::DEFAULT_CRON_PERIOD);
    s.configure(|c| c.max_msg_len(1 << 20)).expect("valid");
    s.configure(|c| c.read_timeout(None)).expect("valid");
    assert_eq!(s.max_msg_len(), 1 << 20);
    // A rejected change changes nothing.
    assert!(invalid(
        s.configure(|c| c.max_msg_len(7).cron_period(Duration::ZERO))
    ));
    assert_eq!(s.max_msg_len(), 1 << 20);

    // Endpoint settings are validated once, when the endpoint starts.
    let zero_cron = SessionConfig::new().cron_period(Duration::ZERO);
    let server = TcpServer::builder()
        .session_config(zero_cron.clone())
        .serve(
            rt.clone(),
            LengthDelimited::hello(),
            TestListener::silent(&Recorder::new()),
        );
    assert!(matches!(server, Err(Error::InvalidConfig(_))), "{server:?}");
    let client = TcpClientBuilder::new(srv.local_addr())
        .session_config(zero_cron)
        .start(
            rt.clone(),
            LengthDelimited::hello(),
            TestListener::silent(&Recorder::new()),
        );
    assert!(matches!(client, Err(Error::InvalidConfig(_))), "{client:?}");
    // One message-size limit: a session limit that differs from the codec's own is refused.
    let clash = TcpServer::builder()
        .session_config(SessionConfig::new().max_msg_len(1000))
        .serve(
            rt.clone(),
            Lines::new(),
            Probe::new(&Recorder::new(), false),
        );
    match clash {
        Err(Error::InvalidConfig(msg)) => assert!(msg.contains("one limit"), "{msg}"),
        other => panic!("two limits must be refused: {other:?}"),
    }
    let no_pool = TcpClientBuilder::new(srv.local_addr())
        .pool_size(0)
        .start_with(
            rt.clone(),
            LengthDelimited::hello(),
            TestListener::echo(&Recorder::new()).factory(),
        );
    assert!(matches!(no_pool, Err(Error::InvalidConfig(_))));
    let no_sessions = TcpServer::builder().max_sessions(0).serve_with(
        rt.clone(),
        LengthDelimited::hello(),
        TestListener::echo(&Recorder::new()).factory(),
    );
    assert!(matches!(no_sessions, Err(Error::InvalidConfig(_))));
    within(&rt, "cli close", cli.close()).await;
    within(&rt, "srv close", srv.close()).await;
}

/// A server with a session limit closes connections beyond it and keeps serving the others.
pub async fn max_sessions_limit<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let srv = TcpServer::builder()
        .max_sessions(2)
        .serve_with(
            rt.clone(),
            LengthDelimited::hello(),
            TestListener::echo(&rec).factory(),
        )
        .expect("server");
    let mut a = rt.connect(srv.local_addr(), None).await.expect("a");
    let _b = rt.connect(srv.local_addr(), None).await.expect("b");
    within(&rt, "two sessions", srv.wait_for_session_count(2))
        .await
        .expect("the server is open");
    let mut c = rt.connect(srv.local_addr(), None).await.expect("c");
    let mut rest = Vec::new();
    let _ = within(&rt, "third refused", c.read_to_end(&mut rest)).await;
    assert!(rest.is_empty());
    assert_eq!(srv.session_count(), 2);
    write_all(&mut a, &hello_frame(b"ok")).await.expect("write");
    assert_eq!(
        within(&rt, "echo", read_hello_frame(&mut a))
            .await
            .expect("echo"),
        b"ok"
    );
    within(&rt, "srv close", srv.close()).await;
}

/// `close()` on a server ends every session (peers see the end of stream), waits for their
/// tasks, and releases the port.
pub async fn server_close_releases_port_and_ends_sessions<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let srv = server(&rt, TestListener::echo(&rec)).await;
    let addr = srv.local_addr();
    let mut raws = Vec::new();
    for _ in 0..5 {
        raws.push(rt.connect(addr, None).await.expect("connect"));
    }
    within(&rt, "five sessions", srv.wait_for_session_count(5))
        .await
        .expect("the server is open");
    within(&rt, "srv close", srv.close()).await;
    assert_eq!(srv.session_count(), 0);
    assert_eq!(
        rec.events()
            .iter()
            .filter(|r| matches!(r, Rec::Close(_)))
            .count(),
        5
    );
    for raw in &mut raws {
        let mut rest = Vec::new();
        within(&rt, "peer sees end", raw.read_to_end(&mut rest))
            .await
            .expect("clean end");
    }
    let again = TcpServer::builder()
        .addr(addr)
        .serve_with(
            rt.clone(),
            LengthDelimited::hello(),
            TestListener::echo(&rec).factory(),
        )
        .expect("port is free again");
    within(&rt, "again close", again.close()).await;
}

/// Failing accepts (EMFILE) make the accept loop back off, doubling its pause, instead of
/// spinning; the server recovers and accepts once they stop.
pub async fn accept_errors_back_off_and_recover<R: Runtime>(rt: R) {
    const FAILURES: usize = 5;
    let rt = Instrumented::new(rt);
    rt.counters
        .fail_next_accepts
        .store(FAILURES, Ordering::SeqCst);
    let rec = Recorder::new();
    let started = rt.now();
    let srv = server(&rt, TestListener::echo(&rec)).await;
    let mut raw = rt.connect(srv.local_addr(), None).await.expect("connect");
    write_all(&mut raw, &hello_frame(b"let me in"))
        .await
        .expect("write");
    let echoed = within(&rt, "echo once accepts work", read_hello_frame(&mut raw))
        .await
        .expect("echo");
    assert_eq!(echoed, b"let me in");
    assert_eq!(rt.counters.failed_accepts.load(Ordering::SeqCst), FAILURES);
    // Pauses of 5, 10, 20, 40 and 80 ms: a spinning loop would be through in microseconds.
    assert!(
        (rt.now() - started) >= Duration::from_millis(155),
        "accept loop did not back off: {:?}",
        (rt.now() - started)
    );
    within(&rt, "srv close", srv.close()).await;
}

/// However many sessions are missing, one worker reconnects them one at a time with a growing
/// interval: the connect attempts made while the server is down stay within the backoff bound.
pub async fn no_reconnect_storm<R: Runtime>(rt: R) {
    let rt = Instrumented::new(rt);
    let addr = free_addr(&rt).await;
    let (cli, attempts, elapsed, bound) = watch_reconnects(&rt, addr, 8, 2).await;
    assert!(attempts >= 2, "the client kept retrying: {attempts}");
    assert!(
        attempts <= bound,
        "{attempts} connects in {elapsed:?}, at most {bound} expected"
    );
    assert!(!cli.gave_up());
    within(&rt, "cli close", cli.close()).await;
}

/// The reconnect interval of the reconnect-storm scenarios.
const STORM_INTERVAL: Duration = Duration::from_millis(20);

/// Starts a client of `pool_size` sessions to `addr` that reconnects forever, waits until it
/// made `at_least` connect attempts, then watches a window of at least 300 ms (a loaded
/// machine only stretches it, which loosens nothing: the bound follows the time that really
/// passed, read after the count). Returns the client, the attempts, the time that passed and
/// the most attempts the backoff allows in it.
async fn watch_reconnects<R: Runtime>(
    rt: &Instrumented<R>,
    addr: std::net::SocketAddr,
    pool_size: usize,
    at_least: usize,
) -> (TcpClient<Hello>, usize, Duration, usize) {
    let started = rt.now();
    let cli = TcpClientBuilder::new(addr)
        .pool_size(pool_size)
        .reconnect_interval(STORM_INTERVAL)
        .max_reconnect_attempts(None)
        .start_with(
            rt.clone(),
            LengthDelimited::hello(),
            TestListener::echo(&Recorder::new()).factory(),
        )
        .expect("client");
    let counters = rt.counters.clone();
    eventually(rt, "connect attempts", || {
        counters.connects.load(Ordering::SeqCst) >= at_least
    })
    .await;
    rt.timer(started + Duration::from_millis(300)).await;
    let attempts = rt.counters.connects.load(Ordering::SeqCst);
    let elapsed = rt.now() - started;
    (
        cli,
        attempts,
        elapsed,
        backoff_bound(STORM_INTERVAL, elapsed),
    )
}

/// The most connect attempts a client with reconnect interval `interval` may make in
/// `elapsed`: attempt k+1 comes at least `interval` × (1 + 2 + ... + k) after the first.
fn backoff_bound(interval: Duration, elapsed: Duration) -> usize {
    let mut bound = 1;
    let mut waited = interval;
    while waited <= elapsed {
        bound += 1;
        waited += interval * bound as u32;
    }
    bound
}

/// A server that accepts every connection and drops it at once (here `on_open` refuses it; a
/// refused TLS client certificate does the same) gets the client's backoff too: a session that
/// closes within the reconnect interval counts as a failed attempt, not as a success that
/// resets the backoff.
pub async fn no_reconnect_storm_against_a_dropping_server<R: Runtime>(rt: R) {
    let rt = Instrumented::new(rt);
    let server_rec = Recorder::new();
    let srv = TcpServer::builder()
        .serve_with(rt.clone(), LengthDelimited::hello(), {
            let listener = Arc::new(TestListener {
                refuse: true,
                ..TestListener::silent(&server_rec)
            });
            move |_: &Session<Hello>| Ok(listener.clone())
        })
        .expect("server");
    let (cli, attempts, elapsed, bound) = watch_reconnects(&rt, srv.local_addr(), 1, 3).await;
    // One more than a refusing server allows: the first session's short life is the first
    // failure, and it came after a successful connect.
    assert!(
        attempts <= bound + 1,
        "{attempts} connects in {elapsed:?}, at most {} expected",
        bound + 1
    );
    within(&rt, "cli close", cli.close()).await;
    within(&rt, "srv close", srv.close()).await;
}

/// A server that accepts nothing and whose backlog is full makes connects hang: the client's
/// connect timeout ends each attempt.
pub async fn client_connect_timeout<R: Runtime>(rt: R) {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    listener.bind(&localhost().into()).expect("bind");
    listener.listen(0).expect("listen");
    let addr = listener
        .local_addr()
        .expect("addr")
        .as_socket()
        .expect("inet");
    // Fill the accept queue until a connect hangs.
    let mut held = Vec::new();
    let mut hung = false;
    for _ in 0..64 {
        match runtime::timeout(&rt, Duration::from_millis(200), rt.connect(addr, None)).await {
            Ok(Ok(stream)) => held.push(stream),
            Ok(Err(err)) => panic!("connect failed: {err}"),
            Err(_) => {
                hung = true;
                break;
            }
        }
    }
    assert!(hung, "the backlog never filled");
    let cli = TcpClientBuilder::new(addr)
        .connect_timeout(Duration::from_millis(100))
        .reconnect_interval(Duration::from_millis(5))
        .max_reconnect_attempts(Some(2))
        .start_with(
            rt.clone(),
            LengthDelimited::hello(),
            TestListener::echo(&Recorder::new()).factory(),
        )
        .expect("client");
    assert!(within(&rt, "give up", cli.wait_for_sessions(1))
        .await
        .is_err());
    let last = cli.last_connect_error().expect("error");
    assert!(
        matches!(&*last, Error::ConnectTimeout { timeout, .. } if *timeout == Duration::from_millis(100)),
        "{last:?}"
    );
    within(&rt, "cli close", cli.close()).await;
}

/// A peer that sends nothing for longer than the read timeout is closed with `ReadTimeout`.
pub async fn read_timeout_closes_silent_peer<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let listener = Arc::new(TestListener::echo(&rec));
    let srv = TcpServer::builder()
        .serve_with(
            rt.clone(),
            LengthDelimited::hello(),
            move |s: &Session<Hello>| {
                s.configure(|c| c.read_timeout(Duration::from_millis(100)))?;
                // Cron ticks more often than the read timeout: they must not count as the
                // peer's activity.
                s.configure(|c| c.cron_period(Duration::from_millis(20)))?;
                Ok(listener.clone())
            },
        )
        .expect("server");
    let started = rt.now();
    let mut raw = rt.connect(srv.local_addr(), None).await.expect("connect");
    // Activity keeps it open: one frame, answered.
    write_all(&mut raw, &hello_frame(b"ping"))
        .await
        .expect("write");
    assert_eq!(
        within(&rt, "echo", read_hello_frame(&mut raw))
            .await
            .expect("echo"),
        b"ping"
    );
    // Then silence.
    let mut rest = Vec::new();
    within(&rt, "closed for silence", raw.read_to_end(&mut rest))
        .await
        .expect("end");
    assert!(rt.now() - started >= Duration::from_millis(100));
    rec.wait(&rt, "close", |e| {
        e.iter().any(|r| matches!(r, Rec::Close(_)))
    })
    .await;
    let events = rec.events();
    assert!(
        events
            .iter()
            .any(|r| matches!(r, Rec::Error(_, e) if e.kind == ErrorKind::ReadTimeout)),
        "{events:?}"
    );
    within(&rt, "srv close", srv.close()).await;
}

/// A handler that never returns.
#[derive(Debug)]
struct Stuck(Arc<Recorder>);
impl EventListener<Hello> for Stuck {
    async fn on_message(&self, session: &Session<Hello>, pkg: Bytes) {
        self.0.push(Rec::Msg(session.id(), pkg));
        futures_lite::future::pending::<()>().await;
    }

    async fn on_close(&self, session: &Session<Hello>) {
        self.0.push(Rec::Close(session.id()));
    }
}

/// Closing a server whose handler is stuck cancels the handler after the close-wait:
/// `close()` returns and the session still gets `on_close`.
pub async fn stuck_handler_cancelled_after_close_wait<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let stuck = Arc::new(Stuck(rec.clone()));
    let srv = TcpServer::builder()
        .serve_with(
            rt.clone(),
            LengthDelimited::hello(),
            move |s: &Session<Hello>| {
                s.configure(|c| c.close_wait(Duration::from_millis(50)))?;
                Ok(stuck.clone())
            },
        )
        .expect("server");
    let mut raw = rt.connect(srv.local_addr(), None).await.expect("connect");
    write_all(&mut raw, &hello_frame(b"hang"))
        .await
        .expect("write");
    rec.wait_msgs(&rt, 1).await;
    within(&rt, "server close", srv.close()).await;
    assert!(
        matches!(rec.events().last(), Some(Rec::Close(_))),
        "{:?}",
        rec.events()
    );
    assert_eq!(srv.session_count(), 0);
}

/// Sessions work with any codec: with `Lines`, CRLF and LF lines are delivered, and a last
/// line without a newline is delivered at the end of the stream.
pub async fn lines_codec_session<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let srv = TcpServer::builder()
        .serve_with(rt.clone(), Lines::new(), Probe::new(&rec, true).factory())
        .expect("server");
    let mut raw = rt.connect(srv.local_addr(), None).await.expect("connect");
    raw.write_all(b"alpha\r\nbeta\ngam").await.expect("write");
    raw.close().await.expect("shutdown");
    let mut echoed = Vec::new();
    within(&rt, "echoes", raw.read_to_end(&mut echoed))
        .await
        .expect("read");
    assert_eq!(echoed, b"alpha\nbeta\ngam\n");
    rec.wait(&rt, "close", |e| {
        e.iter().any(|r| matches!(r, Rec::Close(_)))
    })
    .await;
    let events = rec.events();
    assert_eq!(payloads(&events), ["alpha", "beta", "gam"]);
    assert_eq!(
        events.len(),
        5,
        "open, 3 lines, close; no on_error: {events:?}"
    );
    within(&rt, "srv close", srv.close()).await;
}

/// The codec's own limit is the session's: a 4,200-byte line (over the 4 KiB default of
/// sessions, under the 64 KiB of `Lines`) is echoed, and a longer line than the codec's limit
/// closes the session with `FrameTooLarge` naming that limit.
pub async fn codec_limit_is_the_session_limit<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let codec = Lines::new().with_max_line_len(8 * 1024);
    let srv = TcpServer::builder()
        .serve(rt.clone(), codec, Probe::new(&rec, true))
        .expect("server");
    let mut raw = rt.connect(srv.local_addr(), None).await.expect("connect");
    let line = "x".repeat(4200);
    raw.write_all(format!("{line}\n").as_bytes())
        .await
        .expect("write");
    let mut echoed = vec![0; line.len() + 1];
    within(&rt, "echo", raw.read_exact(&mut echoed))
        .await
        .expect("read");
    assert_eq!(&echoed[..line.len()], line.as_bytes());
    raw.write_all("y".repeat(9000).as_bytes())
        .await
        .expect("write");
    rec.wait(&rt, "the too-long line's error", |e| {
        e.iter().any(|r| matches!(r, Rec::Error(..)))
    })
    .await;
    let events = rec.events();
    let err = events
        .iter()
        .find_map(|r| match r {
            Rec::Error(_, err) => Some(err.clone()),
            _ => None,
        })
        .expect("an error");
    // The codec saw it first: its limit counts the line without its ending.
    assert!(
        err.frame
            .is_some_and(|(len, max)| max == 8 * 1024 && len > max),
        "{err:?}"
    );
    within(&rt, "srv close", srv.close()).await;
}

/// Dropping a server (without `close`) stops it and closes its sessions; dropping a client
/// closes its sessions too.
pub async fn dropping_endpoints_closes_sessions<R: Runtime>(rt: R) {
    let Setup {
        srv,
        rec,
        cli,
        client_rec,
    } = setup(&rt, true, 2).await;
    let addr = srv.local_addr();
    let mut raw = rt.connect(addr, None).await.expect("connect");
    rec.wait(&rt, "three opens", |e| e.len() == 3).await;
    drop(cli);
    rec.wait(&rt, "client sessions closed", |e| {
        e.iter().filter(|r| matches!(r, Rec::Close(_))).count() == 2
    })
    .await;
    client_rec
        .wait(&rt, "client on_close", |e| {
            e.iter().filter(|r| matches!(r, Rec::Close(_))).count() == 2
        })
        .await;
    drop(srv);
    let mut rest = Vec::new();
    within(&rt, "raw peer sees the end", raw.read_to_end(&mut rest))
        .await
        .expect("clean end");
    rec.wait(&rt, "all closed", |e| {
        e.iter().filter(|r| matches!(r, Rec::Close(_))).count() == 3
    })
    .await;
}

/// A codec that hands out a frame without consuming input (a bug that would spin).
#[derive(Debug)]
struct Stubborn;

impl getty_core::codec::Codec for Stubborn {
    type Inbound = Bytes;
    type Outbound = [u8];

    fn decode(
        &self,
        _buf: &mut bytes::BytesMut,
    ) -> Result<getty_core::codec::Decoded<Bytes>, getty_core::CodecError> {
        Ok(getty_core::codec::Decoded::Frame(Bytes::new()))
    }

    fn encode(&self, pkg: &[u8], dst: &mut bytes::BytesMut) -> Result<(), getty_core::CodecError> {
        dst.extend_from_slice(pkg);
        Ok(())
    }
}

/// A codec that returns frames without consuming input closes its session with a codec error
/// instead of spinning.
pub async fn non_consuming_codec_is_an_error<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let srv = TcpServer::builder()
        .serve_with(rt.clone(), Stubborn, Probe::new(&rec, false).factory())
        .expect("server");
    let mut raw = rt.connect(srv.local_addr(), None).await.expect("connect");
    write_all(&mut raw, b"anything").await.expect("write");
    rec.wait(&rt, "close", |e| {
        e.iter().any(|r| matches!(r, Rec::Close(_)))
    })
    .await;
    let events = rec.events();
    assert_eq!(count_msgs(&events), 0, "{events:?}");
    assert!(
        events
            .iter()
            .any(|r| matches!(r, Rec::Error(_, e) if e.kind == ErrorKind::Codec && e.text.contains("without consuming"))),
        "{events:?}"
    );
    within(&rt, "srv close", srv.close()).await;
}

/// The hello framing, except that encoding `boom` writes half a header and panics.
#[derive(Debug)]
struct PanicOnBoom(LengthDelimited);

impl getty_core::codec::Codec for PanicOnBoom {
    type Inbound = Bytes;
    type Outbound = [u8];

    fn decode(
        &self,
        buf: &mut bytes::BytesMut,
    ) -> Result<getty_core::codec::Decoded<Bytes>, getty_core::CodecError> {
        self.0.decode(buf)
    }

    fn encode(&self, pkg: &[u8], dst: &mut bytes::BytesMut) -> Result<(), getty_core::CodecError> {
        if pkg == b"boom" {
            dst.extend_from_slice(&[0xff, 0xff]);
            panic!("encoder panics half-way");
        }
        if pkg == b"fail" {
            dst.extend_from_slice(&[0xee]);
            return Err(getty_core::CodecError::invalid("refused"));
        }
        self.0.encode(pkg, dst)
    }
}

/// An encoder that fails or panics half-way through a package leaves nothing of it in the
/// write queue: the packages around it reach the peer intact.
pub async fn failed_encode_leaves_the_stream_intact<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let probe = Arc::new(Probe {
        rec: rec.clone(),
        echo: false,
    });
    let (cli, session, mut peer) = client_with_raw_peer(
        &rt,
        PanicOnBoom(LengthDelimited::hello()),
        move |_: &Session<PanicOnBoom>| Ok(probe.clone()),
    )
    .await;
    session.try_send(b"before").expect("send");
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = session.try_send(b"boom");
    }));
    assert!(panicked.is_err());
    assert!(matches!(session.try_send(b"fail"), Err(Error::Codec(_))));
    session.try_send(b"after").expect("send after a panic");
    for want in [&b"before"[..], b"after"] {
        let got = within(&rt, "frame", read_hello_frame(&mut peer))
            .await
            .expect("read");
        assert_eq!(got, want);
    }
    // The peer can read the bytes before the driver has counted them.
    eventually(&rt, "two packages counted", || {
        session.stats().pkgs_written == 2
    })
    .await;
    within(&rt, "cli close", cli.close()).await;
}

/// `Frame::payload` frames a shared payload like `try_send` would (large ones without copying
/// them), in order with other writes; a payload the codec refuses queues nothing.
pub async fn payload_frames_share_bytes<R: Runtime>(rt: R) {
    let (cli, session, mut peer) = client_with_raw_peer(
        &rt,
        LengthDelimited::hello().with_max_frame_len(256 * 1024),
        TestListener::silent(&Recorder::new()).factory(),
    )
    .await;
    let big = Bytes::from((0..200_000u32).map(|i| i as u8).collect::<Vec<u8>>());
    let small = Bytes::from_static(b"small payload, copied");
    assert_eq!(session.try_send(b"first").expect("send"), 9);
    assert_eq!(
        session
            .try_send_frame(Frame::payload(big.clone()))
            .expect("big"),
        200_004
    );
    assert_eq!(
        session
            .try_send_frame(Frame::payload(small.clone()))
            .expect("small"),
        4 + small.len()
    );
    let too_big = Bytes::from(vec![0u8; 300 * 1024]);
    assert!(matches!(
        session.try_send_frame(Frame::payload(too_big)),
        Err(Error::Codec(getty_core::CodecError::FrameTooLarge { .. }))
    ));
    session
        .send_frame(Frame::payload(big.clone()))
        .await
        .expect("feed");
    for want in [&b"first"[..], &big, &small, &big] {
        let got = within(&rt, "frame", read_hello_frame(&mut peer))
            .await
            .expect("read");
        assert!(got == want, "a frame of {} bytes differs", got.len());
    }
    eventually(&rt, "four packages counted", || {
        session.stats().pkgs_written == 4
    })
    .await;
    within(&rt, "cli close", cli.close()).await;
}

/// A client's event stream tells connects, failed connects (with the retry delay),
/// disconnections and giving up, in order, and ends when the client is closed or gives up.
pub async fn client_events_tell_connects_failures_and_giving_up<R: Runtime>(rt: R) {
    use getty_core::endpoint::ClientEvent;
    let addr = free_addr(&rt).await;
    let rec = Recorder::new();
    let cli = TcpClientBuilder::new(addr)
        .reconnect_interval(Duration::from_millis(10))
        .max_reconnect_attempts(None)
        .start(
            rt.clone(),
            LengthDelimited::hello(),
            TestListener::silent(&rec),
        )
        .expect("client");
    let mut events = cli.events();
    match within(&rt, "a failed connect", events.recv()).await {
        Some(ClientEvent::ConnectFailed {
            attempt, retry_in, ..
        }) => assert!(attempt >= 1 && retry_in >= Duration::from_millis(10)),
        other => panic!("expected ConnectFailed: {other:?}"),
    }
    let srv_rec = Recorder::new();
    let srv = TcpServer::builder()
        .addr(addr)
        .serve(
            rt.clone(),
            LengthDelimited::hello(),
            TestListener::silent(&srv_rec),
        )
        .expect("server");
    let session = loop {
        match within(&rt, "the connect", events.recv()).await {
            Some(ClientEvent::ConnectFailed { .. }) => continue,
            Some(ClientEvent::Connected(session)) => break session,
            other => panic!("expected Connected: {other:?}"),
        }
    };
    srv_rec
        .wait(&rt, "the server session", |e| !e.is_empty())
        .await;
    srv_rec.sessions()[0].close();
    match within(&rt, "the disconnect", events.recv()).await {
        Some(ClientEvent::Disconnected { id }) => assert_eq!(id, session.id()),
        other => panic!("expected Disconnected: {other:?}"),
    }
    within(&rt, "cli close", cli.close()).await;
    // Closed: whatever came meanwhile (a reconnect), then the end.
    while let Some(event) = within(&rt, "the end", events.recv()).await {
        assert!(
            matches!(
                event,
                ClientEvent::Connected(_) | ClientEvent::Disconnected { .. }
            ),
            "{event:?}"
        );
    }
    assert_eq!(events.missed(), 0);
    within(&rt, "srv close", srv.close()).await;

    // Giving up is the last event.
    let nowhere = free_addr(&rt).await;
    let cli = TcpClientBuilder::new(nowhere)
        .reconnect_interval(Duration::from_millis(5))
        .max_reconnect_attempts(Some(2))
        .start(
            rt.clone(),
            LengthDelimited::hello(),
            TestListener::silent(&rec),
        )
        .expect("client");
    let mut events = cli.events();
    let mut seen = Vec::new();
    while let Some(event) = within(&rt, "events until giving up", events.recv()).await {
        seen.push(event);
    }
    assert!(
        matches!(seen.last(), Some(ClientEvent::GaveUp(_))),
        "{seen:?}"
    );
    assert!(seen[..seen.len() - 1]
        .iter()
        .all(|e| matches!(e, ClientEvent::ConnectFailed { .. })));
}
