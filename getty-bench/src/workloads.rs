//! The workloads, and what each measures on one server child.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use getty::BoxError;
use tokio::task::JoinSet;

use crate::child::ServerProcess;
use crate::loadgen::{self, Meter, Payloads};
use crate::proc;

/// How long connections may take to finish once asked to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections opening at once in `idle` and `many` (below the listen backlog of 1024, so that
/// no SYN is dropped and retried a second later).
const OPEN_CONCURRENCY: usize = 512;
/// How long one connection of `idle` or `many` may take to connect and echo.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);
/// The payload of the single echo of `idle` and `many`.
const PROBE_SIZE: usize = 64;

/// A workload: a load pattern applied to one server for a while.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
pub enum Workload {
    /// One connection, one frame in flight, small payloads: every round trip is recorded.
    Latency,
    /// Many connections, each with a window of small frames in flight: messages per second.
    Small,
    /// A few connections with a few large frames in flight: payload bytes per second.
    Bulk,
    /// Many connections that each echo once then stay idle: the server's memory per
    /// connection and its CPU use while nothing happens.
    Idle,
    /// Very many concurrent connections, each echoing once: how many are served, how fast.
    Many,
    /// Not a server measurement: a getty-tokio client against the raw-tokio server, plain
    /// `send` + `on_message` against `Session::call`, at depth 1 and `--call-depth` (see
    /// [`crate::call`]).
    Call,
}

impl Workload {
    /// Every workload, in report order.
    pub const ALL: [Workload; 6] = [
        Workload::Latency,
        Workload::Small,
        Workload::Bulk,
        Workload::Idle,
        Workload::Many,
        Workload::Call,
    ];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Latency => "latency",
            Workload::Small => "small",
            Workload::Bulk => "bulk",
            Workload::Idle => "idle",
            Workload::Many => "many",
            Workload::Call => "call",
        }
    }

    /// The metrics this workload reports in the main table (`call` has a table of its own).
    pub fn metrics(self) -> &'static [Metric] {
        match self {
            Workload::Latency => &[Metric::P50, Metric::P99, Metric::RoundTrips],
            Workload::Small => &[
                Metric::SmallRate,
                Metric::SmallServerCpu,
                Metric::SmallGeneratorCpu,
            ],
            Workload::Bulk => &[
                Metric::BulkRate,
                Metric::BulkServerCpu,
                Metric::BulkGeneratorCpu,
            ],
            Workload::Idle => &[Metric::IdleRss, Metric::IdleCpu],
            Workload::Many => &[Metric::ManyServed, Metric::ManySeconds],
            Workload::Call => &[],
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One number a workload reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    /// `latency`: median round trip, µs.
    P50,
    /// `latency`: 99th percentile round trip, µs.
    P99,
    /// `latency`: round trips per second.
    RoundTrips,
    /// `small`: echoed messages per second.
    SmallRate,
    /// `small`: the server process's CPU time (user + system) per message echoed, µs. What a
    /// saturated load generator cannot squeeze toward its own ceiling.
    SmallServerCpu,
    /// `small`: the load generator's CPU use during the measurement, % of one core: near 100
    /// means the generator, not the server, may have set the rate.
    SmallGeneratorCpu,
    /// `bulk`: echoed payload megabytes (10^6 B) per second.
    BulkRate,
    /// `bulk`: the server process's CPU time per message echoed, µs.
    BulkServerCpu,
    /// `bulk`: the load generator's CPU use during the measurement, % of one core.
    BulkGeneratorCpu,
    /// `idle`: growth of the server's resident memory per open connection, bytes.
    IdleRss,
    /// `idle`: the server's CPU use while every connection is idle, % of one core.
    IdleCpu,
    /// `many`: connections that connected and echoed.
    ManyServed,
    /// `many`: seconds to open every connection and get every echo.
    ManySeconds,
}

impl Metric {
    /// The workload that reports this metric.
    pub fn workload(self) -> Workload {
        match self {
            Metric::P50 | Metric::P99 | Metric::RoundTrips => Workload::Latency,
            Metric::SmallRate | Metric::SmallServerCpu | Metric::SmallGeneratorCpu => {
                Workload::Small
            }
            Metric::BulkRate | Metric::BulkServerCpu | Metric::BulkGeneratorCpu => Workload::Bulk,
            Metric::IdleRss | Metric::IdleCpu => Workload::Idle,
            Metric::ManyServed | Metric::ManySeconds => Workload::Many,
        }
    }

