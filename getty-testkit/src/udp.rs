//! UDP scenarios: the endpoint (one session, many peers) and the connected-UDP client pool.
//! Peers are real UDP sockets on 127.0.0.1 from the runtime under test.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::instrumented::Instrumented;
use super::support::*;
use getty_core::codec::{LengthDelimited, RawBytes};
use getty_core::endpoint::{Client, UdpClientBuilder, UdpEndpoint, UdpEndpointBuilder};
use getty_core::runtime::{recv_from, send_to, Runtime, UdpSocket};
use getty_core::ErrorKind;
use getty_core::{Error, Session};

/// A hello-framing UDP endpoint on a free port.
async fn endpoint<R: Runtime>(rt: &R, listener: TestListener) -> UdpEndpoint<Hello> {
    endpoint_at(rt, localhost(), listener).await
}

async fn endpoint_at<R: Runtime>(
    rt: &R,
    addr: SocketAddr,
    listener: TestListener,
) -> UdpEndpoint<Hello> {
    UdpEndpointBuilder::new()
        .addr(addr)
        .bind_with(rt.clone(), LengthDelimited::hello(), listener.factory())
        .await
        .expect("endpoint binds")
}

/// A connected-UDP client pool of `n` sessions (short connect-ping wait and backoff).
fn udp_client<R: Runtime>(
    rt: &R,
    addr: SocketAddr,
    n: usize,
    listener: TestListener,
) -> Client<Hello> {
    UdpClientBuilder::new(addr)
        .pool_size(n)
        .connect_ping_wait(Duration::from_millis(50))
        .reconnect_interval(Duration::from_millis(20))
        .max_reconnect_attempts(None)
        .start_with(rt.clone(), LengthDelimited::hello(), listener.factory())
        .expect("client starts")
}

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A raw UDP peer: a socket of the runtime under test on a free port.
fn raw_peer<R: Runtime>(rt: &R) -> R::Udp {
    rt.bind_udp(localhost()).expect("bind peer")
}

/// Sends one datagram from a raw peer.
async fn send<R: Runtime>(rt: &R, peer: &R::Udp, bytes: &[u8], to: SocketAddr) {
    within(rt, "send", send_to(peer, bytes, to))
        .await
        .expect("send");
}

/// Receives one datagram at a raw peer: `(bytes, sender)`.
async fn recv<R: Runtime>(rt: &R, peer: &R::Udp) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0; 64 * 1024];
    let (n, from) = within(rt, "a datagram", recv_from(peer, &mut buf))
        .await
        .expect("receive");
    buf.truncate(n);
    (buf, from)
}

/// Three peers send interleaved requests at once; every reply reaches the peer that asked,
/// from the endpoint's address, with that peer's own payloads in order.
pub async fn udp_replies_reach_the_right_peer<R: Runtime>(rt: R) {
    const PER_PEER: usize = 20;
    let rec = Recorder::new();
    let ep = endpoint(&rt, TestListener::echo(&rec)).await;
    let peers: Vec<R::Udp> = (0..3).map(|_| raw_peer(&rt)).collect();
    for i in 0..PER_PEER {
        for (p, peer) in peers.iter().enumerate() {
            let body = format!("peer {p} request {i}");
            send(&rt, peer, &hello_frame(body.as_bytes()), ep.local_addr()).await;
        }
    }
    for (p, peer) in peers.iter().enumerate() {
        for i in 0..PER_PEER {
            let (reply, from) = recv(&rt, peer).await;
            assert_eq!(from, ep.local_addr());
            let body = format!("peer {p} request {i}");
            assert_eq!(reply, hello_frame(body.as_bytes()), "peer {p} reply {i}");
        }
    }
    // A send is counted right after the system call that delivered it: the reply can reach
    // its peer a moment before the endpoint's counter moves.
    let session = ep.session().clone();
    eventually(&rt, "the last send counted", || {
        session.stats().pkgs_written == 3 * PER_PEER as u64
    })
    .await;
    let stats = ep.session().stats();
    assert_eq!(stats.pkgs_read, 3 * PER_PEER as u64);
    assert_eq!(stats.pkgs_written, 3 * PER_PEER as u64);
    assert_eq!(ep.session().peer_addr(), None);
    assert!(ep.session().is_datagram());
    ep.close().await;
}

