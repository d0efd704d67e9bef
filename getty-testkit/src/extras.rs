//! Session and endpoint options beyond the transports: close callbacks, socket options, the
//! task pool, compression.

use std::sync::{Arc, Mutex};

use super::support::*;
use super::tcp::client;
use crate::support::lock;
use getty_core::codec::LengthDelimited;
use getty_core::runtime::Runtime;
use getty_core::{Error, EventListener, Session};

/// Logs `on_close` into a shared log, to order it against close callbacks.
struct LogClose(Arc<Mutex<Vec<String>>>);
impl EventListener<Hello> for LogClose {
    async fn on_message(&self, _: &Session<Hello>, _: bytes::Bytes) {}
    async fn on_close(&self, _: &Session<Hello>) {
        lock(&self.0).push("on_close".into());
    }
}

/// Close callbacks run once, after `on_close`, in registration order; a key registered again
/// replaces its callback in place; a removed one does not run; a panicking one is logged and
/// the rest still run; once they ran, registering is refused.
pub async fn close_callbacks_order_replace_remove_panic<R: Runtime>(rt: R) {
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let listener = Arc::new(LogClose(log.clone()));
    let (cli, session, _peer) =
        client_with_raw_peer(&rt, LengthDelimited::hello(), move |_: &Session<Hello>| {
            Ok(listener.clone())
        })
        .await;
    let push = |name: &'static str| {
        let log = log.clone();
        move |s: &Session<Hello>| {
            assert!(s.is_closed());
            lock(&log).push(name.to_string());
        }
    };
    session.add_close_callback("a", push("a")).expect("add");
    session
        .add_close_callback("b", push("b, first"))
        .expect("add");
    session.add_close_callback("c", push("c")).expect("add");
    session
        .add_close_callback("boom", |_: &Session<Hello>| panic!("callback panics"))
        .expect("add");
    session.add_close_callback("d", push("d")).expect("add");
    session
        .add_close_callback("b", push("b, replaced"))
        .expect("replace");
    assert!(session.remove_close_callback("c"));
    assert!(!session.remove_close_callback("never added"));
    session.close();
    within(&rt, "closed", session.closed()).await;
    assert_eq!(
        *lock(&log),
        vec!["on_close", "a", "b, replaced", "d"],
        "on_close first, then the callbacks in order"
    );
    assert!(matches!(
        session.add_close_callback("late", push("late")),
        Err(Error::SessionClosed { .. })
    ));
    within(&rt, "cli close", cli.close()).await;
    assert_eq!(lock(&log).len(), 4, "each ran once");
}

/// Socket options set on a server and a client are on their sockets, read back from the
/// sockets themselves; by default TCP_NODELAY is on and keep-alive off.
pub async fn socket_options_are_applied<R: Runtime + getty_core::runtime::os::OsNetwork>(rt: R) {
    use std::time::Duration;

    use crate::instrumented::Instrumented;
    use getty_core::endpoint::{TcpClientBuilder, TcpServer};
    use getty_core::runtime::TcpOptions;

    let rt = Instrumented::with_socket_copies(rt);
    let server_options = TcpOptions::default()
        .nodelay(false)
        .keepalive(Some(Duration::from_secs(42)))
        .send_buffer_size(96 * 1024)
        .recv_buffer_size(80 * 1024);
    let rec = Recorder::new();
    let srv = TcpServer::builder()
        .tcp_options(server_options)
        .serve_with(
            rt.clone(),
            LengthDelimited::hello(),
            TestListener::echo(&rec).factory(),
        )
        .expect("server");
    let client_rec = Recorder::new();
    let cli = TcpClientBuilder::new(srv.local_addr())
        .start_with(
            rt.clone(),
            LengthDelimited::hello(),
            TestListener::silent(&client_rec).factory(),
        )
        .expect("client");
    within(&rt, "session", cli.wait_for_sessions(1))
        .await
        .expect("connects");
    // Once a package went both ways, both ends are configured.
    cli.sessions()[0].try_send(b"configured").expect("send");
    client_rec.wait_msgs(&rt, 1).await;

    {
        let accepted = lock(&rt.counters.accepted);
        let server_side = socket2::SockRef::from(&accepted[0]);
        assert!(!server_side.tcp_nodelay().expect("nodelay"));
        assert!(server_side.keepalive().expect("keepalive"));
        #[cfg(any(target_os = "linux", target_os = "android"))]
        assert_eq!(
            server_side.tcp_keepalive_time().expect("idle"),
            Duration::from_secs(42)
        );
        // The OS may round buffer sizes up (Linux doubles them), never down.
        assert!(server_side.send_buffer_size().expect("sndbuf") >= 96 * 1024);
        assert!(server_side.recv_buffer_size().expect("rcvbuf") >= 80 * 1024);
    }
    {
        let connected = lock(&rt.counters.connected);
        let client_side = socket2::SockRef::from(&connected[0]);
        assert!(client_side.tcp_nodelay().expect("nodelay"), "on by default");
        assert!(
            !client_side.keepalive().expect("keepalive"),
            "off by default"
        );
    }
    cli.close().await;
    srv.close().await;
}

