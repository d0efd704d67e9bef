//! Request/response: `Session::call` and `Client::call` match replies to callers by the id the
//! codec carries, fail at once when the carrying session closes, time out by their deadline,
//! and hand replies nobody waits for to the listener.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use event_listener::Event;

use super::support::*;
use getty_core::codec::{Codec, CodecError, Decoded, Message, MessageKind, WsMessages};
use getty_core::endpoint::{TcpClientBuilder, TcpServer, UdpClientBuilder, UdpEndpointBuilder};
use getty_core::runtime::Runtime;
use getty_core::session::Session;
use getty_core::{Error, ErrorKind, EventListener};

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request, answered with a reply carrying its id.
    Request = 0,
    /// The answer to the request with the same id.
    Reply = 1,
    /// A message nobody asked for (id 0).
    Push = 2,
}

/// One frame of the test protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// Request, reply or push.
    pub kind: Kind,
    /// The correlation id.
    pub id: u64,
    /// The body.
    pub body: Bytes,
}

impl Msg {
    fn new(kind: Kind, id: u64, body: impl Into<Bytes>) -> Self {
        Msg {
            kind,
            id,
            body: body.into(),
        }
    }

    /// A request with this body (its id is the session's to choose).
    pub fn request(body: &'static str) -> Self {
        Msg::new(Kind::Request, 0, body)
    }
}

/// Frames: u32 big-endian length of what follows, a kind byte, a u64 id, the body.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rpc;

const HEADER: usize = 4 + 1 + 8;

impl Codec for Rpc {
    type Inbound = Msg;
    type Outbound = Msg;

