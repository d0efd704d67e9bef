//! A session's traffic counters.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a session's traffic counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Bytes read from the socket.
    pub bytes_read: u64,
    /// Bytes that reached the socket.
    pub bytes_written: u64,
    /// Packages decoded and delivered to `on_message`.
    pub pkgs_read: u64,
    /// Packages whose last byte reached the socket.
    pub pkgs_written: u64,
    /// Inbound datagrams dropped, each with a logged warning: longer than the maximum message
    /// length, or refused by the codec (UDP only: a stream session closes instead).
    pub pkgs_dropped: u64,
    /// Packages queued that never fully reached the socket: still queued when the session
    /// closed (the close-wait passed, or the connection failed). Every package accepted by a
    /// write is counted once in `pkgs_written`, `pkgs_unsent` or `send_failures`.
    pub pkgs_unsent: u64,
    /// Outbound datagrams the socket refused (UDP endpoints log, count and skip them; the
    /// endpoint keeps serving).
    pub send_failures: u64,
}

#[derive(Default)]
pub(crate) struct StatCounters {
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    pkgs_read: AtomicU64,
    pkgs_written: AtomicU64,
    pkgs_dropped: AtomicU64,
    pkgs_unsent: AtomicU64,
    send_failures: AtomicU64,
}

impl StatCounters {
    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            pkgs_read: self.pkgs_read.load(Ordering::Relaxed),
            pkgs_written: self.pkgs_written.load(Ordering::Relaxed),
            pkgs_dropped: self.pkgs_dropped.load(Ordering::Relaxed),
            pkgs_unsent: self.pkgs_unsent.load(Ordering::Relaxed),
            send_failures: self.send_failures.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn add_bytes_read(&self, n: u64) {
        self.bytes_read.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_bytes_written(&self, n: u64) {
        self.bytes_written.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_pkgs_read(&self, n: u64) {
        self.pkgs_read.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_pkgs_written(&self, n: u64) {
        if n > 0 {
            self.pkgs_written.fetch_add(n, Ordering::Relaxed);
        }
    }
    pub(crate) fn add_pkgs_dropped(&self, n: u64) {
        self.pkgs_dropped.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_pkgs_unsent(&self, n: u64) {
        self.pkgs_unsent.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_send_failures(&self, n: u64) {
        self.send_failures.fetch_add(n, Ordering::Relaxed);
    }
}
