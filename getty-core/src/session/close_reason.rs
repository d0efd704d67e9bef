//! Why a session closes, as its peer can be told: a WebSocket close code and text.

use std::fmt;

use crate::error::Error;

/// The reason a session closes, sent to the peer where the transport can carry it (a
/// WebSocket close frame's status code and text; TCP, TLS and UDP have no place for it).
///
/// [`Session::close_with`](crate::Session::close_with) chooses one. Otherwise getty picks it
/// from how the session ended ([`CloseReason::for_error`]): a plain `close()` or the peer
/// leaving is 1000 (normal), a server's `close()` 1001 (going away), a read or idle timeout
/// 1001, a message over the maximum length 1009, invalid UTF-8 in a text message 1007, a
/// codec that refuses a message 1007, another WebSocket protocol error 1002, a panicking
/// handler or a failed write 1011.
///
/// ```
/// use getty_core::session::CloseReason;
///
/// let kicked = CloseReason::policy("idle for too long");
/// assert_eq!((kicked.code(), kicked.text()), (1008, "idle for too long"));
/// assert!(CloseReason::new(1005, "").is_err(), "reserved for 'no status'");
/// assert!(CloseReason::new(4000, "app-defined").is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    code: u16,
    text: String,
}

/// The most bytes of text a close frame carries (125 minus the 2-byte code).
const MAX_TEXT: usize = 123;

impl CloseReason {
    /// 1000: the purpose of the connection is fulfilled.
    pub fn normal() -> Self {
        Self::known(1000, "")
    }

    /// 1001: the endpoint is going away (a server shutting down, a timeout).
    pub fn going_away(text: &str) -> Self {
        Self::known(1001, text)
    }

    /// 1008: the peer broke a policy of the application (kicked, not allowed).
    pub fn policy(text: &str) -> Self {
        Self::known(1008, text)
    }

    /// A reason with any code a close frame may carry: 1000–1003, 1007–1014, or 3000–4999
    /// (registered and application codes). Others, such as 1005 and 1006 (which mean "no
    /// code" and "no close frame" and must never be sent), are
    /// [`Error::InvalidConfig`]. Text longer than 123 bytes is cut at a character boundary.
    pub fn new(code: u16, text: &str) -> Result<Self, Error> {
        match code {
            1000..=1003 | 1007..=1014 | 3000..=4999 => Ok(Self::known(code, text)),
            _ => Err(Error::invalid(format!(
                "close code {code} cannot be sent (use 1000-1003, 1007-1014 or 3000-4999)"
            ))),
        }
    }

    /// The reason getty sends for a session that ended with `err` (see the type's docs).
    pub fn for_error(err: &Error) -> Self {
        let text = err.to_string();
        let code = match err {
            Error::ReadTimeout(_) | Error::IdleTimeout(_) => 1001,
            Error::FrameTooLarge { .. } => 1009,
            Error::Codec(_) => 1007,
            #[cfg(feature = "ws")]
            Error::WebSocket(source) => {
                use async_tungstenite::tungstenite::Error as WsError;
                match source.downcast_ref::<WsError>() {
                    Some(WsError::Utf8(_)) => 1007,
                    _ => 1002,
                }
            }
            _ => 1011,
        };
        Self::known(code, &text)
    }

    /// The status code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The text (at most 123 bytes).
    pub fn text(&self) -> &str {
        &self.text
    }

    fn known(code: u16, text: &str) -> Self {
        let mut end = text.len().min(MAX_TEXT);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        CloseReason {
            code,
            text: text[..end].to_string(),
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn codes_follow_the_way_a_session_ended() {
        let idle = CloseReason::for_error(&Error::IdleTimeout(Duration::from_secs(1)));
        assert_eq!(idle.code(), 1001);
        let big = CloseReason::for_error(&Error::FrameTooLarge { len: 9, max: 8 });
        assert_eq!(big.code(), 1009);
        let panic = CloseReason::for_error(&Error::HandlerPanic {
            handler: "on_message",
            message: "boom".into(),
        });
        assert_eq!(panic.code(), 1011);
    }

    #[test]
    fn text_is_cut_at_a_char_boundary() {
        let long = "é".repeat(100); // 200 bytes
        let reason = CloseReason::policy(&long);
        assert!(reason.text().len() <= MAX_TEXT);
        assert!(reason.text().chars().all(|c| c == 'é'));
        for code in [0, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
            assert!(CloseReason::new(code, "").is_err(), "{code}");
        }
    }
}
