//! Compression scenarios: compressed TCP and TLS sessions at every setting, checked against
//! getty on both ends and against the plain `flate2` and `snap` decoders on the raw socket
//! bytes.

use getty_core::ErrorKind;
use getty_core::Frame;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::certs::TestCa;
use super::support::*;
use crate::support::lock;
use getty_core::codec::{LengthDelimited, Lines};
use getty_core::endpoint::{
    Client, TcpClientBuilder, TcpServer, TcpServerBuilder, UdpEndpointBuilder,
};
use getty_core::runtime::Runtime;
use getty_core::{BoxError, Compression, Error, EventListener, Session};

/// Packages up to this long in these scenarios.
const MAX_MSG_LEN: usize = 1 << 20;

/// A new-session callback that compresses every session with `compression` and lets it take
/// packages up to [`MAX_MSG_LEN`].
fn compressed(
    listener: TestListener,
    compression: Compression,
) -> impl Fn(&Session<Hello>) -> Result<Arc<TestListener>, BoxError> + Send + Sync + 'static {
    let listener = Arc::new(listener);
    move |session: &Session<Hello>| {
        session.configure(|c| c.compression(compression))?;
        session.configure(|c| c.max_msg_len(MAX_MSG_LEN))?;
        Ok(listener.clone())
    }
}

async fn echo_server<R: Runtime>(
    rt: &R,
    builder: TcpServerBuilder,
    compression: Compression,
    rec: &Arc<Recorder>,
) -> TcpServer {
    builder
        .serve_with(
            rt.clone(),
            LengthDelimited::hello(),
            // Waiting echoes: a peer slow to read (a loaded machine) must not lose any.
            compressed(TestListener::echo_waiting(rec), compression),
        )
        .expect("server starts")
}

async fn connected_client<R: Runtime>(
    rt: &R,
    builder: TcpClientBuilder,
    compression: Compression,
    rec: &Arc<Recorder>,
) -> Client<Hello> {
    let cli = builder
        .reconnect_interval(Duration::from_millis(10))
        .start_with(
            rt.clone(),
            LengthDelimited::hello(),
            compressed(TestListener::silent(rec), compression),
        )
        .expect("client starts");
    within(rt, "a compressed session", cli.wait_for_sessions(1))
        .await
        .expect("connects");
    cli
}

