//! Scenarios for the runtime seam itself: what every adapter must do, checked once for all.

use std::io::{self, IoSlice};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use event_listener::Event;
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::support::{free_addr, within};
use getty_core::runtime::{self, Runtime, Timer, UdpSocket};

fn localhost() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// A connected pair: (client side, accepted side).
async fn pair<R: Runtime>(rt: &R) -> (R::Tcp, R::Tcp) {
    let listener = rt.listen(localhost(), false).expect("listen");
    let addr = rt.listener_addr(&listener).expect("addr");
    let (client, accepted) = within(
        rt,
        "connect and accept",
        future::zip(rt.connect(addr, None), rt.accept(&listener)),
    )
    .await;
    (client.expect("connect"), accepted.expect("accept").0)
}

/// Bytes flow both ways between a connected and an accepted stream; `close` sends the end of
/// stream.
pub async fn seam_tcp_round_trip<R: Runtime>(rt: R) {
    let (mut client, mut server) = pair(&rt).await;
    client.write_all(b"ping").await.expect("write");
    let mut buf = [0; 4];
    within(&rt, "ping", server.read_exact(&mut buf))
        .await
        .expect("read");
    assert_eq!(&buf, b"ping");
    server.write_all(b"pong").await.expect("write");
    within(&rt, "pong", client.read_exact(&mut buf))
        .await
        .expect("read");
    assert_eq!(&buf, b"pong");
    client.close().await.expect("close");
    let mut rest = Vec::new();
    within(&rt, "end of stream", server.read_to_end(&mut rest))
        .await
        .expect("eof");
    assert!(rest.is_empty());
}

/// A vectored write of small slices is one write that takes them all.
pub async fn seam_vectored_write_is_one_write<R: Runtime>(rt: R) {
    let (mut client, mut server) = pair(&rt).await;
    let parts = [
        IoSlice::new(b"hel"),
        IoSlice::new(b"lo "),
        IoSlice::new(b"world"),
    ];
    let n = client.write_vectored(&parts).await.expect("writev");
    assert_eq!(n, 11, "one vectored write takes all three small slices");
    client.close().await.expect("close");
    let mut got = Vec::new();
    within(&rt, "read", server.read_to_end(&mut got))
        .await
        .expect("read");
    assert_eq!(got, b"hello world");
}

/// A listener can be opened again on a port whose connections sit in TIME_WAIT.
pub async fn seam_listen_again_on_port_in_time_wait<R: Runtime>(rt: R) {
    let listener = rt.listen(localhost(), false).expect("listen");
    let addr = rt.listener_addr(&listener).expect("addr");
    let (client, accepted) = future::zip(rt.connect(addr, None), rt.accept(&listener)).await;
    let (mut server, mut client) = (accepted.expect("accept").0, client.expect("connect"));
    // The server side closes first, so its end of the connection sits in TIME_WAIT.
    server.close().await.expect("close");
    let n = within(&rt, "eof", client.read(&mut [0; 1]))
        .await
        .expect("read");
    assert_eq!(n, 0);
    drop((server, client, listener));
    rt.listen(addr, false)
        .expect("listen again on the same port");
}

/// Connecting to a port nobody listens on fails with `ConnectionRefused`.
pub async fn seam_connect_refused<R: Runtime>(rt: R) {
    let addr = free_addr(&rt).await;
    let err = within(&rt, "connect", rt.connect(addr, None))
        .await
        .err()
        .expect("connect must fail");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
}

/// `connect` with a local address binds the socket to it.
pub async fn seam_connect_from_local_address<R: Runtime>(rt: R) {
    let listener = rt.listen(localhost(), false).expect("listen");
    let addr = rt.listener_addr(&listener).expect("addr");
    let local = free_addr(&rt).await;
    let (client, accepted) = within(
        &rt,
        "connect",
        future::zip(rt.connect(addr, Some(local)), rt.accept(&listener)),
    )
    .await;
    let (client, (_, peer)) = (client.expect("connect"), accepted.expect("accept"));
    assert_eq!(rt.tcp_addrs(&client).expect("addrs"), (local, addr));
    assert_eq!(peer, local);
}

/// A timer fires at its deadline (never before), stays ready until reset, and fires again at
/// the new deadline after a reset.
pub async fn seam_timer_fires_and_resets<R: Runtime>(rt: R) {
    let first = rt.now() + Duration::from_millis(20);
    let mut timer = rt.timer(first);
    within(&rt, "timer", &mut timer).await;
    assert!(rt.now() >= first);
    assert!(future::poll_once(&mut timer).await.is_some(), "stays ready");
    let second = rt.now() + Duration::from_millis(30);
    timer.reset(second);
    assert!(
        future::poll_once(&mut timer).await.is_none(),
        "pending after reset"
    );
    within(&rt, "reset timer", timer).await;
    assert!(rt.now() >= second);
}

/// `spawn` runs a detached task to completion.
pub async fn seam_spawn_runs_detached_task<R: Runtime>(rt: R) {
    let ran = Arc::new((AtomicUsize::new(0), Event::new()));
    for _ in 0..10 {
        let ran = ran.clone();
        rt.spawn(async move {
            future::yield_now().await;
            ran.0.fetch_add(1, Ordering::SeqCst);
            ran.1.notify(usize::MAX);
        });
    }
    within(&rt, "spawned tasks", async {
        loop {
            let listener = ran.1.listen();
            if ran.0.load(Ordering::SeqCst) == 10 {
                return;
            }
            listener.await;
        }
    })
    .await;
}

/// UDP sockets exchange datagrams and report the sender.
pub async fn seam_udp_round_trip<R: Runtime>(rt: R) {
    let a = rt.bind_udp(localhost()).expect("bind a");
    let b = rt.bind_udp(localhost()).expect("bind b");
    let b_addr = b.local_addr().expect("b addr");
    let n = within(&rt, "send", runtime::send_to(&a, b"datagram", b_addr))
        .await
        .expect("send");
    assert_eq!(n, 8);
    let mut buf = [0u8; 64];
    let (n, from) = within(&rt, "recv", runtime::recv_from(&b, &mut buf))
        .await
        .expect("recv");
    assert_eq!(&buf[..n], b"datagram");
    assert_eq!(from, a.local_addr().expect("a addr"));
}
