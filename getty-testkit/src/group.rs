//! Session groups: membership that follows the sessions' lives, and broadcast that never waits
//! on a slow member.

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::support::*;
use getty_core::codec::{LengthDelimited, Lines};
use getty_core::endpoint::TcpServer;
use getty_core::runtime::Runtime;
use getty_core::runtime::TcpOptions;
use getty_core::session::{Session, SessionGroup, SlowMember};
use getty_core::{BoxError, EventListener};

/// A line chat: every line goes to everyone else in the room.
struct Chat {
    room: SessionGroup<Lines>,
}

impl EventListener<Lines> for Chat {
    async fn on_open(&self, session: &Session<Lines>) -> Result<(), BoxError> {
        assert!(self.room.insert(session), "joins once");
        assert!(!self.room.insert(session), "a second insert is refused");
        Ok(())
    }

    async fn on_message(&self, session: &Session<Lines>, line: String) {
        let outcome = self.room.broadcast_except(session.id(), &line);
        assert_eq!(outcome.skipped + outcome.dropped + outcome.failed, 0);
    }
}

/// Reads one `\n`-terminated line from a raw stream.
async fn read_line<S: futures_lite::io::AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        stream.read_exact(&mut byte).await.expect("read");
        if byte[0] == b'\n' {
            return String::from_utf8(line).expect("UTF-8");
        }
        line.push(byte[0]);
    }
}

/// A group broadcasts to everyone but the sender; members leave it when they close, and the
/// server's own group lists every open session without copying while nothing changes.
pub async fn group_broadcast_and_membership<R: Runtime>(rt: R) {
    let room = SessionGroup::new();
    let srv = TcpServer::builder()
        .serve(rt.clone(), Lines::new(), Chat { room: room.clone() })
        .expect("server");
    let mut a = rt.connect(srv.local_addr(), None).await.expect("a");
    let mut b = rt.connect(srv.local_addr(), None).await.expect("b");
    let mut c = rt.connect(srv.local_addr(), None).await.expect("c");
    within(&rt, "three sessions", srv.wait_for_sessions(3))
        .await
        .expect("open");
    eventually(&rt, "three members", || room.len() == 3).await;
    let members = srv.group().members();
    assert_eq!(members.len(), 3);
    assert!(
        std::sync::Arc::ptr_eq(&members, &srv.group().members()),
        "an unchanged membership is one shared snapshot"
    );
    assert!(
        members.windows(2).all(|w| w[0].id() < w[1].id()),
        "oldest first"
    );

    a.write_all(b"hello from a\n").await.expect("write");
    assert_eq!(
        within(&rt, "b hears a", read_line(&mut b)).await,
        "hello from a"
    );
    assert_eq!(
        within(&rt, "c hears a", read_line(&mut c)).await,
        "hello from a"
    );
    b.write_all(b"hi, b here\n").await.expect("write");
    // The sender is left out: a's next line is b's, not its own.
    assert_eq!(
        within(&rt, "a hears b", read_line(&mut a)).await,
        "hi, b here"
    );
    assert_eq!(
        within(&rt, "c hears b", read_line(&mut c)).await,
        "hi, b here"
    );

    // c leaves: its session leaves the room and the server's group once it has closed.
    let c_session = members
        .iter()
        .find(|s| s.peer_addr() == rt.tcp_addrs(&c).ok().map(|(local, _)| local))
        .expect("c's session")
        .clone();
    drop(c);
    within(&rt, "c's session closed", c_session.closed()).await;
    assert!(!room.contains(c_session.id()));
    assert!(!srv.group().contains(c_session.id()));
    assert_eq!((room.len(), srv.group().len()), (2, 2));
    assert!(!std::sync::Arc::ptr_eq(&members, &srv.group().members()));
    // A closed session cannot join.
    assert!(!room.insert(&c_session));
    a.write_all(b"still here\n").await.expect("write");
    assert_eq!(
        within(&rt, "b hears a", read_line(&mut b)).await,
        "still here"
    );
    // Frames: the same bytes shared by every member, or by all but one.
    let sent = room.broadcast_frame(getty_core::session::Frame::bytes("to all\n"));
    assert_eq!(
        (sent.sent, sent.skipped + sent.dropped + sent.failed),
        (2, 0)
    );
    for (who, peer) in [("a", &mut a), ("b", &mut b)] {
        assert_eq!(within(&rt, who, read_line(peer)).await, "to all");
    }
    let a_addr = rt.tcp_addrs(&a).ok().map(|(local, _)| local);
    let a_id = room
        .members()
        .iter()
        .find(|s| s.peer_addr() == a_addr)
        .expect("a's session")
        .id();
    let sent = room.broadcast_frame_except(a_id, getty_core::session::Frame::bytes("not a\n"));
    assert_eq!(sent.sent, 1);
    assert_eq!(within(&rt, "b", read_line(&mut b)).await, "not a");

    // An explicit removal takes the close callback with it.
    let b_session = room.members()[1].clone();
    assert_eq!(
        room.remove(b_session.id()).map(|s| s.id()),
        Some(b_session.id())
    );
    assert_eq!(room.len(), 1);
    srv.close().await;
    assert!(room.is_empty() && srv.group().is_empty());
}

