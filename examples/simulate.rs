//! getty on getty-sim, the deterministic simulated runtime: a hello echo server on the simulated
//! host 10.0.0.1 and a pool of 3 client sessions on 10.0.0.2 exchange echoes while a script
//! partitions the two hosts, heals them, crashes the server's host and restarts it. The
//! sessions notice (read timeouts), the pool reconnects with backoff, and echoes flow again
//! after each fault. Every line of the timeline comes from getty's callbacks, the client's
//! events or the script, stamped with virtual time: ten seconds of it, run in milliseconds.
//! The same seed prints the same timeline; another seed interleaves the tasks differently and
//! tells the same story.
//!
//! ```text
//! cargo run --example simulate
//! cargo run --example simulate -- --seed 7
//! ```

use std::fmt::Display;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use getty::endpoint::{ClientEvent, ClientEvents};
use getty::prelude::*;
use getty_sim::{Sim, SimRuntime, SimTimer};

#[derive(Parser)]
#[command(about = "getty on a simulated network: partition, heal, crash, restart")]
struct Args {
    /// The seed: it fixes the order ready tasks run in and every random number.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

const SERVER: &str = "10.0.0.1:8000";
const POOL: usize = 3;

/// What the whole run shares: the simulation's clock, the start of the timeline, and the
/// echoes the client got.
struct Run {
    rt: SimRuntime,
    start: Instant,
    echoes: AtomicUsize,
}

impl Run {
    /// Prints one line of the timeline, at the virtual time since the start.
    fn say(&self, what: impl Display) {
        let at = self.rt.now() - self.start;
        println!("{:>7.3}s  {what}", at.as_secs_f64());
    }

    /// A timer for `secs` into the timeline.
    fn at(&self, secs: u64) -> SimTimer {
        self.rt.timer(self.start + Duration::from_secs(secs))
    }

    fn echoes(&self) -> usize {
        self.echoes.load(Relaxed)
    }
}

/// One session's listener, on either side: the server echoes, the client counts the echoes.
/// Both say when and why the session closed.
struct Peer {
    run: Arc<Run>,
    side: &'static str,
    why: Mutex<String>,
}

impl Peer {
    fn new(run: &Arc<Run>, side: &'static str) -> Result<Peer, BoxError> {
        let (run, why) = (run.clone(), Mutex::default());
        Ok(Peer { run, side, why })
    }
}

impl EventListener<LengthDelimited> for Peer {
    async fn on_message(&self, session: &Session<LengthDelimited>, pkg: Bytes) {
        match self.side {
            // The payload goes back as it came, behind a new header: no copy.
            "server" => drop(session.send_frame(Frame::payload(pkg)).await),
            _ => drop(self.run.echoes.fetch_add(1, Relaxed)),
        }
    }

    async fn on_error(&self, _: &Session<LengthDelimited>, err: &Error) {
        *self.why.lock().unwrap() = match err {
            Error::ReadTimeout(_) => ": read timeout".into(),
            err => format!(": {err}"),
        };
    }