/// With SO_REUSEPORT two servers listen on the same port and both serve; without it the
/// second cannot bind. Where the OS has no SO_REUSEPORT, asking for it is a clear error.
pub async fn reuse_port_lets_servers_share_a_port<R: Runtime>(rt: R) {
    use getty_core::endpoint::TcpServer;

    let rec = Recorder::new();
    let first = TcpServer::builder().reuse_port(true).serve_with(
        rt.clone(),
        LengthDelimited::hello(),
        TestListener::echo(&rec).factory(),
    );
    if cfg!(not(all(
        unix,
        not(any(target_os = "solaris", target_os = "illumos"))
    ))) {
        assert!(
            matches!(&first, Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::Unsupported),
            "{first:?}"
        );
        return;
    }
    let first = first.expect("first server");
    let addr = first.local_addr();
    let second = TcpServer::builder()
        .addr(addr)
        .reuse_port(true)
        .serve_with(
            rt.clone(),
            LengthDelimited::hello(),
            TestListener::echo(&rec).factory(),
        )
        .expect("a second server on the same port");
    let refused = TcpServer::builder().addr(addr).serve_with(
        rt.clone(),
        LengthDelimited::hello(),
        TestListener::echo(&rec).factory(),
    );
    assert!(
        matches!(&refused, Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::AddrInUse),
        "{refused:?}"
    );
    // Connections reach one server or the other; each is served.
    for i in 0..8u8 {
        let mut raw = rt.connect(addr, None).await.expect("connect");
        write_all(&mut raw, &hello_frame(&[i; 3]))
            .await
            .expect("write");
        let echo = within(&rt, "echo", read_hello_frame(&mut raw))
            .await
            .expect("echo");
        assert_eq!(echo, vec![i; 3]);
    }
    first.close().await;
    second.close().await;
}

/// Echoes every package from the task pool, except that `b"slow"` waits for the gate to
/// open and `b"panic"` panics.
struct Gated {
    rec: Arc<Recorder>,
    open: std::sync::atomic::AtomicBool,
    opened: event_listener::Event,
}

impl Gated {
    fn new(rec: &Arc<Recorder>) -> Arc<Self> {
        Arc::new(Gated {
            rec: rec.clone(),
            open: std::sync::atomic::AtomicBool::new(false),
            opened: event_listener::Event::new(),
        })
    }

    fn release(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
        self.opened.notify(usize::MAX);
    }

    async fn wait_open(&self) {
        use std::sync::atomic::Ordering;
        while !self.open.load(Ordering::SeqCst) {
            let listener = self.opened.listen();
            if self.open.load(Ordering::SeqCst) {
                break;
            }
            listener.await;
        }
    }
}
impl EventListener<Hello> for Gated {
    async fn on_message(&self, session: &Session<Hello>, pkg: bytes::Bytes) {
        match &pkg[..] {
            b"slow" => self.wait_open().await,
            b"panic" => panic!("pool handler panics"),
            _ => futures_lite::future::yield_now().await,
        }
        let _ = session.try_send(&pkg);
        self.rec.push(Rec::Msg(session.id(), pkg));
    }
    async fn on_error(&self, session: &Session<Hello>, err: &Error) {
        self.rec.push(Rec::Error(session.id(), Failure::of(err)));
    }
}

