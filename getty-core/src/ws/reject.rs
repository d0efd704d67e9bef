//! A server's refusal of a WebSocket upgrade, with an HTTP status.

use std::fmt;

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::{header_pair, refuse_reserved};
use crate::error::{Error, Result};

/// Headers of a refusal that getty writes itself.
const RESERVED: &[&str] = &["content-length", "connection", "transfer-encoding"];

/// Refuses a WebSocket upgrade with an HTTP status: returned (as the error) by a server's
/// new-session callback, it is answered with a complete HTTP response (the status line, its
/// headers, `Content-Type: text/plain` unless it has one, `Content-Length`,
/// `Connection: close`, and the reason and a newline as the body), and the connection is
/// closed. No session opens: no `on_open`, no `on_close`, the server's session count does not
/// change.
///
/// Any other error from the callback refuses the upgrade with `403 Forbidden` and a body that
/// says nothing of the error (which is logged); a panic in it, with `500`.
///
/// ```
/// use getty_core::ws::Reject;
///
/// let reject = Reject::status(401, "log in first")?
///     .header("WWW-Authenticate", "Bearer realm=\"chat\"")?;
/// assert_eq!(reject.status_code(), 401);
/// assert_eq!(reject.reason(), "log in first");
/// assert_eq!(reject.headers()["www-authenticate"], "Bearer realm=\"chat\"");
///
/// // In a new-session callback: `return Err(reject.into());`
/// let refusal: getty_core::BoxError = reject.into();
/// assert!(refusal.downcast_ref::<Reject>().is_some());
///
/// // Mistakes are typed errors, not panics.
/// assert!(Reject::status(200, "fine").is_err());
/// assert!(Reject::status(403, "no")?.header("bad name", "x").is_err());
/// # Ok::<(), getty_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Reject {
    status: u16,
    reason: String,
    headers: HeaderMap,
}

impl Reject {
    /// A refusal with `status` (300 to 599: a redirect, a client or a server error) and
    /// `reason`, the response's body (and what the server logs). Another status is
    /// [`Error::InvalidConfig`].
    pub fn status(status: u16, reason: impl Into<String>) -> Result<Self> {
        if !(300..=599).contains(&status) {
            return Err(Error::invalid(format!(
                "a WebSocket upgrade is refused with a status from 300 to 599, not {status}"
            )));
        }
        Ok(Reject {
            status,
            reason: reason.into(),
            headers: HeaderMap::new(),
        })
    }

    /// Adds a header to the response (`WWW-Authenticate`, `Retry-After`, `Location`,
    /// `Set-Cookie`, ...; repeatable). Names and values are checked
    /// ([`Error::InvalidHeader`]); `Content-Length`, `Connection` and `Transfer-Encoding`,
    /// which getty writes, are refused.
    pub fn header<K, V>(mut self, name: K, value: V) -> Result<Self>
    where
        HeaderName: TryFrom<K>,
        <HeaderName as TryFrom<K>>::Error: Into<http::Error>,
        HeaderValue: TryFrom<V>,
        <HeaderValue as TryFrom<V>>::Error: Into<http::Error>,
    {
        let (name, value) = header_pair(name, value)?;
        refuse_reserved(&name, RESERVED, "a Reject")?;
        self.headers.append(name, value);
        Ok(self)
    }

    /// The HTTP status.
    pub fn status_code(&self) -> u16 {
        self.status
    }

    /// Why: the response's body.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The response's extra headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "upgrade refused with {}: {}", self.status, self.reason)
    }
}

impl std::error::Error for Reject {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_headers_are_checked() {
        for ok in [300, 302, 401, 429, 503, 599] {
            assert!(Reject::status(ok, "x").is_ok(), "{ok}");
        }
        for bad in [0, 101, 200, 299, 600, 1000] {
            assert!(matches!(
                Reject::status(bad, "x"),
                Err(Error::InvalidConfig(_))
            ));
        }
        let r = Reject::status(401, "x").unwrap();
        for (name, value) in [
            ("", "x"),
            ("a b", "x"),
            ("x-a", "\n"),
            ("Content-Length", "1"),
        ] {
            let err = r.clone().header(name, value).unwrap_err();
            assert!(matches!(err, Error::InvalidHeader(_)), "{name}: {err}");
        }
        let r = r
            .header("Set-Cookie", "a=1")
            .unwrap()
            .header("Set-Cookie", "b=2")
            .unwrap();
        assert_eq!(r.headers().get_all("set-cookie").iter().count(), 2);
        assert_eq!(r.to_string(), "upgrade refused with 401: x");
    }
}