    async fn on_close(&self, session: &Session<LengthDelimited>) {
        let why = self.why.lock().unwrap();
        let (side, id) = (self.side, session.id());
        self.run.say(format!("{side} session {id} closed{why}"));
    }
}

/// Starts the echo server on `rt`'s host. Its sessions give up on a silent client after 1 s.
fn serve(rt: &SimRuntime, run: &Arc<Run>) -> Result<TcpServer, Error> {
    let peers = run.clone();
    let server = TcpServer::builder()
        .addr(SERVER.parse().unwrap())
        .session_config(SessionConfig::new().read_timeout(Duration::from_secs(1)))
        .serve_with(rt.clone(), LengthDelimited::hello(), move |_: &_| {
            Peer::new(&peers, "server")
        })?;
    run.say(format!("server listening on {}", server.local_addr()));
    Ok(server)
}

/// Prints the client's connection events (a closed session says why itself).
async fn print_events(mut events: ClientEvents<LengthDelimited>, run: Arc<Run>) {
    while let Some(event) = events.recv().await {
        match event {
            ClientEvent::Connected(s) => run.say(format!("client session {} connected", s.id())),
            ClientEvent::ConnectFailed {
                error,
                attempt: n,
                retry_in: t,
            } => run.say(format!(
                "client connect #{n} failed: {error}; retry in {t:.0?}"
            )),
            ClientEvent::GaveUp(error) => run.say(format!("client gave up: {error}")),
            _ => {}
        }
    }
}

/// Sends a request on every open client session each 10 ms.
async fn send_steadily(rt: SimRuntime, sessions: SessionGroup<LengthDelimited>) {
    loop {
        for session in sessions.members().iter() {
            // Fails while a session's queue is full (a stalled peer): nothing to do then.
            let _ = session.try_send(b"ping");
        }
        rt.sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the whole pool is up and 30 more echoes came; an error after 30 s.
async fn pool_up(run: &Run, client: &Client<LengthDelimited>, what: &str) -> Result<(), BoxError> {
    let (mark, give_up) = (run.echoes(), run.rt.now() + Duration::from_secs(30));
    while client.session_count() < POOL || run.echoes() < mark + 30 {
        if run.rt.now() > give_up {
            return Err(format!("the pool is not {what} 30 s later").into());
        }
        run.rt.sleep(Duration::from_millis(10)).await;
    }
    let n = run.echoes();
    run.say(format!("client: {POOL} sessions {what}, {n} echoes so far"));
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let real = Instant::now();
    let sim = Sim::new(args.seed);
    let outcome = sim.block_on(script(&sim));
    let virtual_secs = sim.elapsed().as_secs_f64();
    println!("seed {}, {virtual_secs:.3}s of virtual time", args.seed);
    println!("real time: {:.1?}", real.elapsed());
    if let Err(err) = outcome {
        eprintln!("simulate failed (seed {}): {err}", args.seed);
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

async fn script(sim: &Sim) -> Result<(), BoxError> {
    let (server_rt, client_rt) = (sim.host("10.0.0.1".parse()?), sim.host("10.0.0.2".parse()?));
    let (a, b) = (server_rt.ip(), client_rt.ip());
    let (rt, echoes) = (sim.runtime(), AtomicUsize::new(0));
    let run = Arc::new(Run {
        start: rt.now(),
        rt,
        echoes,
    });

    let server = serve(&server_rt, &run)?;
    let peers = run.clone();
    let client = TcpClientBuilder::new(SERVER.parse()?)
        .pool_size(POOL)
        .reconnect_interval(Duration::from_millis(100))
        .max_reconnect_attempts(None)
        // A connect across a partition waits for the heal: this bounds each attempt.
        .connect_timeout(Duration::from_millis(300))
        .session_config(SessionConfig::new().read_timeout(Duration::from_millis(500)))
        .start_with(client_rt.clone(), LengthDelimited::hello(), move |_: &_| {
            Peer::new(&peers, "client")
        })?;
    client_rt.spawn(print_events(client.events(), run.clone()));
    client_rt.spawn(send_steadily(client_rt.clone(), client.group().clone()));

    pool_up(&run, &client, "up").await?;
    run.at(2).await;
    run.say(format!("partition {a} | {b}"));
    client_rt.partition(a, b);
    run.at(4).await;
    run.say(format!("heal {a} | {b}"));
    client_rt.heal(a, b);
    pool_up(&run, &client, "back").await?;

    // The server's tasks stop where they stand and its sockets vanish without a FIN: its
    // sessions say nothing, the client's hear nothing until their read timeout.
    run.at(6).await;
    run.say(format!("crash {a} (no FIN, no on_close)"));
    client_rt.crash(a);
    drop(server);
    run.at(8).await;
    run.say(format!("restart {a}"));
    client_rt.restart(a);
    let server = serve(&server_rt, &run)?;
    pool_up(&run, &client, "back").await?;

    run.at(10).await;
    let live = client.session_count();
    client.close().await;
    server.close().await;
    run.say(format!("closed; {} echoes in all", run.echoes()));
    if live != POOL {
        return Err(format!("{live} of {POOL} client sessions live at the end").into());
    }
    Ok(())
}
