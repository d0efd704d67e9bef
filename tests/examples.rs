//! The short examples run as users run them: each is spawned as a process on 127.0.0.1 port 0
//! and driven with plain std sockets, then stopped with SIGINT and expected to exit 0.
//!
//! Every wait is on an event (a line, an echo, an end of stream, the process's exit) with a
//! generous deadline; a child is killed if its test fails.

#![cfg(unix)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long any one expected event may take (a loaded CI machine is slow, never this slow).
const DEADLINE: Duration = Duration::from_secs(30);

/// The variables (or prefixes) cargo sets for a test, not for a build it starts.
const SET_BY_CARGO: &[&str] = &[
    "CARGO_MANIFEST_",
    "CARGO_PKG_",
    "CARGO_BIN_",
    "CARGO_CRATE_",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
];

/// The example's binary, `target/<profile>/examples/NAME`. `cargo test` builds the examples;
/// `cargo test --test examples` alone does not, so it is built here when it is missing or
/// older than this test binary or its source (cargo then rebuilds what changed).
fn example_bin(name: &str) -> PathBuf {
    // This test runs as target/<profile>/deps/examples-<hash>.
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let bin = profile_dir.join("examples").join(name);
    let source = format!("{}/examples/{name}.rs", env!("CARGO_MANIFEST_DIR"));
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    if modified(&bin).is_some_and(|built| {
        [exe.as_path(), Path::new(&source)]
            .iter()
            .all(|input| modified(input).is_some_and(|changed| changed <= built))
    }) {
        return bin;
    }
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // Not the variables cargo set for this test: build scripts that watch one (ring watches
    // CARGO_MANIFEST_DIR) would rebuild, and again in the next plain cargo command.
    for (key, _) in std::env::vars_os() {
        if SET_BY_CARGO
            .iter()
            .any(|p| key.to_string_lossy().starts_with(p))
        {
            cargo.env_remove(key);
        }
    }
    cargo.args(["build", "--quiet", "--example", name, "--manifest-path"]);
    cargo.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
    match profile_dir.file_name().and_then(|p| p.to_str()) {
        Some("debug") => {}
        Some("release") => drop(cargo.arg("--release")),
        Some(profile) => drop(cargo.args(["--profile", profile])),
        None => panic!("no profile directory above {}", exe.display()),
    }
    let status = cargo.status().expect("running cargo build");
    assert!(status.success(), "cargo build --example {name}: {status}");
    assert!(bin.exists(), "{} was not built", bin.display());
    bin
}

/// A running example: its stdout lines arrive on a channel (read by a thread, so that every
/// wait has a deadline); dropping it kills the process.
struct Example {
    name: &'static str,
    child: Child,
    stdout: Receiver<String>,
    /// Where the example listens, from its first line.
    addr: SocketAddr,
}

impl Example {
    /// Starts `name` with `args`.
    fn spawn(name: &'static str, args: &[&str]) -> Example {
        let mut child = Command::new(example_bin(name))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        let stdout = lines_of(child.stdout.take().expect("piped stdout"));
        Example {
            name,
            child,
            stdout,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        }
    }

    /// Starts `name` on 127.0.0.1 port 0 and reads its `listening on ADDR` line.
    fn start(name: &'static str, args: &[&str]) -> Example {
        let mut example = Example::spawn(name, &[&["--addr", "127.0.0.1:0"], args].concat());
        let first = example.next_line().expect("a first line");
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{name}'s first line is {first:?}"));
        example.addr = addr.parse().expect("an address after `listening on`");
        example
    }

    /// The next stdout line; `None` at the end of stdout.
    fn next_line(&mut self) -> Option<String> {
        match self.stdout.recv_timeout(DEADLINE) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => panic!("{}: no output in {DEADLINE:?}", self.name),
        }
    }

    /// Sends SIGINT (Ctrl-C) once the process handles it, then waits until it has exited.
    fn interrupt(mut self) -> ExitStatus {
        let pid = self.child.id();
        wait_for_sigint_handler(pid);
        let kill = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status();
        assert!(kill.expect("running kill").success(), "kill -INT {pid}");
        self.wait()
    }

    /// Waits until the process has exited (its stdout ends then; wait() returns at once).
    fn wait(&mut self) -> ExitStatus {
        while let Some(line) = self.next_line() {
            println!("{}: {line}", self.name);
        }
        self.child.wait().expect("waiting for the example")
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        // Already exited (interrupt) or a failed test: either way leave no process behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines of `out`, read on a thread; the channel closes at the end of the stream.
fn lines_of(out: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            if line.ok().and_then(|line| tx.send(line).ok()).is_none() {
                break;
            }
        }
    });
    rx
}

