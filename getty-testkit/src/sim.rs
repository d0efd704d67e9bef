//! Scenarios only a simulation can run: faults made on purpose (partitions, crashes, slow
//! links, lossy links) and time checked to the exact virtual instant. They run on getty-sim
//! (the conformance suite's `@sim` group); each takes a [`SimRuntime`] on `127.0.0.1` and puts
//! the server on [`SERVER`] and the client on [`CLIENT`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::io::AsyncWriteExt;

use getty_core::codec::LengthDelimited;
use getty_core::endpoint::{
    Client, ClientEvent, TcpClientBuilder, TcpServer, UdpClientBuilder, UdpEndpointBuilder,
};
use getty_core::listener::EventListener;
use getty_core::session::{Session, SessionConfig};
use getty_core::{BoxError, Error};
use getty_sim::{SimRuntime, UdpFaults, DEFAULT_LATENCY};

use crate::support::*;

/// The server's host.
pub const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
/// The client's host.
pub const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

const PORT: u16 = 8000;
const POOL: usize = 3;
/// The client's base reconnect interval.
const INTERVAL: Duration = Duration::from_millis(100);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The client's read timeout: how a silent server (partitioned, crashed) is noticed.
const READ_TIMEOUT: Duration = Duration::from_millis(500);
/// How often the pump sends on every client session.
const PUMP_PERIOD: Duration = Duration::from_millis(10);

/// The most a paused worker waits before its next attempt: `min(k, 10) × interval` plus 20 %.
fn max_pause() -> Duration {
    (INTERVAL * 10).mul_f64(1.2)
}

/// One client event, as a timeline entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// A session connected.
    Connected(u64),
    /// A session closed.
    Disconnected(u64),
    /// A connect failed: the attempt's number and the pause before the next one.
    Failed(u32, Duration),
}

/// A server and a client pool on two hosts, with traffic flowing: a pump sends a numbered
/// frame on every client session every 10 ms; the server echoes; the client records
/// every echo and every client event with its virtual time.
pub struct Rig {
    rt: SimRuntime,
    start: Instant,
    addr: SocketAddr,
    server: Option<TcpServer<Hello>>,
    server_rec: Arc<Recorder>,
    /// The client pool.
    pub client: Client<Hello>,
    /// Echoes the client got.
    pub echoes: Arc<Recorder>,
    /// Every client event, with its time since the start.
    pub seen: Arc<Mutex<Vec<(Duration, Seen)>>>,
    /// Every frame the pump sent, by session.
    sent: Arc<Mutex<BTreeMap<u64, Vec<Bytes>>>>,
    /// A line per event, with its virtual time: equal for equal runs.
    pub timeline: Vec<String>,
}

impl Rig {
    /// Starts the server on [`SERVER`], the pool of 3 sessions on [`CLIENT`] and the pump, and
    /// waits for the pool and the first echoes.
    pub async fn start(rt: &SimRuntime) -> Rig {
        let addr = SocketAddr::new(SERVER, PORT);
        let server_rec = Recorder::new();
        let server = Some(echo_server(rt, addr, &server_rec));
        let echoes = Recorder::new();
        let client_rt = rt.host(CLIENT);
        let client = TcpClientBuilder::new(addr)
            .pool_size(POOL)
            .reconnect_interval(INTERVAL)
            .connect_timeout(CONNECT_TIMEOUT)
            .max_reconnect_attempts(None)
            .session_config(SessionConfig::new().read_timeout(READ_TIMEOUT))
            .start_with(
                client_rt.clone(),
                LengthDelimited::hello(),
                TestListener::silent(&echoes).factory(),
            )
            .expect("client");
        let start = rt.now();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut events = client.events();
        let (log, clock) = (seen.clone(), client_rt.clone());
        client_rt.spawn(async move {
            while let Some(event) = events.recv().await {
                let at = clock.now() - start;
                let entry = match event {
                    ClientEvent::Connected(s) => Seen::Connected(s.id()),
                    ClientEvent::Disconnected { id } => Seen::Disconnected(id),
                    ClientEvent::ConnectFailed {
                        attempt, retry_in, ..
                    } => Seen::Failed(attempt, retry_in),
                    ClientEvent::GaveUp(err) => panic!("the client gave up: {err}"),
                    other => panic!("an event this scenario does not know: {other:?}"),
                };
                lock(&log).push((at, entry));
            }
        });
        let sent = Arc::new(Mutex::new(BTreeMap::<u64, Vec<Bytes>>::new()));
        let (pump, sessions, record) = (client_rt.clone(), client.group().clone(), sent.clone());
        client_rt.spawn(async move {
            for seq in 0usize.. {
                pump.sleep(PUMP_PERIOD).await;
                for session in sessions.members().iter() {
                    let frame = Bytes::from(format!("{}:{seq}", session.id()));
                    if session.try_send(&frame).is_ok() {
                        lock(&record).entry(session.id()).or_default().push(frame);
                    }
                }
            }
        });
        let mut rig = Rig {
            rt: rt.clone(),
            start,
            addr,
            server,
            server_rec,
            client,
            echoes,
            seen,
            sent,
            timeline: Vec::new(),
        };
        within(rt, "the pool", rig.client.wait_for_sessions(POOL))
            .await
            .expect("pool");
        rig.wait_for_echoes_from_every_session().await;
        rig.note(format!("{POOL} sessions up, echoes flow"));
        rig
    }

