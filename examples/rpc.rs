//! Request/response over a pool of TCP sessions on tokio: the client's calls get their own
//! replies, fail at once when their session dies, and go on after the server restarts.
//! Shows `Client::call`, a codec that carries request ids (`encode_request`, `reply_id`),
//! and the client's connection events.
//!
//! ```text
//! cargo run --example rpc -- server                    # listens on 127.0.0.1:9090
//! cargo run --example rpc -- client                    # a call every 500 ms; Ctrl-C ends it
//! # stop the server with Ctrl-C and start it again: the client reconnects and goes on
//! printf '7 hello\n' | nc 127.0.0.1 9090              # the wire format: "ID TEXT" lines
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use clap::Parser;
use getty::endpoint::ClientEvent;
use getty::prelude::*;

#[derive(Parser)]
struct Args {
    /// `server` or `client`.
    role: String,
    /// The server's address (port 0: a free one, for the server).
    #[arg(long, default_value = "127.0.0.1:9090")]
    addr: SocketAddr,
    /// The client's time between calls, in milliseconds.
    #[arg(long, default_value_t = 500)]
    every_ms: u64,
}

/// Lines of the form `ID TEXT`: a request and its reply carry the same id.
#[derive(Default)]
struct IdLines(Lines);

impl Codec for IdLines {
    type Inbound = (u64, String);
    type Outbound = (u64, String);

    fn decode(&self, buf: &mut BytesMut) -> Result<Decoded<(u64, String)>, CodecError> {
        let Decoded::Frame(line) = self.0.decode(buf)? else {
            return Ok(Decoded::Incomplete(None));
        };
        let (id, text) = line.split_once(' ').unwrap_or((&line, ""));
        let id = id
            .parse()
            .map_err(|_| CodecError::invalid("a line must start with an id"))?;
        Ok(Decoded::Frame((id, text.to_owned())))
    }

    fn encode(&self, (id, text): &(u64, String), dst: &mut BytesMut) -> Result<(), CodecError> {
        self.0.encode(&format!("{id} {text}"), dst)
    }

    // Requests are written with the id the session picked, replies are recognised by it.
    fn encode_request(
        &self,
        id: u64,
        (_, text): &(u64, String),
        dst: &mut BytesMut,
    ) -> Result<(), CodecError> {
        self.encode(&(id, text.clone()), dst)
    }

    fn reply_id(&self, (id, _): &(u64, String)) -> Option<u64> {
        Some(*id)
    }

    fn frame_limit(&self) -> Option<usize> {
        self.0.frame_limit()
    }
}

/// The server: answers every request with its text upper-cased, under the same id.
struct Upper;

impl EventListener<IdLines> for Upper {
    async fn on_message(&self, session: &Session<IdLines>, (id, text): (u64, String)) {
        let _ = session.send(&(id, text.to_uppercase())).await;
    }
}

/// The client's listener: replies go to their callers, so all it ever sees is the rest.
struct Unsolicited;

impl EventListener<IdLines> for Unsolicited {
    async fn on_message(&self, _: &Session<IdLines>, (id, text): (u64, String)) {
        println!("unsolicited {id}: {text}");
    }
}

#[tokio::main]
async fn main() -> getty::Result<()> {
    let args = Args::parse();
    let rt = TokioRuntime::current();
    match args.role.as_str() {
        "server" => {
            let server =
                TcpServer::builder()
                    .addr(args.addr)
                    .serve(rt, IdLines::default(), Upper)?;
            println!("listening on {}", server.local_addr());
            let _ = tokio::signal::ctrl_c().await;
            server.close().await;
        }
        "client" => {
            let client = TcpClientBuilder::new(args.addr)
                .pool_size(2)
                .reconnect_interval(Duration::from_millis(200))
                .start(rt, IdLines::default(), Unsolicited)?;
            let mut events = client.events();
            tokio::spawn(async move {
                while let Some(event) = events.recv().await {
                    match event {
                        ClientEvent::Connected(session) => {
                            println!("connected: {}", session.name())
                        }
                        ClientEvent::Disconnected { id } => println!("disconnected: session {id}"),
                        ClientEvent::ConnectFailed { retry_in, .. } => {
                            println!("server down, retrying in {retry_in:?}")
                        }
                        other => println!("{other:?}"),
                    }
                }
            });
            let calls = async {
                for n in 0.. {
                    // One deadline bounds waiting for a session, for room and for the reply.
                    match client
                        .call(&(0, format!("hello {n}")), Duration::from_secs(5))
                        .await
                    {
                        Ok((id, reply)) => println!("reply {id}: {reply}"),
                        Err(err) => println!("call {n} failed: {err}"),
                    }
                    tokio::time::sleep(Duration::from_millis(args.every_ms)).await;
                }
            };
            tokio::select! { _ = calls => {}, _ = tokio::signal::ctrl_c() => {} }
            client.close().await;
        }
        other => eprintln!("unknown role {other:?}: server or client"),
    }
    Ok(())
}