    fn decode(&self, buf: &mut BytesMut) -> Result<Decoded<Msg>, CodecError> {
        if buf.len() < HEADER {
            return Ok(Decoded::Incomplete(None));
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < 9 {
            return Err(CodecError::invalid("frame shorter than its header"));
        }
        if buf.len() < 4 + len {
            return Ok(Decoded::Incomplete(Some(4 + len)));
        }
        let mut frame = buf.split_to(4 + len);
        frame.advance(4);
        let kind = match frame.get_u8() {
            0 => Kind::Request,
            1 => Kind::Reply,
            2 => Kind::Push,
            other => return Err(CodecError::invalid(format!("unknown kind {other}"))),
        };
        let id = frame.get_u64();
        Ok(Decoded::Frame(Msg {
            kind,
            id,
            body: frame.freeze(),
        }))
    }

    fn encode(&self, msg: &Msg, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.put_u32(9 + msg.body.len() as u32);
        dst.put_u8(msg.kind as u8);
        dst.put_u64(msg.id);
        dst.put_slice(&msg.body);
        Ok(())
    }

    fn encode_request(&self, id: u64, msg: &Msg, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.encode(&Msg::new(Kind::Request, id, msg.body.clone()), dst)
    }

    fn reply_id(&self, msg: &Msg) -> Option<u64> {
        (msg.kind == Kind::Reply).then_some(msg.id)
    }
}

/// The server side: answers each request with `"<body>@<session id>"`, except that
///  - `"hold"` is kept unanswered until a `"release"` arrives, which answers the held ones
///    (newest first) and then itself: replies out of order, and late ones;
///  - `"close"` closes the session without answering;
///  - `"push"` is answered by a push before its reply.
#[derive(Default)]
struct Answerer {
    held: Mutex<Vec<u64>>,
}

impl EventListener<Rpc> for Answerer {
    async fn on_message(&self, session: &Session<Rpc>, msg: Msg) {
        assert_eq!(msg.kind, Kind::Request, "the server only gets requests");
        let reply = |id: u64, body: &[u8]| {
            let mut text = body.to_vec();
            text.extend_from_slice(format!("@{}", session.id()).as_bytes());
            Msg::new(Kind::Reply, id, text)
        };
        match &msg.body[..] {
            b"hold" => lock(&self.held).push(msg.id),
            b"close" => session.close(),
            b"release" => {
                let held = std::mem::take(&mut *lock(&self.held));
                for id in held.into_iter().rev() {
                    session.send(&reply(id, b"held")).await.expect("reply");
                }
                session
                    .send(&reply(msg.id, b"release"))
                    .await
                    .expect("reply");
            }
            b"push" => {
                let push = Msg::new(Kind::Push, 0, "pushed");
                session.send(&push).await.expect("push");
                session.send(&reply(msg.id, b"push")).await.expect("reply");
            }
            body => {
                session.send(&reply(msg.id, body)).await.expect("reply");
            }
        }
    }
}

/// The calling side's listener: keeps every package that was not a waited-for reply.
#[derive(Default, Clone)]
struct Leftovers {
    got: Arc<Mutex<Vec<Msg>>>,
    changed: Arc<Event>,
}

impl Leftovers {
    async fn wait_for(&self, rt: &impl Runtime, n: usize) -> Vec<Msg> {
        within(rt, "packages for on_message", async {
            loop {
                let listener = self.changed.listen();
                let got = lock(&self.got).clone();
                if got.len() >= n {
                    return got;
                }
                listener.await;
            }
        })
        .await
    }
}

impl EventListener<Rpc> for Leftovers {
    async fn on_message(&self, _: &Session<Rpc>, msg: Msg) {
        lock(&self.got).push(msg);
        self.changed.notify(usize::MAX);
    }
}

fn body(msg: &Msg) -> &str {
    std::str::from_utf8(&msg.body).expect("UTF-8 body")
}

const LONG: Duration = Duration::from_secs(60);

/// Calls in flight on one session get their own replies, whatever order they come in; a push
/// and a reply that comes after its call timed out go to `on_message`, never to a later call.
pub async fn calls_match_replies_in_any_order<R: Runtime>(rt: R) {
    let srv = TcpServer::builder()
        .serve(rt.clone(), Rpc, Arc::new(Answerer::default()))
        .expect("server");
    let leftovers = Leftovers::default();
    let cli = TcpClientBuilder::new(srv.local_addr())
        .start(rt.clone(), Rpc, leftovers.clone())
        .expect("client");
    within(&rt, "client session", cli.wait_for_sessions(1))
        .await
        .expect("connected");
    within(&rt, "server session", srv.wait_for_sessions(1))
        .await
        .expect("accepted");
    let session = cli.session().expect("a session");
    let tag = format!("@{}", srv.sessions()[0].id());

    // Two held calls and a release, all in flight together: the server answers the held ones
    // newest first, then the release.
    let (hold, release_req) = (Msg::request("hold"), Msg::request("release"));
    let ((held, held2), release) = {
        let a = session.call(&hold, LONG);
        let b = session.call(&hold, LONG);
        let c = async {
            // The release goes last: after both holds reached the server.
            eventually(&rt, "two held requests", || {
                srv.sessions()[0].stats().pkgs_read == 2
            })
            .await;
            session.call(&release_req, LONG).await
        };
        within(&rt, "three calls", async {
            futures_lite::future::zip(futures_lite::future::zip(a, b), c).await
        })
        .await
    };
    for reply in [&held, &held2] {
        let reply = reply.as_ref().expect("held call answered");
        assert_eq!(reply.kind, Kind::Reply);
        assert_eq!(body(reply), format!("held{tag}"));
    }
    assert_ne!(held.as_ref().unwrap().id, held2.as_ref().unwrap().id);
    assert_eq!(
        body(&release.expect("release answered")),
        format!("release{tag}")
    );

    // A push comes before its reply: the push to the listener, the reply to the call.
    let reply = within(&rt, "push call", session.call(&Msg::request("push"), LONG))
        .await
        .expect("answered");
    assert_eq!(body(&reply), format!("push{tag}"));
    let got = leftovers.wait_for(&rt, 1).await;
    assert_eq!(got, vec![Msg::new(Kind::Push, 0, "pushed")]);

    // A call that times out: its reply, released later, goes to the listener, and the call
    // that released it gets its own reply.
    let err = session
        .call(&Msg::request("hold"), Duration::from_millis(50))
        .await
        .expect_err("nobody answers a held request");
    assert_eq!(err.kind(), ErrorKind::CallTimeout);
    assert!(matches!(err, Error::CallTimeout { id, timeout }
        if id == session.id() && timeout == Duration::from_millis(50)));
    let reply = within(&rt, "release", session.call(&Msg::request("release"), LONG))
        .await
        .expect("answered");
    assert_eq!(body(&reply), format!("release{tag}"));
    let got = leftovers.wait_for(&rt, 2).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].kind, Kind::Reply);
    assert_eq!(body(&got[1]), format!("held{tag}"));
    assert!(!session.is_closing(), "a late reply is no error");

    within(&rt, "cli close", cli.close()).await;
    within(&rt, "srv close", srv.close()).await;
}