/// A member whose queue is full never holds up a broadcast: with `SlowMember::Skip` it misses
/// messages (counted) while the others get every one, in order; with `SlowMember::Close` it is
/// closed and leaves the group.
pub async fn group_slow_member_is_skipped_or_dropped<R: Runtime>(rt: R) {
    const N: usize = 2000;
    let payload = vec![b'x'; 1024];
    let rec = Recorder::new();
    let srv = TcpServer::builder()
        // Small kernel buffers: the slow member's queue, not the kernel, takes the backlog.
        .tcp_options(TcpOptions::default().send_buffer_size(4096))
        .serve(
            rt.clone(),
            LengthDelimited::hello(),
            TestListener::silent(&rec),
        )
        .expect("server");
    let mut fast = rt.connect(srv.local_addr(), None).await.expect("fast");
    let slow = rt.connect(srv.local_addr(), None).await.expect("slow");
    rt.set_tcp_options(&slow, &TcpOptions::default().recv_buffer_size(4096))
        .expect("rcvbuf");
    within(&rt, "two sessions", srv.wait_for_sessions(2))
        .await
        .expect("open");
    let members = srv.group().members();
    let (fast_local, _) = rt.tcp_addrs(&fast).expect("addr");
    let (fast_session, slow_session): (Vec<Session<LengthDelimited>>, Vec<_>) = members
        .iter()
        .cloned()
        .partition(|s| s.peer_addr() == Some(fast_local));
    let (fast_session, slow_session) = (fast_session[0].clone(), slow_session[0].clone());
    // The fast member's queue holds the whole burst; the slow one's the default 1 MiB.
    fast_session
        .configure(|c| c.write_water_marks(32 << 20, 64 << 20))
        .expect("marks");

    let (mut to_fast, mut to_slow, mut skipped) = (0, 0, 0);
    for _ in 0..N {
        let outcome = srv.group().broadcast(&payload);
        assert_eq!((outcome.dropped, outcome.closed, outcome.failed), (0, 0, 0));
        assert_eq!(outcome.sent + outcome.skipped, 2);
        to_fast += 1;
        to_slow += outcome.sent - 1;
        skipped += outcome.skipped;
    }
    assert!(skipped > 0, "the slow member's queue filled up");
    assert_eq!(to_slow + skipped, N);
    assert_eq!(srv.group().slow_member_totals(), (skipped as u64, 0));
    for i in 0..to_fast {
        let frame = within(&rt, "the fast member's echo", read_hello_frame(&mut fast))
            .await
            .expect("read");
        assert_eq!(frame.len(), payload.len(), "frame {i}");
    }
    // Counted once the write completes, which the peer may see before the driver counts it.
    eventually(&rt, "every package to the fast member counted", || {
        fast_session.stats().pkgs_written == N as u64
    })
    .await;

    // The same members in a group that closes slow members.
    let strict = SessionGroup::with_policy(SlowMember::Close);
    assert!(strict.insert(&fast_session) && strict.insert(&slow_session));
    let outcome = strict.broadcast(&payload);
    assert_eq!((outcome.sent, outcome.dropped), (1, 1));
    within(&rt, "the slow member closed", slow_session.closed()).await;
    assert!(!strict.contains(slow_session.id()) && strict.contains(fast_session.id()));
    assert_eq!(strict.slow_member_totals(), (0, 1));
    let frame = within(
        &rt,
        "the fast member still served",
        read_hello_frame(&mut fast),
    )
    .await
    .expect("read");
    assert_eq!(frame.len(), payload.len());
    drop(slow);
    within(&rt, "srv close", srv.close()).await;
}
