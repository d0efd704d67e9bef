//! Load and resource scenarios: closing endpoints leaves no task behind (a conformance
//! scenario), and, for a binary of their own, thousands of connections at once, idle sessions,
//! connect/close churn and a real EMFILE.
//!
//! The process-wide scenarios ([`burst_connects_all_served`], [`idle_sessions_use_no_cpu`],
//! [`churn`], [`emfile_accept_recovers`]) measure the whole process (descriptors, resident
//! memory, CPU time) and change its RLIMIT_NOFILE: run them one at a time, with nothing else
//! running in the process (getty's own `tests/load.rs` runs them all from one `#[test]`). They
//! read `/proc`, so they exist on Linux only. getty-core forbids `unsafe` code, so the system
//! calls std has no safe form for (`getrusage`, `getrlimit`, `setrlimit`) come from the caller
//! as an [`Os`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::instrumented::Instrumented;
use super::support::*;
use getty_core::codec::LengthDelimited;
use getty_core::endpoint::{TcpClientBuilder, TcpServer};
use getty_core::listener::EventListener;
use getty_core::pool::TaskPoolConfig;
use getty_core::runtime::Runtime;
use getty_core::session::Session;
use getty_core::BoxError;
use getty_core::Error;

/// The package that makes a [`Hang`] handler wait forever.
const HANG: &[u8] = b"hang";

/// Records every event and echoes (when `echo`) every package; on [`HANG`] the handler then
/// waits forever, so that it is still running when its endpoint closes.
struct Hang {
    rec: Arc<Recorder>,
    echo: bool,
}
impl EventListener<Hello> for Hang {
    async fn on_open(&self, session: &Session<Hello>) -> Result<(), BoxError> {
        self.rec.push(Rec::Open(session.id()));
        Ok(())
    }

    async fn on_message(&self, session: &Session<Hello>, pkg: Bytes) {
        if self.echo {
            let _ = session.try_send(&pkg);
        }
        self.rec.push(Rec::Msg(session.id(), pkg.clone()));
        if pkg == HANG {
            futures_lite::future::pending::<()>().await;
        }
    }

    async fn on_error(&self, session: &Session<Hello>, err: &Error) {
        self.rec.push(Rec::Error(session.id(), Failure::of(err)));
    }

    async fn on_close(&self, session: &Session<Hello>) {
        self.rec.push(Rec::Close(session.id()));
    }
}

/// The number of `Close` events.
fn count_closes(events: &[Rec]) -> usize {
    events.iter().filter(|r| matches!(r, Rec::Close(_))).count()
}

/// Closing a client pool and a server, while handlers on both sides are running (half the
/// sessions stuck forever in `on_message`, the others just done echoing), leaves none of the
/// tasks they spawned: the live task count returns to where it was before they started.
///
/// `close()` returns once every task of the endpoint has run to its end (the last thing a
/// session task, the accept loop, the client worker and a pool worker do is signal the
/// endpoint) and stuck handlers were cancelled after the close-wait. The executor frees the
/// finished task just after: on a single-threaded executor before the closer runs again, so
/// the count is back when `close()` returns; on a multi-threaded one it may lag by a moment,
/// hence the wait with a deadline.
pub async fn endpoint_close_leaves_no_task<R: Runtime>(rt: R) {
    close_leaves_no_task(rt, None).await
}

/// [`endpoint_close_leaves_no_task`] with a task pool on both endpoints: the stuck handlers
/// then run on pool workers.
pub async fn endpoint_close_leaves_no_task_with_task_pool<R: Runtime>(rt: R) {
    close_leaves_no_task(rt, Some(TaskPoolConfig::default())).await
}

