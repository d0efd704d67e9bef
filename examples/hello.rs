//! getty's hello example: an echo server and clients speaking the hello framing (a 4-byte
//! little-endian length, then the payload), on tokio or smol.
//!
//! ```text
//! cargo run --example hello                          # server + 4 clients in one process
//! cargo run --example hello -- --runtime smol        # the same on smol
//! cargo run --example hello -- server --addr 127.0.0.1:8090   # serve until Ctrl-C
//! cargo run --example hello -- client --addr 127.0.0.1:8090   # echo against any server
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use getty::bytes::Bytes;
use getty::codec::LengthDelimited;
use getty::runtime::timeout;
use getty::{
    async_trait, BoxError, EventListener, Runtime, Session, TcpClient, TcpClientBuilder, TcpServer,
};

#[derive(Parser, Debug)]
#[command(about = "getty hello: echo server and clients over the hello framing")]
struct Args {
    /// The async runtime to run on.
    #[arg(long, value_enum, default_value_t = RuntimeKind::Tokio, global = true)]
    runtime: RuntimeKind,
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

type Hello = LengthDelimited;

/// The server side: echo every package.
struct EchoServer;

#[async_trait]
impl EventListener<Hello> for EchoServer {
    async fn on_message(&self, session: &Session<Hello>, pkg: Bytes) {
        // Waits only while this session's write queue is full: a client that does not read
        // its echoes slows down its own session, nothing else.
        if let Err(err) = session.feed_pkg(&pkg).await {
            log::warn!("echo on session {} failed: {err}", session.id());
        }
    }

    async fn on_cron(&self, session: &Session<Hello>) {
        log::debug!("{}", session.stat());
    }
}

/// The client side: check that every echo is the package sent, in order.
#[derive(Default)]
struct EchoChecker {
    /// Per session: echoes received and mismatches seen.
    progress: Mutex<BTreeMap<u64, (usize, usize)>>,
    changed: event_listener::Event,
}

impl EchoChecker {
    /// Echoes received on all sessions.
    fn echoed(&self) -> usize {
        let progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        progress.values().map(|p| p.0).sum()
    }
}

#[async_trait]
impl EventListener<Hello> for EchoChecker {
    async fn on_message(&self, session: &Session<Hello>, pkg: Bytes) {
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        let entry = progress.entry(session.id()).or_default();
        if pkg != package(session.id(), entry.0) {
            entry.1 += 1;
        }
        entry.0 += 1;
        drop(progress);
        self.changed.notify(usize::MAX);
    }
}

/// Package `seq` of session `id`: its text, so that a mixed-up echo is visible.
fn package(id: u64, seq: usize) -> Bytes {
    Bytes::from(format!("hello #{seq} from session {id}"))
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
            let server = serve(&rt, "127.0.0.1:0".parse()?).await?;
            println!(
                "hello: echo server on {} ({:?}), {} client sessions x {} packages",
                server.local_addr(),
                args.runtime,
                args.sessions,
                args.packages
            );
            let result = exchange(&rt, server.local_addr(), args).await;
            server.close().await;
            result
        }
        Some(Command::Server { addr }) => {
            let server = serve(&rt, *addr).await?;
            println!(
                "hello: echo server on {} ({:?}); Ctrl-C stops it",
                server.local_addr(),
                args.runtime
            );
            ctrl_c().await?;
            println!("hello: closing {} sessions", server.session_count());
            server.close().await;
            Ok(())
        }
        Some(Command::Client { addr }) => exchange(&rt, *addr, args).await,
    }
}

async fn serve<R: Runtime>(rt: &R, addr: SocketAddr) -> Result<TcpServer, BoxError> {
    let listener: Arc<dyn EventListener<Hello>> = Arc::new(EchoServer);
    let server = TcpServer::builder()
        .addr(addr)
        .serve(
            rt.clone(),
            LengthDelimited::hello(),
            move |session: &Session<Hello>| {
                session.set_cron_period(Duration::from_secs(10))?;
                Ok(listener.clone())
            },
        )
        .await?;
    Ok(server)
}

/// Connects a pool, sends the packages on every session, waits for every echo, prints a table.
async fn exchange<R: Runtime>(rt: &R, addr: SocketAddr, args: &Args) -> Result<(), BoxError> {
    let checker = Arc::new(EchoChecker::default());
    let listener: Arc<dyn EventListener<Hello>> = checker.clone();
    let client: TcpClient<Hello> = TcpClientBuilder::new(addr)
        .pool_size(args.sessions)
        .max_reconnect_attempts(Some(5))
        .start(
            rt.clone(),
            LengthDelimited::hello(),
            move |_: &Session<Hello>| Ok(listener.clone()),
        )?;
    timeout(
        rt,
        Duration::from_secs(10),
        client.wait_for_sessions(args.sessions),
    )
    .await
    .map_err(|_| "timed out connecting")??;

    let started = Instant::now();
    let sessions = client.sessions();
    for session in &sessions {
        for seq in 0..args.packages {
            session.send_pkg(&package(session.id(), seq))?;
        }
    }
    let want = sessions.len() * args.packages;
    let all_echoed = async {
        loop {
            let listen = checker.changed.listen();
            if checker.echoed() >= want {
                return;
            }
            listen.await;
        }
    };
    timeout(rt, Duration::from_secs(30), all_echoed)
        .await
        .map_err(|_| "timed out waiting for echoes")?;
    let elapsed = started.elapsed();

    println!();
    println!("| session | sent | echoed | mismatched | bytes written | bytes read |");
    println!("|--------:|-----:|-------:|-----------:|--------------:|-----------:|");
    let progress = checker
        .progress
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut mismatched = 0;
    for session in &sessions {
        let stats = session.stats();
        let (echoed, bad) = progress.get(&session.id()).copied().unwrap_or_default();
        mismatched += bad;
        println!(
            "| {:>7} | {:>4} | {:>6} | {:>10} | {:>13} | {:>10} |",
            session.id(),
            stats.pkgs_written,
            echoed,
            bad,
            stats.bytes_written,
            stats.bytes_read
        );
    }
    println!();
    println!(
        "{want} packages echoed in {elapsed:.2?} ({:.0} packages/s round trip)",
        want as f64 / elapsed.as_secs_f64()
    );
    client.close().await;
    if mismatched > 0 {
        return Err(format!("{mismatched} echoes did not match what was sent").into());
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
