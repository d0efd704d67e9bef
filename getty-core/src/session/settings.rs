//! A session's tunable settings, readable by the driver without locking.

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use super::config::{SessionConfig, DEFAULT_CLOSE_WAIT, DEFAULT_CRON_PERIOD, DEFAULT_MAX_MSG_LEN};
use crate::compress::Compression;
use crate::error::{Error, Result};

/// Set in `compression` once the driver took the setting: it cannot change any more.
const FIXED: u8 = 0x80;

/// Durations are stored as nanoseconds; `NONE` marks an unset optional one.
const NONE: u64 = u64::MAX;

pub(crate) struct Settings {
    max_msg_len: AtomicUsize,
    read_timeout: AtomicU64,
    idle_timeout: AtomicU64,
    write_timeout: AtomicU64,
    cron_period: AtomicU64,
    close_wait: AtomicU64,
    /// A [`Compression`] code, with [`FIXED`] once the driver started.
    compression: AtomicU8,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_msg_len: AtomicUsize::new(DEFAULT_MAX_MSG_LEN),
            read_timeout: AtomicU64::new(NONE),
            idle_timeout: AtomicU64::new(NONE),
            write_timeout: AtomicU64::new(NONE),
            cron_period: AtomicU64::new(nanos(DEFAULT_CRON_PERIOD)),
            close_wait: AtomicU64::new(nanos(DEFAULT_CLOSE_WAIT)),
            compression: AtomicU8::new(Compression::None.code()),
        }
    }
}

/// Nanoseconds of `d`, saturating below `NONE` (about 584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos())
        .unwrap_or(NONE - 1)
        .min(NONE - 1)
}

fn load_opt(a: &AtomicU64) -> Option<Duration> {
    match a.load(Ordering::Relaxed) {
        NONE => None,
        n => Some(Duration::from_nanos(n)),
    }
}

fn store_opt(a: &AtomicU64, d: Option<Duration>) {
    a.store(d.map_or(NONE, nanos), Ordering::Relaxed);
}

impl Settings {
    /// Takes every setting of `config` (validated and resolved by the caller). A change of
    /// compression once the driver took the setting is an error, and changes nothing.
    pub(crate) fn apply(&self, config: &SessionConfig) -> Result<()> {
        if config.compression != self.compression() {
            self.set_compression(config.compression)?;
        }
        if let Some(len) = config.max_msg_len {
            self.max_msg_len.store(len, Ordering::Relaxed);
        }
        store_opt(&self.read_timeout, config.read_timeout);
        store_opt(&self.idle_timeout, config.idle_timeout);
        store_opt(&self.write_timeout, config.write_timeout);
        self.cron_period
            .store(nanos(config.cron_period), Ordering::Relaxed);
        self.close_wait
            .store(nanos(config.close_wait), Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn max_msg_len(&self) -> usize {
        self.max_msg_len.load(Ordering::Relaxed)
    }
    pub(crate) fn read_timeout(&self) -> Option<Duration> {
        load_opt(&self.read_timeout)
    }
    pub(crate) fn idle_timeout(&self) -> Option<Duration> {
        load_opt(&self.idle_timeout)
    }
    pub(crate) fn write_timeout(&self) -> Option<Duration> {
        load_opt(&self.write_timeout)
    }
    pub(crate) fn cron_period(&self) -> Duration {
        Duration::from_nanos(self.cron_period.load(Ordering::Relaxed))
    }
    pub(crate) fn close_wait(&self) -> Duration {
        Duration::from_nanos(self.close_wait.load(Ordering::Relaxed))
    }
    pub(crate) fn compression(&self) -> Compression {
        Compression::from_code(self.compression.load(Ordering::Acquire) & !FIXED)
    }
    fn set_compression(&self, compression: Compression) -> Result<()> {
        self.compression
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |code| {
                (code & FIXED == 0).then_some(compression.code())
            })
            .map(|_| ())
            .map_err(|_| {
                Error::invalid(
                    "compression is chosen in the new-session callback, before any I/O; \
                     this session has started",
                )
            })
    }
    /// The setting the session runs with; later changes are refused.
    pub(crate) fn fix_compression(&self) -> Compression {
        Compression::from_code(self.compression.fetch_or(FIXED, Ordering::AcqRel) & !FIXED)
    }
}