    /// What is measured, with its unit.
    pub fn label(self) -> &'static str {
        match self {
            Metric::P50 => "p50 µs",
            Metric::P99 => "p99 µs",
            Metric::RoundTrips => "msg/s",
            Metric::SmallRate => "msg/s",
            Metric::SmallServerCpu | Metric::BulkServerCpu => "server CPU µs/msg",
            Metric::SmallGeneratorCpu | Metric::BulkGeneratorCpu => "generator CPU % of a core",
            Metric::BulkRate => "MB/s",
            Metric::IdleRss => "RSS B/conn",
            Metric::IdleCpu => "CPU % of a core",
            Metric::ManyServed => "served",
            Metric::ManySeconds => "seconds",
        }
    }

    /// Whether a smaller value is the better one.
    pub fn lower_is_better(self) -> bool {
        matches!(
            self,
            Metric::P50
                | Metric::P99
                | Metric::IdleRss
                | Metric::IdleCpu
                | Metric::ManySeconds
                | Metric::SmallServerCpu
                | Metric::BulkServerCpu
                | Metric::SmallGeneratorCpu
                | Metric::BulkGeneratorCpu
        )
    }

    /// Whether this measures the instrument rather than the server (no ratio between servers
    /// means anything for it).
    pub fn is_instrument(self) -> bool {
        matches!(self, Metric::SmallGeneratorCpu | Metric::BulkGeneratorCpu)
    }
}

/// The sizes and durations of the workloads.
#[derive(Clone, Debug)]
pub struct Params {
    /// Load before each measurement starts (not measured).
    pub warmup: Duration,
    /// How long `latency`, `small` and `bulk` are measured.
    pub duration: Duration,
    /// `latency`: payload bytes.
    pub latency_size: usize,
    /// `small`: connections.
    pub small_conns: usize,
    /// `small`: frames in flight per connection.
    pub small_inflight: usize,
    /// `small`: payload bytes.
    pub small_size: usize,
    /// `bulk`: connections.
    pub bulk_conns: usize,
    /// `bulk`: frames in flight per connection.
    pub bulk_inflight: usize,
    /// `bulk`: payload bytes.
    pub bulk_size: usize,
    /// `idle`: connections.
    pub idle_conns: usize,
    /// `idle`: how long the CPU use is watched.
    pub idle_time: Duration,
    /// `many`: connections.
    pub many_conns: usize,
    /// `call`: payload bytes after the 8-byte id.
    pub call_size: usize,
    /// `call`: messages in flight in the deep variants.
    pub call_depth: usize,
}

impl Params {
    /// The full run.
    pub fn full() -> Self {
        Params {
            warmup: Duration::from_millis(500),
            duration: Duration::from_secs(2),
            latency_size: 64,
            small_conns: 50,
            small_inflight: 16,
            small_size: 64,
            bulk_conns: 10,
            bulk_inflight: 4,
            bulk_size: 16 * 1024,
            idle_conns: 1000,
            idle_time: Duration::from_secs(2),
            many_conns: 10_000,
            call_size: 64,
            call_depth: 16,
        }
    }

    /// `--quick`: everything shrunk so that a whole run takes well under 30 s.
    pub fn quick() -> Self {
        Params {
            warmup: Duration::from_millis(100),
            duration: Duration::from_millis(300),
            small_conns: 20,
            bulk_conns: 4,
            idle_conns: 200,
            idle_time: Duration::from_millis(500),
            many_conns: 2000,
            ..Params::full()
        }
    }
}

/// Runs `workload` against `server` and returns its metrics.
pub async fn measure(
    workload: Workload,
    server: &mut ServerProcess,
    params: &Params,
) -> Result<Vec<(Metric, f64)>, BoxError> {
    let metrics = match workload {
        Workload::Latency => latency(server, params).await?,
        Workload::Small => {
            let run = pipelined(
                server,
                params,
                params.small_conns,
                params.small_inflight,
                params.small_size,
                false,
            )
            .await?;
            vec![
                (Metric::SmallRate, run.echoes as f64 / run.secs),
                (Metric::SmallServerCpu, run.server_cpu_per_msg_us()),
                (Metric::SmallGeneratorCpu, run.generator_cpu_percent()),
            ]
        }
        Workload::Bulk => {
            let run = pipelined(
                server,
                params,
                params.bulk_conns,
                params.bulk_inflight,
                params.bulk_size,
                false,
            )
            .await?;
            let bytes = run.echoes as f64 * params.bulk_size as f64;
            vec![
                (Metric::BulkRate, bytes / run.secs / 1e6),
                (Metric::BulkServerCpu, run.server_cpu_per_msg_us()),
                (Metric::BulkGeneratorCpu, run.generator_cpu_percent()),
            ]
        }
        Workload::Idle => idle(server, params).await?,
        Workload::Many => many(server, params).await?,
        Workload::Call => {
            return Err("`call` is measured per client variant (call::measure)".into())
        }
    };
    server.check_alive()?;
    Ok(metrics)
}

async fn latency(
    server: &mut ServerProcess,
    params: &Params,
) -> Result<Vec<(Metric, f64)>, BoxError> {
    let run = pipelined(server, params, 1, 1, params.latency_size, true).await?;
    let (echoes, secs, mut round_trips) = (run.echoes, run.secs, run.round_trips);
    round_trips.sort_unstable();
    let quantile = |q: f64| {
        let i = ((round_trips.len() - 1) as f64 * q).round() as usize;
        round_trips[i] as f64 / 1e3
    };
    Ok(vec![
        (Metric::P50, quantile(0.50)),
        (Metric::P99, quantile(0.99)),
        (Metric::RoundTrips, echoes as f64 / secs),
    ])
}