/// A `connect-ping` datagram (a raw one, and a UDP client's) never reaches the listener and is
/// not counted; the datagrams around it are delivered.
pub async fn udp_connect_ping_is_not_delivered<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let ep = endpoint(&rt, TestListener::echo(&rec)).await;
    let peer = raw_peer(&rt);
    send(&rt, &peer, b"connect-ping", ep.local_addr()).await;
    send(&rt, &peer, &hello_frame(b"after the ping"), ep.local_addr()).await;
    assert_eq!(recv(&rt, &peer).await.0, hello_frame(b"after the ping"));

    let client_rec = Recorder::new();
    let cli = udp_client(&rt, ep.local_addr(), 1, TestListener::silent(&client_rec));
    within(&rt, "client", cli.wait_for_sessions(1))
        .await
        .expect("client connects");
    let session = cli.sessions()[0].clone();
    session.try_send(b"from the client").expect("send");
    client_rec.wait_msgs(&rt, 1).await;

    assert_eq!(
        payloads(&rec.events()),
        vec![
            Bytes::from_static(b"after the ping"),
            Bytes::from_static(b"from the client")
        ]
    );
    let expected =
        (hello_frame(b"after the ping").len() + hello_frame(b"from the client").len()) as u64;
    assert_eq!(
        ep.session().stats().bytes_read,
        expected,
        "pings are not counted"
    );
    assert_eq!(ep.session().stats().pkgs_dropped, 0);
    cli.close().await;
    ep.close().await;
}

/// A datagram longer than `max_msg_len` is dropped whole and counted, never delivered cut
/// short (with a codec that takes any bytes as a package, as `RawBytes` does, a truncated
/// datagram would look valid); one of exactly `max_msg_len` bytes is delivered whole. The
/// endpoint keeps serving and reports no error.
pub async fn udp_oversize_datagram_dropped<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let listener = Arc::new(Probe {
        rec: rec.clone(),
        echo: true,
    });
    let ep = UdpEndpointBuilder::new()
        .bind_with(rt.clone(), RawBytes, move |_: &Session<RawBytes>| {
            Ok(listener.clone())
        })
        .await
        .expect("endpoint binds");
    ep.session().configure(|c| c.max_msg_len(100)).expect("max");
    let peer = raw_peer(&rt);
    send(&rt, &peer, &[7; 101], ep.local_addr()).await;
    send(&rt, &peer, &[7; 150], ep.local_addr()).await;
    send(&rt, &peer, &[8; 100], ep.local_addr()).await;
    assert_eq!(recv(&rt, &peer).await.0, vec![8; 100]);
    let stats = ep.session().stats();
    assert_eq!(stats.pkgs_dropped, 2);
    assert_eq!(stats.pkgs_read, 1);
    assert!(!ep.session().is_closed());
    assert_eq!(payloads(&rec.events()), vec![Bytes::from(vec![8; 100])]);
    assert!(!rec
        .events()
        .iter()
        .any(|r| matches!(r, Rec::Error(..) | Rec::Close(..))));
    ep.close().await;
}

/// Datagrams the codec refuses (a frame cut short, a length beyond the datagram) are dropped
/// whole and counted; the next good one is served.
pub async fn udp_garbage_datagram_skipped<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let ep = endpoint(&rt, TestListener::echo(&rec)).await;
    let peer = raw_peer(&rt);
    // Declares 1,000 bytes, carries 3.
    send(&rt, &peer, &[0xe8, 0x03, 0, 0, 1, 2, 3], ep.local_addr()).await;
    // One good frame followed by half a header: nothing of it is delivered.
    let mut mixed = hello_frame(b"good");
    mixed.extend_from_slice(&[9, 0]);
    send(&rt, &peer, &mixed, ep.local_addr()).await;
    // Two whole frames in one datagram: both are delivered, in order.
    let mut two = hello_frame(b"one");
    two.extend_from_slice(&hello_frame(b"two"));
    send(&rt, &peer, &two, ep.local_addr()).await;
    assert_eq!(recv(&rt, &peer).await.0, hello_frame(b"one"));
    assert_eq!(recv(&rt, &peer).await.0, hello_frame(b"two"));
    let stats = ep.session().stats();
    assert_eq!(stats.pkgs_dropped, 2);
    assert_eq!(
        payloads(&rec.events()),
        vec![Bytes::from_static(b"one"), Bytes::from_static(b"two")]
    );
    assert!(!ep.session().is_closed());
    ep.close().await;
}