async fn close_leaves_no_task<R: Runtime>(rt: R, pool: Option<TaskPoolConfig>) {
    const SESSIONS: usize = 4;
    const CLOSE_WAIT: Duration = Duration::from_millis(100);
    let rt = Instrumented::new(rt);
    let counters = rt.counters.clone();
    let baseline = counters.live_tasks();
    let hang = |rec: &Arc<Recorder>, echo: bool| {
        let listener = Arc::new(Hang {
            rec: rec.clone(),
            echo,
        });
        move |s: &Session<Hello>| {
            s.configure(|c| c.close_wait(CLOSE_WAIT))?;
            Ok(listener.clone())
        }
    };
    let server_rec = Recorder::new();
    let mut server = TcpServer::builder();
    if let Some(config) = pool {
        server = server.task_pool(config);
    }
    let srv = server
        .serve_with(
            rt.clone(),
            LengthDelimited::hello(),
            hang(&server_rec, true),
        )
        .expect("server starts");
    let client_rec = Recorder::new();
    let mut client = TcpClientBuilder::new(srv.local_addr())
        .pool_size(SESSIONS)
        .reconnect_interval(Duration::from_millis(20));
    if let Some(config) = pool {
        client = client.task_pool(config);
    }
    let cli = client
        .start_with(
            rt.clone(),
            LengthDelimited::hello(),
            hang(&client_rec, false),
        )
        .expect("client starts");
    within(&rt, "client pool", cli.wait_for_sessions(SESSIONS))
        .await
        .expect("client connects");
    // Even sessions hang on both sides (the server echoes `hang`, then waits forever; so does
    // the client's handler of the echo); odd ones echo a package and go on.
    for (k, session) in cli.sessions().iter().enumerate() {
        let pkg: &[u8] = if k % 2 == 0 { HANG } else { b"ping" };
        session.try_send(pkg).expect("send");
    }
    server_rec.wait_msgs(&rt, SESSIONS).await;
    client_rec.wait_msgs(&rt, SESSIONS).await;
    assert!(
        counters.live_tasks() > baseline,
        "the endpoints run tasks: {}",
        counters.live_tasks()
    );
    within(&rt, "client close", cli.close()).await;
    within(&rt, "server close", srv.close()).await;
    let at_close = counters.live_tasks();
    eventually(&rt, "the live task count back at its baseline", || {
        counters.live_tasks() == baseline
    })
    .await;
    log::info!(
        "{} tasks spawned; live: {baseline} before, {at_close} when close returned",
        counters.spawned_tasks()
    );
    assert_eq!(
        count_closes(&server_rec.events()),
        SESSIONS,
        "server on_close"
    );
    assert_eq!(
        count_closes(&client_rec.events()),
        SESSIONS,
        "client on_close"
    );
    assert_eq!(srv.task_pool_workers(), 0);
    assert_eq!(cli.task_pool_workers(), 0);
}

#[cfg(target_os = "linux")]
pub use self::linux::*;

#[cfg(target_os = "linux")]
mod linux {
    use std::fmt;
    use std::fs::File;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use event_listener::Event;

    use super::super::instrumented::Instrumented;
    use super::super::support::*;
    use getty_core::codec::LengthDelimited;
    use getty_core::endpoint::{TcpClientBuilder, TcpServer};
    use getty_core::listener::EventListener;
    use getty_core::runtime::{Executor as _, Network as _, Runtime};
    use getty_core::session::Session;
    use getty_core::BoxError;
    use getty_core::Error;

    /// What the caller provides of the operating system: the calls std has no safe form for.
    #[derive(Debug, Clone, Copy)]
    pub struct Os {
        /// CPU time the whole process has used so far, user and system, every thread
        /// (`getrusage(RUSAGE_SELF)`).
        pub cpu_time: fn() -> Duration,
        /// The RLIMIT_NOFILE limits, `(soft, hard)` (`getrlimit`).
        pub nofile_limit: fn() -> std::io::Result<(u64, u64)>,
        /// Sets the soft RLIMIT_NOFILE, keeping the hard one (`setrlimit`).
        pub set_nofile_soft: fn(u64) -> std::io::Result<()>,
    }

    /// What a load scenario measured.
    #[derive(Debug, Clone, Default)]
    pub struct Report {
        /// The scenario's name.
        pub scenario: &'static str,
        /// Why the scenario did not run, if it was skipped.
        pub skipped: Option<String>,
        /// The figures measured, by name.
        pub figures: Vec<(&'static str, String)>,
    }

