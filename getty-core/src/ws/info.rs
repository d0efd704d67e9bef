//! What a WebSocket session knows of its opening handshake.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::{header_pair, refuse_reserved};
use crate::error::{Error, Result};
use crate::session::lock;

/// No protocol chosen.
const NONE: usize = usize::MAX;

/// Headers of the `101` that getty writes itself.
const RESERVED_101: &[&str] = &[
    "upgrade",
    "connection",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "content-length",
    "transfer-encoding",
];

/// The opening handshake of a WebSocket session: [`Session::websocket`](crate::Session::websocket).
///
/// On a server session it describes the upgrade request: its path, query and headers, the
/// subprotocols the client offered and the one chosen. On a client session: the request
/// target and the offered protocols are what the client sent, [`headers`](Self::headers) are
/// those of the server's `101` response (say, its `Set-Cookie`), and
/// [`protocol`](Self::protocol) is the server's choice.
///
/// The server's new-session callback sees it before the upgrade is answered and may change
/// the answer: [`select_protocol`](Self::select_protocol),
/// [`clear_protocol`](Self::clear_protocol), [`add_response_header`](Self::add_response_header).
/// Those take effect only inside that callback; afterwards (and on client sessions) they fail
/// with [`Error::InvalidConfig`]. To refuse the upgrade, the callback returns a
/// [`Reject`](super::Reject) (see the [module docs](super)).
///
/// ```no_run
/// use getty_core::prelude::*;
///
/// struct Echo;
/// impl EventListener<RawBytes> for Echo {
///     async fn on_message(&self, _: &Session<RawBytes>, _: Bytes) {}
/// }
///
/// # fn demo<R: Runtime>(rt: R) -> getty_core::Result<()> {
/// let server = TcpServer::builder()
///     .websocket("/ws")
///     .websocket_protocols(["json", "text"])
///     .serve_with(rt, RawBytes, |session: &Session<RawBytes>| {
///         let ws = session.websocket().expect("a WebSocket session");
///         println!(
///             "upgrade on {} (query {:?}), offered {:?}, chosen {:?}, cookie {:?}",
///             ws.path(),
///             ws.query(),
///             ws.offered_protocols(),
///             ws.protocol(),
///             ws.headers().get("cookie"),
///         );
///         Ok(Echo)
///     })?;
/// # let _ = server; Ok(()) }
/// ```
#[derive(Debug)]
pub struct WebSocketInfo {
    server: bool,
    path_and_query: String,
    headers: HeaderMap,
    offered: Vec<String>,
    /// Index into `offered` of the chosen protocol, or [`NONE`].
    chosen: AtomicUsize,
    /// Headers the callback adds to the `101`.
    response_headers: Mutex<HeaderMap>,
    /// Set once the answer is decided: the setters no longer work.
    sealed: AtomicBool,
}

impl WebSocketInfo {
    /// A server session's, before the callback: `chosen` is the server's preference.
    pub(crate) fn server(
        path_and_query: String,
        headers: HeaderMap,
        offered: Vec<String>,
        chosen: Option<usize>,
    ) -> Self {
        WebSocketInfo {
            server: true,
            path_and_query,
            headers,
            offered,
            chosen: AtomicUsize::new(chosen.unwrap_or(NONE)),
            response_headers: Mutex::new(HeaderMap::new()),
            sealed: AtomicBool::new(false),
        }
    }

    /// A client session's: what was sent, the response's headers and the server's choice.
    pub(crate) fn client(
        path_and_query: String,
        response_headers: HeaderMap,
        offered: Vec<String>,
        chosen: Option<usize>,
    ) -> Self {
        WebSocketInfo {
            server: false,
            path_and_query,
            headers: response_headers,
            offered,
            chosen: AtomicUsize::new(chosen.unwrap_or(NONE)),
            response_headers: Mutex::new(HeaderMap::new()),
            sealed: AtomicBool::new(true),
        }
    }