/// Waits until process `pid` catches SIGINT: the examples install their Ctrl-C handler around
/// the time they print their first line, and a SIGINT before that would just kill them. On
/// Linux the kernel says (`SigCgt` in /proc/PID/status); elsewhere the caller relies on the
/// exchanges it made first having taken longer than installing a handler.
fn wait_for_sigint_handler(pid: u32) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let start = Instant::now();
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .expect("a SigCgt line");
        if caught & (1 << (libc::SIGINT - 1)) != 0 {
            return;
        }
        assert!(start.elapsed() < DEADLINE, "{pid} never handled SIGINT");
        // Polling the kernel's answer; no event tells us a handler is installed.
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A chat user: a TCP connection read line by line, every read with a deadline.
struct User {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl User {
    /// Connects and reads the welcome line.
    fn join(chat: &Example) -> User {
        let stream = TcpStream::connect(chat.addr).expect("connecting to the chat");
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let writer = stream.try_clone().unwrap();
        let mut user = User {
            reader: BufReader::new(stream),
            writer,
        };
        let welcome = user.line();
        assert!(welcome.starts_with("welcome, user"), "{welcome:?}");
        user
    }

    fn say(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }

    /// The next line; `None` at the end of the stream.
    fn next_line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(line.trim_end_matches('\n').to_string()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("no line in {DEADLINE:?}")
            }
            Err(e) => panic!("reading the chat: {e}"),
        }
    }

    fn line(&mut self) -> String {
        self.next_line().expect("a line, not the end of the stream")
    }

    /// Renames itself; the others read the rename.
    fn nick(&mut self, name: &str, others: &mut [&mut User]) {
        self.say(&format!("/nick {name}"));
        assert_eq!(self.line(), format!("you are now {name}"));
        for other in others {
            let line = other.line();
            assert!(line.ends_with(&format!(" is now {name}")), "{line:?}");
        }
    }
}

#[test]
fn line_chat_broadcasts_to_the_others_and_shuts_down() {
    let chat = Example::start("line_chat", &[]);
    let mut alice = User::join(&chat);
    alice.nick("alice", &mut []);
    let mut bob = User::join(&chat);
    assert!(alice.line().ends_with(" joined"));
    bob.nick("bob", &mut [&mut alice]);
    let mut carol = User::join(&chat);
    assert!(alice.line().ends_with(" joined"));
    assert!(bob.line().ends_with(" joined"));
    carol.nick("carol", &mut [&mut alice, &mut bob]);

    alice.say("hello all");
    assert_eq!(bob.line(), "alice: hello all");
    assert_eq!(carol.line(), "alice: hello all");
    // Bob answers after he read alice's line: had alice got her own line back, she would
    // read it before bob's.
    bob.say("hi alice");
    assert_eq!(alice.line(), "bob: hi alice");
    assert_eq!(carol.line(), "bob: hi alice");

    // Carol leaves; the others are told.
    carol.writer.shutdown(Shutdown::Both).unwrap();
    assert_eq!(alice.line(), "carol left");
    assert_eq!(bob.line(), "carol left");

    // Ctrl-C: everyone reads the shutdown line, then the end of the stream.
    let status = chat.interrupt();
    for user in [&mut alice, &mut bob] {
        let mut lines = Vec::new();
        while let Some(line) = user.next_line() {
            lines.push(line);
        }
        // "bob left" may follow: the sessions close one by one.
        assert_eq!(
            lines.first().map(String::as_str),
            Some("server shutting down"),
            "{lines:?}"
        );
    }
    assert!(status.success(), "line_chat exited with {status}");
}

#[test]
fn line_chat_says_goodbye_to_an_idle_user() {
    let chat = Example::start("line_chat", &["--idle-secs", "1"]);
    let mut user = User::join(&chat);
    // Silent for a second: the last line, then the end of the stream.
    assert_eq!(user.line(), "idle for 1 s, bye");
    assert_eq!(user.next_line(), None);
    let status = chat.interrupt();
    assert!(status.success(), "line_chat exited with {status}");
}