/// A client started before its server exists fails its connect-pings (ICMP "port
/// unreachable"), keeps retrying, and connects once the server is up.
pub async fn udp_client_retries_until_server_starts<R: Runtime>(rt: R) {
    let rt = Instrumented::new(rt);
    let addr = {
        let probe = raw_peer(&rt);
        probe.local_addr().expect("addr")
    };
    let client_rec = Recorder::new();
    let cli = udp_client(&rt, addr, 1, TestListener::silent(&client_rec));
    let counters = rt.counters.clone();
    eventually(&rt, "two failed connects", || {
        counters.connects.load(Ordering::SeqCst) >= 2
    })
    .await;
    assert_eq!(cli.session_count(), 0);
    let err = cli.last_connect_error().expect("a connect error");
    assert!(
        matches!(&*err, Error::Connect { source, .. } if source.kind() == std::io::ErrorKind::ConnectionRefused),
        "{err:?}"
    );

    let rec = Recorder::new();
    let ep = endpoint_at(&rt, addr, TestListener::echo(&rec)).await;
    within(&rt, "client", cli.wait_for_sessions(1))
        .await
        .expect("client connects");
    let session = cli.sessions()[0].clone();
    assert_eq!(session.peer_addr(), Some(addr));
    session.try_send(b"finally").expect("send");
    client_rec.wait_msgs(&rt, 1).await;
    assert_eq!(
        payloads(&client_rec.events()),
        vec![Bytes::from_static(b"finally")]
    );
    cli.close().await;
    ep.close().await;
}

/// Both sides' statistics agree with what was sent: packages and bytes, each way.
pub async fn udp_statistics_match<R: Runtime>(rt: R) {
    const N: usize = 50;
    let rec = Recorder::new();
    let ep = endpoint(&rt, TestListener::echo(&rec)).await;
    let client_rec = Recorder::new();
    let cli = udp_client(&rt, ep.local_addr(), 1, TestListener::silent(&client_rec));
    within(&rt, "client", cli.wait_for_sessions(1))
        .await
        .expect("client connects");
    let session = cli.sessions()[0].clone();
    let before = session.last_active();
    let mut bytes = 0;
    for i in 0..N {
        let pkg = payload(i);
        let written = session.send_and_flush(&pkg).await.expect("write");
        assert_eq!(written, 4 + pkg.len());
        bytes += written as u64;
    }
    client_rec.wait_msgs(&rt, N).await;
    // The endpoint counts a send right after the system call that delivered it.
    let server_session = ep.session().clone();
    eventually(&rt, "the last send counted", || {
        server_session.stats().pkgs_written == N as u64
    })
    .await;
    let client = session.stats();
    let server = ep.session().stats();
    assert_eq!(
        (client.pkgs_written, client.bytes_written),
        (N as u64, bytes)
    );
    assert_eq!((server.pkgs_read, server.bytes_read), (N as u64, bytes));
    assert_eq!(
        (server.pkgs_written, server.bytes_written),
        (N as u64, bytes)
    );
    assert_eq!((client.pkgs_read, client.bytes_read), (N as u64, bytes));
    assert_eq!((client.pkgs_dropped, server.pkgs_dropped), (0, 0));
    assert!(session.last_active() > before, "active time moves");
    cli.close().await;
    ep.close().await;
}

/// Closing an endpoint releases its port: binding the same address right after works.
pub async fn udp_close_releases_port<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let ep = endpoint(&rt, TestListener::echo(&rec)).await;
    let addr = ep.local_addr();
    ep.close().await;
    assert!(ep.session().is_closed());
    drop(ep);
    let rec = Recorder::new();
    let again = endpoint_at(&rt, addr, TestListener::echo(&rec)).await;
    let peer = raw_peer(&rt);
    send(&rt, &peer, &hello_frame(b"again"), addr).await;
    assert_eq!(recv(&rt, &peer).await.0, hello_frame(b"again"));
    again.close().await;
}

/// Writes that cannot be addressed fail clearly: no peer on an endpoint, a package too large
/// for one datagram, an address on a stream session.
pub async fn udp_unaddressable_writes_are_errors<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let ep = endpoint(&rt, TestListener::silent(&rec)).await;
    let session = ep.session();
    assert!(matches!(
        session.try_send(b"where to?"),
        Err(Error::Unsupported { .. })
    ));
    let peer = raw_peer(&rt);
    let to = peer.local_addr().expect("addr");
    let huge = vec![0; 70_000];
    assert!(matches!(
        session.to(to).try_send(&huge),
        Err(Error::DatagramTooLarge {
            len: 70_004,
            max: 65_507
        })
    ));
    // The refused package left nothing behind: the next one arrives alone and whole.
    session.to(to).try_send(b"fits").expect("send");
    assert_eq!(recv(&rt, &peer).await.0, hello_frame(b"fits"));

    let (_cli, tcp, _raw) = client_with_raw_peer(
        &rt,
        LengthDelimited::hello(),
        TestListener::silent(&rec).factory(),
    )
    .await;
    assert!(matches!(
        tcp.to(to).try_send(b"x"),
        Err(Error::Unsupported { .. })
    ));
    ep.close().await;
}

