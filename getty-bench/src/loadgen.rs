//! The load generator: the same client code for every server, on plain tokio sockets.
//!
//! Every payload is derived from its connection id and sequence number, and every echoed byte
//! is checked against it. A connection keeps a window of frames outstanding: whenever echoes
//! come back it refills the window with one write (many frames per syscall) and reads in large
//! chunks, so the generator stays cheap next to the server.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The smallest read buffer of a pipelined connection.
const READ_BUF: usize = 256 * 1024;
/// The period of the filler pattern (a prime, so that neighbouring frames differ).
const PATTERN_PERIOD: usize = 251;
/// The leading payload bytes that spell the connection id and sequence number.
const HEADER: usize = 16;

/// The deterministic payloads of one workload: `size` bytes each, starting with the connection
/// id and sequence number (little endian, truncated for tiny payloads), then a filler pattern
/// whose phase depends on both.
#[derive(Debug)]
pub struct Payloads {
    size: usize,
    pattern: Vec<u8>,
}

impl Payloads {
    /// Payloads of `size` bytes.
    pub fn new(size: usize) -> Self {
        let pattern = (0..size + PATTERN_PERIOD)
            .map(|i| ((i % PATTERN_PERIOD) as u8).wrapping_mul(73) ^ 0x5a)
            .collect();
        Payloads { size, pattern }
    }

    /// The bytes of a whole frame (header included).
    pub fn frame_len(&self) -> usize {
        4 + self.size
    }

    fn header(cid: u64, seq: u64) -> [u8; HEADER] {
        let mut header = [0; HEADER];
        header[..8].copy_from_slice(&cid.to_le_bytes());
        header[8..].copy_from_slice(&seq.to_le_bytes());
        header
    }

    fn filler(&self, cid: u64, seq: u64, len: usize) -> &[u8] {
        let phase = (cid.wrapping_mul(31).wrapping_add(seq.wrapping_mul(17))
            % PATTERN_PERIOD as u64) as usize;
        &self.pattern[phase..phase + len]
    }

    /// Appends frame `seq` of connection `cid` (length header and payload) to `out`.
    pub fn append_frame(&self, cid: u64, seq: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.size as u32).to_le_bytes());
        self.append_payload(cid, seq, out);
    }

    /// Appends the payload of frame `seq` of connection `cid` (no length header) to `out`.
    pub fn append_payload(&self, cid: u64, seq: u64, out: &mut Vec<u8>) {
        let head = self.size.min(HEADER);
        out.extend_from_slice(&Self::header(cid, seq)[..head]);
        out.extend_from_slice(self.filler(cid, seq, self.size - head));
    }

    /// Checks that `frame` (length header and payload) is frame `seq` of connection `cid`.
    pub fn check(&self, cid: u64, seq: u64, frame: &[u8]) -> io::Result<()> {
        let expected_len = (self.size as u32).to_le_bytes();
        if frame.len() == self.frame_len() && frame[..4] == expected_len {
            self.check_payload(cid, seq, &frame[4..])
        } else {
            Err(mismatch(cid, seq))
        }
    }

    /// Checks that `payload` (no length header) is the payload of frame `seq` of connection
    /// `cid`.
    pub fn check_payload(&self, cid: u64, seq: u64, payload: &[u8]) -> io::Result<()> {
        let head = self.size.min(HEADER);
        let ok = payload.len() == self.size
            && payload[..head] == Self::header(cid, seq)[..head]
            && payload[head..] == *self.filler(cid, seq, self.size - head);
        if ok {
            Ok(())
        } else {
            Err(mismatch(cid, seq))
        }
    }
}

fn mismatch(cid: u64, seq: u64) -> io::Error {
    invalid(format!("echo mismatch on connection {cid}, frame {seq}"))
}

/// Shared by the connections of one measurement: whether to count, when to stop, and the
/// count of echoes received while counting.
#[derive(Debug, Default)]
pub struct Meter {
    measuring: AtomicBool,
    stop: AtomicBool,
    echoes: AtomicU64,
}

impl Meter {
    /// Starts (or stops) counting echoes and recording round trips.
    pub fn set_measuring(&self, on: bool) {
        self.measuring.store(on, Relaxed);
    }

    /// Asks every connection to end after its current exchange.
    pub fn stop(&self) {
        self.stop.store(true, Relaxed);
    }

    /// Echoes received while measuring.
    pub fn echoes(&self) -> u64 {
        self.echoes.load(Relaxed)
    }

    /// Whether echoes are being counted now.
    pub fn measuring(&self) -> bool {
        self.measuring.load(Relaxed)
    }

    /// Whether connections were asked to end.
    pub fn stopped(&self) -> bool {
        self.stop.load(Relaxed)
    }

    /// Counts `n` echoes (call it only while [`measuring`](Self::measuring)).
    pub fn count(&self, n: u64) {
        self.echoes.fetch_add(n, Relaxed);
    }
}

