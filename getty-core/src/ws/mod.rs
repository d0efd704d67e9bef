//! The WebSocket transport.
//!
//! The server side of the opening handshake (RFC 6455 §4.2) is done by hand in [`handshake`],
//! so that a refused upgrade (wrong path, method, version or origin, an oversized or malformed
//! head) gets a proper HTTP response instead of a dropped connection. After the `101 Switching
//! Protocols`, framing is left to async-tungstenite, which runs over the same futures-io stream.

pub(crate) mod handshake;