/// Data that compresses well, and data that does not.
fn bodies() -> Vec<Bytes> {
    let text: Vec<u8> = b"getty session codec listener "
        .iter()
        .copied()
        .cycle()
        .take(300_000)
        .collect();
    let mut state = 0x2545_f491u32;
    let noise: Vec<u8> = (0..150_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    vec![Bytes::from(text), Bytes::from(noise), Bytes::new()]
}

/// Echoes over a compressed session: one package at a time (each reply must come out of the
/// compressor on its own), large packages on either side of the 64 KiB chunk size, then a
/// burst written back to back.
async fn echo_round_trips<R: Runtime>(rt: &R, cli: &Client<Hello>, rec: &Recorder, what: &str) {
    let session = cli.sessions()[0].clone();
    let mut sent: Vec<Bytes> = Vec::new();
    let mut ping_pong = |body: Bytes| {
        sent.push(body.clone());
        let n = sent.len();
        session.try_send(&body).expect("send");
        async move { rec.wait(rt, what, |e| count_msgs(e) == n).await }
    };
    for i in 0..20 {
        ping_pong(payload(i)).await;
    }
    for body in bodies() {
        ping_pong(body).await;
    }
    for i in 0..500 {
        sent.push(payload(i));
        session.send(&payload(i)).await.expect("feed");
    }
    rec.wait(rt, what, |e| count_msgs(e) == sent.len()).await;
    let got = payloads(&rec.events());
    assert_eq!(got.len(), sent.len(), "{what}");
    for (i, (got, sent)) in got.iter().zip(&sent).enumerate() {
        assert!(got == sent, "{what}: package {i} differs");
    }
}

/// Every setting round-trips between getty peers: small and large packages, compressible or
/// not, one at a time and in bursts. Statistics count the uncompressed bytes.
pub async fn compression_round_trips_at_every_level<R: Runtime>(rt: R) {
    for compression in Compression::ALL {
        let what = format!("{compression:?} echoes");
        let rec = Recorder::new();
        let srv = echo_server(&rt, TcpServer::builder(), compression, &rec).await;
        let client_rec = Recorder::new();
        let builder = TcpClientBuilder::new(srv.local_addr());
        let cli = connected_client(&rt, builder, compression, &client_rec).await;
        assert_eq!(cli.sessions()[0].compression(), compression);
        echo_round_trips(&rt, &cli, &client_rec, &what).await;
        let plain: u64 = payloads(&client_rec.events())
            .iter()
            .map(|p| 4 + p.len() as u64)
            .sum();
        let stats = cli.sessions()[0].stats();
        assert_eq!(stats.bytes_read, plain, "{what}: uncompressed bytes read");
        assert_eq!(
            stats.bytes_written, plain,
            "{what}: uncompressed bytes written"
        );
        cli.close().await;
        srv.close().await;
    }
}

/// Compression works inside TLS too.
pub async fn compression_over_tls<R: Runtime>(rt: R) {
    let ca = TestCa::new("compression CA");
    for compression in [Compression::Deflate, Compression::Snappy] {
        let what = format!("{compression:?} over TLS");
        let rec = Recorder::new();
        let builder = TcpServer::builder().tls(ca.server_config(None));
        let srv = echo_server(&rt, builder, compression, &rec).await;
        let client_rec = Recorder::new();
        let builder = TcpClientBuilder::new(srv.local_addr()).tls(ca.client_config(None));
        let cli = connected_client(&rt, builder, compression, &client_rec).await;
        assert!(cli.sessions()[0].name().starts_with("tls-client"));
        echo_round_trips(&rt, &cli, &client_rec, &what).await;
        cli.close().await;
        srv.close().await;
    }
}

/// A peer without getty: `flate2` or `snap` on a raw socket, fed bytes as they arrive.
enum PlainPeer {
    Deflate {
        encoder: flate2::write::DeflateEncoder<Vec<u8>>,
        decoder: flate2::Decompress,
        ended: bool,
    },
    Snappy {
        // Boxed: its buffers are inline.
        encoder: Box<snap::write::FrameEncoder<Vec<u8>>>,
        /// Everything received: `snap` decodes whole streams.
        received: Vec<u8>,
        /// How much of the decoded stream was handed out.
        decoded: usize,
    },
}

impl PlainPeer {
    fn new(compression: Compression) -> Self {
        match compression {
            Compression::Snappy => PlainPeer::Snappy {
                encoder: Box::new(snap::write::FrameEncoder::new(Vec::new())),
                received: Vec::new(),
                decoded: 0,
            },
            _ => PlainPeer::Deflate {
                encoder: flate2::write::DeflateEncoder::new(
                    Vec::new(),
                    flate2::Compression::fast(),
                ),
                decoder: flate2::Decompress::new(false),
                ended: false,
            },
        }
    }

    /// Compresses `plain` and flushes: the bytes to send.
    fn encode(&mut self, plain: &[u8]) -> Vec<u8> {
        match self {
            PlainPeer::Deflate { encoder, .. } => {
                encoder.write_all(plain).expect("deflate");
                encoder.flush().expect("sync flush");
                std::mem::take(encoder.get_mut())
            }
            PlainPeer::Snappy { encoder, .. } => {
                encoder.write_all(plain).expect("snappy");
                encoder.flush().expect("flush");
                std::mem::take(encoder.get_mut())
            }
        }
    }

    /// Feeds received bytes; returns the plain bytes they complete.
    fn decode(&mut self, wire: &[u8]) -> Vec<u8> {
        match self {
            PlainPeer::Deflate { decoder, ended, .. } => {
                let mut plain = Vec::new();
                let mut rest = wire;
                loop {
                    plain.reserve(64 * 1024);
                    let before = decoder.total_in();
                    let status = decoder
                        .decompress_vec(rest, &mut plain, flate2::FlushDecompress::None)
                        .expect("a valid deflate stream");
                    rest = &rest[(decoder.total_in() - before) as usize..];
                    *ended |= status == flate2::Status::StreamEnd;
                    if rest.is_empty() && plain.len() < plain.capacity() {
                        return plain;
                    }
                    assert!(!*ended || rest.is_empty(), "bytes after the final block");
                }
            }
            PlainPeer::Snappy {
                received, decoded, ..
            } => {
                received.extend_from_slice(wire);
                // Up to the last whole chunk.
                let mut whole = 0;
                while let Some(header) = received.get(whole..whole + 4) {
                    let len = usize::from(header[1])
                        | usize::from(header[2]) << 8
                        | usize::from(header[3]) << 16;
                    if received.len() < whole + 4 + len {
                        break;
                    }
                    whole += 4 + len;
                }
                let mut plain = Vec::new();
                snap::read::FrameDecoder::new(&received[..whole])
                    .read_to_end(&mut plain)
                    .expect("a valid snappy stream");
                let new = plain.split_off(*decoded);
                *decoded += new.len();
                new
            }
        }
    }
}

/// Replies to every package with a vectored write of its hello frame in three buffers.
struct VectoredEcho;
impl EventListener<Hello> for VectoredEcho {
    async fn on_message(&self, session: &Session<Hello>, pkg: Bytes) {
        let header = Bytes::copy_from_slice(&(pkg.len() as u32).to_le_bytes());
        let mid = pkg.len() / 2;
        let bufs = [header, pkg.slice(..mid), pkg.slice(mid..)];
        // The session may be closing at the end of the scenario.
        let _ = session.send_frame_and_flush(Frame::vectored(bufs)).await;
    }
}

/// What getty writes, every setting, decodes with the plain `flate2` / `snap` decoder from
/// the raw socket bytes, and what those encoders write decodes in getty: each reply, written
/// as a vectored write, arrives whole before the next request is sent (nothing is held in the
/// compressor). A deflate stream ends with its final block when the session closes.
pub async fn compressed_stream_interoperates_with_plain_decoders<R: Runtime>(rt: R) {
    for compression in Compression::ALL.into_iter().skip(1) {
        let listener = Arc::new(VectoredEcho);
        let srv = TcpServer::builder()
            .serve_with(
                rt.clone(),
                LengthDelimited::hello(),
                move |session: &Session<Hello>| -> Result<_, BoxError> {
                    session.configure(|c| c.compression(compression))?;
                    session.configure(|c| c.max_msg_len(MAX_MSG_LEN))?;
                    Ok(listener.clone())
                },
            )
            .expect("server starts");
        let mut raw = rt.connect(srv.local_addr(), None).await.expect("connect");
        let mut peer = PlainPeer::new(compression);
        let mut requests: Vec<Bytes> = (0..30).map(payload).collect();
        requests.extend(bodies());
        for (i, body) in requests.iter().enumerate() {
            let wire = peer.encode(&hello_frame(body));
            raw.write_all(&wire).await.expect("write");
            let expected = hello_frame(body);
            let mut got = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            while got.len() < expected.len() {
                let n = within(&rt, "a reply", raw.read(&mut buf))
                    .await
                    .expect("read");
                assert!(n > 0, "{compression:?}: EOF before reply {i}");
                got.extend(peer.decode(&buf[..n]));
            }
            assert!(got == expected, "{compression:?}: reply {i} differs");
        }
        // Closing our side ends the session; its close flushes and ends the stream.
        raw.close().await.expect("shutdown");
        let mut rest = Vec::new();
        within(&rt, "the server's close", raw.read_to_end(&mut rest))
            .await
            .expect("read to end");
        assert!(
            peer.decode(&rest).is_empty(),
            "{compression:?}: no more data"
        );
        if let PlainPeer::Deflate { ended, .. } = peer {
            assert!(
                ended,
                "{compression:?}: the stream ends with its final block"
            );
        }
        srv.close().await;
    }
}

/// A stream that is not what the session expects (garbage, or a peer that does not
/// compress) is a `Decompress` error on that session only; the server keeps serving.
pub async fn corrupt_compressed_stream_closes_only_its_session<R: Runtime>(rt: R) {
    let cases: [(Compression, &[u8], &str); 3] = [
        (Compression::Deflate, &[0xff; 16], "invalid compressed data"),
        (
            Compression::Snappy,
            b"\x05\x00\x00\x00hello",
            "does not begin with the stream identifier",
        ),
        (
            Compression::Snappy,
            b"\xff\x06\x00\x00sNaPpY\x01\x09\x00\x00\x00\x00\x00\x00hello",
            "checksum",
        ),
    ];
    for (compression, garbage, reason) in cases {
        let rec = Recorder::new();
        let srv = echo_server(&rt, TcpServer::builder(), compression, &rec).await;
        let mut raw = rt.connect(srv.local_addr(), None).await.expect("connect");
        raw.write_all(garbage).await.expect("write");
        let mut rest = Vec::new();
        let _ = within(&rt, "the server drops us", raw.read_to_end(&mut rest)).await;
        rec.wait(&rt, "the error, then the close", |e| {
            e.iter().any(|r| matches!(r, Rec::Close(_)))
        })
        .await;
        let errors = errors(&rec.events());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].kind == ErrorKind::Decompress && errors[0].text.contains(reason),
            "{compression:?}: {errors:?}"
        );
        let client_rec = Recorder::new();
        let builder = TcpClientBuilder::new(srv.local_addr());
        let cli = connected_client(&rt, builder, compression, &client_rec).await;
        cli.sessions()[0].try_send(b"still serving").expect("send");
        client_rec.wait_msgs(&rt, 1).await;
        cli.close().await;
        srv.close().await;
    }
}

