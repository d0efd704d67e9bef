//! examples/ws_chat in a real browser: headless Chromium opens the example's page, and this
//! test joins the same chat as a second participant (the testkit's independent RFC 6455
//! client, which sees opcodes and close codes). It proves, through a browser's own WebSocket:
//! the page connects and joins (its join notice reaches the test), both it and the test get
//! the subprotocol "chat" they asked for, a line from the test reaches the page as a text
//! message and the page answers it (both directions), a binary message is refused with a
//! notice, and Ctrl-C closes the test's session with code 1001 before the example exits
//! cleanly.
//!
//! Without a Chromium (`/usr/bin/chromium`, or `chromium`, `chromium-browser`,
//! `google-chrome` on PATH, or `GETTY_CHROMIUM`) the test prints why and passes, unless
//! `GETTY_REQUIRE_BROWSER=1` (CI sets it where it could install Chromium).
#![cfg(unix)]

use std::fs::File;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use getty_testkit::rfc6455::{self, BINARY, CLOSE, PING, PONG, TEXT};
use smol::io::AsyncWriteExt;
use smol::net::TcpStream;

/// How long any one expected event may take (a cold Chromium start on a loaded CI machine).
const DEADLINE: Duration = Duration::from_secs(30);

/// The subprotocol ws_chat speaks, and the page and the test ask for.
const PROTOCOL: &str = "chat";

#[test]
fn chat_page_in_chromium() {
    let Some(chromium) = find_chromium() else {
        let why = "no Chromium found (/usr/bin/chromium, or chromium, chromium-browser or \
                   google-chrome on PATH, or GETTY_CHROMIUM)";
        if std::env::var("GETTY_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("GETTY_REQUIRE_BROWSER=1 but {why}");
        }
        println!("skipped: {why}; install one (Debian: apt-get install chromium) to run it");
        return;
    };
    let dir = TempDir::new();
    let mut test = Test::new(&dir);
    let (addr, page_url) = test.start_example(600);
    smol::block_on(test.run(&chromium, addr, &page_url));
}

/// The idle kick, without a browser: a silent member gets a last message, then close code 1001.
#[test]
fn silent_member_gets_a_last_word() {
    let dir = TempDir::new();
    let mut test = Test::new(&dir);
    let (addr, _) = test.start_example(1);
    smol::block_on(async {
        let connected = within(Peer::connect(addr)).await;
        let mut peer = connected.unwrap_or_else(|why| test.fail(&format!("connect: {why}")));
        let welcome = test.expect(&mut peer, |_| true).await;
        assert!(welcome.starts_with("* welcome, guest-"), "{welcome:?}");
        let bye = test.expect(&mut peer, |_| true).await;
        assert_eq!(bye, "* 1 s without a word: bye");
        let closed = within(peer.close_code(&mut test.transcript)).await;
        let code = closed.unwrap_or_else(|why| test.fail(&format!("close frame: {why}")));
        assert_eq!(code, Some(1001), "close code of an idle timeout");
    });
}

/// The test's state: the example, the browser, and what was seen (for failure messages).
struct Test<'a> {
    dir: &'a TempDir,
    example: Option<Killed>,
    /// Lines of the example's stdout; closed when it exits.
    stdout: Option<mpsc::Receiver<String>>,
    browser: Option<Killed>,
    /// Every message the test's participant received, in order.
    transcript: Vec<String>,
}

impl<'a> Test<'a> {
    fn new(dir: &'a TempDir) -> Self {
        Test {
            dir,
            example: None,
            stdout: None,
            browser: None,
            transcript: Vec::new(),
        }
    }

