//! `call`: what request/response ([`Session::call`]) costs over a plain write and read.
//!
//! Unlike the other workloads this one measures a getty client, not a server: a getty-tokio
//! [`Client`] with one session, running on the parent's current-thread runtime, against the
//! `raw-tokio` echo server (a fresh child per measurement, as everywhere). Its frames are the
//! hello framing whose payload starts with an 8-byte id ([`IdFrames`]); the server echoes them
//! unchanged, id included. Each [`Variant`] is one of
//!
//! - **plain**: `session.send(&frame)`, then the echo as `on_message` delivers it (handed to
//!   the sender through a channel); at depth N a window of N frames in flight, refilled on
//!   each echo (plain writes have no correlation, so one task keeps the window);
//! - **call**: `session.call(&request, deadline)`, the codec carrying the session's id
//!   ([`Codec::encode_request`]) and reading it back from the echo ([`Codec::reply_id`]); at
//!   depth N, N callers on the one session.
//!
//! Both encode the same bytes with the same codec, and every echo is checked: its payload
//! against the one sent (and, plain, its id against the sequence number). The client's CPU
//! time per message is this process's CPU time over the measurement (the server is a child,
//! not counted) ÷ the messages echoed.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use getty::codec::{Codec, CodecError, Decoded};
use getty::{BoxError, Client, EventListener, Session, TcpClientBuilder, TokioRuntime};
use rustix::time::{clock_gettime, ClockId};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::child::{ServerProcess, Target};
use crate::loadgen::{Meter, Payloads};
use crate::report::{number, Summary};
use crate::servers::{ServerImpl, MAX_PAYLOAD};
use crate::workloads::Params;

/// The echo server every variant runs against.
pub const SERVER: Target = Target {
    imp: ServerImpl::RawTokio,
    threads: 1,
};
/// The bytes of the id at the start of every payload.
pub const ID_LEN: usize = 8;
/// The deadline of each call (none passes unless something is broken: the run then fails).
const CALL_DEADLINE: Duration = Duration::from_secs(5);
/// How long the client may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the senders may take to finish once asked to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How the client exchanges messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// `Session::send`, the echo through `on_message`.
    Plain,
    /// `Session::call`.
    Call,
}

/// One measurement of the `call` workload: a mode at a depth (messages in flight).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Variant {
    /// Messages in flight on the session.
    pub depth: usize,
    /// How they are exchanged.
    pub mode: Mode,
}

impl Variant {
    /// The variants of one round: plain then call at depth 1, then at `depth` (each pair
    /// measured back to back); reversed in odd rounds.
    pub fn round(depth: usize, round: usize) -> Vec<Variant> {
        let mut depths = vec![1, depth.max(1)];
        depths.dedup();
        let mut variants: Vec<Variant> = depths
            .into_iter()
            .flat_map(|depth| [Mode::Plain, Mode::Call].map(|mode| Variant { depth, mode }))
            .collect();
        if round % 2 == 1 {
            variants.reverse();
        }
        variants
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            Mode::Plain => "plain send + on_message",
            Mode::Call => "call",
        };
        write!(f, "{mode}, depth {}", self.depth)
    }
}

/// One number a variant reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Quantity {
    /// Median round trip, µs (depth 1 only).
    P50,
    /// 99th percentile round trip, µs (depth 1 only).
    P99,
    /// Messages echoed per second.
    Rate,
    /// The client's CPU time per message, µs.
    Cpu,
}

impl Quantity {
    const ALL: [Quantity; 4] = [Quantity::P50, Quantity::P99, Quantity::Rate, Quantity::Cpu];

    fn label(self) -> &'static str {
        match self {
            Quantity::P50 => "p50 µs ↓",
            Quantity::P99 => "p99 µs ↓",
            Quantity::Rate => "msg/s ↑",
            Quantity::Cpu => "client CPU µs/msg ↓",
        }
    }
}

// ----- the codec and the listener --------------------------------------------------------------

/// One frame: the id and the rest of the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// The first 8 payload bytes (little endian).
    pub id: u64,
    /// The rest.
    pub body: Bytes,
}

/// The hello framing (4-byte little-endian length, then the payload) whose payload starts with
/// a little-endian u64 id. Every inbound frame is a reply: the echo of a request.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdFrames;

