//! The parent's handle on a server child process: started by re-executing this binary, killed
//! when the handle drops (also while unwinding from a panic).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use getty::BoxError;

use crate::servers::{ServerImpl, LISTENING};

/// How long a child may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A server implementation and the number of threads it runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    /// The implementation.
    pub imp: ServerImpl,
    /// Its threads (tokio workers, or threads running the smol executor).
    pub threads: usize,
}

impl Target {
    /// The name in reports: the implementation, with its thread count unless 1.
    pub fn label(&self) -> String {
        if self.threads == 1 {
            self.imp.name().to_string()
        } else {
            format!("{} x{}", self.imp.name(), self.threads)
        }
    }
}

/// A running server child. Dropping it kills the child and reaps it.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// Held open: the child serves until it reads EOF here.
    _stdin: ChildStdin,
    addr: SocketAddr,
}

impl ServerProcess {
    /// Starts `target` in a child (`<this binary> serve --impl .. --threads ..`) and waits until
    /// it listens.
    pub fn start(target: Target) -> Result<Self, BoxError> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(["serve", "--impl", target.imp.name(), "--threads"])
            .arg(target.threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().ok_or("child has no stdin")?;
        let stdout = child.stdout.take().ok_or("child has no stdout")?;
        // From here on the guard owns the child, so every early return kills it.
        let mut process = ServerProcess {
            child,
            _stdin: stdin,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };

        // Read the first line on a thread, so that a child that hangs cannot hang us.
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = tx.send(read);
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(read) => read?,
            Err(_) => {
                return Err(
                    format!("{}: no address within {START_TIMEOUT:?}", target.label()).into(),
                )
            }
        };
        let addr = line
            .trim()
            .strip_prefix(LISTENING)
            .and_then(|rest| rest.trim().parse().ok())
            .ok_or_else(|| format!("{}: unexpected first line {line:?}", target.label()))?;
        process.addr = addr;
        Ok(process)
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the child has exited.
    pub fn check_alive(&mut self) -> Result<(), BoxError> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(format!("server child exited: {status}").into()),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