/// What one pipelined measurement saw.
struct Pipelined {
    /// Echoes counted.
    echoes: u64,
    /// Seconds measured.
    secs: f64,
    /// Round trips (ns), if recorded.
    round_trips: Vec<u64>,
    /// CPU seconds the server process used during the measurement.
    server_cpu: f64,
    /// CPU seconds this process (the load generator) used during the measurement.
    generator_cpu: f64,
}

impl Pipelined {
    fn server_cpu_per_msg_us(&self) -> f64 {
        self.server_cpu / self.echoes as f64 * 1e6
    }

    fn generator_cpu_percent(&self) -> f64 {
        self.generator_cpu / self.secs * 100.0
    }
}

/// Runs `conns` pipelined connections with `inflight` frames of `size` bytes each: a warm-up,
/// then the measurement, with the CPU time of the server and of the generator over it.
async fn pipelined(
    server: &mut ServerProcess,
    params: &Params,
    conns: usize,
    inflight: usize,
    size: usize,
    record: bool,
) -> Result<Pipelined, BoxError> {
    let payloads = Arc::new(Payloads::new(size));
    let meter = Arc::new(Meter::default());
    let mut streams = Vec::with_capacity(conns);
    for _ in 0..conns {
        streams.push(loadgen::connect(server.addr()).await?);
    }
    let mut tasks = JoinSet::new();
    for (cid, stream) in streams.into_iter().enumerate() {
        let (payloads, meter) = (payloads.clone(), meter.clone());
        tasks.spawn(loadgen::pipeline(
            stream, cid as u64, payloads, inflight, meter, record,
        ));
    }

    tokio::time::sleep(params.warmup).await;
    let (pid, generator) = (server.pid(), std::process::id());
    let (server_before, generator_before) =
        (proc::cpu_seconds(pid)?, proc::cpu_seconds(generator)?);
    meter.set_measuring(true);
    let started = Instant::now();
    tokio::time::sleep(params.duration).await;
    meter.set_measuring(false);
    let secs = started.elapsed().as_secs_f64();
    let echoes = meter.echoes();
    let server_cpu = proc::cpu_seconds(pid)? - server_before;
    let generator_cpu = proc::cpu_seconds(generator)? - generator_before;
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
        Err(_) => return Err(format!("connections stalled for {STOP_TIMEOUT:?}").into()),
    }
    if echoes == 0 || (record && round_trips.is_empty()) {
        return Err("no echo during the measurement".into());
    }
    Ok(Pipelined {
        echoes,
        secs,
        round_trips,
        server_cpu,
        generator_cpu,
    })
}

async fn idle(server: &mut ServerProcess, params: &Params) -> Result<Vec<(Metric, f64)>, BoxError> {
    let pid = server.pid();
    let payloads = Payloads::new(PROBE_SIZE);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rss_before = proc::rss_bytes(pid)?;

    let conns = loadgen::open_echoed(
        server.addr(),
        params.idle_conns,
        OPEN_CONCURRENCY,
        OPEN_TIMEOUT,
        &payloads,
    )
    .await
    .into_iter()
    .collect::<io::Result<Vec<_>>>()?;
    // Let the server finish what each connection started before looking at it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_after = proc::rss_bytes(pid)?;

    let cpu_before = proc::cpu_seconds(pid)?;
    let started = Instant::now();
    tokio::time::sleep(params.idle_time).await;
    let cpu = proc::cpu_seconds(pid)? - cpu_before;
    let secs = started.elapsed().as_secs_f64();
    drop(conns);

    let growth = rss_after as f64 - rss_before as f64;
    Ok(vec![
        (Metric::IdleRss, growth / params.idle_conns as f64),
        (Metric::IdleCpu, cpu / secs * 100.0),
    ])
}

async fn many(server: &mut ServerProcess, params: &Params) -> Result<Vec<(Metric, f64)>, BoxError> {
    let payloads = Payloads::new(PROBE_SIZE);
    let started = Instant::now();
    let conns = loadgen::open_echoed(
        server.addr(),
        params.many_conns,
        OPEN_CONCURRENCY,
        OPEN_TIMEOUT,
        &payloads,
    )
    .await;
    let secs = started.elapsed().as_secs_f64();
    let served = conns.iter().filter(|c| c.is_ok()).count();
    if let Some(Err(err)) = conns.iter().find(|c| c.is_err()) {
        eprintln!(
            "  many: {} of {} connections failed, e.g.: {err}",
            params.many_conns - served,
            params.many_conns
        );
    }
    drop(conns);
    Ok(vec![
        (Metric::ManyServed, served as f64),
        (Metric::ManySeconds, secs),
    ])
}
