//! getty-sim's promises, checked on getty itself with the scenario of a client pool through a
//! partition and heal, then a server crash and restart (`getty_testkit::sim`):
//! - the same seed gives the same run, event for event (the simulation's trace of every task
//!   poll, timer and network event, and getty's own timeline);
//! - other seeds give other interleavings, and each passes;
//! - a sweep of 1,000 seeds (`GETTY_SIM_SWEEP=N` for another count) passes, in well under a
//!   minute of real time.

use std::time::{Duration, Instant};

use getty_sim::{Sim, Trace};
use getty_testkit::sim::pool_through_partition_and_restart;

/// One run: getty's timeline, the simulation's trace, and the virtual time it covered.
fn run(seed: u64) -> (Vec<String>, Trace, Duration) {
    let sim = Sim::new(seed);
    let timeline = sim.block_on(pool_through_partition_and_restart(sim.runtime()));
    (timeline, sim.trace(), sim.elapsed())
}

/// The seed `GETTY_SIM_SEED` (default 1), its timeline printed: how a failing seed of the
/// sweep is replayed.
#[test]
fn one_seed() {
    let seed = std::env::var("GETTY_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let (timeline, trace, elapsed) = run(seed);
    println!(
        "seed {seed}: {elapsed:?} of virtual time, {} events",
        trace.len()
    );
    timeline.iter().for_each(|line| println!("{line}"));
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let (timeline_a, trace_a, elapsed_a) = run(7);
    let (timeline_b, trace_b, elapsed_b) = run(7);
    assert_eq!(timeline_a, timeline_b);
    assert_eq!(elapsed_a, elapsed_b);
    if let Some(i) = (0..trace_a.len().max(trace_b.len()))
        .find(|&i| trace_a.events().get(i) != trace_b.events().get(i))
    {
        panic!(
            "the traces part at event {i}: {:?} against {:?}",
            trace_a.events().get(i),
            trace_b.events().get(i)
        );
    }
    assert!(
        trace_a.len() > 1_000,
        "a run of some size: {} events",
        trace_a.len()
    );
}

#[test]
fn other_seeds_give_other_interleavings_that_all_pass() {
    let runs: Vec<(u64, Trace)> = (1..=8).map(|seed| (seed, run(seed).1)).collect();
    for (i, (seed, trace)) in runs.iter().enumerate() {
        for (other, other_trace) in &runs[i + 1..] {
            assert_ne!(trace, other_trace, "seeds {seed} and {other} ran alike");
        }
    }
}

#[test]
fn a_sweep_of_seeds_all_pass() {
    let seeds: u64 = std::env::var("GETTY_SIM_SWEEP")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let started = Instant::now();
    let (failed, virtual_time) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|first| {
                scope.spawn(move || {
                    let mut failed = Vec::new();
                    let mut covered = Duration::ZERO;
                    for seed in (1 + first..=seeds).step_by(threads as usize) {
                        match std::panic::catch_unwind(|| run(seed)) {
                            Ok((_, _, elapsed)) => covered += elapsed,
                            Err(_) => failed.push(seed),
                        }
                    }
                    (failed, covered)
                })
            })
            .collect();
        workers.into_iter().fold(
            (Vec::new(), Duration::ZERO),
            |(mut failed, covered), worker| {
                let (f, c) = worker.join().expect("a sweep worker");
                failed.extend(f);
                (failed, covered + c)
            },
        )
    });
    let took = started.elapsed();
    println!(
        "{seeds} seeds on {threads} threads: {:.1} s real for {:.0} s of virtual time",
        took.as_secs_f64(),
        virtual_time.as_secs_f64()
    );
    assert!(
        failed.is_empty(),
        "failing seeds (replay one with GETTY_SIM_SEED=N cargo test --test simulation \
         one_seed -- --nocapture): {failed:?}"
    );
}