    /// Starts ws_chat on a free port; returns its address and the page URL it printed.
    fn start_example(&mut self, idle_secs: u32) -> (SocketAddr, String) {
        let binary = ws_chat_binary();
        let mut child = Command::new(&binary)
            .args([
                "--addr",
                "127.0.0.1:0",
                "--idle-secs",
                &idle_secs.to_string(),
            ])
            .arg("--html-dir")
            .arg(&self.dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(self.dir.log("ws_chat.stderr"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        self.example = Some(Killed::new(child, false));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        self.stdout = Some(rx);
        let listening = self.example_line();
        let addr = listening
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| self.fail(&format!("first line {listening:?}")));
        let open = self.example_line();
        let url = open
            .strip_prefix("open ")
            .filter(|u| u.starts_with("file:///") && u.ends_with(&format!("?ws=ws://{addr}/chat")))
            .unwrap_or_else(|| self.fail(&format!("second line {open:?}")));
        (addr, url.to_owned())
    }

    /// The example's next stdout line; `None` once it exited.
    fn example_line_or_exit(&self) -> Option<String> {
        let rx = self.stdout.as_ref().expect("example started");
        match rx.recv_timeout(DEADLINE) {
            Ok(line) => Some(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => self.fail("no output from ws_chat in time"),
        }
    }

    fn example_line(&self) -> String {
        self.example_line_or_exit()
            .unwrap_or_else(|| self.fail("ws_chat exited early"))
    }

    async fn run(&mut self, chromium: &Path, addr: SocketAddr, page_url: &str) {
        // The test joins first, as "tester".
        let connected = within(Peer::connect(addr)).await;
        let mut tester = connected.unwrap_or_else(|why| self.fail(&format!("connect: {why}")));
        self.expect(&mut tester, |m| m.starts_with("* welcome, guest-"))
            .await;
        tester.send("/nick tester").await;
        self.expect(&mut tester, |m| m.ends_with(" is now tester"))
            .await;
        tester.write(BINARY, &[0xff, 0]).await;
        self.expect(&mut tester, |m| m == "* text messages only, please")
            .await;

        // The browser joins: its join notice, its new nick, its hello with the subprotocol.
        self.launch_browser(chromium, &format!("{page_url}&test=1"));
        let joined = self
            .expect(&mut tester, |m| {
                m.starts_with("* guest-") && m.ends_with(" joined")
            })
            .await;
        let guest = &joined["* ".len()..joined.len() - " joined".len()];
        let renamed = format!("* {guest} is now browser");
        self.expect(&mut tester, |m| m == renamed).await;
        let hello = self
            .expect(&mut tester, |m| {
                m.starts_with("browser: hello from the browser")
            })
            .await;
        assert_eq!(
            hello,
            format!("browser: hello from the browser, protocol={PROTOCOL}"),
            "the subprotocol the page got"
        );

        // A line from the test reaches the page, which answers it: both directions.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let line = format!("ping {nanos}");
        tester.send(&line).await;
        let echo = format!("browser: echo: {line}");
        self.expect(&mut tester, |m| m == echo).await;

        // Ctrl-C: the example closes every session with 1001 (going away) and exits cleanly.
        let pid = self.example.as_ref().unwrap().child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        assert_eq!(
            unsafe { libc::kill(pid, libc::SIGINT) },
            0,
            "SIGINT to ws_chat"
        );
        let closed = within(tester.close_code(&mut self.transcript)).await;
        let code = closed.unwrap_or_else(|why| self.fail(&format!("close frame: {why}")));
        assert_eq!(code, Some(1001), "close code on Ctrl-C");
        while let Some(line) = self.example_line_or_exit() {
            assert!(
                line.starts_with("closing "),
                "unexpected ws_chat output {line:?}"
            );
        }
        let status = self.example.take().unwrap().wait();
        assert!(status.success(), "ws_chat exited with {status}");
    }

    /// Starts headless Chromium on `url`, in its own process group, output to a log file.
    fn launch_browser(&mut self, chromium: &Path, url: &str) {
        let profile = self.dir.0.join("profile");
        let log = self.dir.log("chromium.log");
        let child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
        self.browser = Some(Killed::new(child, true));
    }

    /// Reads messages until one matches `want`; fails after [`DEADLINE`].
    async fn expect(&mut self, peer: &mut Peer, want: impl Fn(&str) -> bool) -> String {
        let transcript = &mut self.transcript;
        let found = async {
            loop {
                let text = peer.text().await?;
                transcript.push(text.clone());
                if want(&text) {
                    return Ok::<_, String>(text);
                }
            }
        };
        let found = within(found).await;
        found.unwrap_or_else(|why| self.fail(&format!("waiting for a message: {why}")))
    }

    /// Panics with `why` and everything that helps: the transcript, ws_chat's stderr, the tail
    /// of Chromium's log.
    fn fail(&self, why: &str) -> ! {
        let read = |name: &str| std::fs::read_to_string(self.dir.0.join(name)).unwrap_or_default();
        let chromium = read("chromium.log");
        let tail: Vec<&str> = chromium.lines().rev().take(40).collect();
        panic!(
            "{why}\n--- received by the test:\n{}\n--- ws_chat stderr:\n{}\n--- chromium log \
             (last 40 lines):\n{}",
            self.transcript.join("\n"),
            read("ws_chat.stderr"),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }
}

/// `fut`, or an error after [`DEADLINE`].
async fn within<T>(fut: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    let deadline = async {
        smol::Timer::after(DEADLINE).await;
        Err(format!("nothing within {DEADLINE:?}"))
    };
    smol::future::or(fut, deadline).await
}

/// The test's participant: a raw RFC 6455 client.
struct Peer {
    stream: TcpStream,
}

impl Peer {
    async fn connect(addr: SocketAddr) -> Result<Peer, String> {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let request = rfc6455::upgrade_request("/chat", &addr.to_string(), key);
        let request = request.replace(
            "\r\n\r\n",
            &format!("\r\nSec-WebSocket-Protocol: {PROTOCOL}\r\n\r\n"),
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let (status, headers, _) = rfc6455::read_http_head(&mut stream)
            .await
            .map_err(|e| e.to_string())?;
        let accept = rfc6455::header(&headers, "sec-websocket-accept");
        let protocol = rfc6455::header(&headers, "sec-websocket-protocol");
        if status != 101
            || accept != Some(rfc6455::accept_key(key).as_str())
            || protocol != Some(PROTOCOL)
        {
            return Err(format!("upgrade refused: {status} {headers:?}"));
        }
        Ok(Peer { stream })
    }

    async fn send(&mut self, text: &str) {
        self.write(TEXT, text.as_bytes()).await;
    }

    async fn write(&mut self, opcode: u8, payload: &[u8]) {
        let frame = rfc6455::client_frame(opcode, true, payload, [1, 2, 3, 4]);
        self.stream
            .write_all(&frame)
            .await
            .expect("write to ws_chat");
    }

    /// The next data message, which must be one text frame (pings are answered).
    async fn text(&mut self) -> Result<String, String> {
        loop {
            let frame = rfc6455::read_frame(&mut self.stream)
                .await
                .map_err(|e| format!("reading a frame: {e}"))?;
            match frame.opcode {
                PING => self.write(PONG, &frame.payload).await,
                TEXT if frame.fin => {
                    return String::from_utf8(frame.payload).map_err(|e| e.to_string())
                }
                _ => return Err(format!("expected a whole text frame, got {frame:?}")),
            }
        }
    }

    /// Skips (records) messages until a close frame; its code, `None` if it has none.
    async fn close_code(&mut self, transcript: &mut Vec<String>) -> Result<Option<u16>, String> {
        loop {
            let frame = rfc6455::read_frame(&mut self.stream)
                .await
                .map_err(|e| format!("reading a frame: {e}"))?;
            match frame.opcode {
                CLOSE => {
                    let code = frame
                        .payload
                        .get(..2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]));
                    return Ok(code);
                }
                TEXT => transcript.push(String::from_utf8_lossy(&frame.payload).into()),
                _ => {}
            }
        }
    }
}

/// A child process killed (with its process group, for Chromium's helpers) when dropped.
struct Killed {
    child: Child,
    group: bool,
    reaped: bool,
}

impl Killed {
    fn new(child: Child, group: bool) -> Self {
        Killed {
            child,
            group,
            reaped: false,
        }
    }

    fn wait(mut self) -> std::process::ExitStatus {
        self.reaped = true;
        self.child.wait().expect("wait for a child")
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        if self.group {
            // SAFETY: kill(2) on the process group our child leads; no memory is involved.
            unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("getty-browser-{}-{nanos}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        TempDir(dir)
    }

    fn log(&self, name: &str) -> File {
        File::create(self.0.join(name)).expect("create a log file")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Chromium's helpers may still be writing to the profile for a moment after SIGKILL.
        for _ in 0..50 {
            if std::fs::remove_dir_all(&self.0).is_ok() || !self.0.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The browser: `GETTY_CHROMIUM`, `/usr/bin/chromium`, or the first of the usual names on PATH.
fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("GETTY_CHROMIUM") {
        return Some(path.into());
    }
    let fixed = PathBuf::from("/usr/bin/chromium");
    if fixed.is_file() {
        return Some(fixed);
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Variables cargo sets for the crate it runs, besides `CARGO_PKG_*`.
const CARGO_SET_FOR_CRATES: [&str; 5] = [
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_CRATE_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
];

/// The ws_chat binary next to this test's (`target/<profile>/examples/ws_chat`), built first
/// when cargo is at hand: `cargo test --test browser` alone does not build examples, and an
/// old binary would test old code.
fn ws_chat_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    // target/<profile>/deps/browser-HASH
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let binary = profile_dir.join("examples").join("ws_chat");
    if let Some(cargo) = std::env::var_os("CARGO") {
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev",
            Some(name) => name,
            None => "dev",
        };
        let mut build = Command::new(cargo);
        // Without the variables cargo set for this test: a build script that watches one
        // (ring's watches CARGO_MANIFEST_DIR) would rebuild here, then again in the next build.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_") || CARGO_SET_FOR_CRATES.contains(&name.as_ref()) {
                build.env_remove(name.as_ref());
            }
        }
        let output = build
            .args([
                "build",
                "--quiet",
                "-p",
                "getty",
                "--example",
                "ws_chat",
                "--profile",
            ])
            .arg(profile)
            .arg("--manifest-path")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(profile_dir.parent().expect("target dir"))
            .output()
            .expect("run cargo build");
        assert!(
            output.status.success(),
            "cargo build --example ws_chat failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert!(binary.is_file(), "{} is missing", binary.display());
    binary
}