    impl Report {
        fn new(scenario: &'static str) -> Self {
            Report {
                scenario,
                ..Report::default()
            }
        }

        fn skipped(scenario: &'static str, why: String) -> Self {
            Report {
                scenario,
                skipped: Some(why),
                figures: Vec::new(),
            }
        }

        fn add(&mut self, name: &'static str, value: impl fmt::Display) {
            self.figures.push((name, value.to_string()));
        }
    }

    impl fmt::Display for Report {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{}:", self.scenario)?;
            if let Some(why) = &self.skipped {
                return write!(f, " SKIPPED: {why}");
            }
            for (name, value) in &self.figures {
                write!(f, " {name}={value}")?;
            }
            Ok(())
        }
    }

    /// Counts a listener's events and wakes waiters on each; optionally echoes. Keeps nothing per
    /// session, so that tens of thousands of sessions cost it nothing.
    #[derive(Debug, Default)]
    struct Tally {
        echo: bool,
        opens: AtomicUsize,
        msgs: AtomicUsize,
        errors: AtomicUsize,
        closes: AtomicUsize,
        changed: Event,
    }

    impl Tally {
        fn new(echo: bool) -> Arc<Self> {
            Arc::new(Tally {
                echo,
                ..Tally::default()
            })
        }

        fn count(&self, counter: &AtomicUsize) {
            counter.fetch_add(1, Ordering::SeqCst);
            self.changed.notify(usize::MAX);
        }

        fn get(counter: &AtomicUsize) -> usize {
            counter.load(Ordering::SeqCst)
        }

        /// Waits (with the scenario deadline) until `pred` holds.
        async fn wait<R: Runtime>(&self, rt: &R, what: &str, pred: impl Fn(&Self) -> bool) {
            within(rt, what, async {
                loop {
                    let listener = self.changed.listen();
                    if pred(self) {
                        return;
                    }
                    listener.await;
                }
            })
            .await
        }

        fn factory(
            self: &Arc<Self>,
        ) -> impl Fn(&Session<Hello>) -> Result<Arc<Self>, BoxError> + Send + Sync + 'static
        {
            let listener = self.clone();
            move |_| Ok(listener.clone())
        }
    }
    impl EventListener<Hello> for Tally {
        async fn on_open(&self, _: &Session<Hello>) -> Result<(), BoxError> {
            self.count(&self.opens);
            Ok(())
        }

        async fn on_message(&self, session: &Session<Hello>, pkg: Bytes) {
            if self.echo {
                let _ = session.try_send(&pkg);
            }
            self.count(&self.msgs);
        }

        async fn on_error(&self, session: &Session<Hello>, err: &Error) {
            log::warn!("session {}: {err}", session.id());
            self.count(&self.errors);
        }

        async fn on_close(&self, _: &Session<Hello>) {
            self.count(&self.closes);
        }
    }

    /// Descriptors a scenario keeps free beyond what its connections need (the runtime, the
    /// test harness, std's and the allocator's own).
    const FD_MARGIN: u64 = 64;