impl IdFrames {
    fn put(id: u64, body: &[u8], dst: &mut BytesMut) -> Result<(), CodecError> {
        let len = ID_LEN + body.len();
        if len > MAX_PAYLOAD {
            return Err(CodecError::FrameTooLarge {
                len,
                max: MAX_PAYLOAD,
            });
        }
        dst.reserve(4 + len);
        dst.put_u32_le(len as u32);
        dst.put_u64_le(id);
        dst.put_slice(body);
        Ok(())
    }
}

impl Codec for IdFrames {
    type Inbound = Msg;
    type Outbound = Msg;

    fn decode(&self, buf: &mut BytesMut) -> Result<Decoded<Msg>, CodecError> {
        let Some(header) = buf.get(..4) else {
            return Ok(Decoded::Incomplete(None));
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(CodecError::FrameTooLarge {
                len,
                max: MAX_PAYLOAD,
            });
        }
        if len < ID_LEN {
            return Err(CodecError::invalid("payload shorter than its id"));
        }
        if buf.len() < 4 + len {
            return Ok(Decoded::Incomplete(Some(4 + len)));
        }
        let mut frame = buf.split_to(4 + len);
        frame.advance(4);
        let id = frame.get_u64_le();
        Ok(Decoded::Frame(Msg {
            id,
            body: frame.freeze(),
        }))
    }

    fn encode(&self, msg: &Msg, dst: &mut BytesMut) -> Result<(), CodecError> {
        Self::put(msg.id, &msg.body, dst)
    }

    fn encode_request(&self, id: u64, msg: &Msg, dst: &mut BytesMut) -> Result<(), CodecError> {
        Self::put(id, &msg.body, dst)
    }

    fn reply_id(&self, msg: &Msg) -> Option<u64> {
        Some(msg.id)
    }
}

/// Hands every package `on_message` gets to the channel: the echoes of plain sends (and, in
/// call mode, replies no caller took, which fail the measurement).
struct Deliver(mpsc::UnboundedSender<Msg>);

impl EventListener<IdFrames> for Deliver {
    async fn on_message(&self, _session: &Session<IdFrames>, msg: Msg) {
        // The receiver is gone only once the measurement is over.
        let _ = self.0.send(msg);
    }
}

// ----- one measurement -------------------------------------------------------------------------

/// Runs `variant` against `server` and returns its quantities.
pub async fn measure(
    server: &mut ServerProcess,
    variant: Variant,
    params: &Params,
) -> Result<Vec<(Quantity, f64)>, BoxError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = TcpClientBuilder::new(server.addr()).start(
        TokioRuntime::current(),
        IdFrames,
        Deliver(tx),
    )?;
    let outcome = exchange(&client, rx, variant, params).await;
    client.close().await;
    let quantities = outcome?;
    server.check_alive()?;
    Ok(quantities)
}

async fn exchange(
    client: &Client<IdFrames>,
    on_message: mpsc::UnboundedReceiver<Msg>,
    variant: Variant,
    params: &Params,
) -> Result<Vec<(Quantity, f64)>, BoxError> {
    tokio::time::timeout(CONNECT_TIMEOUT, client.wait_for_sessions(1))
        .await
        .map_err(|_| format!("no session within {CONNECT_TIMEOUT:?}"))??;
    let session = client.session().ok_or("the client has no session")?;
    let payloads = Arc::new(Payloads::new(params.call_size));
    let meter = Arc::new(Meter::default());
    let record = variant.depth == 1;

    let mut tasks = JoinSet::new();
    // In call mode nothing may reach `on_message`: kept to be checked at the end.
    let strays = match variant.mode {
        Mode::Plain => {
            let (payloads, meter) = (payloads.clone(), meter.clone());
            let depth = variant.depth;
            tasks.spawn(plain(session, on_message, payloads, depth, meter, record));
            None
        }
        Mode::Call => {
            for caller in 0..variant.depth {
                let (session, payloads, meter) = (session.clone(), payloads.clone(), meter.clone());
                tasks.spawn(calls(session, caller as u64, payloads, meter, record));
            }
            Some(on_message)
        }
    };

    tokio::time::sleep(params.warmup).await;
    meter.set_measuring(true);
    let cpu_before = process_cpu();
    let started = Instant::now();
    tokio::time::sleep(params.duration).await;
    meter.set_measuring(false);
    let cpu = process_cpu() - cpu_before;
    let secs = started.elapsed().as_secs_f64();
    let echoes = meter.echoes();
    meter.stop();

    let mut round_trips = Vec::new();
    let joined = tokio::time::timeout(STOP_TIMEOUT, async {
        while let Some(joined) = tasks.join_next().await {
            round_trips.extend(joined??);
        }
        Ok::<_, BoxError>(())
    })
    .await;
    match joined {
        Ok(result) => result?,
        Err(_) => return Err(format!("{variant}: stalled for {STOP_TIMEOUT:?}").into()),
    }
    if let Some(stray) = strays.and_then(|mut strays| strays.try_recv().ok()) {
        return Err(format!("{variant}: reply {} reached on_message", stray.id).into());
    }
    if echoes == 0 || (record && round_trips.is_empty()) {
        return Err(format!("{variant}: no echo during the measurement").into());
    }

    let mut quantities = vec![
        (Quantity::Rate, echoes as f64 / secs),
        (Quantity::Cpu, cpu.as_secs_f64() * 1e6 / echoes as f64),
    ];
    if record {
        round_trips.sort_unstable();
        let quantile = |q: f64| {
            let i = ((round_trips.len() - 1) as f64 * q).round() as usize;
            round_trips[i] as f64 / 1e3
        };
        quantities.push((Quantity::P50, quantile(0.50)));
        quantities.push((Quantity::P99, quantile(0.99)));
    }
    Ok(quantities)
}