    fn now(&self) -> Duration {
        self.rt.now() - self.start
    }

    fn note(&mut self, what: String) {
        let line = format!("{:>10.6}s {what}", self.now().as_secs_f64());
        self.timeline.push(line);
    }

    fn seen_since(&self, from: Duration) -> Vec<(Duration, Seen)> {
        lock(&self.seen)
            .iter()
            .filter(|(at, _)| *at >= from)
            .cloned()
            .collect()
    }

    /// Waits until every session of the pool got an echo that it sent after now.
    async fn wait_for_echoes_from_every_session(&self) {
        let ids: Vec<u64> = self.client.sessions().iter().map(|s| s.id()).collect();
        assert_eq!(ids.len(), POOL, "a full pool");
        let already = self.echoes.events().len();
        self.echoes
            .wait(&self.rt, "an echo on every session", |events| {
                ids.iter().all(|id| {
                    events[already..]
                        .iter()
                        .any(|e| matches!(e, Rec::Msg(s, _) if s == id))
                })
            })
            .await;
    }

    /// Every client session closed for the server's silence within the read timeout of the
    /// fault at `fault`; until `until`, connects fail every `retry_in + connect timeout`
    /// exactly, with pauses as documented (`min(k, 10) × interval` plus up to 20 %): no storm.
    fn check_outage(&self, fault: Duration, until: Duration) {
        let seen = self.seen_since(fault);
        let seen: Vec<_> = seen.into_iter().filter(|(at, _)| *at < until).collect();
        let closed: Vec<Duration> = seen
            .iter()
            .filter(|(_, s)| matches!(s, Seen::Disconnected(_)))
            .map(|(at, _)| *at)
            .collect();
        assert_eq!(closed.len(), POOL, "every session closed: {seen:?}");
        for at in &closed {
            // Its last read came before the fault (and at most a pump period earlier, plus a
            // round trip): the read timeout counts from there.
            let earliest = fault + READ_TIMEOUT - PUMP_PERIOD - DEFAULT_LATENCY * 2;
            assert!(
                *at > earliest && *at <= fault + READ_TIMEOUT,
                "closed at {at:?}, fault at {fault:?}: {seen:?}"
            );
        }
        let failures: Vec<(Duration, u32, Duration)> = seen
            .iter()
            .filter_map(|(at, s)| match s {
                Seen::Failed(k, pause) => Some((*at, *k, *pause)),
                _ => None,
            })
            .collect();
        assert!(failures.len() >= 3, "the outage is long: {seen:?}");
        assert!(
            !seen.iter().any(|(_, s)| matches!(s, Seen::Connected(_))),
            "nothing connects during the outage: {seen:?}"
        );
        // The first attempt starts when the first session closes.
        assert_eq!(failures[0].0, closed[0] + CONNECT_TIMEOUT, "{seen:?}");
        for (i, &(at, k, pause)) in failures.iter().enumerate() {
            assert_eq!(k as usize, i + 1, "consecutive failures: {seen:?}");
            let base = INTERVAL * k.min(10);
            assert!(
                pause >= base && pause <= base.mul_f64(1.2),
                "pause {pause:?} after failure {k}: {seen:?}"
            );
            if let Some(&(next, _, _)) = failures.get(i + 1) {
                assert_eq!(next - at, pause + CONNECT_TIMEOUT, "{seen:?}");
            }
        }
    }

