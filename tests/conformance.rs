//! The conformance suite, run on every runtime getty ships an adapter for.
//!
//! `cargo test tokio::` or `cargo test smol::` runs one runtime's suite.

use std::future::Future;

mod tokio {
    use super::Future;
    use getty::TokioRuntime;

    /// A current-thread tokio runtime per test (the most demanding for deadlocks: one thread
    /// runs the server, the clients and the scenario).
    fn block_on<F: Future>(scenario: impl FnOnce(TokioRuntime) -> F) -> F::Output {
        let _ = env_logger::builder().is_test(true).try_init();
        let rt = ::tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(async { scenario(TokioRuntime::current()).await })
    }

    getty_testkit::conformance_suite!(block_on);
}

mod smol {
    use super::Future;
    use getty::SmolRuntime;
    use std::sync::Arc;

    /// A user-supplied single-threaded executor per test, driven by `block_on`.
    fn block_on<F: Future>(scenario: impl FnOnce(SmolRuntime) -> F) -> F::Output {
        let _ = env_logger::builder().is_test(true).try_init();
        let ex = Arc::new(::smol::Executor::new());
        let rt = SmolRuntime::with_executor(ex.clone());
        ::smol::block_on(ex.run(scenario(rt)))
    }

    getty_testkit::conformance_suite!(block_on);
}

/// The same suite with tasks spread over two tokio worker threads, where handlers, writers
/// and drivers really run in parallel.
mod tokio_multi_thread {
    use super::Future;
    use getty::TokioRuntime;

    fn block_on<F: Future>(scenario: impl FnOnce(TokioRuntime) -> F) -> F::Output {
        let _ = env_logger::builder().is_test(true).try_init();
        let rt = ::tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(async { scenario(TokioRuntime::current()).await })
    }

    getty_testkit::conformance_suite!(block_on);
}

/// The same suite on smol's global executor (its own threads), the scenario driven by
/// `block_on` on the test thread.
mod smol_global {
    use super::Future;
    use getty::SmolRuntime;

    fn block_on<F: Future>(scenario: impl FnOnce(SmolRuntime) -> F) -> F::Output {
        let _ = env_logger::builder().is_test(true).try_init();
        ::smol::block_on(scenario(SmolRuntime::global()))
    }

    getty_testkit::conformance_suite!(block_on);
}

/// The same suite on getty-sim: one thread, a seeded order of tasks, virtual time and an
/// in-memory network. The portable scenarios (the OS ones need a kernel socket), and those
/// only a simulation can run. The seed is `GETTY_SIM_SEED` (default 1); a failing run names
/// it.
mod sim {
    use super::Future;
    use getty_sim::{Sim, SimRuntime};

    fn block_on<F: Future>(scenario: impl FnOnce(SimRuntime) -> F) -> F::Output {
        let _ = env_logger::builder().is_test(true).try_init();
        let seed = std::env::var("GETTY_SIM_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        let sim = Sim::new(seed);
        sim.block_on(scenario(sim.runtime()))
    }

    getty_testkit::conformance_suite!(@portable block_on);
    getty_testkit::conformance_suite!(@sim block_on);
}
