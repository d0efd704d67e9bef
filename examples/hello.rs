//! getty's hello example: an echo server and clients speaking the hello framing (a 4-byte
//! little-endian length, then the payload), over TCP, UDP, TLS, WebSocket (`ws`) or WebSocket
//! over TLS (`wss`), on tokio or smol.
//!
//! ```text
//! cargo run --example hello                          # server + 4 clients in one process
//! cargo run --example hello -- --runtime smol        # the same on smol
//! cargo run --example hello -- --transport udp       # the same over UDP (one frame a datagram)
//! cargo run --example hello -- --transport tls       # over TLS (a CA made on the spot)
//! cargo run --example hello -- --transport ws        # over WebSocket, ws://addr/hello
//! cargo run --example hello -- --transport wss       # over WebSocket over TLS
//! cargo run --example hello -- --compression snappy  # compressed TCP (or TLS) sessions
//! cargo run --example hello -- server --addr 127.0.0.1:8090   # serve until Ctrl-C
//! cargo run --example hello -- client --addr 127.0.0.1:8090   # echo against any server
//!
//! # TLS (or wss) in two processes, with PEM files written by the example:
//! cargo run --example hello -- write-demo-certs target/hello-certs
//! cargo run --example hello -- --transport tls server \
//!     --cert target/hello-certs/server.pem --key target/hello-certs/server.key
//! cargo run --example hello -- --transport tls client --ca target/hello-certs/ca.pem
//! ```
//!
//! Over WebSocket each hello frame travels as one binary message, on the path `/hello`.
//!
//! Over UDP the server is one [`UdpEndpoint`] answering every peer at the datagram's source
//! address, and each client session is a connected UDP socket (checked at connect with getty's
//! connect-ping). UDP does not retransmit: a lost datagram is counted and reported, not waited
//! for.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use getty::bytes::Bytes;
use getty::codec::LengthDelimited;
use getty::endpoint::{Client, UdpClientBuilder, UdpEndpoint, UdpEndpointBuilder};
use getty::runtime::timeout;
use getty::tls::{TlsClientConfig, TlsServerConfig};
use getty::{
    BoxError, Compression, EventListener, Frame, Runtime, Session, SessionConfig, TcpClientBuilder,
    TcpServer, TcpServerBuilder,
};
use getty_testkit::certs::TestCa;

