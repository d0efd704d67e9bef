//! A chat room over WebSocket on smol, with a browser page.
//!
//! ```text
//! cargo run --example ws_chat -- --addr 127.0.0.1:8080 --idle-secs 300
//! ```
//!
//! It writes `chat.html` (a plain-JS page) to `--html-dir` (default: the temp dir) and prints
//! the URL to open; open it in a few tabs. The page asks for the subprotocol "chat", which
//! the server speaks. Every text message goes to everyone as `nick: text`;
//! `/nick NAME` renames you; joins and leaves are announced; a member silent for
//! `--idle-secs` gets a last message and is closed. Ctrl-C closes every session (browsers see
//! close code 1001, "going away") and exits. `tests/browser.rs` drives the page in Chromium.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use getty::codec::{Message, WsMessages};
use getty::prelude::*;

/// The page: a log, an input line, and a WebSocket to `?ws=ws://ADDR/chat`.
const PAGE: &str = include_str!("ws_chat.html");

#[derive(Parser)]
struct Args {
    /// The address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Seconds without a message before a member is closed.
    #[arg(long, default_value_t = 300)]
    idle_secs: u64,
    /// Where to write chat.html.
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    html_dir: PathBuf,
}

/// The room. Packages are whole WebSocket messages, text or binary (`WsMessages`); the nick is
/// the session's name.
struct Chat {
    room: SessionGroup<WsMessages>,
    idle: Duration,
}

impl Chat {
    /// To everyone, as a text message: browsers get a string, not a Blob.
    fn say(&self, text: String) {
        self.room.broadcast_frame(Frame::text(text));
    }
}

impl EventListener<WsMessages> for Chat {
    async fn on_open(&self, s: &Session<WsMessages>) -> Result<(), BoxError> {
        s.set_name(format!("guest-{}", s.id()));
        let welcome = format!("* welcome, {}; /nick NAME renames you", s.name());
        s.try_send_frame(Frame::text(welcome))?;
        self.say(format!("* {} joined", s.name()));
        self.room.insert(s); // leaves by itself when the session closes
        Ok(())
    }

    async fn on_message(&self, s: &Session<WsMessages>, msg: Message) {
        let Message::Text(text) = msg else {
            let _ = s.try_send_frame(Frame::text("* text messages only, please"));
            return;
        };
        match text.trim().strip_prefix("/nick ").map(str::trim) {
            Some(nick) if !nick.is_empty() && nick.len() <= 24 => {
                self.say(format!("* {} is now {nick}", s.name()));
                s.set_name(nick);
            }
            Some(_) => drop(s.try_send_frame(Frame::text("* a nick is 1 to 24 bytes"))),
            None => self.say(format!("{}: {}", s.name(), text.trim())),
        }
    }

    /// The idle timeout passed: a last word, flushed before the session closes.
    async fn on_timeout(&self, s: &Session<WsMessages>, _: &Error) {
        let bye = format!("* {} s without a word: bye", self.idle.as_secs());
        let _ = s.try_send_frame(Frame::text(bye));
    }

    async fn on_close(&self, s: &Session<WsMessages>) {
        let left = Frame::text(format!("* {} left", s.name()));
        self.room.broadcast_frame_except(s.id(), left);
    }
}

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    smol::block_on(async {
        let idle = Duration::from_secs(args.idle_secs);
        let chat = Chat {
            room: SessionGroup::new(),
            idle,
        };
        let server = TcpServer::builder()
            .addr(args.addr)
            .websocket("/chat")
            .websocket_protocols(["chat"]) // a browser's new WebSocket(url, "chat") wants it
            .session_config(SessionConfig::new().idle_timeout(idle))
            .serve(SmolRuntime::global(), WsMessages, chat)?;
        let addr = server.local_addr();
        println!("listening on {addr}");

        let page = std::path::absolute(args.html_dir.join("chat.html"))?;
        std::fs::write(&page, PAGE)?;
        println!("open file://{}?ws=ws://{addr}/chat", page.display());

        // Ctrl-C: close every session (WebSocket peers get code 1001), wait for them, exit.
        let (tx, rx) = smol::channel::bounded(1);
        ctrlc::set_handler(move || {
            let _ = tx.try_send(());
        })?;
        rx.recv().await?;
        println!("closing {} sessions", server.session_count());
        server.close().await;
        Ok(())
    })
}
