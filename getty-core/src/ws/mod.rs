//! WebSocket (feature `ws`): what a session knows of its upgrade, and how a server refuses one.
//!
//! A WebSocket session's [`Session::websocket`](crate::Session::websocket) is its
//! [`WebSocketInfo`]: the request's path, query and headers, the subprotocols the client
//! offered and the one chosen. On a server, the new-session callback
//! ([`serve_with`](crate::TcpServerBuilder::serve_with)) runs after the upgrade request was
//! read and checked and *before* it is answered, so it can authenticate the request, choose
//! the subprotocol ([`WebSocketInfo::select_protocol`]), add headers to the `101`
//! ([`WebSocketInfo::add_response_header`], say a `Set-Cookie`), or refuse the upgrade with an
//! HTTP status by returning a [`Reject`]. Any other error from the callback is answered with
//! a `403` whose body says nothing of it (the error is logged).
//!
//! ```no_run
//! use getty_core::prelude::*;
//! use getty_core::ws::Reject;
//!
//! struct Chat;
//! impl EventListener<RawBytes> for Chat {
//!     async fn on_message(&self, _: &Session<RawBytes>, _: Bytes) {}
//! }
//!
//! # fn demo<R: Runtime>(rt: R) -> getty_core::Result<()> {
//! let server = TcpServer::builder()
//!     .websocket("/chat")
//!     .websocket_protocols(["chat.v2", "chat.v1"]) // most preferred first
//!     .serve_with(rt, RawBytes, |session: &Session<RawBytes>| {
//!         let ws = session.websocket().expect("a WebSocket session");
//!         let token = ws.headers().get("authorization").and_then(|v| v.to_str().ok());
//!         if token != Some("Bearer let-me-in") {
//!             return Err(Reject::status(401, "log in first")?
//!                 .header("WWW-Authenticate", "Bearer")?
//!                 .into());
//!         }
//!         if ws.query() == Some("legacy=1") && ws.offered_protocols().iter().any(|p| p == "chat.v1") {
//!             ws.select_protocol("chat.v1")?; // overrides the server's preference
//!         }
//!         ws.add_response_header("Set-Cookie", "session=42; HttpOnly")?;
//!         Ok(Chat)
//!     })?;
//! # let _ = server; Ok(()) }
//! ```
//!
//! The server side of the opening handshake (RFC 6455 §4.2) is done by hand (`handshake`),
//! so that a refused upgrade (wrong path, method, version or origin, an oversized or
//! malformed head, or the callback's refusal) gets a proper HTTP response instead of a
//! dropped connection. After the `101 Switching Protocols`, framing is left to
//! async-tungstenite, which runs over the same futures-io stream.

pub(crate) mod handshake;
mod info;
mod reject;

pub use info::WebSocketInfo;
pub use reject::Reject;

use http::header::{HeaderName, HeaderValue};

use crate::error::{Error, Result};

/// Converts a header name and value the way `http`'s builders do, as a typed error.
pub(crate) fn header_pair<K, V>(name: K, value: V) -> Result<(HeaderName, HeaderValue)>
where
    HeaderName: TryFrom<K>,
    <HeaderName as TryFrom<K>>::Error: Into<http::Error>,
    HeaderValue: TryFrom<V>,
    <HeaderValue as TryFrom<V>>::Error: Into<http::Error>,
{
    let name = HeaderName::try_from(name).map_err(|e| Error::InvalidHeader(Box::new(e.into())))?;
    let value =
        HeaderValue::try_from(value).map_err(|e| Error::InvalidHeader(Box::new(e.into())))?;
    Ok((name, value))
}

/// Refuses `name` if it is one of `reserved` (lowercase), saying what the header is for.
pub(crate) fn refuse_reserved(name: &HeaderName, reserved: &[&str], whose: &str) -> Result<()> {
    if reserved.contains(&name.as_str()) {
        return Err(Error::InvalidHeader(
            format!("{name} is set by the WebSocket handshake itself, not by {whose}").into(),
        ));
    }
    Ok(())
}