    /// After the path opened again at `back`: the whole pool reconnects within one pause,
    /// with no failure, and echoes flow on every new session.
    async fn check_recovery(&mut self, back: Duration, what: &str) {
        within(
            &self.rt,
            "the pool back",
            self.client.wait_for_sessions(POOL),
        )
        .await
        .expect("pool back");
        self.wait_for_echoes_from_every_session().await;
        let seen = self.seen_since(back);
        assert!(
            !seen.iter().any(|(_, s)| matches!(s, Seen::Failed(..))),
            "no failure once {what}: {seen:?}"
        );
        let connected: Vec<Duration> = seen
            .iter()
            .filter(|(_, s)| matches!(s, Seen::Connected(_)))
            .map(|(at, _)| *at)
            .collect();
        assert_eq!(connected.len(), POOL, "{seen:?}");
        let last = *connected.last().expect("connected");
        assert!(
            last <= back + max_pause() + CONNECT_TIMEOUT,
            "back at {last:?}, {what} at {back:?}: {seen:?}"
        );
        self.note(format!("{POOL} sessions back, echoes flow"));
    }

    /// Lets traffic flow for `span`: every session gets the echo of every frame sent on it
    /// (but the last round trip's).
    pub async fn traffic(&mut self, span: Duration) {
        let before = count_msgs(&self.echoes.events());
        self.rt.sleep(span).await;
        let echoed = count_msgs(&self.echoes.events()) - before;
        let rounds = (span.as_micros() / PUMP_PERIOD.as_micros()) as usize;
        assert!(
            echoed >= (rounds - 1) * POOL,
            "{echoed} echoes in {span:?}, {rounds} rounds of {POOL} sent"
        );
        self.note(format!("{echoed} echoes in {span:?}"));
    }

    /// Partitions the two hosts for `outage` (traffic held), then heals them.
    pub async fn partition_and_heal(&mut self, outage: Duration) {
        let fault = self.now();
        self.rt.partition(SERVER, CLIENT);
        self.note("partition".into());
        self.rt.sleep(outage).await;
        let back = self.now();
        self.rt.heal(SERVER, CLIENT);
        self.note("heal".into());
        self.check_outage(fault, back);
        self.check_recovery(back, "healed").await;
    }

    /// Crashes the server's host mid-traffic, restarts it after `outage` with a new server on
    /// the same address.
    pub async fn crash_and_restart(&mut self, outage: Duration) {
        let fault = self.now();
        self.rt.crash(SERVER);
        self.note("server host crashes".into());
        // The crashed server's tasks are gone; its handle still closes cleanly.
        let old = self.server.take().expect("a server");
        within(&self.rt, "the crashed server's close", old.close()).await;
        assert!(old.is_closed());
        self.rt.sleep(outage).await;
        let back = self.now();
        self.rt.restart(SERVER);
        self.server = Some(echo_server(&self.rt, self.addr, &self.server_rec));
        self.note("server host restarts, server listens again".into());
        self.check_outage(fault, back);
        self.check_recovery(back, "restarted").await;
    }

    /// Closes both ends and checks the traffic: every echo is a frame its session sent, in
    /// the order sent, none twice.
    pub async fn finish(mut self) -> Vec<String> {
        within(&self.rt, "client close", self.client.close()).await;
        if let Some(server) = self.server.take() {
            within(&self.rt, "server close", server.close()).await;
        }
        let sent = lock(&self.sent).clone();
        let mut echoed: BTreeMap<u64, Vec<Bytes>> = BTreeMap::new();
        for event in self.echoes.events() {
            if let Rec::Msg(id, frame) = event {
                echoed.entry(id).or_default().push(frame);
            }
        }
        let mut total = 0;
        for (id, frames) in &echoed {
            let sent = sent.get(id).expect("echoes come from frames sent");
            assert!(
                frames.len() <= sent.len() && frames[..] == sent[..frames.len()],
                "session {id}: the echoes are a prefix of what it sent"
            );
            total += frames.len();
        }
        let unique: BTreeSet<&Bytes> = echoed.values().flatten().collect();
        assert_eq!(unique.len(), total, "no echo twice");
        self.note(format!(
            "closed; {total} echoes on {} sessions",
            echoed.len()
        ));
        self.timeline
    }
}

fn echo_server(rt: &SimRuntime, addr: SocketAddr, rec: &Arc<Recorder>) -> TcpServer<Hello> {
    TcpServer::builder()
        .addr(addr)
        .serve_with(
            rt.host(SERVER),
            LengthDelimited::hello(),
            TestListener::echo_waiting(rec).factory(),
        )
        .expect("server")
}

