//! A UDP echo server on smol, and a client that counts what comes back. Shows a
//! `UdpEndpoint` (one session serving every peer: `on_datagram` learns the sender,
//! `session.to(peer)` answers it), a connected-UDP client, and loss accounting: UDP does not
//! retransmit, so the client waits for echoes until a deadline and counts the missing ones.
//!
//! ```text
//! cargo run --example udp_echo                                 # echoes on 127.0.0.1:8080
//! cargo run --example udp_echo -- --client 1000                # sends 1000, counts echoes
//! nc -u 127.0.0.1 8080                                         # type lines, get them back
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use getty::prelude::*;
use smol::channel::{Receiver, Sender};

#[derive(Parser)]
struct Args {
    /// Where to listen, or with --client the server to send to.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Send this many datagrams to the server at --addr and count the echoes.
    #[arg(long, value_name = "N")]
    client: Option<usize>,
    /// The client keeps at most this many datagrams unanswered (a burst larger than the
    /// socket buffers is lost: try --window 100000).
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// The client counts what is unanswered after this much silence as lost.
    #[arg(long, default_value_t = 1)]
    wait_secs: u64,
}

/// The server: every datagram goes back to its sender.
struct Echo;

impl EventListener<RawBytes> for Echo {
    async fn on_message(&self, _session: &Session<RawBytes>, _pkg: Bytes) {}

    async fn on_datagram(&self, session: &Session<RawBytes>, pkg: Bytes, peer: SocketAddr) {
        let _ = session.to(peer).send(&pkg).await; // waits only while the queue is full
    }
}

/// The client: hands every echo to the counting loop.
struct Echoes(Sender<Bytes>);

impl EventListener<RawBytes> for Echoes {
    async fn on_message(&self, _session: &Session<RawBytes>, pkg: Bytes) {
        let _ = self.0.try_send(pkg);
    }
}

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    smol::block_on(async {
        match args.client {
            Some(n) => {
                client(
                    args.addr,
                    n,
                    args.window,
                    Duration::from_secs(args.wait_secs),
                )
                .await
            }
            None => server(args.addr).await,
        }
    })
}

async fn server(addr: SocketAddr) -> Result<(), BoxError> {
    // Ctrl-C is handled from here on: before the first line tells anyone to connect.
    let (tx, ctrl_c) = smol::channel::bounded(1);
    ctrlc::set_handler(move || {
        let _ = tx.try_send(());
    })?;
    // Sessions take 4 KiB packages by default; a datagram can be up to 64 KiB.
    let endpoint = UdpEndpointBuilder::new()
        .addr(addr)
        .session_config(SessionConfig::new().max_msg_len(64 * 1024))
        .bind(SmolRuntime::global(), RawBytes, Echo)
        .await?;
    println!("listening on {}", endpoint.local_addr());
    ctrl_c.recv().await?;
    endpoint.close().await;
    Ok(())
}

async fn client(
    server: SocketAddr,
    n: usize,
    window: usize,
    wait: Duration,
) -> Result<(), BoxError> {
    let (tx, rx) = smol::channel::unbounded();
    // getty endpoints ignore the connect-ping, and silence counts as success: wait less than
    // the default 1 s for it.
    let client = UdpClientBuilder::new(server)
        .connect_ping_wait(Duration::from_millis(200))
        .start(SmolRuntime::global(), RawBytes, Echoes(tx))?;
    client.wait_for_sessions(1).await?; // a connected socket, checked with a connect-ping
    let session = client.session().ok_or("no session")?;
    // Each echo names the datagram it answers; count the distinct ones.
    let (mut echoed, mut got, mut sent) = (vec![false; n], 0, 0);
    while got < n {
        while sent < n && sent - got < window {
            session.send(format!("datagram {sent}").as_bytes()).await?;
            sent += 1;
        }
        // A lost datagram is never answered: silence for `wait` ends the run.
        let Some(pkg) = recv_timeout(&rx, wait).await else {
            break;
        };
        let i = std::str::from_utf8(&pkg)
            .ok()
            .and_then(|s| s.strip_prefix("datagram "));
        if let Some(i) = i.and_then(|i| i.parse::<usize>().ok()).filter(|&i| i < n) {
            got += usize::from(!std::mem::replace(&mut echoed[i], true));
        }
    }
    println!("sent {sent} of {n}, echoed {got}, lost {}", sent - got);
    client.close().await;
    Ok(())
}

/// The next echo, or `None` after `wait` without one.
async fn recv_timeout(rx: &Receiver<Bytes>, wait: Duration) -> Option<Bytes> {
    let timer = async {
        smol::Timer::after(wait).await;
        None
    };
    smol::future::or(async { rx.recv().await.ok() }, timer).await
}