/// A call fails at once, with the session's id, when the session carrying it closes; calls on
/// a closed session and with a codec that has no ids fail without waiting.
pub async fn call_fails_at_once_when_its_session_closes<R: Runtime>(rt: R) {
    let srv = TcpServer::builder()
        .serve(rt.clone(), Rpc, Arc::new(Answerer::default()))
        .expect("server");
    let cli = TcpClientBuilder::new(srv.local_addr())
        .start(rt.clone(), Rpc, Leftovers::default())
        .expect("client");
    within(&rt, "client session", cli.wait_for_sessions(1))
        .await
        .expect("connected");
    let session = cli.session().expect("a session");

    // The server closes instead of answering; the call's minute-long deadline does not
    // matter (`within` fails the scenario long before it).
    let (hold, close) = (Msg::request("hold"), Msg::request("close"));
    let held = session.call(&hold, LONG);
    let closing = session.call(&close, LONG);
    let (held, closing) = within(&rt, "calls fail", futures_lite::future::zip(held, closing)).await;
    for err in [held.expect_err("held"), closing.expect_err("closing")] {
        assert!(
            matches!(err, Error::SessionClosed { id } if id == session.id()),
            "{err}"
        );
    }
    within(&rt, "session closed", session.closed()).await;
    let err = session
        .call(&Msg::request("late"), LONG)
        .await
        .expect_err("closed");
    assert_eq!(err.kind(), ErrorKind::SessionClosed);
    within(&rt, "cli close", cli.close()).await;

    // A codec without request ids refuses at once, saying so.
    let plain = TcpServer::builder()
        .serve(
            rt.clone(),
            Hello::hello(),
            TestListener::silent(&Recorder::new()),
        )
        .expect("server");
    let cli = TcpClientBuilder::new(plain.local_addr())
        .start(
            rt.clone(),
            Hello::hello(),
            TestListener::silent(&Recorder::new()),
        )
        .expect("client");
    within(&rt, "client session", cli.wait_for_sessions(1))
        .await
        .expect("connected");
    let err = cli
        .session()
        .expect("a session")
        .call(b"ping".as_slice(), LONG)
        .await
        .expect_err("no ids");
    assert_eq!(err.kind(), ErrorKind::Codec);
    assert!(err.to_string().contains("encode_request"), "{err}");
    within(&rt, "cli close", cli.close()).await;
    within(&rt, "srv close", plain.close()).await;
}

/// `Client::call` takes turns among the pool's sessions, waits for a session while the pool
/// reconnects (bounded by its deadline), fails in flight when the server goes away, and works
/// again once the server is back on the same port.
pub async fn client_call_survives_a_server_restart<R: Runtime>(rt: R) {
    let srv = TcpServer::builder()
        .serve(rt.clone(), Rpc, Arc::new(Answerer::default()))
        .expect("server");
    let addr = srv.local_addr();
    let cli = TcpClientBuilder::new(addr)
        .pool_size(2)
        .reconnect_interval(Duration::from_millis(20))
        .start(rt.clone(), Rpc, Leftovers::default())
        .expect("client");
    // Called before any session is up: the call waits for one.
    let first = within(&rt, "first call", cli.call(&Msg::request("a"), LONG))
        .await
        .expect("answered");
    assert!(body(&first).starts_with("a@"));
    within(&rt, "pool of two", cli.wait_for_sessions(2))
        .await
        .expect("connected");
    // Two calls in a row go to different sessions.
    let mut tags = Vec::new();
    for _ in 0..2 {
        let reply = within(&rt, "call", cli.call(&Msg::request("b"), LONG))
            .await
            .expect("answered");
        tags.push(body(&reply).to_owned());
    }
    assert_ne!(tags[0], tags[1], "round robin over the pool");

    // The server goes away with a call in flight: it fails at once.
    let hold = Msg::request("hold");
    let held = cli.call(&hold, LONG);
    let stop = async {
        eventually(&rt, "the held request arrived", || {
            srv.sessions().iter().any(|s| s.stats().pkgs_read >= 3)
                || srv
                    .sessions()
                    .iter()
                    .map(|s| s.stats().pkgs_read)
                    .sum::<u64>()
                    >= 4
        })
        .await;
        srv.close().await;
    };
    let (held, ()) = within(
        &rt,
        "held call fails",
        futures_lite::future::zip(held, stop),
    )
    .await;
    assert_eq!(
        held.expect_err("server gone").kind(),
        ErrorKind::SessionClosed
    );
    eventually(&rt, "pool empty", || cli.session_count() == 0).await;

    // Nothing listens: a call waits its deadline for a session and says none came.
    let err = within(
        &rt,
        "call",
        cli.call(&Msg::request("c"), Duration::from_millis(30)),
    )
    .await
    .expect_err("no session");
    assert!(matches!(err, Error::CallTimeout { id: 0, .. }), "{err}");

    // The server is back: a call waiting for the reconnect is answered.
    let srv = TcpServer::builder()
        .addr(addr)
        .serve(rt.clone(), Rpc, Arc::new(Answerer::default()))
        .expect("server restarts on the same port");
    let reply = within(
        &rt,
        "call after restart",
        cli.call(&Msg::request("d"), LONG),
    )
    .await
    .expect("answered");
    assert!(body(&reply).starts_with("d@"));
    within(&rt, "cli close", cli.close()).await;
    let err = cli
        .call(&Msg::request("e"), LONG)
        .await
        .expect_err("closed");
    assert_eq!(err.kind(), ErrorKind::EndpointClosed);
    within(&rt, "srv close", srv.close()).await;
}

