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

/// The counters of one session. Only its driver task writes them (reads, writes, drops and
/// failures are all counted where the driver does them), so each is bumped with a plain load
/// and store (no locked instruction on the per-message path); readers on other threads still
/// see every value whole.
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

/// Adds `n` to a counter that has a single writer (see [`StatCounters`]).
#[inline]
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
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
        bump(&self.bytes_read, n);
    }
    pub(crate) fn add_bytes_written(&self, n: u64) {
        bump(&self.bytes_written, n);
    }
    pub(crate) fn add_pkgs_read(&self, n: u64) {
        bump(&self.pkgs_read, n);
    }
    pub(crate) fn add_pkgs_written(&self, n: u64) {
        if n > 0 {
            bump(&self.pkgs_written, n);
        }
    }
    pub(crate) fn add_pkgs_dropped(&self, n: u64) {
        bump(&self.pkgs_dropped, n);
    }
    pub(crate) fn add_pkgs_unsent(&self, n: u64) {
        bump(&self.pkgs_unsent, n);
    }
    pub(crate) fn add_send_failures(&self, n: u64) {
        bump(&self.send_failures, n);
    }
}
