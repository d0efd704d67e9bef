//! getty's hello example: an echo server and clients speaking the hello framing (a 4-byte
//! little-endian length, then the payload), over TCP or UDP, on tokio or smol.
//!
//! ```text
//! cargo run --example hello                          # server + 4 clients in one process
//! cargo run --example hello -- --runtime smol        # the same on smol
//! cargo run --example hello -- --transport udp       # the same over UDP (one frame a datagram)
//! cargo run --example hello -- server --addr 127.0.0.1:8090   # serve until Ctrl-C
//! cargo run --example hello -- client --addr 127.0.0.1:8090   # echo against any server
//! ```
//!
//! Over UDP the server is one [`UdpEndpoint`] answering every peer at the datagram's source
//! address, and each client session is a connected UDP socket (checked at connect with getty's
//! connect-ping). UDP does not retransmit: a lost datagram is counted and reported, not waited
//! for.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use getty::bytes::Bytes;
use getty::codec::LengthDelimited;
use getty::endpoint::{Client, UdpClientBuilder, UdpEndpoint, UdpEndpointBuilder};
use getty::runtime::timeout;
use getty::{async_trait, BoxError, EventListener, Runtime, Session, TcpClientBuilder, TcpServer};

#[derive(Parser, Debug)]
#[command(about = "getty hello: echo server and clients over the hello framing")]
struct Args {
    /// The async runtime to run on.
    #[arg(long, value_enum, default_value_t = RuntimeKind::Tokio, global = true)]
    runtime: RuntimeKind,
    /// The transport: TCP sessions, or a UDP endpoint and connected-UDP client sessions.
    #[arg(long, value_enum, default_value_t = TransportKind::Tcp, global = true)]
    transport: TransportKind,
    /// Client sessions (the pool size of the client).
    #[arg(long, default_value_t = 4, global = true)]
    sessions: usize,
    /// Packages each client session sends.
    #[arg(long, default_value_t = 1000, global = true)]
    packages: usize,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the hello echo protocol until Ctrl-C.
    Server {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        addr: SocketAddr,
    },
    /// Connect to a hello server, send packages, check the echoes, print statistics.
    Client {
        /// The server's address.
        #[arg(long, default_value = "127.0.0.1:8090")]
        addr: SocketAddr,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum RuntimeKind {
    Tokio,
    Smol,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum TransportKind {
    Tcp,
    Udp,
}

type Hello = LengthDelimited;

/// How long a UDP client's connect waits for an answer to its connect-ping. The echo server
/// ignores connect-pings, so each connect takes this long; silence counts as success.
const UDP_CONNECT_PING_WAIT: Duration = Duration::from_millis(100);

/// Over UDP the clients keep at most this many packages unanswered in all, so that a burst
/// does not overflow the server's socket buffer (UDP drops what does not fit, it does not wait).
const UDP_WINDOW: usize = 64;

/// Over UDP, echoes still missing after this long without any arriving count as lost.
const UDP_QUIET: Duration = Duration::from_secs(1);

/// The server side: echo every package to where it came from.
struct EchoServer;

impl EchoServer {
    /// Echoes `pkg` on `session`: to its peer (`to` is `None`: TCP), or as a datagram to `to`
    /// (a UDP endpoint serves every peer on one session).
    async fn echo(&self, session: &Session<Hello>, pkg: Bytes, to: Option<SocketAddr>) {
        // Waits only while this session's write queue is full: over TCP a client that does not
        // read its echoes slows down its own session, nothing else (a UDP endpoint has one
        // session, and so one queue, for all its peers).
        let echoed = match to {
            None => session.feed_pkg(&pkg).await,
            Some(peer) => session.feed_pkg_to(&pkg, peer).await,
        };
        if let Err(err) = echoed {
            log::warn!("echo on session {} failed: {err}", session.id());
        }
    }
}

#[async_trait]
impl EventListener<Hello> for EchoServer {
    async fn on_message(&self, session: &Session<Hello>, pkg: Bytes) {
        self.echo(session, pkg, None).await;
    }

    async fn on_datagram(&self, session: &Session<Hello>, pkg: Bytes, peer: SocketAddr) {
        self.echo(session, pkg, Some(peer)).await;
    }

    async fn on_cron(&self, session: &Session<Hello>) {
        log::debug!("{}", session.stat());
    }
}

/// A server of either transport.
enum Server {
    Tcp(TcpServer),
    Udp(UdpEndpoint<Hello>),
}

impl Server {
    fn local_addr(&self) -> SocketAddr {
        match self {
            Server::Tcp(server) => server.local_addr(),
            Server::Udp(endpoint) => endpoint.local_addr(),
        }
    }

    /// What closing leaves behind, for the server subcommand's last line.
    fn describe(&self) -> String {
        match self {
            Server::Tcp(server) => format!("{} sessions", server.session_count()),
            Server::Udp(endpoint) => {
                let stats = endpoint.session().stats();
                format!(
                    "the UDP endpoint ({} datagrams echoed, {} dropped, {} send failures)",
                    stats.pkgs_written, stats.pkgs_dropped, stats.send_failures
                )
            }
        }
    }

    async fn close(&self) {
        match self {
            Server::Tcp(server) => server.close().await,
            Server::Udp(endpoint) => endpoint.close().await,
        }
    }
}

/// The client side: check that every echo is a package sent, in order.
#[derive(Default)]
struct EchoChecker {
    /// Per session: what arrived.
    progress: Mutex<BTreeMap<u64, Progress>>,
    changed: event_listener::Event,
}

/// The echoes of one client session.
#[derive(Default, Clone, Copy)]
struct Progress {
    /// Echoes received.
    echoed: usize,
    /// The sequence number of the next package expected.
    next: usize,
    /// Echoes that were not a later package of this session.
    mismatched: usize,
}

impl EchoChecker {
    fn progress(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Progress>> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Echoes received on all sessions.
    fn echoed(&self) -> usize {
        self.progress().values().map(|p| p.echoed).sum()
    }

    /// Waits until `done()` holds, re-checking after every echo. Returns `false` if `quiet`
    /// passes without any echo arriving first (never, when `quiet` is `None`).
    async fn wait_until<R: Runtime>(
        &self,
        rt: &R,
        quiet: Option<Duration>,
        mut done: impl FnMut(&Self) -> bool,
    ) -> bool {
        loop {
            let listen = self.changed.listen();
            if done(self) {
                return true;
            }
            match quiet {
                None => listen.await,
                Some(quiet) => {
                    if timeout(rt, quiet, listen).await.is_err() {
                        return false;
                    }
                }
            }
        }
    }
}

#[async_trait]
impl EventListener<Hello> for EchoChecker {
    async fn on_message(&self, session: &Session<Hello>, pkg: Bytes) {
        let mut progress = self.progress();
        let entry = progress.entry(session.id()).or_default();
        entry.echoed += 1;
        if pkg == package(session.id(), entry.next) {
            entry.next += 1;
        } else {
            match sequence_of(session.id(), &pkg) {
                // Later than expected: the packages in between were lost (UDP).
                Some(seq) if seq > entry.next => entry.next = seq + 1,
                _ => entry.mismatched += 1,
            }
        }
        drop(progress);
        self.changed.notify(usize::MAX);
    }
}

/// Package `seq` of session `id`: its text, so that a mixed-up echo is visible.
fn package(id: u64, seq: usize) -> Bytes {
    Bytes::from(format!("hello #{seq} from session {id}"))
}

/// The sequence number of `pkg` if it is a package of session `id`.
fn sequence_of(id: u64, pkg: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(pkg).ok()?.strip_prefix("hello #")?;
    let (seq, from) = text.split_once(" from session ")?;
    (from.parse::<u64>().ok()? == id).then_some(())?;
    seq.parse().ok()
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    let outcome = match args.runtime {
        RuntimeKind::Tokio => {
            let tokio = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(err) => {
                    eprintln!("cannot start tokio: {err}");
                    return ExitCode::FAILURE;
                }
            };
            tokio.block_on(run(
                getty::tokio::TokioRuntime::new(tokio.handle().clone()),
                &args,
            ))
        }
        RuntimeKind::Smol => smol::block_on(run(getty::smol::SmolRuntime::global(), &args)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("hello failed: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run<R: Runtime>(rt: R, args: &Args) -> Result<(), BoxError> {
    match &args.command {
        None => {
            let server = serve(&rt, "127.0.0.1:0".parse()?, args.transport).await?;
            println!(
                "hello: echo server on {} ({:?}, {:?}), {} client sessions x {} packages",
                server.local_addr(),
                args.transport,
                args.runtime,
                args.sessions,
                args.packages
            );
            let result = exchange(&rt, server.local_addr(), args).await;
            server.close().await;
            result
        }
        Some(Command::Server { addr }) => {
            let server = serve(&rt, *addr, args.transport).await?;
            println!(
                "hello: echo server on {} ({:?}, {:?}); Ctrl-C stops it",
                server.local_addr(),
                args.transport,
                args.runtime
            );
            ctrl_c().await?;
            println!("hello: closing {}", server.describe());
            server.close().await;
            Ok(())
        }
        Some(Command::Client { addr }) => exchange(&rt, *addr, args).await,
    }
}

async fn serve<R: Runtime>(
    rt: &R,
    addr: SocketAddr,
    transport: TransportKind,
) -> Result<Server, BoxError> {
    let listener: Arc<dyn EventListener<Hello>> = Arc::new(EchoServer);
    let new_session = move |session: &Session<Hello>| {
        session.set_cron_period(Duration::from_secs(10))?;
        Ok(listener.clone())
    };
    let server = match transport {
        TransportKind::Tcp => Server::Tcp(
            TcpServer::builder()
                .addr(addr)
                .serve(rt.clone(), LengthDelimited::hello(), new_session)
                .await?,
        ),
        TransportKind::Udp => Server::Udp(
            UdpEndpointBuilder::new()
                .addr(addr)
                .bind(rt.clone(), LengthDelimited::hello(), new_session)
                .await?,
        ),
    };
    Ok(server)
}

/// Connects a pool, sends the packages on every session, waits for every echo, prints a table.
async fn exchange<R: Runtime>(rt: &R, addr: SocketAddr, args: &Args) -> Result<(), BoxError> {
    let checker = Arc::new(EchoChecker::default());
    let listener: Arc<dyn EventListener<Hello>> = checker.clone();
    let new_session = move |_: &Session<Hello>| Ok(listener.clone());
    let udp = args.transport == TransportKind::Udp;
    // The same pool type for both transports; only how a session connects differs.
    let client: Client<Hello> = if udp {
        UdpClientBuilder::new(addr)
            .pool_size(args.sessions)
            .max_reconnect_attempts(Some(5))
            .connect_ping_wait(UDP_CONNECT_PING_WAIT)
            .start(rt.clone(), LengthDelimited::hello(), new_session)?
    } else {
        TcpClientBuilder::new(addr)
            .pool_size(args.sessions)
            .max_reconnect_attempts(Some(5))
            .start(rt.clone(), LengthDelimited::hello(), new_session)?
    };
    timeout(
        rt,
        Duration::from_secs(10),
        client.wait_for_sessions(args.sessions),
    )
    .await
    .map_err(|_| "timed out connecting")??;

    let started = Instant::now();
    let sessions = client.sessions();
    let want = sessions.len() * args.packages;
    let all_echoed = |c: &EchoChecker| c.echoed() >= want;
    let complete = if udp {
        // Paced: at most UDP_WINDOW packages unanswered in all, sent round robin. Sending
        // stops early if no echo comes for UDP_QUIET (the window is full of lost datagrams).
        let mut sent = 0;
        'sending: for seq in 0..args.packages {
            for session in &sessions {
                if !checker
                    .wait_until(rt, Some(UDP_QUIET), |c| sent < c.echoed() + UDP_WINDOW)
                    .await
                {
                    break 'sending;
                }
                session.send_pkg(&package(session.id(), seq))?;
                sent += 1;
            }
        }
        checker.wait_until(rt, Some(UDP_QUIET), all_echoed).await
    } else {
        for session in &sessions {
            for seq in 0..args.packages {
                session.send_pkg(&package(session.id(), seq))?;
            }
        }
        timeout(
            rt,
            Duration::from_secs(30),
            checker.wait_until(rt, None, all_echoed),
        )
        .await
        .map_err(|_| "timed out waiting for echoes")?
    };
    let elapsed = started.elapsed();

    println!();
    println!("| session | sent | echoed | mismatched | bytes written | bytes read |");
    println!("|--------:|-----:|-------:|-----------:|--------------:|-----------:|");
    let progress = checker.progress().clone();
    let (mut echoed, mut mismatched, mut dropped, mut send_failures) = (0, 0, 0, 0);
    for session in &sessions {
        let stats = session.stats();
        let p = progress.get(&session.id()).copied().unwrap_or_default();
        echoed += p.echoed;
        mismatched += p.mismatched;
        dropped += stats.pkgs_dropped;
        send_failures += stats.send_failures;
        println!(
            "| {:>7} | {:>4} | {:>6} | {:>10} | {:>13} | {:>10} |",
            session.id(),
            stats.pkgs_written,
            p.echoed,
            p.mismatched,
            stats.bytes_written,
            stats.bytes_read
        );
    }
    println!();
    let rate = echoed as f64 / elapsed.as_secs_f64();
    if complete && !udp {
        println!("{want} packages echoed in {elapsed:.2?} ({rate:.0} packages/s round trip)");
    } else {
        println!(
            "{echoed} of {want} packages echoed in {elapsed:.2?} ({rate:.0} packages/s round \
             trip); {} lost (UDP does not retransmit), {dropped} dropped as undecodable, \
             {send_failures} send failures",
            want - echoed.min(want)
        );
    }
    client.close().await;
    if mismatched > 0 {
        return Err(format!("{mismatched} echoes did not match what was sent").into());
    }
    if echoed == 0 && want > 0 {
        return Err("no echo arrived".into());
    }
    Ok(())
}

/// Completes on the first Ctrl-C.
async fn ctrl_c() -> Result<(), BoxError> {
    let (tx, rx) = smol::channel::bounded(1);
    ctrlc::set_handler(move || {
        let _ = tx.try_send(());
    })?;
    rx.recv().await?;
    Ok(())
}