/// A server whose handlers run on a task pool of `config`, echoing through [`Gated`].
async fn pooled_server<R: Runtime>(
    rt: &R,
    config: getty_core::pool::TaskPoolConfig,
    gated: &Arc<Gated>,
) -> getty_core::endpoint::TcpServer {
    let listener = gated.clone();
    getty_core::endpoint::TcpServer::builder()
        .task_pool(config)
        .serve_with(
            rt.clone(),
            LengthDelimited::hello(),
            move |_: &Session<Hello>| Ok(listener.clone()),
        )
        .expect("server")
}

/// The payloads session `id` got back, in order, among `events`.
fn echoes_in(events: &[Rec], id: u64) -> Vec<bytes::Bytes> {
    let of_id: Vec<Rec> = events.iter().filter(|r| r.id() == id).cloned().collect();
    payloads(&of_id)
}

/// The same, from a recorder (not from inside its `wait`, which holds its lock).
fn echoes_of(rec: &Recorder, id: u64) -> Vec<bytes::Bytes> {
    echoes_in(&rec.events(), id)
}

/// Ordered pool (the default): a handler that blocks holds up only its own session, whose
/// later packages wait their turn; other sessions' traffic flows meanwhile.
pub async fn task_pool_slow_handler_stalls_only_its_session<R: Runtime>(rt: R) {
    use getty_core::pool::TaskPoolConfig;
    let gated = Gated::new(&Recorder::new());
    let srv = pooled_server(&rt, TaskPoolConfig::default().workers(2), &gated).await;
    let client_rec = Recorder::new();
    let cli = client(&rt, srv.local_addr(), 2, TestListener::silent(&client_rec)).await;
    let (stuck, free) = (cli.sessions()[0].clone(), cli.sessions()[1].clone());
    stuck.try_send(b"slow").expect("send");
    stuck.try_send(b"after slow").expect("send");
    for i in 0..50 {
        free.try_send(&payload(i)).expect("send");
    }
    client_rec
        .wait(&rt, "the free session's 50 echoes", |e| {
            echoes_in(e, free.id()).len() == 50
        })
        .await;
    assert_eq!(
        echoes_of(&client_rec, free.id()),
        (0..50).map(payload).collect::<Vec<_>>()
    );
    assert!(
        echoes_of(&client_rec, stuck.id()).is_empty(),
        "its session waits for the slow one"
    );
    gated.release();
    client_rec
        .wait(&rt, "the stuck session's echoes", |e| {
            echoes_in(e, stuck.id()).len() == 2
        })
        .await;
    assert_eq!(
        echoes_of(&client_rec, stuck.id()),
        vec![
            bytes::Bytes::from_static(b"slow"),
            bytes::Bytes::from_static(b"after slow")
        ]
    );
    cli.close().await;
    srv.close().await;
}

/// Ordered pool under load: several sessions, many packages each, few workers; every session
/// gets its echoes back in order.
pub async fn task_pool_ordered_keeps_order_under_load<R: Runtime>(rt: R) {
    use getty_core::pool::TaskPoolConfig;
    const N: usize = 500;
    let gated = Gated::new(&Recorder::new());
    let srv = pooled_server(
        &rt,
        TaskPoolConfig::default().workers(3).queue_len(8),
        &gated,
    )
    .await;
    let client_rec = Recorder::new();
    let cli = client(&rt, srv.local_addr(), 4, TestListener::silent(&client_rec)).await;
    for (k, session) in cli.sessions().iter().enumerate() {
        for i in 0..N {
            session.try_send(&payload(k * N + i)).expect("send");
        }
    }
    client_rec.wait_msgs(&rt, 4 * N).await;
    for (k, session) in cli.sessions().iter().enumerate() {
        assert_eq!(
            echoes_of(&client_rec, session.id()),
            (k * N..(k + 1) * N).map(payload).collect::<Vec<_>>(),
            "session {k}"
        );
    }
    cli.close().await;
    srv.close().await;
}

