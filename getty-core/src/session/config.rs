//! The settings a session runs with, validated as a whole.

use std::time::Duration;

use super::write_queue::{DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER};
use crate::codec::Codec;
use crate::compress::Compression;
use crate::error::{Error, Result};

/// The default maximum message length (a whole frame, header included), as getty's: 4 KiB.
pub const DEFAULT_MAX_MSG_LEN: usize = 4 * 1024;
/// The default cron period, as getty's: 60 s.
pub const DEFAULT_CRON_PERIOD: Duration = Duration::from_secs(60);
/// The default close-wait: how long closing may spend flushing queued writes.
pub const DEFAULT_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The settings of a session: limits, timeouts, cron period, close-wait, write queue bounds and
/// compression.
///
/// Give one to an endpoint builder (`session_config`): every session of the endpoint starts
/// with it, and it is validated once, when the endpoint starts. A new-session callback can
/// change one session's settings with [`Session::configure`](crate::Session::configure).
///
/// ```
/// use std::time::Duration;
/// use getty_core::session::SessionConfig;
///
/// let config = SessionConfig::new()
///     .max_msg_len(128 * 1024)
///     .idle_timeout(Duration::from_secs(30))
///     .cron_period(Duration::from_secs(10));
/// assert!(config.validate().is_ok());
/// assert!(SessionConfig::new().max_msg_len(0).validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a builder does nothing until it is used"]
pub struct SessionConfig {
    pub(crate) max_msg_len: Option<usize>,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) cron_period: Duration,
    pub(crate) close_wait: Duration,
    pub(crate) water_marks: (usize, usize),
    pub(crate) compression: Compression,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_msg_len: None,
            read_timeout: None,
            idle_timeout: None,
            write_timeout: None,
            cron_period: DEFAULT_CRON_PERIOD,
            close_wait: DEFAULT_CLOSE_WAIT,
            water_marks: (DEFAULT_LOW_WATER, DEFAULT_HIGH_WATER),
            compression: Compression::None,
        }
    }
}

impl SessionConfig {
    /// getty's defaults: see each setting.
    pub fn new() -> Self {
        Self::default()
    }

    /// The longest inbound frame accepted, header included; a longer one closes the session
    /// with [`Error::FrameTooLarge`], refused from its header when the codec reports the
    /// length early. The default is the codec's own limit when it has one
    /// ([`Codec::frame_limit`]), otherwise [`DEFAULT_MAX_MSG_LEN`]. Setting a different value
    /// than the codec's limit is an error (there is one limit: set it in one place).
    pub fn max_msg_len(mut self, len: usize) -> Self {
        self.max_msg_len = Some(len);
        self
    }

    /// How long the session may wait for bytes from the peer before it is closed with
    /// [`Error::ReadTimeout`]; `None` (the default) waits forever.
    pub fn read_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.read_timeout = timeout.into();
        self
    }

    /// How long the session may go without receiving a whole package before it is closed with
    /// [`Error::IdleTimeout`]; `None` (the default) waits forever. Unlike the read timeout,
    /// bytes that complete no package do not count, so a peer trickling a frame a byte at a
    /// time (slowloris) or one that vanished is closed either way. Time spent in handlers does
    /// not count. On WebSocket sessions only data messages count: pings and pongs keep the
    /// read timeout (liveness) alive, not the idle timeout.
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.idle_timeout = timeout.into();
        self
    }

    /// The timeout of [`send_and_flush`](crate::Session::send_and_flush) when it is given
    /// none; `None` (the default) waits until the bytes are written or the session closes.
    pub fn write_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.write_timeout = timeout.into();
        self
    }

    /// The period of `on_cron` (default 60 s).
    pub fn cron_period(mut self, period: Duration) -> Self {
        self.cron_period = period;
        self
    }

    /// How long closing may spend flushing queued writes (and waiting for a running handler)
    /// before the socket is shut down anyway (default 1 s; zero does not wait).
    pub fn close_wait(mut self, wait: Duration) -> Self {
        self.close_wait = wait;
        self
    }

    /// Bounds the write queue: once a package takes it to `high` bytes or more it is full
    /// (`try_send` fails, `send` waits) until the socket has taken it down to `low` bytes.
    /// Needs `low < high` (default 512 KiB and 1 MiB).
    pub fn write_water_marks(mut self, low: usize, high: usize) -> Self {
        self.water_marks = (low, high);
        self
    }

    /// How the session's byte stream is compressed (default [`Compression::None`]). Both
    /// peers must choose the same. Only TCP and TLS sessions can be compressed, and only
    /// before the session starts (in the endpoint's config or the new-session callback).
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Checks every setting: a zero maximum message length, zero timeouts (use `None` to turn
    /// one off), a zero cron period and water marks with `low >= high` are
    /// [`Error::InvalidConfig`].
    pub fn validate(&self) -> Result<()> {
        if self.max_msg_len == Some(0) {
            return Err(Error::invalid("max_msg_len must be positive"));
        }
        for (what, timeout) in [
            ("read_timeout", self.read_timeout),
            ("idle_timeout", self.idle_timeout),
            ("write_timeout", self.write_timeout),
        ] {
            if timeout == Some(Duration::ZERO) {
                return Err(Error::invalid(format!(
                    "{what} must be positive (use None to turn it off)"
                )));
            }
        }
        if self.cron_period.is_zero() {
            return Err(Error::invalid("cron_period must be positive"));
        }
        if !cfg!(feature = "compression") && self.compression != Compression::None {
            return Err(Error::invalid(format!(
                "{:?} compression needs getty's `compression` feature",
                self.compression
            )));
        }
        let (low, high) = self.water_marks;
        if high == 0 || low >= high {
            return Err(Error::invalid(format!(
                "write water marks need 0 <= low < high (got low {low}, high {high})"
            )));
        }
        Ok(())
    }

    /// Validates the settings for sessions on `codec`, and fixes the maximum message length:
    /// the codec's limit when only the codec has one, [`DEFAULT_MAX_MSG_LEN`] when neither
    /// has. Two limits that differ are an error.
    pub(crate) fn resolve<C: Codec>(mut self, codec: &C) -> Result<Self> {
        self.validate()?;
        self.max_msg_len = Some(match (self.max_msg_len, codec.frame_limit()) {
            (Some(session), Some(codec)) if session != codec => {
                return Err(Error::invalid(format!(
                    "max_msg_len is {session} bytes but the codec's own limit is {codec} bytes: \
                     there is one limit, set it either on the codec or in SessionConfig"
                )))
            }
            (Some(len), _) | (None, Some(len)) => len,
            (None, None) => DEFAULT_MAX_MSG_LEN,
        });
        Ok(self)
    }

    /// Refuses compression on transports that cannot carry it.
    pub(crate) fn check_transport(&self, stream: bool) -> Result<()> {
        if self.compression != Compression::None && !stream {
            return Err(Error::invalid(format!(
                "{:?} compression applies to TCP and TLS sessions only \
                 (WebSocket permessage-deflate is not supported)",
                self.compression
            )));
        }
        Ok(())
    }
}