/// A few kilobytes that inflate to megabytes without a line end are cut off by the session's
/// maximum message length: the session closes having buffered about that much, not the
/// megabytes.
pub async fn decompression_is_bounded_by_max_msg_len<R: Runtime>(rt: R) {
    const MAX: usize = 16 * 1024;
    let rec = Recorder::new();
    let listener = Arc::new(Probe {
        rec: rec.clone(),
        echo: true,
    });
    let srv = TcpServer::builder()
        // The codec's own line limit is far above, and it does not declare it as a frame
        // limit (as a user codec may not): the session's limit is what stops it.
        .serve_with(
            rt.clone(),
            NoFrameLimit(Lines::new().with_max_line_len(64 << 20)),
            move |session: &Session<NoFrameLimit<Lines>>| {
                session.configure(|c| c.compression(Compression::Deflate).max_msg_len(MAX))?;
                Ok(listener.clone())
            },
        )
        .expect("server starts");
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&vec![b'a'; 4 << 20]).expect("deflate");
    let bomb = encoder.finish().expect("deflate");
    assert!(bomb.len() < 16 * 1024, "{} bytes", bomb.len());
    let mut raw = rt.connect(srv.local_addr(), None).await.expect("connect");
    // The server may close before taking it all.
    let _ = raw.write_all(&bomb).await;
    rec.wait(&rt, "the close", |e| {
        e.iter().any(|r| matches!(r, Rec::Close(_)))
    })
    .await;
    let buffered = rec.events().iter().find_map(|r| match r {
        Rec::Error(_, e) => Some(e.clone()),
        _ => None,
    });
    let Some(err) = buffered else {
        panic!("an error: {:?}", rec.events())
    };
    let Some((len, _)) = err.frame else {
        panic!("a FrameTooLarge error: {err:?}")
    };
    assert!(len > MAX && len <= MAX + 128 * 1024, "buffered {len} bytes");
    srv.close().await;
}