/// A client pool through a partition and its heal: every session notices within the read
/// timeout, the reconnects back off as documented (no storm), and after the heal the whole
/// pool is back within one pause and traffic flows.
pub async fn pool_through_partition_and_heal(rt: SimRuntime) {
    let mut rig = Rig::start(&rt).await;
    rig.traffic(Duration::from_secs(1)).await;
    rig.partition_and_heal(Duration::from_secs(20)).await;
    rig.traffic(Duration::from_secs(1)).await;
    rig.finish().await;
}

/// A server host that crashes mid-traffic and restarts: the pool notices the silence, backs
/// off while the host is down, and comes back whole to the restarted server; every echo is
/// one the client sent, in order, none twice.
pub async fn server_restart_mid_traffic(rt: SimRuntime) {
    let mut rig = Rig::start(&rt).await;
    rig.traffic(Duration::from_secs(1)).await;
    rig.crash_and_restart(Duration::from_secs(10)).await;
    rig.traffic(Duration::from_secs(1)).await;
    rig.finish().await;
}

/// The seed-sweep scenario: a partition and heal, then a server crash and restart, returning
/// the timeline (equal for equal seeds).
pub async fn pool_through_partition_and_restart(rt: SimRuntime) -> Vec<String> {
    let mut rig = Rig::start(&rt).await;
    let span = Duration::from_millis(300);
    rig.traffic(span).await;
    rig.partition_and_heal(Duration::from_secs(5)).await;
    rig.traffic(span).await;
    rig.crash_and_restart(Duration::from_secs(5)).await;
    rig.traffic(span).await;
    rig.finish().await
}

/// Starts a producer beside each session that writes as fast as `send` lets it, as a user's
/// producer task would.
struct FastWriter {
    rt: SimRuntime,
    frames: usize,
    frame: Bytes,
    report: Arc<Mutex<WriterReport>>,
}

#[derive(Debug, Default)]
struct WriterReport {
    max_queued: usize,
    done_at: Option<Instant>,
}

const LOW: usize = 16 * 1024;
const HIGH: usize = 64 * 1024;

impl EventListener<Hello> for FastWriter {
    async fn on_open(&self, session: &Session<Hello>) -> Result<(), BoxError> {
        session.configure(|c| c.write_water_marks(LOW, HIGH))?;
        let (session, frames, frame) = (session.clone(), self.frames, self.frame.clone());
        let report = self.report.clone();
        self.rt.spawn(async move {
            for _ in 0..frames {
                session.send(&frame).await.expect("send");
                let queued = session.queued_bytes();
                let mut report = lock(&report);
                report.max_queued = report.max_queued.max(queued);
            }
            lock(&report).done_at = Some(session.now());
        });
        Ok(())
    }

    async fn on_message(&self, _: &Session<Hello>, _: Bytes) {}
}

/// A fast writer behind a slow link (100 kB/s): the write queue's high water mark stops it
/// (`send` waits), so the queue never holds more than the high mark plus one frame, and the
/// writer finishes no sooner than the link lets the bytes beyond the queue and the window
/// leave; every byte arrives, in order.
pub async fn slow_link_stops_a_fast_writer(rt: SimRuntime) {
    const RATE: u64 = 100_000;
    const FRAME: usize = 1000;
    const FRAMES: usize = 500;
    rt.set_link_bandwidth(SERVER, CLIENT, Some(RATE));
    let report = Arc::new(Mutex::new(WriterReport::default()));
    let writer = Arc::new(FastWriter {
        rt: rt.host(SERVER),
        frames: FRAMES,
        frame: Bytes::from(vec![7u8; FRAME - 4]),
        report: report.clone(),
    });
    let srv = TcpServer::builder()
        .addr(SocketAddr::new(SERVER, PORT))
        .serve_with(
            rt.host(SERVER),
            LengthDelimited::hello(),
            move |_: &Session<Hello>| Ok(writer.clone()),
        )
        .expect("server");
    let client_rt = rt.host(CLIENT);
    let start = rt.now();
    let mut raw = client_rt.connect(srv.local_addr()).await.expect("connect");
    for i in 0..FRAMES {
        let frame = within(&rt, "a frame", read_hello_frame(&mut raw))
            .await
            .unwrap_or_else(|e| panic!("frame {i}: {e}"));
        assert!(frame.len() == FRAME - 4 && frame.iter().all(|&b| b == 7));
    }
    let total = (FRAME * FRAMES) as f64;
    let took = (rt.now() - start).as_secs_f64();
    assert!(
        took >= total / RATE as f64,
        "{total} bytes in {took} s: faster than the link"
    );
    let (max_queued, done_at) = {
        let report = lock(&report);
        (report.max_queued, report.done_at)
    };
    assert!(
        max_queued <= HIGH + FRAME,
        "the queue held {max_queued} bytes, high mark {HIGH}"
    );
    // When the writer's last send returned, everything beyond the queue (at most the high
    // mark and a frame) and the stream's window had left over the link.
    let done = (done_at.expect("the writer finished") - start).as_secs_f64();
    let in_flight = (HIGH + FRAME + getty_sim::DEFAULT_WINDOW) as f64;
    assert!(
        done >= (total - in_flight) / RATE as f64,
        "the writer finished at {done} s: the link did not hold it back"
    );
    raw.close().await.expect("close");
    within(&rt, "server close", srv.close()).await;
}

