//! A line chat over TCP on tokio: every line a user sends reaches everyone else as
//! `name: text`. Shows the `Lines` codec, broadcasting to a `SessionGroup`, an idle timeout
//! with a last word (`on_timeout`), and a graceful shutdown on Ctrl-C.
//!
//! ```text
//! cargo run --example line_chat                        # listens on 127.0.0.1:8080
//! cargo run --example line_chat -- --addr 127.0.0.1:0 --idle-secs 60
//! nc 127.0.0.1 8080                                    # in two or more terminals; then type
//! /nick alice                                          # rename yourself (default user<id>)
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use getty::prelude::*;

#[derive(Parser)]
struct Args {
    /// Where to listen (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Users silent for this long are disconnected.
    #[arg(long, default_value_t = 300)]
    idle_secs: u64,
}

/// The room: one listener value shared by every session. A user's nick is the session's
/// name (which otherwise names the session in logs).
#[derive(Default)]
struct Chat {
    room: SessionGroup<Lines>,
}

impl Chat {
    /// Queues `text` for everyone but `from`. Never waits: a user too slow to read misses
    /// lines instead of slowing the room down.
    fn tell_others(&self, from: &Session<Lines>, text: String) {
        self.room.broadcast_except(from.id(), &text);
    }
}

impl EventListener<Lines> for Chat {
    async fn on_open(&self, session: &Session<Lines>) -> Result<(), BoxError> {
        let name = format!("user{}", session.id());
        session.set_name(&name);
        self.room.insert(session); // it leaves the room by itself when it closes
        session
            .send(&format!("welcome, {name}! /nick NAME renames you"))
            .await?;
        self.tell_others(session, format!("{name} joined"));
        Ok(())
    }

    async fn on_message(&self, session: &Session<Lines>, line: String) {
        let name = session.name();
        match line.strip_prefix("/nick ").map(str::trim) {
            Some(nick) if !nick.is_empty() => {
                session.set_name(nick);
                let _ = session.send(&format!("you are now {nick}")).await;
                self.tell_others(session, format!("{name} is now {nick}"));
            }
            _ => self.tell_others(session, format!("{name}: {line}")),
        }
    }

    async fn on_timeout(&self, session: &Session<Lines>, _err: &Error) {
        // The session closes next; what is queued here is flushed first.
        let secs = session.idle_timeout().unwrap_or_default().as_secs();
        let _ = session.send(&format!("idle for {secs} s, bye")).await;
    }

    async fn on_close(&self, session: &Session<Lines>) {
        self.tell_others(session, format!("{} left", session.name()));
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let idle = Duration::from_secs(args.idle_secs);
    let server = TcpServer::builder()
        .addr(args.addr)
        .session_config(SessionConfig::new().idle_timeout(idle))
        .serve(TokioRuntime::current(), Lines::new(), Chat::default())?;
    println!("listening on {}", server.local_addr());

    tokio::signal::ctrl_c().await?;
    // The server's group holds every open session.
    server.group().broadcast("server shutting down");
    server.close().await; // closes every session, flushing its queue, and waits for them
    Ok(())
}
