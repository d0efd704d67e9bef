//! Write-side backpressure: the byte-bounded write queue and its water marks.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::support::*;
use getty_core::codec::LengthDelimited;
use getty_core::endpoint::TcpServer;
use getty_core::listener::EventListener;
use getty_core::runtime::Runtime;
use getty_core::session::Session;
use getty_core::Error;

const LOW: usize = 16 * 1024;
const HIGH: usize = 64 * 1024;

/// Echoes with `send`, the waiting queued write, and keeps its sessions for inspection.
#[derive(Debug, Default)]
struct FeedEcho {
    sessions: std::sync::Mutex<Vec<Session<Hello>>>,
    /// Largest queue seen right after a feed.
    max_queued: AtomicUsize,
}
impl EventListener<Hello> for FeedEcho {
    async fn on_open(&self, session: &Session<Hello>) -> Result<(), getty_core::BoxError> {
        session.configure(|c| c.write_water_marks(LOW, HIGH))?;
        session.configure(|c| c.max_msg_len(64 * 1024))?;
        crate::support::lock(&self.sessions).push(session.clone());
        Ok(())
    }

    async fn on_message(&self, session: &Session<Hello>, pkg: Bytes) {
        session.send(&pkg).await.expect("feed");
        self.max_queued
            .fetch_max(session.queued_bytes(), Ordering::SeqCst);
    }
}

/// The payload of frame `i` of the slow-reader scenario.
fn frame_payload(i: usize) -> Vec<u8> {
    (0..1000).map(|j| (i * 7 + j) as u8).collect()
}

/// A peer that sends far more than it reads cannot make the server queue more than the high
/// mark plus one package: the echoing handler waits for room, so the session stops reading and
/// TCP pushes back on the peer. Once the peer reads, everything flows again, intact.
pub async fn slow_reader_bounds_the_write_queue<R: Runtime>(rt: R) {
    const FRAMES: usize = 16_000; // 16 MB: more than the socket buffers and the queue hold
    let echo = Arc::new(FeedEcho::default());
    let listener = echo.clone();
    let srv = TcpServer::builder()
        .serve_with(
            rt.clone(),
            LengthDelimited::hello(),
            move |_: &Session<Hello>| Ok(listener.clone()),
        )
        .expect("server");
    let stream = rt.connect(srv.local_addr(), None).await.expect("connect");
    let (mut reader, mut writer) = futures_lite::io::split(stream);
    let written = Arc::new(AtomicUsize::new(0));
    let counter = written.clone();
    rt.spawn(async move {
        for i in 0..FRAMES {
            if writer
                .write_all(&hello_frame(&frame_payload(i)))
                .await
                .is_err()
            {
                return;
            }
            counter.fetch_add(1, Ordering::SeqCst);
        }
        let _ = writer.flush().await;
    });
    // Backpressure engages: the server's queue fills up while nobody reads. Both facts are
    // read together, retried until they hold at once: while the socket buffers still take
    // bytes the driver drains the queue between two reads; once they are full, the state
    // holds for good.
    eventually(&rt, "the server session's queue to fill", || {
        crate::support::lock(&echo.sessions)
            .first()
            .is_some_and(|s| !s.is_writable() && s.queued_bytes() > LOW)
    })
    .await;
    let session = crate::support::lock(&echo.sessions)[0].clone();
    // The handler now waits for room, so the session has stopped reading: it has consumed
    // only what its queue and the socket buffers on the way back hold, not the whole stream.
    let total = (FRAMES * 1004) as u64;
    assert!(session.stats().bytes_read < total);
    // Now read everything back; the blocked writer resumes and every frame comes back intact.
    within(&rt, "all echoes", async {
        for i in 0..FRAMES {
            let payload = read_hello_frame(&mut reader).await.expect("echo");
            assert_eq!(payload, frame_payload(i), "frame {i}");
        }
    })
    .await;
    assert_eq!(written.load(Ordering::SeqCst), FRAMES);
    let bound = HIGH + 1004;
    let max = echo.max_queued.load(Ordering::SeqCst);
    assert!(max <= bound, "queue reached {max} bytes, bound {bound}");
    within(&rt, "srv close", srv.close()).await;
}

/// A full queue refuses non-waiting sends with `WouldBlock` and reports itself not writable; a
/// waiting `send` resumes once the peer drains, and nothing accepted is lost.
pub async fn full_queue_would_block_and_waiting_writer_resumes<R: Runtime>(rt: R) {
    let (cli, session, mut peer) = client_with_raw_peer(
        &rt,
        LengthDelimited::hello(),
        TestListener::silent(&Recorder::new()).factory(),
    )
    .await;
    session
        .configure(|c| c.write_water_marks(1024, 4096))
        .expect("marks");
    assert_eq!(session.write_water_marks(), (1024, 4096));
    // The peer does not read: sends are accepted until the queue is full. Everything the
    // socket buffers can hold is accepted first, so bound the loop generously.
    let pkg = vec![0x42u8; 1020];
    let mut accepted = 0usize;
    let refused = within(&rt, "a refused send", async {
        loop {
            match session.try_send(&pkg) {
                Ok(_) => accepted += 1,
                // A refusal comes with `is_writable() == false`, checked right after it. On a
                // multi-threaded executor the driver may move part of the queue into the
                // socket between the two (the peer does not read, but the socket buffers have
                // room at first): then the queue is writable again, and sending goes on until
                // the socket buffers are full too and the pair is seen.
                Err(Error::WouldBlock { .. }) if session.is_writable() => {
                    futures_lite::future::yield_now().await;
                }
                Err(err) => return err,
            }
            if accepted % 64 == 0 {
                // Let the driver move the queue into the socket.
                futures_lite::future::yield_now().await;
            }
        }
    })
    .await;
    match refused {
        Error::WouldBlock { queued, high } => {
            assert_eq!(high, 4096);
            assert!(queued >= 4096, "{queued}");
        }
        other => panic!("expected WouldBlock, got {other:?}"),
    }
    // A waiting feed resumes once the peer drains.
    let feeder = session.clone();
    let fed = Arc::new(AtomicUsize::new(0));
    let fed_flag = fed.clone();
    let last = vec![0x43u8; 1020];
    rt.spawn(async move {
        feeder.send(&last).await.expect("feed");
        fed_flag.store(1, Ordering::SeqCst);
    });
    within(&rt, "every accepted package, then the fed one", async {
        for i in 0..accepted {
            let payload = read_hello_frame(&mut peer).await.expect("read");
            assert_eq!(payload, pkg, "package {i}");
        }
        let payload = read_hello_frame(&mut peer).await.expect("read");
        assert_eq!(payload, vec![0x43u8; 1020]);
    })
    .await;
    eventually(&rt, "feed returned", || fed.load(Ordering::SeqCst) == 1).await;
    eventually(&rt, "writable again", || session.is_writable()).await;
    assert!(session.try_send(b"room again").is_ok());
    let mut tail = [0u8; 14];
    within(&rt, "last", peer.read_exact(&mut tail))
        .await
        .expect("read");
    assert_eq!(&tail[4..], b"room again");
    within(&rt, "cli close", cli.close()).await;
}