/// UDP under 20 % loss each way: the hello client's accounting (sent = echoed + lost) holds,
/// every echo is a datagram sent (once: no duplication configured), and the loss is what 20 %
/// each way gives (about 36 %), drawn from the seed.
pub async fn udp_under_loss_accounting(rt: SimRuntime) {
    const N: usize = 1000;
    let server_rec = Recorder::new();
    let endpoint = UdpEndpointBuilder::new()
        .addr(SocketAddr::new(SERVER, PORT))
        .bind_with(
            rt.host(SERVER),
            LengthDelimited::hello(),
            TestListener::echo(&server_rec).factory(),
        )
        .await
        .expect("endpoint");
    let echoes = Recorder::new();
    let client = UdpClientBuilder::new(endpoint.local_addr())
        .connect_ping_wait(Duration::from_millis(50))
        .reconnect_interval(INTERVAL)
        .max_reconnect_attempts(None)
        .start_with(
            rt.host(CLIENT),
            LengthDelimited::hello(),
            TestListener::silent(&echoes).factory(),
        )
        .expect("client");
    within(&rt, "the client", client.wait_for_sessions(1))
        .await
        .expect("client");
    rt.set_udp_faults(UdpFaults {
        loss: 0.2,
        ..UdpFaults::default()
    });
    let session = client.sessions()[0].clone();
    for i in 0..N {
        session.send(&payload(i)).await.expect("send");
        // A window of one datagram per millisecond, as the hello client paces.
        rt.sleep(Duration::from_millis(1)).await;
    }
    // Stragglers: everything still on its way has arrived a latency later.
    rt.sleep(Duration::from_millis(100)).await;
    let echoed = payloads(&echoes.events());
    let received = payloads(&server_rec.events());
    let sent: BTreeSet<Bytes> = (0..N).map(payload).collect();
    let lost = N - echoed.len();
    assert_eq!(N, echoed.len() + lost);
    let unique: BTreeSet<&Bytes> = echoed.iter().collect();
    assert_eq!(unique.len(), echoed.len(), "no datagram echoed twice");
    assert!(echoed
        .iter()
        .all(|p| received.contains(p) && sent.contains(p)));
    let stats = session.stats();
    assert_eq!(stats.pkgs_written, N as u64);
    assert_eq!(stats.pkgs_read, echoed.len() as u64);
    let inbound_loss = 1.0 - received.len() as f64 / N as f64;
    let total_loss = lost as f64 / N as f64;
    assert!(
        (0.12..0.28).contains(&inbound_loss),
        "{inbound_loss} lost on the way in"
    );
    assert!((0.25..0.47).contains(&total_loss), "{total_loss} lost");
    rt.set_udp_faults(UdpFaults::default());
    within(&rt, "client close", client.close()).await;
    within(&rt, "endpoint close", endpoint.close()).await;
}

/// Records when each session's error came and what it was.
struct Timeouts {
    errors: Arc<Mutex<Vec<(Instant, Error)>>>,
}

impl EventListener<Hello> for Timeouts {
    async fn on_error(&self, session: &Session<Hello>, err: &Error) {
        let copy = match err {
            Error::ReadTimeout(t) => Error::ReadTimeout(*t),
            Error::IdleTimeout(t) => Error::IdleTimeout(*t),
            other => panic!("unexpected error {other}"),
        };
        lock(&self.errors).push((session.now(), copy));
    }

    async fn on_message(&self, _: &Session<Hello>, _: Bytes) {}
}

