//! getty-bench: measures getty's echo server against hand-written tokio echo servers.
//!
//! ```text
//! cargo run --release -p getty-bench                      # full run (~4 min)
//! cargo run --release -p getty-bench -- --quick           # everything shrunk (< 30 s)
//! cargo run --release -p getty-bench -- --servers getty-tokio,raw-tokio --workloads small,bulk
//! cargo run --release -p getty-bench -- --workloads call  # Session::call vs send + on_message
//! ```
//!
//! Each server (see [`servers::ServerImpl`]) runs in its own child process, started by
//! re-executing this binary as `getty-bench serve --impl <name> --threads <n>`, fresh for every
//! measurement. The load generator runs here, on one tokio current-thread runtime, with the same
//! code for every server (see [`loadgen`]). Each round runs every workload (see
//! [`workloads::Workload`]) on every server, the order of servers alternating from round to
//! round; the report gives the median and the range over rounds, as markdown on stdout and in
//! `--out-md`, and as an SVG bar chart in `--out-svg`.
//!
//! The `call` workload (see [`call`]) measures a getty client instead of a server: plain
//! `send` + `on_message` against `Session::call` on the raw-tokio server, each variant on a
//! fresh child, the order of variants alternating from round to round, in a table of its own.

#![forbid(unsafe_code)]

mod call;
mod chart;
mod child;
mod loadgen;
mod proc;
mod report;
mod servers;
mod workloads;

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use getty::BoxError;

use call::{CallResults, Variant};
use child::{ServerProcess, Target};
use report::Results;
use servers::ServerImpl;
use workloads::{Metric, Params, Workload};

#[derive(Parser, Debug)]
#[command(about = "Benchmarks getty's echo server against hand-written tokio echo servers")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    bench: BenchArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Child-process mode: serve one implementation on 127.0.0.1:0 until stdin reaches EOF.
    #[command(hide = true)]
    Serve {
        /// The implementation to serve.
        #[arg(long = "impl", value_enum)]
        imp: ServerImpl,
        /// Runtime threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// Shrink every workload so that the whole run takes under 30 s (skips `many` and the
    /// scaling table unless asked for).
    #[arg(long)]
    quick: bool,
    /// Rounds; the report gives the median and range over them [default: 3, 2 with --quick].
    #[arg(long)]
    rounds: Option<usize>,
    /// Servers to measure, comma-separated [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    servers: Vec<ServerImpl>,
    /// Workloads to run, comma-separated [default: all; all but `many` with --quick].
    #[arg(long, value_enum, value_delimiter = ',')]
    workloads: Vec<Workload>,
    /// Also measure the getty servers on 2 threads on `small` and `bulk` [default: on, off
    /// with --quick].
    #[arg(long)]
    scaling: bool,
    /// Do not measure the getty servers on 2 threads (wins over --scaling).
    #[arg(long)]
    no_scaling: bool,
    /// Where to write the markdown report.
    #[arg(long, default_value = "target/bench/bench.md")]
    out_md: PathBuf,
    /// Where to write the SVG chart.
    #[arg(long, default_value = "target/bench/bench.svg")]
    out_svg: PathBuf,
    /// Seconds each `latency`, `small` and `bulk` measurement lasts [default: 2, 0.3 with
    /// --quick].
    #[arg(long)]
    duration: Option<f64>,
    /// Seconds of load before each measurement [default: 0.5, 0.1 with --quick].
    #[arg(long)]
    warmup: Option<f64>,
    /// `latency`: payload bytes [default: 64].
    #[arg(long)]
    latency_size: Option<usize>,
    /// `small`: connections [default: 50, 20 with --quick].
    #[arg(long)]
    small_conns: Option<usize>,
    /// `small`: frames in flight per connection [default: 16].
    #[arg(long)]
    small_inflight: Option<usize>,
    /// `small`: payload bytes [default: 64].
    #[arg(long)]
    small_size: Option<usize>,
    /// `bulk`: connections [default: 10, 4 with --quick].
    #[arg(long)]
    bulk_conns: Option<usize>,
    /// `bulk`: frames in flight per connection [default: 4].
    #[arg(long)]
    bulk_inflight: Option<usize>,
    /// `bulk`: payload bytes [default: 16384].
    #[arg(long)]
    bulk_size: Option<usize>,
    /// `idle`: connections [default: 1000, 200 with --quick].
    #[arg(long)]
    idle_conns: Option<usize>,
    /// `idle`: seconds of idleness over which CPU use is measured [default: 2, 0.5 with
    /// --quick].
    #[arg(long)]
    idle_secs: Option<f64>,
    /// `many`: concurrent connections [default: 10000, 2000 with --quick].
    #[arg(long)]
    many_conns: Option<usize>,
    /// `call`: payload bytes after the 8-byte id [default: 64].
    #[arg(long)]
    call_size: Option<usize>,
    /// `call`: messages in flight in the deep variants (depth 1 is always measured too)
    /// [default: 16].
    #[arg(long)]
    call_depth: Option<usize>,
}