/// The setting is the new-session callback's: a started session refuses a change, and
/// WebSocket and UDP sessions refuse compression with a clear error.
pub async fn compression_setting_rules<R: Runtime>(rt: R) {
    let rec = Recorder::new();
    let srv = echo_server(&rt, TcpServer::builder(), Compression::Snappy, &rec).await;
    let client_rec = Recorder::new();
    let builder = TcpClientBuilder::new(srv.local_addr());
    let cli = connected_client(&rt, builder, Compression::Snappy, &client_rec).await;
    let session = cli.sessions()[0].clone();
    for change in [Compression::None, Compression::Deflate] {
        match session.configure(|c| c.compression(change)) {
            Err(Error::InvalidConfig(msg)) => assert!(msg.contains("before any I/O"), "{msg}"),
            other => panic!("a started session refuses {change:?}: {other:?}"),
        }
    }
    assert_eq!(session.compression(), Compression::Snappy);
    cli.close().await;
    srv.close().await;

    // The callbacks record what `configure` said of compression.
    let refusals: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = |refusals: &Arc<Mutex<Vec<String>>>| {
        let refusals = refusals.clone();
        let listener = Arc::new(TestListener::echo(&rec));
        move |session: &Session<Hello>| {
            let refused = match session.configure(|c| c.compression(Compression::Deflate)) {
                Err(err) => err.to_string(),
                Ok(()) => "accepted".to_string(),
            };
            session.configure(|c| c.compression(Compression::None))?;
            lock(&refusals).push(refused);
            Ok(listener.clone())
        }
    };
    let ws = TcpServer::builder()
        .websocket("/ws")
        .serve_with(rt.clone(), LengthDelimited::hello(), record(&refusals))
        .expect("WebSocket server");
    let url = format!("ws://{}/ws", ws.local_addr());
    let ws_cli = TcpClientBuilder::websocket_url(&url)
        .expect("url")
        .start_with(rt.clone(), LengthDelimited::hello(), record(&refusals))
        .expect("WebSocket client");
    within(&rt, "a WebSocket session", ws_cli.wait_for_sessions(1))
        .await
        .expect("connects");
    let any: SocketAddr = (std::net::Ipv4Addr::LOCALHOST, 0).into();
    let udp = UdpEndpointBuilder::new()
        .addr(any)
        .bind_with(rt.clone(), LengthDelimited::hello(), record(&refusals))
        .await
        .expect("UDP endpoint");
    eventually(&rt, "three new-session callbacks", || {
        lock(&refusals).len() == 3
    })
    .await;
    let refusals = lock(&refusals).clone();
    for msg in &refusals {
        assert!(msg.contains("TCP and TLS sessions only"), "{msg}");
    }
    assert!(refusals[0].contains("permessage-deflate"), "{refusals:?}");
    // The refusal left the session as it was: it runs, uncompressed.
    ws_cli.sessions()[0].try_send(b"plain").expect("send");
    rec.wait(&rt, "the WebSocket echo", |e| count_msgs(e) >= 2)
        .await;
    udp.close().await;
    ws_cli.close().await;
    ws.close().await;
}