/// A connected UDP client calls like a TCP one; the endpoint answering it has no calls of its
/// own (it has no single peer).
pub async fn udp_client_call<R: Runtime>(rt: R) {
    struct UdpAnswerer;
    impl EventListener<Rpc> for UdpAnswerer {
        async fn on_message(&self, _: &Session<Rpc>, _: Msg) {
            unreachable!("an endpoint's datagrams come with their sender");
        }
        async fn on_datagram(&self, session: &Session<Rpc>, msg: Msg, from: std::net::SocketAddr) {
            let reply = Msg::new(Kind::Reply, msg.id, msg.body);
            session.to(from).send(&reply).await.expect("reply");
        }
    }
    let endpoint = UdpEndpointBuilder::new()
        .addr(localhost())
        .bind(rt.clone(), Rpc, UdpAnswerer)
        .await
        .expect("endpoint");
    let err = endpoint
        .session()
        .call(&Msg::request("x"), LONG)
        .await
        .expect_err("an endpoint has no peer");
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    let cli = UdpClientBuilder::new(endpoint.local_addr())
        .connect_ping_wait(Duration::from_millis(50))
        .start(rt.clone(), Rpc, Leftovers::default())
        .expect("client");
    for body_text in ["one", "two", "three"] {
        let reply = within(&rt, "udp call", cli.call(&Msg::request(body_text), LONG))
            .await
            .expect("answered");
        assert_eq!(body(&reply), body_text);
    }
    within(&rt, "cli close", cli.close()).await;
    within(&rt, "endpoint close", endpoint.close()).await;
}

fn localhost() -> std::net::SocketAddr {
    (std::net::Ipv4Addr::LOCALHOST, 0).into()
}

/// Requests as WebSocket text messages `ID TEXT`: a codec over [`WsMessages`] that says its
/// packages are text ([`Codec::outbound_kind`]).
struct IdText;

impl Codec for IdText {
    type Inbound = (u64, String);
    type Outbound = (u64, String);

    fn decode(&self, buf: &mut BytesMut) -> Result<Decoded<(u64, String)>, CodecError> {
        self.decode_message(MessageKind::Binary, buf)
    }

    fn decode_message(
        &self,
        kind: MessageKind,
        msg: &mut BytesMut,
    ) -> Result<Decoded<(u64, String)>, CodecError> {
        let Decoded::Frame(Message::Text(text)) = WsMessages.decode_message(kind, msg)? else {
            return Err(CodecError::invalid(
                "a binary message where text was expected",
            ));
        };
        let (id, text) = text.split_once(' ').unwrap_or((&text, ""));
        let id = id.parse().map_err(|_| CodecError::invalid("no id"))?;
        Ok(Decoded::Frame((id, text.to_owned())))
    }

    fn encode(&self, (id, text): &(u64, String), dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.extend_from_slice(format!("{id} {text}").as_bytes());
        Ok(())
    }

    fn encode_request(
        &self,
        id: u64,
        (_, text): &(u64, String),
        dst: &mut BytesMut,
    ) -> Result<(), CodecError> {
        self.encode(&(id, text.clone()), dst)
    }

    fn reply_id(&self, (id, _): &(u64, String)) -> Option<u64> {
        Some(*id)
    }

    fn outbound_kind(&self, _: &(u64, String)) -> MessageKind {
        MessageKind::Text
    }
}

/// A client listener that no package should reach.
struct Unexpected;
impl EventListener<IdText> for Unexpected {
    async fn on_message(&self, _: &Session<IdText>, reply: (u64, String)) {
        panic!("a reply without its call: {reply:?}");
    }
}

/// Over WebSocket a request leaves as the message kind the codec says (text here), and the
/// reply, a text message too, finds its call.
pub async fn ws_call_sends_the_codecs_message_kind<R: Runtime>(rt: R) {
    struct TextEcho;
    impl EventListener<WsMessages> for TextEcho {
        async fn on_message(&self, session: &Session<WsMessages>, msg: Message) {
            // A binary request is answered in binary, which the caller's codec refuses.
            let reply = match msg {
                Message::Text(text) => Message::Text(text.to_uppercase()),
                binary => binary,
            };
            session.send(&reply).await.expect("reply");
        }
    }
    let srv = TcpServer::builder()
        .websocket("/rpc")
        .serve(rt.clone(), WsMessages, TextEcho)
        .expect("server");
    let cli = TcpClientBuilder::new(srv.local_addr())
        .websocket("/rpc")
        .start(rt.clone(), IdText, Unexpected)
        .expect("client");
    for text in ["hello", "world"] {
        let (_, reply) = within(&rt, "ws call", cli.call(&(0, text.to_owned()), LONG))
            .await
            .expect("answered");
        assert_eq!(reply, text.to_uppercase());
    }
    within(&rt, "cli close", cli.close()).await;
    within(&rt, "srv close", srv.close()).await;
}