    /// The request's path (the target before any `?`), such as `/chat`.
    pub fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(&self.path_and_query, |(path, _)| path)
    }

    /// The request's query string (after the `?`, not decoded), if it has one.
    pub fn query(&self) -> Option<&str> {
        self.path_and_query.split_once('?').map(|(_, query)| query)
    }

    /// The request target as sent: path and query, such as `/chat?room=7`.
    pub fn path_and_query(&self) -> &str {
        &self.path_and_query
    }

    /// On a server session, the upgrade request's headers (`Cookie`, `Authorization`,
    /// `Origin`, `User-Agent`, ...); on a client session, the headers of the server's `101`.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The negotiated subprotocol, if any: on a server session, the one the `101` names (or
    /// will name, inside the new-session callback); on a client session, the server's choice.
    pub fn protocol(&self) -> Option<&str> {
        self.offered
            .get(self.chosen.load(Ordering::Acquire))
            .map(String::as_str)
    }

    /// The subprotocols the client offered (`Sec-WebSocket-Protocol`), in its order.
    pub fn offered_protocols(&self) -> &[String] {
        &self.offered
    }

    /// Whether this is a server session's upgrade (`false`: a client's).
    pub fn is_server(&self) -> bool {
        self.server
    }

    /// Chooses the subprotocol the `101` names, overriding the server's preference
    /// ([`websocket_protocols`](crate::TcpServerBuilder::websocket_protocols)): `name` must be
    /// one the client offered ([`Error::InvalidConfig`] otherwise, nothing changes). Only
    /// inside the server's new-session callback.
    pub fn select_protocol(&self, name: &str) -> Result<()> {
        self.check_open("select_protocol")?;
        let Some(index) = self.offered.iter().position(|o| o == name) else {
            return Err(Error::invalid(format!(
                "the client did not offer the subprotocol {name:?} (offered: {:?})",
                self.offered
            )));
        };
        self.chosen.store(index, Ordering::Release);
        Ok(())
    }

    /// Answers without a subprotocol (the browser then decides whether it can go on: one
    /// that offered some fails the connection). Only inside the server's new-session
    /// callback.
    pub fn clear_protocol(&self) -> Result<()> {
        self.check_open("clear_protocol")?;
        self.chosen.store(NONE, Ordering::Release);
        Ok(())
    }

    /// Adds a header to the `101 Switching Protocols` (repeatable: two `Set-Cookie`s are two
    /// headers). Names and values are checked ([`Error::InvalidHeader`]); the handshake's own
    /// headers (`Upgrade`, `Connection`, `Sec-WebSocket-*`, `Content-Length`,
    /// `Transfer-Encoding`) are refused. Only inside the server's new-session callback, and
    /// only for an accepted upgrade (a [`Reject`](super::Reject) carries its own headers).
    pub fn add_response_header<K, V>(&self, name: K, value: V) -> Result<()>
    where
        HeaderName: TryFrom<K>,
        <HeaderName as TryFrom<K>>::Error: Into<http::Error>,
        HeaderValue: TryFrom<V>,
        <HeaderValue as TryFrom<V>>::Error: Into<http::Error>,
    {
        self.check_open("add_response_header")?;
        let (name, value) = header_pair(name, value)?;
        refuse_reserved(&name, RESERVED_101, "the new-session callback")?;
        lock(&self.response_headers).append(name, value);
        Ok(())
    }

    /// Ends the callback's say: the answer is what it is now.
    pub(crate) fn seal(&self) {
        self.sealed.store(true, Ordering::Release);
    }

    /// The headers the callback added, for the `101`.
    pub(crate) fn take_response_headers(&self) -> HeaderMap {
        std::mem::take(&mut *lock(&self.response_headers))
    }

    fn check_open(&self, what: &str) -> Result<()> {
        if self.sealed.load(Ordering::Acquire) {
            return Err(Error::invalid(format!(
                "WebSocketInfo::{what} works only inside a server's new-session callback, \
                 before the upgrade is answered"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> WebSocketInfo {
        let mut headers = HeaderMap::new();
        headers.insert("cookie", HeaderValue::from_static("a=1"));
        WebSocketInfo::server(
            "/chat?room=7&x".into(),
            headers,
            vec!["v2".into(), "v1".into()],
            Some(1),
        )
    }

    #[test]
    fn path_query_and_protocols() {
        let info = info();
        assert_eq!(
            (info.path(), info.query(), info.path_and_query()),
            ("/chat", Some("room=7&x"), "/chat?room=7&x")
        );
        assert_eq!(info.protocol(), Some("v1"));
        assert_eq!(info.headers()["cookie"], "a=1");
        let plain = WebSocketInfo::server("/".into(), HeaderMap::new(), vec![], None);
        assert_eq!(
            (plain.path(), plain.query(), plain.protocol()),
            ("/", None, None)
        );
    }

    #[test]
    fn the_callback_can_choose_among_the_offered_only() {
        let info = info();
        info.select_protocol("v2").unwrap();
        assert_eq!(info.protocol(), Some("v2"));
        let err = info.select_protocol("v3").unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
        assert_eq!(info.protocol(), Some("v2"));
        info.clear_protocol().unwrap();
        assert_eq!(info.protocol(), None);
    }

    #[test]
    fn response_headers_are_checked() {
        let info = info();
        info.add_response_header("Set-Cookie", "sid=1").unwrap();
        info.add_response_header(http::header::SET_COOKIE, "b=2")
            .unwrap();
        for (name, value) in [("bad name", "x"), ("x-ok", "line\r\nbreak")] {
            let err = info.add_response_header(name, value).unwrap_err();
            assert!(matches!(err, Error::InvalidHeader(_)), "{err}");
        }
        for reserved in ["Sec-WebSocket-Accept", "connection", "Content-Length"] {
            let err = info.add_response_header(reserved, "x").unwrap_err();
            assert!(matches!(err, Error::InvalidHeader(_)), "{err}");
        }
        let headers = info.take_response_headers();
        assert_eq!(headers.get_all("set-cookie").iter().count(), 2);
    }

    #[test]
    fn setters_stop_working_once_sealed() {
        let info = info();
        info.seal();
        assert!(info.select_protocol("v2").is_err());
        assert!(info.clear_protocol().is_err());
        assert!(info.add_response_header("x-a", "b").is_err());
        assert_eq!(info.protocol(), Some("v1"));
        let client = WebSocketInfo::client("/".into(), HeaderMap::new(), vec!["a".into()], Some(0));
        assert!(!client.is_server());
        assert!(client.select_protocol("a").is_err());
        assert_eq!(client.protocol(), Some("a"));
    }
}
