//! Process-wide load and resource scenarios (`getty_testkit::load`) on every runtime getty
//! ships an adapter for: a burst of 2,000 connects, 1,000 idle sessions per side, connect/close
//! churn, a real EMFILE.
//!
//! They measure the whole process (descriptors, resident memory, CPU time) and change its
//! RLIMIT_NOFILE, so nothing else may run in the process meanwhile: this binary has a single
//! `#[test]`, which runs every scenario one after another, first on tokio, then on smol. It
//! works the same under `cargo test` (one binary at a time) and `cargo nextest run` (one
//! process per test). Figures are printed: `cargo test --test load -- --nocapture`.
//!
//! `GETTY_CHURN_CYCLES` sets the churn cycles per runtime (default 2,000); a soak run:
//! `GETTY_CHURN_CYCLES=100000 cargo test --release --test load -- --nocapture`.

#![cfg(target_os = "linux")]

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use getty::SmolRuntime;
use getty::TokioRuntime;
use getty_testkit::load::{self, Os, Report};

/// Connections of the burst.
const BURST: usize = 2_000;
/// Idle sessions per side.
const IDLE: usize = 1_000;
/// Churn cycles per runtime unless `GETTY_CHURN_CYCLES` says otherwise.
const CHURN_CYCLES: usize = 2_000;

fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut usage), 0);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

fn getrlimit() -> io::Result<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } {
        0 => Ok(limit),
        _ => Err(io::Error::last_os_error()),
    }
}

fn nofile_limit() -> io::Result<(u64, u64)> {
    let limit = getrlimit()?;
    Ok((limit.rlim_cur as u64, limit.rlim_max as u64))
}

fn set_nofile_soft(soft: u64) -> io::Result<()> {
    let mut limit = getrlimit()?;
    limit.rlim_cur = soft as libc::rlim_t;
    // SAFETY: setrlimit only reads the struct it is given.
    match unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

const OS: Os = Os {
    cpu_time,
    nofile_limit,
    set_nofile_soft,
};

/// A fresh current-thread tokio runtime per scenario (so nothing of one outlives it).
fn on_tokio<F: Future>(scenario: impl FnOnce(TokioRuntime) -> F) -> F::Output {
    let rt = ::tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async { scenario(TokioRuntime::current()).await })
}

/// A fresh single-threaded smol executor per scenario.
fn on_smol<F: Future>(scenario: impl FnOnce(SmolRuntime) -> F) -> F::Output {
    let ex = Arc::new(::smol::Executor::new());
    let rt = SmolRuntime::with_executor(ex.clone());
    ::smol::block_on(ex.run(scenario(rt)))
}

fn churn_cycles() -> usize {
    match std::env::var("GETTY_CHURN_CYCLES") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("GETTY_CHURN_CYCLES={v:?} is not a number")),
        Err(_) => CHURN_CYCLES,
    }
}

fn print(runtime: &str, started: Instant, report: Report) {
    println!("[{runtime}] {report} ({:.2?})", started.elapsed());
}

/// Runs every load scenario on one runtime, given as its `block_on`.
macro_rules! run_all {
    ($runtime:literal, $block_on:ident, $cycles:expr) => {{
        let t = Instant::now();
        print(
            $runtime,
            t,
            $block_on(|rt| load::burst_connects_all_served(rt, OS, BURST)),
        );
        let t = Instant::now();
        print(
            $runtime,
            t,
            $block_on(|rt| load::idle_sessions_use_no_cpu(rt, OS, IDLE)),
        );
        let t = Instant::now();
        print($runtime, t, $block_on(|rt| load::churn(rt, $cycles)));
        let t = Instant::now();
        print(
            $runtime,
            t,
            $block_on(|rt| load::emfile_accept_recovers(rt, OS)),
        );
    }};
}

/// Every load scenario, one at a time: tokio first, then smol.
#[test]
fn load_scenarios() {
    let _ = env_logger::builder().is_test(true).try_init();
    let cycles = churn_cycles();
    let limit = nofile_limit().expect("getrlimit");
    let started = Instant::now();
    run_all!("tokio", on_tokio, cycles);
    run_all!("smol", on_smol, cycles);
    println!("load scenarios took {:.2?}", started.elapsed());
    assert_eq!(
        nofile_limit().expect("getrlimit"),
        limit,
        "RLIMIT_NOFILE restored"
    );
}