/// With `max_msg_len` raised, datagrams up to the UDP maximum arrive whole.
pub async fn udp_largest_datagrams_arrive_whole<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let listener = Arc::new(TestListener::echo(&rec));
    // Set before the endpoint starts: a receive already under way on another thread when the
    // limit grows still uses the buffer sized for the old one.
    let ep = UdpEndpointBuilder::new()
        .addr(localhost())
        .bind_with(
            rt.clone(),
            LengthDelimited::hello(),
            move |s: &Session<Hello>| {
                s.configure(|c| c.max_msg_len(64 * 1024))?;
                Ok(listener.clone())
            },
        )
        .await
        .expect("endpoint binds");
    let peer = raw_peer(&rt);
    let body: Vec<u8> = (0..65_000u32).map(|i| (i % 251) as u8).collect();
    send(&rt, &peer, &hello_frame(&body), ep.local_addr()).await;
    let (reply, _) = recv(&rt, &peer).await;
    assert_eq!(reply.len(), body.len() + 4);
    assert_eq!(reply, hello_frame(&body));
    assert_eq!(ep.session().stats().pkgs_dropped, 0);
    ep.close().await;
}

/// The endpoint's timers work as a stream session's: `on_cron` ticks at the cron period, and
/// a read timeout with no datagram closes the session with `ReadTimeout` (`on_error`, then
/// `on_close`), releasing the socket.
pub async fn udp_cron_and_read_timeout<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let listener = Arc::new(TestListener::silent(&rec));
    let ep = UdpEndpointBuilder::new()
        .bind_with(
            rt.clone(),
            LengthDelimited::hello(),
            move |s: &Session<Hello>| {
                // The cron period is a session setting, applied from the next tick: set it here.
                s.configure(|c| c.cron_period(Duration::from_millis(20)))?;
                Ok(listener.clone())
            },
        )
        .await
        .expect("endpoint binds");
    let session = ep.session().clone();
    rec.wait(&rt, "two cron ticks", |events| {
        events.iter().filter(|r| matches!(r, Rec::Cron(..))).count() >= 2
    })
    .await;
    session
        .configure(|c| c.read_timeout(Duration::from_millis(100)))
        .expect("read timeout");
    rec.wait_closed(&rt, session.id()).await;
    let events = rec.of(session.id());
    assert!(
        events
            .iter()
            .any(|r| matches!(r, Rec::Error(_, e) if e.kind == ErrorKind::ReadTimeout)),
        "{events:?}"
    );
    assert!(matches!(events.last(), Some(Rec::Close(_))));
    within(&rt, "endpoint closed", ep.close()).await;
    // The socket is released: the port can be bound again.
    let again = rt.bind_udp(ep.local_addr()).expect("rebind");
    drop(again);
}

/// A datagram that makes `on_datagram` panic is lost, logged, and only that: the endpoint
/// keeps serving every peer. On a connected client session a panic closes the session.
pub async fn udp_panicking_handler_keeps_the_endpoint<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let mut listener = TestListener::echo(&rec);
    listener.panic_on = Some(Bytes::from_static(b"boom"));
    let ep = endpoint(&rt, listener).await;
    let peer = raw_peer(&rt);
    send(&rt, &peer, &hello_frame(b"boom"), ep.local_addr()).await;
    send(&rt, &peer, &hello_frame(b"still here"), ep.local_addr()).await;
    assert_eq!(recv(&rt, &peer).await.0, hello_frame(b"still here"));
    assert!(!ep.session().is_closed());

    let client_rec = Recorder::new();
    let mut client_listener = TestListener::silent(&client_rec);
    client_listener.panic_on = Some(Bytes::from_static(b"boom"));
    let cli = udp_client(&rt, ep.local_addr(), 1, client_listener);
    within(&rt, "client", cli.wait_for_sessions(1))
        .await
        .expect("client connects");
    let first = cli.sessions()[0].clone();
    // The endpoint panics on the request (nothing comes back); send a reply-worthy one.
    first.try_send(b"boom").expect("send");
    first.try_send(b"echoed").expect("send");
    client_rec.wait_msgs(&rt, 1).await;
    // The endpoint echoes "boom" from a peer whose handler does not panic on it... the client
    // does: its session closes with HandlerPanic and the pool replaces it.
    ep.session()
        .to(first.local_addr())
        .try_send(b"boom")
        .expect("send to the client");
    client_rec.wait_closed(&rt, first.id()).await;
    assert!(client_rec
        .of(first.id())
        .iter()
        .any(|r| matches!(r, Rec::Error(_, e) if e.kind == ErrorKind::HandlerPanic)));
    within(&rt, "a new client session", async {
        loop {
            let listener = cli.wait_for_sessions(1);
            listener.await.expect("reconnects");
            if cli.sessions()[0].id() != first.id() {
                break;
            }
            rt.timer(rt.now() + Duration::from_millis(1)).await;
        }
    })
    .await;
    cli.close().await;
    ep.close().await;
}