impl BenchArgs {
    /// The workload parameters: the full or quick defaults, overridden by the options given.
    fn params(&self) -> Params {
        let base = if self.quick {
            Params::quick()
        } else {
            Params::full()
        };
        let secs = |s: Option<f64>, default| s.map_or(default, Duration::from_secs_f64);
        Params {
            warmup: secs(self.warmup, base.warmup),
            duration: secs(self.duration, base.duration),
            latency_size: self.latency_size.unwrap_or(base.latency_size),
            small_conns: self.small_conns.unwrap_or(base.small_conns),
            small_inflight: self.small_inflight.unwrap_or(base.small_inflight).max(1),
            small_size: self.small_size.unwrap_or(base.small_size),
            bulk_conns: self.bulk_conns.unwrap_or(base.bulk_conns),
            bulk_inflight: self.bulk_inflight.unwrap_or(base.bulk_inflight).max(1),
            bulk_size: self.bulk_size.unwrap_or(base.bulk_size),
            idle_conns: self.idle_conns.unwrap_or(base.idle_conns).max(1),
            idle_time: secs(self.idle_secs, base.idle_time),
            many_conns: self.many_conns.unwrap_or(base.many_conns),
            call_size: self.call_size.unwrap_or(base.call_size),
            call_depth: self.call_depth.unwrap_or(base.call_depth).max(1),
        }
    }
}

/// What one run measures.
struct Plan {
    rounds: usize,
    servers: Vec<ServerImpl>,
    workloads: Vec<Workload>,
    scaling: bool,
    params: Params,
}

impl Plan {
    fn new(args: &BenchArgs) -> Result<Self, BoxError> {
        let mut servers = if args.servers.is_empty() {
            ServerImpl::ALL.to_vec()
        } else {
            args.servers.clone()
        };
        servers.sort();
        servers.dedup();
        let mut workloads = if !args.workloads.is_empty() {
            args.workloads.clone()
        } else if args.quick {
            Workload::ALL
                .into_iter()
                .filter(|w| *w != Workload::Many)
                .collect()
        } else {
            Workload::ALL.to_vec()
        };
        workloads.sort();
        workloads.dedup();
        let params = args.params();
        for (name, size) in [
            ("latency", params.latency_size),
            ("small", params.small_size),
            ("bulk", params.bulk_size),
            ("call", params.call_size + call::ID_LEN),
        ] {
            if size > servers::MAX_PAYLOAD {
                return Err(
                    format!("{name} payloads exceed {} bytes", servers::MAX_PAYLOAD).into(),
                );
            }
        }
        Ok(Plan {
            rounds: args.rounds.unwrap_or(if args.quick { 2 } else { 3 }).max(1),
            servers,
            workloads,
            scaling: !args.no_scaling && (args.scaling || !args.quick),
            params,
        })
    }

    /// The targets of `workload` in `round`: every server on one thread (for `many` only getty
    /// and the raw baseline), plus getty on 2 threads for the scaling table; reversed in odd
    /// rounds.
    fn targets(&self, workload: Workload, round: usize) -> Vec<Target> {
        let mut targets: Vec<Target> = self
            .servers
            .iter()
            .filter(|imp| {
                workload != Workload::Many || imp.is_getty() || **imp == ServerImpl::RawTokio
            })
            .map(|&imp| Target { imp, threads: 1 })
            .collect();
        if self.scaling && matches!(workload, Workload::Small | Workload::Bulk) {
            targets.extend(
                self.servers
                    .iter()
                    .filter(|imp| imp.is_getty())
                    .map(|&imp| Target { imp, threads: 2 }),
            );
        }
        if round % 2 == 1 {
            targets.reverse();
        }
        targets
    }