/// The CPU time this process has used (all threads, user + system), to the nanosecond.
fn process_cpu() -> Duration {
    let t = clock_gettime(ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The body (the payload after the id) of message `seq` of sender `cid`.
fn body(payloads: &Payloads, cid: u64, seq: u64) -> Bytes {
    let mut body = Vec::with_capacity(payloads.frame_len());
    payloads.append_payload(cid, seq, &mut body);
    Bytes::from(body)
}

/// Plain: keeps `depth` frames in flight with `send`, taking each echo from `echoes` (fed by
/// `on_message`) and checking it against the frame sent, until the meter says stop. Returns
/// the round trips (ns) measured, if `record`.
async fn plain(
    session: Session<IdFrames>,
    mut echoes: mpsc::UnboundedReceiver<Msg>,
    payloads: Arc<Payloads>,
    depth: usize,
    meter: Arc<Meter>,
    record: bool,
) -> Result<Vec<u64>, BoxError> {
    let (mut sent, mut received) = (0u64, 0u64);
    let mut sent_at = VecDeque::with_capacity(depth);
    let mut round_trips = Vec::new();
    while !meter.stopped() {
        while sent - received < depth as u64 {
            let msg = Msg {
                id: sent,
                body: body(&payloads, 0, sent),
            };
            if record {
                sent_at.push_back(Instant::now());
            }
            session.send(&msg).await?;
            sent += 1;
        }
        let echo = echoes
            .recv()
            .await
            .ok_or("the session ended with echoes outstanding")?;
        let now = record.then(Instant::now);
        if echo.id != received {
            return Err(format!("echo of frame {} where {received} was due", echo.id).into());
        }
        payloads.check_payload(0, received, &echo.body)?;
        received += 1;
        let at = sent_at.pop_front();
        if meter.measuring() {
            meter.count(1);
            if let (Some(at), Some(now)) = (at, now) {
                round_trips.push(now.duration_since(at).as_nanos() as u64);
            }
        }
    }
    Ok(round_trips)
}

/// Call: caller `cid` calls one request after another until the meter says stop, checking
/// that each reply is the echo of its request and that the ids the session chose grow.
/// Returns the round trips (ns) measured, if `record`.
async fn calls(
    session: Session<IdFrames>,
    cid: u64,
    payloads: Arc<Payloads>,
    meter: Arc<Meter>,
    record: bool,
) -> Result<Vec<u64>, BoxError> {
    let mut last_id = 0;
    let mut round_trips = Vec::new();
    let mut seq = 0;
    while !meter.stopped() {
        let request = Msg {
            id: 0,
            body: body(&payloads, cid, seq),
        };
        let at = record.then(Instant::now);
        let reply = session.call(&request, CALL_DEADLINE).await?;
        let now = record.then(Instant::now);
        payloads.check_payload(cid, seq, &reply.body)?;
        if reply.id <= last_id {
            return Err(format!("caller {cid}: reply id {} after {last_id}", reply.id).into());
        }
        last_id = reply.id;
        seq += 1;
        if meter.measuring() {
            meter.count(1);
            if let (Some(at), Some(now)) = (at, now) {
                round_trips.push(now.duration_since(at).as_nanos() as u64);
            }
        }
    }
    Ok(round_trips)
}

// ----- results and report ----------------------------------------------------------------------

/// Every value the `call` workload measured, one per round, by variant and quantity.
#[derive(Debug, Default)]
pub struct CallResults {
    values: BTreeMap<(Variant, Quantity), Vec<f64>>,
}

impl CallResults {
    /// Records what one measurement of `variant` produced.
    pub fn record(&mut self, variant: Variant, quantities: &[(Quantity, f64)]) {
        for &(quantity, value) in quantities {
            self.values
                .entry((variant, quantity))
                .or_default()
                .push(value);
        }
    }

    fn summary(&self, variant: Variant, quantity: Quantity) -> Option<Summary> {
        Summary::of(self.values.get(&(variant, quantity))?)
    }

    /// The depths measured, in order.
    fn depths(&self) -> Vec<usize> {
        let mut depths: Vec<usize> = self.values.keys().map(|(v, _)| v.depth).collect();
        depths.dedup();
        depths
    }
}

/// The `call` section of the report: plain and call side by side, with call ÷ plain.
pub fn table(results: &CallResults, params: &Params) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "A getty-tokio client (one session, on the load generator's runtime) against {} (a child \
         on 1 thread). Payloads: an {ID_LEN}-byte id, then {} B. plain: `session.send`, the echo \
         handed from `on_message` through a channel; at depth N a window of N frames refilled \
         on each echo. call: `session.call(&request, {CALL_DEADLINE:?})`; at depth N, N callers \
         on the one session. Client CPU: this process's CPU time over the measurement ÷ \
         messages (the server is not counted). Ratios: call's median ÷ plain's median.\n",
        SERVER.label(),
        params.call_size,
    );
    let _ = writeln!(
        out,
        "| depth | metric | plain | plain min–max | call | call min–max | call ÷ plain |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|");
    for depth in results.depths() {
        for quantity in Quantity::ALL {
            let of = |mode| results.summary(Variant { depth, mode }, quantity);
            let (plain, call) = (of(Mode::Plain), of(Mode::Call));
            if plain.is_none() && call.is_none() {
                continue;
            }
            let cells = |s: Option<Summary>| match s {
                Some(s) => (
                    number(s.median),
                    format!("{}–{}", number(s.min), number(s.max)),
                ),
                None => ("–".into(), "–".into()),
            };
            let ratio = match (plain, call) {
                (Some(p), Some(c)) if p.median != 0.0 => format!("{:.2}", c.median / p.median),
                _ => "–".into(),
            };
            let ((pm, pr), (cm, cr)) = (cells(plain), cells(call));
            let _ = writeln!(
                out,
                "| {depth} | {} | {pm} | {pr} | {cm} | {cr} | {ratio} |",
                quantity.label()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_the_id_and_replies_give_it_back() {
        let request = Msg {
            id: 0,
            body: Bytes::from_static(b"body"),
        };
        let mut wire = BytesMut::new();
        IdFrames.encode_request(42, &request, &mut wire).unwrap();
        assert_eq!(&wire[..4], &12u32.to_le_bytes());
        assert_eq!(&wire[4..12], &42u64.to_le_bytes());
        let mut partial = BytesMut::from(&wire[..10]);
        assert_eq!(
            IdFrames.decode(&mut partial).unwrap(),
            Decoded::Incomplete(Some(16))
        );
        let Decoded::Frame(reply) = IdFrames.decode(&mut wire).unwrap() else {
            panic!("a whole frame");
        };
        assert!(wire.is_empty());
        assert_eq!(IdFrames.reply_id(&reply), Some(42));
        assert_eq!(reply.body, request.body);
    }

    #[test]
    fn rounds_pair_plain_and_call_and_alternate() {
        let first = Variant::round(16, 0);
        assert_eq!(first.len(), 4);
        assert_eq!(
            (first[0].mode, first[0].depth, first[1].mode),
            (Mode::Plain, 1, Mode::Call)
        );
        let mut second = Variant::round(16, 1);
        second.reverse();
        assert_eq!(first, second);
        assert_eq!(Variant::round(1, 0).len(), 2);
    }

    #[test]
    fn the_table_gives_call_over_plain() {
        let mut results = CallResults::default();
        let plain = Variant {
            depth: 1,
            mode: Mode::Plain,
        };
        let call = Variant {
            depth: 1,
            mode: Mode::Call,
        };
        results.record(plain, &[(Quantity::Rate, 1000.0)]);
        results.record(call, &[(Quantity::Rate, 900.0)]);
        let table = table(&results, &Params::quick());
        assert!(table.contains("| 1 | msg/s ↑ | 1,000 | 1,000–1,000 | 900 | 900–900 | 0.90 |"));
    }
}