#[derive(Parser, Debug)]
#[command(about = "getty hello: echo server and clients over the hello framing")]
struct Args {
    /// The async runtime to run on.
    #[arg(long, value_enum, default_value_t = RuntimeKind::Tokio, global = true)]
    runtime: RuntimeKind,
    /// The transport: TCP sessions; a UDP endpoint and connected-UDP client sessions; TLS
    /// over TCP; WebSocket on the path /hello (ws); or WebSocket over TLS (wss). The demo
    /// makes its own certificates; the server and client subcommands take PEM files (see
    /// write-demo-certs).
    #[arg(long, value_enum, default_value_t = TransportKind::Tcp, global = true)]
    transport: TransportKind,
    /// Compress the sessions' byte streams (tcp and tls only; server and client must agree).
    #[arg(long, value_enum, default_value_t = CompressionKind::None, global = true)]
    compression: CompressionKind,
    /// The longest frame a session accepts, header included (getty's hello servers take
    /// 128 KiB). Over UDP a datagram is at most 64 KiB anyway.
    #[arg(long, default_value_t = 128 * 1024, global = true)]
    max_msg_len: usize,
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
    ///
    /// Over tls and wss, --cert and --key are required (PEM files; write-demo-certs makes a
    /// pair).
    Server {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        addr: SocketAddr,
        /// The server's certificate chain, a PEM file (tls and wss only).
        #[arg(long, value_name = "PEM")]
        cert: Option<PathBuf>,
        /// The server's private key, a PEM file (tls and wss only).
        #[arg(long, value_name = "PEM")]
        key: Option<PathBuf>,
    },
    /// Connect to a hello server, send packages, check the echoes, print statistics.
    ///
    /// Over tls and wss, --ca is required: the server's certificate must chain to it and name
    /// the server (by default the IP address of --addr; see --server-name).
    Client {
        /// The server's address.
        #[arg(long, default_value = "127.0.0.1:8090")]
        addr: SocketAddr,
        /// The CA certificate(s) to trust, a PEM file (tls and wss only).
        #[arg(long, value_name = "PEM")]
        ca: Option<PathBuf>,
        /// The name the server's certificate must have, when not the IP address of --addr
        /// (tls and wss only).
        #[arg(long, value_name = "NAME")]
        server_name: Option<String>,
    },
    /// Write a throwaway CA (ca.pem) and a server certificate for localhost and 127.0.0.1
    /// signed by it (server.pem, server.key) into DIR, for the server and client subcommands
    /// over tls and wss.
    WriteDemoCerts {
        /// The directory to write to (created if missing; existing files are replaced).
        dir: PathBuf,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum RuntimeKind {
    Tokio,
    Smol,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum CompressionKind {
    None,
    Deflate,
    DeflateBestSpeed,
    DeflateBestCompression,
    DeflateHuffmanOnly,
    Snappy,
}

impl CompressionKind {
    fn setting(self) -> Compression {
        match self {
            CompressionKind::None => Compression::None,
            CompressionKind::Deflate => Compression::Deflate,
            CompressionKind::DeflateBestSpeed => Compression::DeflateBestSpeed,
            CompressionKind::DeflateBestCompression => Compression::DeflateBestCompression,
            CompressionKind::DeflateHuffmanOnly => Compression::DeflateHuffmanOnly,
            CompressionKind::Snappy => Compression::Snappy,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum TransportKind {
    Tcp,
    Udp,
    Tls,
    Ws,
    Wss,
}

impl TransportKind {
    fn is_tls(self) -> bool {
        matches!(self, TransportKind::Tls | TransportKind::Wss)
    }

    fn is_websocket(self) -> bool {
        matches!(self, TransportKind::Ws | TransportKind::Wss)
    }

    /// Where a server on `addr` is reached, for the first line printed.
    fn endpoint(self, addr: SocketAddr) -> String {
        match self {
            TransportKind::Ws => format!("ws://{addr}{WS_PATH}"),
            TransportKind::Wss => format!("wss://{addr}{WS_PATH}"),
            _ => addr.to_string(),
        }
    }
}

type Hello = LengthDelimited;

/// The path the WebSocket server upgrades on (ws and wss).
const WS_PATH: &str = "/hello";

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
        // The payload goes back as it came, behind a new header: no copy.
        let echoed = match to {
            None => session.send_frame(Frame::payload(pkg)).await,
            Some(peer) => session.to(peer).send_frame(Frame::payload(pkg)).await,
        };
        if let Err(err) = echoed {
            log::warn!("echo on session {} failed: {err}", session.id());
        }
    }
}
impl EventListener<Hello> for EchoServer {
    async fn on_message(&self, session: &Session<Hello>, pkg: Bytes) {
        self.echo(session, pkg, None).await;
    }

    async fn on_datagram(&self, session: &Session<Hello>, pkg: Bytes, peer: SocketAddr) {
        self.echo(session, pkg, Some(peer)).await;
    }

    async fn on_cron(&self, session: &Session<Hello>) {
        log::debug!("{session}");
    }
}

/// A server of any transport (TCP, TLS, ws and wss servers are all TCP servers).
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
            tokio.block_on(run(getty::TokioRuntime::new(tokio.handle().clone()), &args))
        }
        RuntimeKind::Smol => smol::block_on(run(getty::SmolRuntime::global(), &args)),
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
    let compressible = matches!(args.transport, TransportKind::Tcp | TransportKind::Tls);
    if args.compression != CompressionKind::None && !compressible {
        return Err("--compression is for --transport tcp or tls".into());
    }
    match &args.command {
        None => {
            // Both sides in one process: a CA made on the spot, trusted by the clients.
            let (server_tls, client_tls) = if args.transport.is_tls() {
                let ca = TestCa::new("getty hello demo CA");
                (Some(ca.server_config(None)), Some(ca.client_config(None)))
            } else {
                (None, None)
            };
            let server = serve(&rt, "127.0.0.1:0".parse()?, args, server_tls).await?;
            println!(
                "hello: echo server on {} ({:?}, {:?}, compression {:?}), {} client sessions x {} \
                 packages",
                args.transport.endpoint(server.local_addr()),
                args.transport,
                args.runtime,
                args.compression,
                args.sessions,
                args.packages
            );
            let result = exchange(&rt, server.local_addr(), args, client_tls).await;
            server.close().await;
            result
        }
        Some(Command::Server { addr, cert, key }) => {
            let tls = server_tls(args.transport, cert.as_deref(), key.as_deref())?;
            let server = serve(&rt, *addr, args, tls).await?;
            println!(
                "hello: echo server on {} ({:?}, {:?}); Ctrl-C stops it",
                args.transport.endpoint(server.local_addr()),
                args.transport,
                args.runtime
            );
            ctrl_c().await?;
            println!("hello: closing {}", server.describe());
            server.close().await;
            Ok(())
        }
        Some(Command::Client {
            addr,
            ca,
            server_name,
        }) => {
            let tls = client_tls(args.transport, ca.as_deref(), server_name.as_deref())?;
            exchange(&rt, *addr, args, tls).await
        }
        Some(Command::WriteDemoCerts { dir }) => write_demo_certs(dir),
    }
}

/// The server subcommand's TLS configuration: from `cert` and `key` over tls and wss, none
/// otherwise.
fn server_tls(
    transport: TransportKind,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<TlsServerConfig>, BoxError> {
    match (transport.is_tls(), cert, key) {
        (true, Some(cert), Some(key)) => Ok(Some(
            TlsServerConfig::builder()
                .cert_chain_file(cert)
                .private_key_file(key)
                .build()?,
        )),
        (true, _, _) => Err(
            "--transport tls and wss need --cert and --key (PEM files; write-demo-certs makes \
             a pair)"
                .into(),
        ),
        (false, None, None) => Ok(None),
        (false, _, _) => Err("--cert and --key are for --transport tls or wss".into()),
    }
}

/// The client subcommand's TLS configuration: trusting `ca` over tls and wss, none otherwise.
fn client_tls(
    transport: TransportKind,
    ca: Option<&Path>,
    server_name: Option<&str>,
) -> Result<Option<TlsClientConfig>, BoxError> {
    match (transport.is_tls(), ca) {
        (true, Some(ca)) => {
            let mut builder = TlsClientConfig::builder().root_ca_file(ca);
            if let Some(name) = server_name {
                builder = builder.server_name(name);
            }
            Ok(Some(builder.build()?))
        }
        (true, None) => {
            Err("--transport tls and wss need --ca (a PEM file; write-demo-certs makes one)".into())
        }
        (false, _) if ca.is_some() || server_name.is_some() => {
            Err("--ca and --server-name are for --transport tls or wss".into())
        }
        (false, _) => Ok(None),
    }
}

/// Writes a CA and a server certificate and key signed by it, as PEM files in `dir`.
fn write_demo_certs(dir: &Path) -> Result<(), BoxError> {
    let ca = TestCa::new("getty hello demo CA");
    let leaf = ca.leaf(&["localhost", "127.0.0.1"]);
    std::fs::create_dir_all(dir)?;
    for (name, pem) in [
        ("ca.pem", ca.cert_pem()),
        ("server.pem", leaf.cert_pem),
        ("server.key", leaf.key_pem),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, pem).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("hello: wrote {}", path.display());
    }
    Ok(())
}

/// A TCP server builder for `transport` (tcp, tls, ws or wss) on `addr`; `tls` is the
/// server's configuration over tls and wss.
fn tcp_server(
    addr: SocketAddr,
    transport: TransportKind,
    tls: Option<TlsServerConfig>,
) -> TcpServerBuilder {
    let mut builder = TcpServer::builder().addr(addr);
    if let Some(tls) = tls {
        builder = builder.tls(tls);
    }
    if transport.is_websocket() {
        builder = builder.websocket(WS_PATH);
    }
    builder
}

/// A TCP client builder for `transport` (tcp, tls, ws or wss) of the server at `addr`; `tls`
/// is the client's configuration over tls and wss.
fn tcp_client(
    addr: SocketAddr,
    transport: TransportKind,
    tls: Option<TlsClientConfig>,
) -> TcpClientBuilder {
    let mut builder = TcpClientBuilder::new(addr);
    if let Some(tls) = tls {
        builder = builder.tls(tls);
    }
    if transport.is_websocket() {
        builder = builder.websocket(WS_PATH);
    }
    builder
}

async fn serve<R: Runtime>(
    rt: &R,
    addr: SocketAddr,
    args: &Args,
    tls: Option<TlsServerConfig>,
) -> Result<Server, BoxError> {
    let config = SessionConfig::new()
        .max_msg_len(args.max_msg_len)
        .cron_period(Duration::from_secs(10))
        .compression(args.compression.setting());
    let server = match args.transport {
        TransportKind::Udp => Server::Udp(
            UdpEndpointBuilder::new()
                .addr(addr)
                .session_config(config)
                .bind(rt.clone(), LengthDelimited::hello(), EchoServer)
                .await?,
        ),
        transport @ (TransportKind::Tcp
        | TransportKind::Tls
        | TransportKind::Ws
        | TransportKind::Wss) => Server::Tcp(
            tcp_server(addr, transport, tls)
                .session_config(config)
                .serve(rt.clone(), LengthDelimited::hello(), EchoServer)?,
        ),
    };
    Ok(server)
}

/// Connects a pool, sends the packages on every session, waits for every echo, prints a table.
/// `tls` is the clients' configuration over tls and wss.
async fn exchange<R: Runtime>(
    rt: &R,
    addr: SocketAddr,
    args: &Args,
    tls: Option<TlsClientConfig>,
) -> Result<(), BoxError> {
    let checker = Arc::new(EchoChecker::default());
    let config = SessionConfig::new()
        .max_msg_len(args.max_msg_len)
        .compression(args.compression.setting());
    let udp = args.transport == TransportKind::Udp;
    // The same pool type for every transport; only how a session connects differs.
    let client: Client<Hello> = if udp {
        UdpClientBuilder::new(addr)
            .pool_size(args.sessions)
            .max_reconnect_attempts(Some(5))
            .connect_ping_wait(UDP_CONNECT_PING_WAIT)
            .session_config(config)
            .start(rt.clone(), LengthDelimited::hello(), checker.clone())?
    } else {
        tcp_client(addr, args.transport, tls)
            .pool_size(args.sessions)
            .max_reconnect_attempts(Some(5))
            .session_config(config)
            .start(rt.clone(), LengthDelimited::hello(), checker.clone())?
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
                session.try_send(&package(session.id(), seq))?;
                sent += 1;
            }
        }
        checker.wait_until(rt, Some(UDP_QUIET), all_echoed).await
    } else {
        for session in &sessions {
            for seq in 0..args.packages {
                session.try_send(&package(session.id(), seq))?;
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