/// Unordered pool: a slow package does not delay the next one of the same session; a
/// panicking handler closes its session with `HandlerPanic`; closing the server stops every
/// worker, and a client's pool stops with the client.
pub async fn task_pool_unordered_panics_and_shutdown<R: Runtime>(rt: R) {
    use getty_core::pool::TaskPoolConfig;
    let server_rec = Recorder::new();
    let gated = Gated::new(&server_rec);
    let srv = pooled_server(
        &rt,
        TaskPoolConfig::default().workers(3).ordered(false),
        &gated,
    )
    .await;
    assert_eq!(srv.task_pool_workers(), 3);
    let client_rec = Recorder::new();
    let cli = getty_core::endpoint::TcpClientBuilder::new(srv.local_addr())
        .task_pool(TaskPoolConfig::default().workers(2))
        .start_with(
            rt.clone(),
            LengthDelimited::hello(),
            TestListener::silent(&client_rec).factory(),
        )
        .expect("client");
    within(&rt, "session", cli.wait_for_sessions(1))
        .await
        .expect("connects");
    assert_eq!(cli.task_pool_workers(), 2);
    let session = cli.sessions()[0].clone();
    session.try_send(b"slow").expect("send");
    session.try_send(b"fast").expect("send");
    client_rec
        .wait(&rt, "the fast echo", |e| count_msgs(e) == 1)
        .await;
    assert_eq!(
        payloads(&client_rec.events()),
        vec![bytes::Bytes::from_static(b"fast")]
    );
    gated.release();
    client_rec.wait_msgs(&rt, 2).await;

    session.try_send(b"panic").expect("send");
    server_rec
        .wait(&rt, "the panic reported", |e| {
            e.iter().any(|r| matches!(r, Rec::Error(_, m) if m.is_panic_in("on_message", "pool handler panics")))
        })
        .await;
    within(&rt, "the client sees the end", session.closed()).await;
    cli.close().await;
    assert_eq!(cli.task_pool_workers(), 0, "the client's workers ended");
    srv.close().await;
    assert_eq!(srv.task_pool_workers(), 0, "the server's workers ended");
}

/// Records each session's close reason as `on_close` sees it.
#[derive(Default)]
struct CloseReasons(Mutex<Vec<(u64, Option<getty_core::session::CloseReason>)>>);
impl EventListener<Hello> for CloseReasons {
    async fn on_message(&self, _: &Session<Hello>, _: bytes::Bytes) {}
    async fn on_close(&self, session: &Session<Hello>) {
        lock(&self.0).push((session.id(), session.close_reason()));
    }
}

/// `on_close` sees why its session closed: 1000 when the peer left, the reason given to
/// `close_with`, 1001 for a server's `close()`; an open session has none.
pub async fn close_reason_reaches_on_close<R: Runtime>(rt: R) {
    use getty_core::endpoint::TcpServer;
    use getty_core::session::CloseReason;
    let reasons = Arc::new(CloseReasons::default());
    let srv = TcpServer::builder()
        .serve(rt.clone(), LengthDelimited::hello(), reasons.clone())
        .expect("server");
    let peers = [
        rt.connect(srv.local_addr(), None).await.expect("peer"),
        rt.connect(srv.local_addr(), None).await.expect("peer"),
        rt.connect(srv.local_addr(), None).await.expect("peer"),
    ];
    within(&rt, "three sessions", srv.wait_for_sessions(3))
        .await
        .expect("open");
    let sessions = srv.sessions();
    assert!(sessions.iter().all(|s| s.close_reason().is_none()));
    let [leaving, _stays, _stays_too] = peers;
    drop(leaving);
    eventually(&rt, "the peer's session closed", || {
        lock(&reasons.0).len() == 1
    })
    .await;
    let kicked = srv.sessions().into_iter().next().expect("a session left");
    kicked.close_with(CloseReason::policy("kicked"));
    eventually(&rt, "the kicked session closed", || {
        lock(&reasons.0).len() == 2
    })
    .await;
    within(&rt, "srv close", srv.close()).await;
    let reasons = lock(&reasons.0).clone();
    assert_eq!(reasons.len(), 3);
    assert_eq!(reasons[0].1.as_ref().map(CloseReason::code), Some(1000));
    assert_eq!(
        reasons[1],
        (kicked.id(), Some(CloseReason::policy("kicked")))
    );
    assert_eq!(reasons[2].1.as_ref().map(CloseReason::code), Some(1001));
}