#[test]
fn udp_echo_echoes_every_datagram_and_counts_losses() {
    let server = Example::start("udp_echo", &[]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    socket.connect(server.addr).unwrap();
    // Text, binary, one byte, and up to far above a session's default 4 KiB.
    let mut datagrams: Vec<Vec<u8>> = vec![b"hello".to_vec(), (0..=255).collect(), vec![0]];
    datagrams.extend([1000, 4096, 4097, 60_000].map(|n| (0..n).map(|i| i as u8).collect()));
    let mut buf = vec![0; 65_536];
    for datagram in &datagrams {
        socket.send(datagram).unwrap();
        let n = socket.recv(&mut buf).expect("an echo");
        assert!(
            buf[..n] == datagram[..],
            "echo of {} bytes differs",
            datagram.len()
        );
    }

    // The example's own client, its loss accounting included (nothing is lost on loopback
    // with 64 datagrams in flight).
    let addr = server.addr.to_string();
    let mut client = Example::spawn("udp_echo", &["--addr", &addr, "--client", "500"]);
    let report = client.next_line();
    let status = client.wait();
    assert!(status.success(), "the udp_echo client exited with {status}");
    assert_eq!(
        report.as_deref(),
        Some("sent 500 of 500, echoed 500, lost 0")
    );

    let status = server.interrupt();
    assert!(status.success(), "udp_echo exited with {status}");
}

/// Reads `client`'s lines until one is a reply, returning its text (`HELLO n`); the other
/// lines (connection events, calls that failed while the server was away) are printed.
fn next_reply(client: &mut Example) -> String {
    loop {
        let line = next_client_line(client);
        if let Some((_, text)) = line.strip_prefix("reply ").and_then(|r| r.split_once(": ")) {
            return text.to_owned();
        }
    }
}

/// The rpc client's next line; no reply ever reaches its listener instead of its call.
fn next_client_line(client: &mut Example) -> String {
    let line = client.next_line().expect("the client runs on");
    println!("rpc client: {line}");
    assert!(
        !line.starts_with("unsolicited"),
        "a reply missed its call: {line}"
    );
    line
}

#[test]
fn rpc_client_calls_through_a_server_restart() {
    let server = Example::start("rpc", &["server"]);
    let addr = server.addr.to_string();
    let mut client = Example::spawn("rpc", &["client", "--addr", &addr, "--every-ms", "20"]);
    // Each call gets its own reply, in order.
    let first = next_reply(&mut client);
    let n: u64 = first
        .strip_prefix("HELLO ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("reply {first:?}"));
    assert_eq!(next_reply(&mut client), format!("HELLO {}", n + 1));

    // The server stops: the client's sessions go...
    let status = server.interrupt();
    assert!(status.success(), "the rpc server exited with {status}");
    while !next_client_line(&mut client).starts_with("disconnected") {}
    // ...and come back when it is up again on the same port, and the calls go on.
    let mut server = Example::spawn("rpc", &["server", "--addr", &addr]);
    assert_eq!(server.next_line(), Some(format!("listening on {addr}")));
    while !next_client_line(&mut client).starts_with("connected") {}
    let again = next_reply(&mut client);
    assert!(again.starts_with("HELLO "), "{again:?}");

    let status = client.interrupt();
    assert!(status.success(), "the rpc client exited with {status}");
    let status = server.interrupt();
    assert!(status.success(), "the rpc server exited with {status}");
}

/// Runs the simulate example with `seed` to its end: its exit status and its timeline (every
/// stdout line but the real time taken, the one line that may differ between runs).
fn simulate(seed: &str) -> (ExitStatus, Vec<String>) {
    let mut example = Example::spawn("simulate", &["--seed", seed]);
    let mut timeline = Vec::new();
    while let Some(line) = example.next_line() {
        println!("simulate --seed {seed}: {line}");
        if !line.starts_with("real time") {
            timeline.push(line);
        }
    }
    (example.wait(), timeline)
}

/// Asserts that `timeline` has a line containing each of `expected`, in that order.
fn assert_in_order(timeline: &[String], expected: &[&str]) {
    let mut lines = timeline.iter();
    for text in expected {
        assert!(
            lines.any(|line| line.contains(text)),
            "no {text:?} after the lines before it in:\n{}",
            timeline.join("\n")
        );
    }
}

#[test]
fn simulate_recovers_from_every_fault_and_replays_its_seed() {
    let (status, timeline) = simulate("1");
    assert!(status.success(), "simulate --seed 1 exited with {status}");
    // Each fault, the sessions noticing it, and the whole pool back with echoes after it.
    assert_in_order(
        &timeline,
        &[
            "3 sessions up",
            "partition 10.0.0.1 | 10.0.0.2",
            "client session",
            "closed: read timeout",
            "client connect #1 failed",
            "heal 10.0.0.1 | 10.0.0.2",
            "3 sessions back",
            "crash 10.0.0.1",
            "closed: read timeout",
            "restart 10.0.0.1",
            "server listening on 10.0.0.1:8000",
            "3 sessions back",
            "seed 1, ",
        ],
    );
    // The same seed, the same run, line for line.
    let (status, again) = simulate("1");
    assert!(status.success(), "simulate --seed 1 exited with {status}");
    assert_eq!(timeline, again, "two runs of seed 1 differ");
    // Another seed interleaves differently and recovers all the same.
    let (status, other) = simulate("7");
    assert!(status.success(), "simulate --seed 7 exited with {status}");
    assert_eq!(
        other
            .iter()
            .filter(|l| l.contains("3 sessions back"))
            .count(),
        2
    );
}