    /// The metrics of the selected workloads, in report order.
    fn metrics(&self) -> Vec<Metric> {
        self.workloads
            .iter()
            .flat_map(|w| w.metrics().iter().copied())
            .collect()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(Command::Serve { imp, threads }) => servers::serve(imp, threads),
        None => bench(&cli.bench),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("getty-bench: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The parent: runs the plan, prints the report and writes the files.
fn bench(args: &BenchArgs) -> Result<(), BoxError> {
    let plan = Plan::new(args)?;
    let fd_limit = proc::raise_fd_limit();
    if let Some(limit) = fd_limit {
        let needed = plan.params.many_conns as u64 + 100;
        if plan.workloads.contains(&Workload::Many) && limit < needed {
            eprintln!("warning: open-file limit {limit} is below the {needed} `many` needs");
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    let started = Instant::now();
    let mut results = Results::default();
    let mut call_results = CallResults::default();
    for round in 0..plan.rounds {
        for &workload in &plan.workloads {
            if workload == Workload::Call {
                for variant in Variant::round(plan.params.call_depth, round) {
                    eprintln!(
                        "[{:>5.1}s] round {}/{}: call: {variant}, on {}",
                        started.elapsed().as_secs_f64(),
                        round + 1,
                        plan.rounds,
                        call::SERVER.label()
                    );
                    let quantities = measure_call(&rt, variant, &plan.params)
                        .map_err(|err| format!("call: {variant}: {err}"))?;
                    call_results.record(variant, &quantities);
                }
                continue;
            }
            for target in plan.targets(workload, round) {
                eprintln!(
                    "[{:>5.1}s] round {}/{}: {workload} on {}",
                    started.elapsed().as_secs_f64(),
                    round + 1,
                    plan.rounds,
                    target.label()
                );
                let metrics = measure(&rt, workload, target, &plan.params)
                    .map_err(|err| format!("{workload} on {}: {err}", target.label()))?;
                results.record(target, &metrics);
            }
        }
    }
    let elapsed = started.elapsed();

    let markdown = render(&plan, &results, &call_results, elapsed);
    println!("{markdown}");
    write_file(&args.out_md, markdown.as_bytes())?;
    if let Some(dir) = args.out_svg.parent() {
        fs::create_dir_all(dir)?;
    }
    chart::write_svg(&args.out_svg, &results, &plan.workloads, &plan.servers)?;
    eprintln!(
        "wrote {} and {} in {:.1?}",
        args.out_md.display(),
        args.out_svg.display(),
        elapsed
    );
    Ok(())
}

/// One measurement on a fresh server child (killed when this returns, even by panic).
fn measure(
    rt: &tokio::runtime::Runtime,
    workload: Workload,
    target: Target,
    params: &Params,
) -> Result<Vec<(Metric, f64)>, BoxError> {
    let mut server = ServerProcess::start(target)?;
    rt.block_on(workloads::measure(workload, &mut server, params))
}

/// One measurement of the `call` workload on a fresh raw-tokio child.
fn measure_call(
    rt: &tokio::runtime::Runtime,
    variant: Variant,
    params: &Params,
) -> Result<Vec<(call::Quantity, f64)>, BoxError> {
    let mut server = ServerProcess::start(call::SERVER)?;
    rt.block_on(call::measure(&mut server, variant, params))
}

/// The whole markdown report.
fn render(plan: &Plan, results: &Results, call_results: &CallResults, elapsed: Duration) -> String {
    let p = &plan.params;
    let mut out = String::new();
    let _ = writeln!(out, "# getty-rs echo benchmark\n");
    let _ = writeln!(
        out,
        "{} rounds, {} CPUs, {:.0?} in all. Each server runs alone in a child process on 1 thread; \
         the load generator is one tokio current-thread runtime in the parent. Measurements: \
         {:.1?} after {:.1?} of warm-up.\n",
        plan.rounds,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        elapsed,
        p.duration,
        p.warmup
    );
    let _ = writeln!(
        out,
        "- latency: 1 connection, 1 in flight, {} B payloads\n\
         - small: {} connections x {} in flight, {} B payloads\n\
         - bulk: {} connections x {} in flight, {} B payloads (MB = 10^6 payload bytes echoed)\n\
         - idle: {} connections echo once then idle; server RSS growth per connection, server \
         CPU over {:.1?} of idleness\n\
         - many: {} concurrent connections, each echoing once (getty and raw-tokio only)\n\
         - call: a getty-tokio client on raw-tokio, `Session::call` ÷ plain `send` + \
         `on_message`, at depth 1 and {} ({} B after an 8-byte id; its own table below)\n",
        p.latency_size,
        p.small_conns,
        p.small_inflight,
        p.small_size,
        p.bulk_conns,
        p.bulk_inflight,
        p.bulk_size,
        p.idle_conns,
        p.idle_time,
        p.many_conns,
        p.call_depth,
        p.call_size
    );
    let metrics = plan.metrics();
    if !metrics.is_empty() {
        out.push_str(&report::main_table(results, &metrics, &plan.servers));
    }
    let check = report::instrument_check(results, &plan.servers);
    if !check.is_empty() {
        let _ = writeln!(out, "\n## Can the instrument see the ceiling?");
        out.push_str(&check);
    }
    let scaling_metrics: Vec<Metric> = plan
        .metrics()
        .into_iter()
        .filter(|m| matches!(m, Metric::SmallRate | Metric::BulkRate))
        .collect();
    let getty: Vec<ServerImpl> = plan
        .servers
        .iter()
        .copied()
        .filter(|s| s.is_getty())
        .collect();
    if plan.scaling && !scaling_metrics.is_empty() && !getty.is_empty() {
        let _ = writeln!(out, "\n## Scaling: getty on 1 and 2 threads\n");
        out.push_str(&report::scaling_table(results, &scaling_metrics, &getty));
    }
    if plan.workloads.contains(&Workload::Call) {
        let _ = writeln!(
            out,
            "\n## Request/response: `Session::call` against plain `send` + `on_message`\n"
        );
        out.push_str(&call::table(call_results, p));
    }
    out
}

fn write_file(path: &Path, contents: &[u8]) -> Result<(), BoxError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(path, contents).map_err(|err| format!("cannot write {}: {err}", path.display()))?;
    Ok(())
}
