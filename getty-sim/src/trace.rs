//! What a simulation did, in order: a test can assert on it, print it, or compare two runs.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::link::LinkFault;

/// One thing that happened in a simulation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A task was spawned.
    Spawn {
        /// Its id (in spawn order).
        task: usize,
    },
    /// A task was polled.
    Poll {
        /// Its id.
        task: usize,
    },
    /// A task completed.
    Done {
        /// Its id.
        task: usize,
    },
    /// No task could run: the clock jumped to the next timer.
    Clock,
    /// A listener was bound.
    Listen {
        /// Its address.
        addr: SocketAddr,
    },
    /// A connection was made.
    Connect {
        /// The connecting side's address.
        from: SocketAddr,
        /// The listener's.
        to: SocketAddr,
    },
    /// A connect was refused: nothing listened there.
    Refused {
        /// The address tried.
        to: SocketAddr,
    },
    /// A connect got no answer for [`CONNECT_GIVE_UP`](crate::CONNECT_GIVE_UP) and failed.
    ConnectTimedOut {
        /// The address tried.
        to: SocketAddr,
    },
    /// Two hosts were cut off from each other.
    Cut {
        /// One host.
        a: IpAddr,
        /// The other.
        b: IpAddr,
        /// What happens to their traffic.
        fault: LinkFault,
    },
    /// A cut between two hosts ended.
    Heal {
        /// One host.
        a: IpAddr,
        /// The other.
        b: IpAddr,
    },
    /// A host was cut off from every other.
    Isolate {
        /// The host.
        host: IpAddr,
        /// What happens to its traffic.
        fault: LinkFault,
    },
    /// An isolated host rejoined the others.
    Rejoin {
        /// The host.
        host: IpAddr,
    },
    /// A host crashed: its tasks stopped, its sockets vanished.
    Crash {
        /// The host.
        host: IpAddr,
    },
    /// A crashed host came back, with nothing running.
    Restart {
        /// The host.
        host: IpAddr,
    },
    /// Every connection of a host was reset.
    ResetHost {
        /// The host.
        host: IpAddr,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Spawn { task } => write!(f, "spawn task {task}"),
            Event::Poll { task } => write!(f, "poll task {task}"),
            Event::Done { task } => write!(f, "task {task} done"),
            Event::Clock => write!(f, "clock jumps"),
            Event::Listen { addr } => write!(f, "listen on {addr}"),
            Event::Connect { from, to } => write!(f, "connect {from} -> {to}"),
            Event::Refused { to } => write!(f, "connect to {to} refused"),
            Event::ConnectTimedOut { to } => write!(f, "connect to {to} timed out"),
            Event::Cut { a, b, fault } => write!(f, "cut {a} | {b} ({fault:?})"),
            Event::Isolate { host, fault } => write!(f, "isolate {host} ({fault:?})"),
            Event::Rejoin { host } => write!(f, "{host} rejoins"),
            Event::Crash { host } => write!(f, "{host} crashes"),
            Event::Restart { host } => write!(f, "{host} restarts"),
            Event::Heal { a, b } => write!(f, "heal {a} | {b}"),
            Event::ResetHost { host } => write!(f, "reset every connection of {host}"),
        }
    }
}

/// The events of a run with their virtual times. Equal traces mean the same run, event for
/// event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    events: Vec<(Duration, Event)>,
}

impl Trace {
    pub(crate) fn push(&mut self, at: Duration, event: Event) {
        self.events.push((at, event));
    }

    /// The events, each with the virtual time it happened at.
    pub fn events(&self) -> &[(Duration, Event)] {
        &self.events
    }

    /// How many events were recorded.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (at, event) in &self.events {
            writeln!(f, "{:>12.6}s  {event}", at.as_secs_f64())?;
        }
        Ok(())
    }
}