/// Connects to `addr` with TCP_NODELAY, as the servers do.
pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Sends frame 0 of connection `cid` and checks its echo.
pub async fn echo_once(stream: &mut TcpStream, cid: u64, payloads: &Payloads) -> io::Result<()> {
    let mut frame = Vec::with_capacity(payloads.frame_len());
    payloads.append_frame(cid, 0, &mut frame);
    stream.write_all(&frame).await?;
    let mut echo = vec![0; frame.len()];
    stream
        .read_exact(&mut echo)
        .await
        .map_err(|err| short_read(cid, err))?;
    payloads.check(cid, 0, &echo)
}

/// Opens `n` connections (at most `concurrency` connecting at once), each proving with one
/// echo within `timeout` that it is served. Every connection that succeeded stays open in the
/// result, so at the end all of them are open at the same time.
pub async fn open_echoed(
    addr: SocketAddr,
    n: usize,
    concurrency: usize,
    timeout: Duration,
    payloads: &Payloads,
) -> Vec<io::Result<TcpStream>> {
    futures_util::stream::iter(0..n as u64)
        .map(|cid| async move {
            let attempt = async {
                let mut stream = connect(addr).await?;
                echo_once(&mut stream, cid, payloads).await?;
                Ok(stream)
            };
            tokio::time::timeout(timeout, attempt)
                .await
                .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "no echo in time")))
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// Runs connection `cid` with `inflight` frames outstanding until the meter says stop, checking
/// every echo. Returns the round-trip times (ns) measured while the meter was measuring, if
/// `record` is set.
pub async fn pipeline(
    mut stream: TcpStream,
    cid: u64,
    payloads: Arc<Payloads>,
    inflight: usize,
    meter: Arc<Meter>,
    record: bool,
) -> io::Result<Vec<u64>> {
    let frame_len = payloads.frame_len();
    let mut out = Vec::with_capacity(frame_len * inflight);
    let mut buf = vec![0u8; READ_BUF.max(frame_len * inflight)];
    let mut filled = 0;
    let (mut sent, mut received) = (0u64, 0u64);
    let mut sent_at = VecDeque::with_capacity(inflight);
    let mut round_trips = Vec::new();

    while !meter.stop.load(Relaxed) {
        // Refill the window with one write.
        out.clear();
        let now = record.then(Instant::now);
        while sent - received < inflight as u64 {
            payloads.append_frame(cid, sent, &mut out);
            sent_at.extend(now);
            sent += 1;
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
        }

        // Read what has come back, in one large chunk.
        if filled == buf.len() {
            return Err(invalid(format!(
                "connection {cid}: server sent more than the {inflight} frames outstanding"
            )));
        }
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            let outstanding = sent - received;
            return Err(short_read(
                cid,
                format!("EOF with {outstanding} echoes outstanding"),
            ));
        }
        filled += n;
        let measuring = meter.measuring.load(Relaxed);
        let now = (record && measuring).then(Instant::now);
        let mut pos = 0;
        let mut echoes = 0;
        while filled - pos >= frame_len {
            if received == sent {
                return Err(invalid(format!(
                    "connection {cid}: echo of a frame never sent"
                )));
            }
            payloads.check(cid, received, &buf[pos..pos + frame_len])?;
            if let (Some(at), Some(now)) = (sent_at.pop_front(), now) {
                round_trips.push(now.duration_since(at).as_nanos() as u64);
            }
            received += 1;
            echoes += 1;
            pos += frame_len;
        }
        // A wrong length header shows as a mismatch once the frame is complete; a partial
        // frame waits at the start of the buffer.
        buf.copy_within(pos..filled, 0);
        filled -= pos;
        if measuring {
            meter.echoes.fetch_add(echoes, Relaxed);
        }
    }
    Ok(round_trips)
}

fn short_read(cid: u64, err: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("short read on connection {cid}: {err}"),
    )
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_check_against_their_own_ids_only() {
        for size in [0, 5, 16, 64, 16 * 1024] {
            let payloads = Payloads::new(size);
            let mut frame = Vec::new();
            payloads.append_frame(7, 42, &mut frame);
            assert_eq!(frame.len(), payloads.frame_len());
            payloads.check(7, 42, &frame).unwrap();
            let mut payload = Vec::new();
            payloads.append_payload(7, 42, &mut payload);
            assert_eq!(payload, frame[4..]);
            payloads.check_payload(7, 42, &payload).unwrap();
            if size >= HEADER {
                assert!(payloads.check(7, 43, &frame).is_err());
                assert!(payloads.check(8, 42, &frame).is_err());
            }
            if size > 0 {
                let last = frame.len() - 1;
                frame[last] ^= 1;
                assert!(payloads.check(7, 42, &frame).is_err());
            }
        }
    }
}