    /// The number of descriptors open in this process (entries of `/proc/self/fd`, without the
    /// one that lists them).
    pub fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd")
            .expect("/proc/self/fd")
            .count()
            - 1
    }

    /// The highest descriptor number open in this process.
    pub fn max_fd() -> u64 {
        std::fs::read_dir("/proc/self/fd")
            .expect("/proc/self/fd")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .max()
            .unwrap_or(0)
    }

    /// The resident set size of this process, in bytes (`VmRSS` of `/proc/self/status`).
    pub fn rss_bytes() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/self/status");
        kib * 1024
    }

    fn mib(bytes: i64) -> String {
        format!("{:.1}MiB", bytes as f64 / (1024.0 * 1024.0))
    }

    /// Puts the soft RLIMIT_NOFILE back when dropped, also when the scenario panics.
    struct RestoreNofile {
        os: Os,
        soft: u64,
    }

    impl Drop for RestoreNofile {
        fn drop(&mut self) {
            if let Err(err) = (self.os.set_nofile_soft)(self.soft) {
                log::error!("restoring RLIMIT_NOFILE to {}: {err}", self.soft);
            }
        }
    }

    /// Makes sure `need` descriptors may be open, raising the soft limit to the hard one if
    /// needed (restored when the guard drops). `Err`: why that is impossible.
    fn allow_fds(os: Os, need: u64) -> Result<RestoreNofile, String> {
        let (soft, hard) = (os.nofile_limit)().map_err(|e| format!("getrlimit: {e}"))?;
        let restore = RestoreNofile { os, soft };
        if soft >= need {
            return Ok(restore);
        }
        if hard < need {
            return Err(format!(
                "needs {need} file descriptors, RLIMIT_NOFILE hard limit is {hard} \
                 (raise it, e.g. `ulimit -Hn {need}` as root)"
            ));
        }
        (os.set_nofile_soft)(hard)
            .or_else(|_| (os.set_nofile_soft)(need))
            .map_err(|e| format!("raising RLIMIT_NOFILE from {soft} to {need}: {e}"))?;
        Ok(restore)
    }

    /// `n` TCP connects to one server, back to back (raw runtime sockets, each awaited before
    /// the next), with nothing read until the last is made: every connection becomes a session
    /// (`on_open`, counted by the server) and echoes one frame; none is lost, none fails.
    ///
    /// Needs about `2 n` descriptors (both ends are in this process): raises the soft
    /// RLIMIT_NOFILE to the hard limit if needed, and is skipped (the [`Report`] says why) if
    /// the hard limit is too low.
    pub async fn burst_connects_all_served<R: Runtime>(rt: R, os: Os, n: usize) -> Report {
        const NAME: &str = "burst_connects_all_served";
        let _limit = match allow_fds(os, 2 * n as u64 + FD_MARGIN) {
            Ok(guard) => guard,
            Err(why) => return Report::skipped(NAME, why),
        };
        let tally = Tally::new(true);
        let srv = TcpServer::builder()
            .serve_with(rt.clone(), LengthDelimited::hello(), tally.factory())
            .expect("server starts");
        let addr = srv.local_addr();
        let started = Instant::now();
        let mut peers = Vec::with_capacity(n);
        for i in 0..n {
            let peer = within(&rt, "connect", rt.connect(addr, None))
                .await
                .unwrap_or_else(|e| panic!("connect {i} of {n}: {e}"));
            peers.push(peer);
        }
        let connected = started.elapsed();
        within(
            &rt,
            "every connection a session",
            srv.wait_for_session_count(n),
        )
        .await
        .expect("the server is open");
        let served = started.elapsed();
        assert_eq!(Tally::get(&tally.opens), n, "on_open of every session");
        for (i, peer) in peers.iter_mut().enumerate() {
            write_all(peer, &hello_frame(&payload(i)))
                .await
                .unwrap_or_else(|e| panic!("write on connection {i}: {e}"));
        }
        for (i, peer) in peers.iter_mut().enumerate() {
            let echo = within(&rt, "echo", read_hello_frame(peer))
                .await
                .unwrap_or_else(|e| panic!("echo on connection {i}: {e}"));
            assert_eq!(echo, payload(i), "echo on connection {i}");
        }
        let echoed = started.elapsed();
        assert_eq!(Tally::get(&tally.msgs), n, "one message per session");
        assert_eq!(Tally::get(&tally.errors), 0, "no session failed");
        assert_eq!(srv.session_count(), n, "every session still up");
        drop(peers);
        within(&rt, "server close", srv.close()).await;
        assert_eq!(Tally::get(&tally.closes), n, "on_close of every session");
        let mut report = Report::new(NAME);
        report.add("connections", n);
        report.add("connected_in", format!("{connected:.2?}"));
        report.add("all_sessions_in", format!("{served:.2?}"));
        report.add("all_echoed_in", format!("{echoed:.2?}"));
        report
    }

    /// `n` idle sessions on each side (a client pool of `n` connected to a server, default
    /// settings: cron every 60 s, no read timeout) cost no CPU: over a 2 s window after all are
    /// established, the process uses less than 5 % of one core (it should be about nothing:
    /// every task waits on a socket or a far timer). A resource check with a generous bound,
    /// not a speed test: a slow or busy machine only stretches the window.
    pub async fn idle_sessions_use_no_cpu<R: Runtime>(rt: R, os: Os, n: usize) -> Report {
        const NAME: &str = "idle_sessions_use_no_cpu";
        const WINDOW: Duration = Duration::from_secs(2);
        let _limit = match allow_fds(os, 2 * n as u64 + FD_MARGIN) {
            Ok(guard) => guard,
            Err(why) => return Report::skipped(NAME, why),
        };
        let server_tally = Tally::new(false);
        let srv = TcpServer::builder()
            .serve_with(rt.clone(), LengthDelimited::hello(), server_tally.factory())
            .expect("server starts");
        let client_tally = Tally::new(false);
        let started = Instant::now();
        let cli = TcpClientBuilder::new(srv.local_addr())
            .pool_size(n)
            .start_with(rt.clone(), LengthDelimited::hello(), client_tally.factory())
            .expect("client starts");
        within(&rt, "client pool", cli.wait_for_sessions(n))
            .await
            .expect("client connects");
        within(&rt, "server sessions", srv.wait_for_session_count(n))
            .await
            .expect("the server is open");
        let established = started.elapsed();
        let cpu_before = (os.cpu_time)();
        let window_start = Instant::now();
        rt.timer(rt.now() + WINDOW).await;
        let window = window_start.elapsed();
        let cpu = (os.cpu_time)().saturating_sub(cpu_before);
        assert!(
            cpu < window / 20,
            "{n} idle sessions per side used {cpu:?} of CPU in {window:?}"
        );
        assert_eq!(srv.session_count(), n, "the server's sessions stayed up");
        assert_eq!(cli.session_count(), n, "the client's sessions stayed up");
        assert_eq!(Tally::get(&server_tally.errors), 0);
        assert_eq!(Tally::get(&client_tally.errors), 0);
        within(&rt, "client close", cli.close()).await;
        within(&rt, "server close", srv.close()).await;
        let mut report = Report::new(NAME);
        report.add("sessions_per_side", n);
        report.add("established_in", format!("{established:.2?}"));
        report.add("window", format!("{window:.2?}"));
        report.add("cpu", format!("{:.1}ms", cpu.as_secs_f64() * 1e3));
        report
    }

    /// Connect, echo one frame, close, `cycles` times (a getty client pool of one each time,
    /// against one server): nothing accumulates. After the cycles the process has the
    /// descriptors it had before (up to 8 more, for runtime internals), its resident memory
    /// grew by less than 16 MiB, and the live task count (see [`Instrumented`]) is back at
    /// its value before (the server's accept loop). Measured after 100 warm-up cycles, so
    /// that what the runtime and allocator set up once is in both measurements.
    ///
    /// A soak run: `GETTY_CHURN_CYCLES=100000 cargo test --release --test load` (the cycles
    /// per runtime of getty's load binary; ephemeral ports in TIME_WAIT are reused on
    /// loopback by Linux's default `tcp_tw_reuse = 2`).
    pub async fn churn<R: Runtime>(rt: R, cycles: usize) -> Report {
        const NAME: &str = "churn";
        const WARMUP: usize = 100;
        const FD_SLACK: usize = 8;
        const RSS_SLACK: i64 = 16 << 20;
        let rt = Instrumented::new(rt);
        let counters = rt.counters.clone();
        let server_tally = Tally::new(true);
        let srv = TcpServer::builder()
            .serve_with(rt.clone(), LengthDelimited::hello(), server_tally.factory())
            .expect("server starts");
        let addr = srv.local_addr();
        let cycle = |i: usize| {
            let rt = rt.clone();
            async move {
                let tally = Tally::new(false);
                let cli = TcpClientBuilder::new(addr)
                    .start_with(rt.clone(), LengthDelimited::hello(), tally.factory())
                    .expect("client starts");
                within(&rt, "client session", cli.wait_for_sessions(1))
                    .await
                    .unwrap_or_else(|e| panic!("cycle {i}: {e}"));
                cli.sessions()[0].try_send(&payload(i)).expect("send");
                tally
                    .wait(&rt, "the echo", |t| Tally::get(&t.msgs) == 1)
                    .await;
                within(&rt, "client close", cli.close()).await;
                assert_eq!(Tally::get(&tally.errors), 0, "cycle {i}: no client error");
            }
        };
        // Settled: every server session ended (the client's ended with its close) and every
        // task with it; only the accept loop is left.
        let settle = |done: usize| {
            let (rt, counters, tally) = (rt.clone(), counters.clone(), server_tally.clone());
            async move {
                tally
                    .wait(&rt, "server sessions closed", |t| {
                        Tally::get(&t.closes) == done
                    })
                    .await;
                eventually(&rt, "only the accept loop left", || {
                    counters.live_tasks() == 1
                })
                .await;
            }
        };
        for i in 0..WARMUP {
            cycle(i).await;
        }
        settle(WARMUP).await;
        let (fds_before, rss_before) = (open_fds(), rss_bytes());
        let tasks_before = counters.live_tasks();
        let started = Instant::now();
        for i in 0..cycles {
            cycle(WARMUP + i).await;
        }
        settle(WARMUP + cycles).await;
        let elapsed = started.elapsed();
        let (fds_after, rss_after) = (open_fds(), rss_bytes());
        let tasks_after = counters.live_tasks();
        let total = WARMUP + cycles;
        assert_eq!(Tally::get(&server_tally.opens), total, "server on_open");
        assert_eq!(Tally::get(&server_tally.msgs), total, "server messages");
        assert_eq!(Tally::get(&server_tally.errors), 0, "server errors");
        let rss_growth = rss_after as i64 - rss_before as i64;
        assert!(
            fds_after <= fds_before + FD_SLACK,
            "descriptors: {fds_before} before, {fds_after} after {cycles} cycles"
        );
        assert!(
            rss_growth < RSS_SLACK,
            "resident memory: {} before, {} after {cycles} cycles",
            mib(rss_before as i64),
            mib(rss_after as i64)
        );
        assert_eq!(
            tasks_after, tasks_before,
            "live tasks after {cycles} cycles"
        );
        within(&rt, "server close", srv.close()).await;
        eventually(&rt, "no task left", || counters.live_tasks() == 0).await;
        let mut report = Report::new(NAME);
        report.add("cycles", cycles);
        report.add("took", format!("{elapsed:.2?}"));
        report.add("fds", format!("{fds_before}->{fds_after}"));
        report.add(
            "rss",
            format!(
                "{}->{} ({:+}KiB)",
                mib(rss_before as i64),
                mib(rss_after as i64),
                rss_growth / 1024
            ),
        );
        report.add("live_tasks", format!("{tasks_before}->{tasks_after}"));
        report.add("tasks_spawned", counters.spawned_tasks());
        report
    }

    /// A real EMFILE: with every descriptor the soft RLIMIT_NOFILE allows in use, clients
    /// connect (the kernel completes their handshakes into the listen backlog) but the server
    /// cannot accept them. Its accept loop backs off instead of spinning: over a 1 s window
    /// the process uses less than 20 % of a core, and the loop tries to accept at most 20
    /// times. Once descriptors are free again (the limit restored, the filler closed), the
    /// waiting connections become sessions and echo. The limit is restored even if the
    /// scenario fails.
    pub async fn emfile_accept_recovers<R: Runtime>(rt: R, os: Os) -> Report {
        const NAME: &str = "emfile_accept_recovers";
        const CLIENTS: usize = 3;
        const WINDOW: Duration = Duration::from_secs(1);
        const MAX_ATTEMPTS: usize = 20;
        let rt = Instrumented::new(rt);
        let counters = rt.counters.clone();
        let tally = Tally::new(true);
        let srv = TcpServer::builder()
            .serve_with(rt.clone(), LengthDelimited::hello(), tally.factory())
            .expect("server starts");
        let addr = srv.local_addr();

        let (soft, _hard) = (os.nofile_limit)().expect("getrlimit");
        let restore = RestoreNofile { os, soft };
        // Descriptor numbers are below the limit: take every free one below a limit a little
        // above the highest in use.
        let limit = (max_fd() + 1 + 16).min(soft);
        (os.set_nofile_soft)(limit).expect("lowering RLIMIT_NOFILE");
        let mut filler = Vec::new();
        loop {
            match File::open("/dev/null") {
                Ok(file) => filler.push(file),
                Err(err) if err.raw_os_error() == Some(libc::EMFILE) => break,
                Err(err) => panic!("opening /dev/null: {err}"),
            }
            assert!(filler.len() <= limit as usize, "the limit is not enforced");
        }
        let filled = filler.len();
        // Each client's socket takes the descriptor freed for it, synchronously, before its
        // connect first yields: the accept loop never sees a free one.
        let mut peers = Vec::with_capacity(CLIENTS);
        for i in 0..CLIENTS {
            drop(filler.pop().expect("a filler descriptor to free"));
            let peer = within(&rt, "connect", rt.connect(addr, None))
                .await
                .unwrap_or_else(|e| panic!("client {i} connects while accept fails: {e}"));
            peers.push(peer);
        }
        assert!(
            File::open("/dev/null").is_err(),
            "no descriptor is free while the server is stuck"
        );
        eventually(&rt, "the accept loop hit EMFILE", || {
            counters.accept_errors.load(Ordering::SeqCst) > 0
        })
        .await;
        let (errors_before, cpu_before) = (
            counters.accept_errors.load(Ordering::SeqCst),
            (os.cpu_time)(),
        );
        let window_start = Instant::now();
        rt.timer(rt.now() + WINDOW).await;
        let window = window_start.elapsed();
        let cpu = (os.cpu_time)().saturating_sub(cpu_before);
        let attempts = counters.accept_errors.load(Ordering::SeqCst) - errors_before;
        assert_eq!(
            srv.session_count(),
            0,
            "nothing accepted while at the limit"
        );
        assert_eq!(
            Tally::get(&tally.opens),
            0,
            "nothing accepted while at the limit"
        );

        drop(filler);
        drop(restore);
        within(
            &rt,
            "the waiting connections accepted",
            srv.wait_for_session_count(CLIENTS),
        )
        .await
        .expect("the server is open");
        let recovered = window_start.elapsed() - window;
        for (i, peer) in peers.iter_mut().enumerate() {
            write_all(peer, &hello_frame(&payload(i)))
                .await
                .expect("write");
            let echo = within(&rt, "echo", read_hello_frame(peer))
                .await
                .expect("echo");
            assert_eq!(echo, payload(i), "echo on connection {i}");
        }
        // Checked last, so that a failure leaves nothing stuck: the limit is already back.
        assert!(
            cpu < window / 5,
            "the accept loop spun at EMFILE: {cpu:?} of CPU in {window:?}"
        );
        assert!(
            attempts <= MAX_ATTEMPTS,
            "the accept loop spun at EMFILE: {attempts} attempts in {window:?}"
        );
        drop(peers);
        within(&rt, "server close", srv.close()).await;
        let mut report = Report::new(NAME);
        report.add("fd_limit", format!("{soft}->{limit}"));
        report.add("filler_fds", filled);
        report.add("window", format!("{window:.2?}"));
        report.add("cpu", format!("{:.1}ms", cpu.as_secs_f64() * 1e3));
        report.add("accept_attempts", attempts);
        report.add("recovered_in", format!("{recovered:.2?}"));
        report
    }
}