/// The read timeout fires exactly its length after the last bytes arrived, and the idle
/// timeout exactly its length after the last whole package, while bytes that complete no
/// package keep coming: both at the virtual instant the documentation gives.
pub async fn timeouts_fire_at_the_exact_instant(rt: SimRuntime) {
    const READ: Duration = Duration::from_secs(5);
    const IDLE: Duration = Duration::from_secs(3);
    let latency = Duration::from_millis(7);
    rt.set_link_latency(SERVER, CLIENT, latency);
    let errors = Arc::new(Mutex::new(Vec::new()));
    let listener = Arc::new(Timeouts {
        errors: errors.clone(),
    });
    let opened = std::sync::atomic::AtomicUsize::new(0);
    let srv = TcpServer::builder()
        .addr(SocketAddr::new(SERVER, PORT))
        .serve_with(
            rt.host(SERVER),
            LengthDelimited::hello(),
            move |s: &Session<Hello>| {
                // The first session gets a read timeout, the second an idle timeout.
                if opened.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    s.configure(|c| c.read_timeout(READ))?;
                } else {
                    s.configure(|c| c.idle_timeout(IDLE))?;
                }
                Ok(listener.clone())
            },
        )
        .expect("server");
    let client = rt.host(CLIENT);

    // Read timeout: one frame, then silence.
    let mut raw = client.connect(srv.local_addr()).await.expect("connect");
    within(&rt, "session", srv.wait_for_sessions(1))
        .await
        .expect("session");
    raw.write_all(&hello_frame(b"one")).await.expect("write");
    let last_bytes = rt.now() + latency;
    eventually(&rt, "the read timeout", || !lock(&errors).is_empty()).await;
    let (at, err) = lock(&errors).remove(0);
    assert!(matches!(err, Error::ReadTimeout(t) if t == READ), "{err}");
    assert_eq!(at, last_bytes + READ, "read timeout at its instant");

    // Idle timeout: a whole frame, then a byte every second of a frame never completed.
    let mut trickler = client.connect(srv.local_addr()).await.expect("connect");
    trickler
        .write_all(&hello_frame(b"whole"))
        .await
        .expect("write");
    let last_package = rt.now() + latency;
    let frame = hello_frame(b"never completes");
    for byte in &frame[..frame.len() - 1] {
        client.sleep(Duration::from_secs(1)).await;
        if !lock(&errors).is_empty() {
            break;
        }
        // The server may have closed it already; a failed write ends the trickle.
        if trickler
            .write_all(std::slice::from_ref(byte))
            .await
            .is_err()
        {
            break;
        }
    }
    eventually(&rt, "the idle timeout", || !lock(&errors).is_empty()).await;
    let (at, err) = lock(&errors).remove(0);
    assert!(matches!(err, Error::IdleTimeout(t) if t == IDLE), "{err}");
    assert_eq!(at, last_package + IDLE, "idle timeout at its instant");
    drop((raw, trickler));
    within(&rt, "server close", srv.close()).await;
}

/// Endpoints whose host crashed (their tasks dropped where they stood) still close: a server,
/// a client pool and a UDP endpoint each return from `close` at once instead of waiting for
/// tasks that are gone.
pub async fn endpoints_on_a_crashed_host_still_close(rt: SimRuntime) {
    let rec = Recorder::new();
    let server = echo_server(&rt, SocketAddr::new(SERVER, PORT), &rec);
    let udp = UdpEndpointBuilder::new()
        .addr(SocketAddr::new(SERVER, PORT + 1))
        .bind_with(
            rt.host(SERVER),
            LengthDelimited::hello(),
            TestListener::echo(&rec).factory(),
        )
        .await
        .expect("endpoint");
    let client = TcpClientBuilder::new(server.local_addr())
        .pool_size(2)
        .start_with(
            rt.host(CLIENT),
            LengthDelimited::hello(),
            TestListener::silent(&Recorder::new()).factory(),
        )
        .expect("client");
    within(&rt, "the pool", client.wait_for_sessions(2))
        .await
        .expect("pool");
    within(&rt, "server sessions", server.wait_for_sessions(2))
        .await
        .expect("sessions");
    rt.crash(SERVER);
    rt.crash(CLIENT);
    let before = rt.now();
    within(&rt, "server close", server.close()).await;
    within(&rt, "udp close", udp.close()).await;
    within(&rt, "client close", client.close()).await;
    assert_eq!(rt.now(), before, "nothing waited");
    assert_eq!(server.session_count(), 0);
    assert_eq!(client.session_count(), 0);
}
