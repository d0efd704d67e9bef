//! The task pool (getty's `WithServerTaskPool` / `WithClientTaskPool`): runs `on_message` (or
//! `on_datagram`) and `on_cron` on a bounded set of worker tasks instead of on the session's
//! own task.
//!
//! Without a pool, a session's handlers run on its task, in order, and a slow handler slows
//! only its own session's reading (that is its backpressure). With one, the session goes on
//! reading while its handlers run on the workers:
//! - **ordered** (the default): each session's handlers run one at a time, in order, on
//!   whichever worker is free, while different sessions run in parallel; a slow handler holds
//!   up only its own session. It is the default because protocol handlers usually depend on
//!   the package before (getty's handlers assume it too).
//! - **unordered**: one queue for the whole pool that every worker takes from, for stateless
//!   handlers: a slow package never delays the next one of the same session, but the order
//!   is lost.
//!
//! Queues are bounded: when a session's queue is full, its reading waits (no unbounded
//! growth, unlike getty's `AddTaskAlways`). Workers are spawned through the runtime seam, so a
//! pool works on every runtime; closing the endpoint stops them.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use event_listener::{Event, IntoNotification};

use crate::error::{Error, Result};
use crate::runtime::{BoxFuture, Runtime};
use crate::session::lock;

/// Options of a task pool, handed to a server's or client's builder (`task_pool`). Zero
/// workers or a zero queue length is refused when the endpoint starts.
///
/// ```
/// use getty_core::pool::TaskPoolConfig;
/// use getty_core::TcpServer;
///
/// // 8 workers, up to 1024 handlers waiting per session, each session's handlers in order.
/// let pool = TaskPoolConfig::default().workers(8).queue_len(1024).ordered(true);
/// let builder = TcpServer::builder().task_pool(pool);
/// // builder.serve(rt, codec, listener) starts the workers with the server.
/// # let _ = builder;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a builder does nothing until it is used"]
pub struct TaskPoolConfig {
    workers: usize,
    queue_len: usize,
    ordered: bool,
}

impl Default for TaskPoolConfig {
    /// 4 workers, 256 queued handlers per queue, ordered per session.
    fn default() -> Self {
        TaskPoolConfig {
            workers: 4,
            queue_len: 256,
            ordered: true,
        }
    }
}

impl TaskPoolConfig {
    /// The number of worker tasks (default 4).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// How many handlers may wait in one queue (a session's in ordered mode, the pool's in
    /// unordered mode) before reading waits (default 256).
    pub fn queue_len(mut self, n: usize) -> Self {
        self.queue_len = n;
        self
    }

    /// Per-session order (the default, `true`) or none (`false`): see the module docs.
    pub fn ordered(mut self, ordered: bool) -> Self {
        self.ordered = ordered;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.workers == 0 || self.queue_len == 0 {
            return Err(Error::invalid(
                "a task pool needs at least one worker and a queue of at least one",
            ));
        }
        Ok(())
    }
}

/// A started pool, shared by an endpoint's sessions.
///
/// Jobs wait in *lanes*: in ordered mode one per session, in unordered mode one for the whole
/// pool. A lane with work is put on the ready queue; a worker takes a lane from it and runs
/// one job. In ordered mode a lane is on the ready queue at most once and goes back only
/// after its job ended, so a session's handlers never overlap and keep their order, while a
/// slow one holds up only its own session.
pub(crate) struct TaskPool {
    ordered: bool,
    /// The lane of every session in unordered mode.
    shared: Arc<Lane>,
    capacity: usize,
    ready: Mutex<VecDeque<Arc<Lane>>>,
    /// Notified when a lane is made ready or the pool stops. Always with `additional`: a
    /// worker already notified but not yet running must not absorb another lane's wake-up.
    work: Event,
    stopped: AtomicBool,
    alive: AtomicUsize,
    /// Notified when a worker ends.
    exited: Event,
}

/// Queued jobs of one session (ordered) or of the whole pool (unordered).
#[derive(Default)]
pub(crate) struct Lane {
    state: Mutex<LaneState>,
    /// Notified when a job is taken from the lane, or the pool stops.
    room: Event,
}

#[derive(Default)]
struct LaneState {
    jobs: VecDeque<BoxFuture<()>>,
    /// On the ready queue or running (ordered mode).
    scheduled: bool,
}

impl TaskPool {
    /// Starts `config.workers` workers on `rt`.
    pub(crate) fn start<R: Runtime>(rt: &R, config: TaskPoolConfig) -> Arc<TaskPool> {
        let pool = Arc::new(TaskPool {
            ordered: config.ordered,
            shared: Arc::default(),
            capacity: config.queue_len,
            ready: Mutex::new(VecDeque::new()),
            work: Event::new(),
            stopped: AtomicBool::new(false),
            alive: AtomicUsize::new(config.workers),
            exited: Event::new(),
        });
        for _ in 0..config.workers {
            let pool = pool.clone();
            rt.spawn(async move { pool.work().await });
        }
        pool
    }

    /// The lane a session's jobs go to: its own (ordered) or the pool's (unordered).
    pub(crate) fn lane(&self) -> Arc<Lane> {
        if self.ordered {
            Arc::default()
        } else {
            self.shared.clone()
        }
    }

    /// Queues `job` on `lane`, waiting while the lane is full. A stopped pool hands the job
    /// back.
    pub(crate) async fn submit(
        &self,
        lane: &Arc<Lane>,
        job: BoxFuture<()>,
    ) -> std::result::Result<(), BoxFuture<()>> {
        loop {
            let listener = {
                let mut state = lock(&lane.state);
                if self.stopped.load(Ordering::Acquire) {
                    return Err(job);
                }
                if state.jobs.len() < self.capacity {
                    state.jobs.push_back(job);
                    let ready = !self.ordered || !state.scheduled;
                    state.scheduled = true;
                    drop(state);
                    if ready {
                        lock(&self.ready).push_back(lane.clone());
                        self.work.notify(1.additional());
                    }
                    return Ok(());
                }
                lane.room.listen()
            };
            listener.await;
        }
    }

    /// One worker: runs one job of a ready lane at a time, until the pool stops and nothing
    /// is ready.
    async fn work(&self) {
        loop {
            let next = {
                let mut ready = lock(&self.ready);
                match ready.pop_front() {
                    Some(lane) => Ok(lane),
                    None if self.stopped.load(Ordering::Acquire) => break,
                    None => Err(self.work.listen()),
                }
            };
            let lane = match next {
                Ok(lane) => lane,
                Err(listener) => {
                    listener.await;
                    continue;
                }
            };
            let job = lock(&lane.state).jobs.pop_front();
            lane.room.notify(1.additional());
            if let Some(job) = job {
                // Jobs catch their handler's panics themselves (see `Core::dispatch`).
                job.await;
            }
            if self.ordered {
                let mut state = lock(&lane.state);
                if state.jobs.is_empty() {
                    state.scheduled = false;
                } else {
                    drop(state);
                    lock(&self.ready).push_back(lane);
                    self.work.notify(1.additional());
                }
            }
        }
        self.alive.fetch_sub(1, Ordering::AcqRel);
        self.exited.notify(usize::MAX);
    }

    /// Drops the jobs still queued on a session's own lane (ordered mode; a shared lane holds
    /// other sessions' jobs too, and cancelled jobs there end as soon as a worker takes them).
    pub(crate) fn drop_queued(&self, lane: &Lane) {
        if self.ordered {
            let jobs = std::mem::take(&mut lock(&lane.state).jobs);
            lane.room.notify(usize::MAX);
            drop(jobs);
        }
    }

    /// Tells the workers to end once nothing is ready; new jobs are refused.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.work.notify(usize::MAX);
        self.shared.room.notify(usize::MAX);
    }

    /// Stops the workers (see [`stop`](Self::stop)) and waits until they have ended.
    pub(crate) async fn shutdown(&self) {
        self.stop();
        loop {
            let listener = self.exited.listen();
            if self.alive.load(Ordering::Acquire) == 0 {
                return;
            }
            listener.await;
        }
    }

    /// Workers still running.
    pub(crate) fn workers_alive(&self) -> usize {
        self.alive.load(Ordering::Acquire)
    }
}

impl fmt::Debug for TaskPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskPool")
            .field("ordered", &self.ordered)
            .field("workers_alive", &self.workers_alive())
            .finish()
    }
}

/// A session's handlers running on the pool: how many, and the first panic among them.
#[derive(Default)]
pub(crate) struct Jobs {
    running: AtomicUsize,
    done: Event,
    failure: Mutex<Option<Error>>,
    /// Set when the session gave up waiting for its handlers: they end at their next poll,
    /// and queued ones end before they start.
    cancelled: AtomicBool,
    cancel: Event,
}

impl Jobs {
    pub(crate) fn started(&self) {
        self.running.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn finished(&self, failure: Option<Error>) {
        if let Some(err) = failure {
            lock(&self.failure).get_or_insert(err);
        }
        self.running.fetch_sub(1, Ordering::AcqRel);
        self.done.notify(usize::MAX);
    }

    /// Handlers started and not yet ended.
    pub(crate) fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Ends every handler of the session, running or queued (see [`cancelled`](Self::cancelled)).
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.cancel.notify(usize::MAX);
    }

    /// Completes once [`cancel`](Self::cancel) was called: jobs race their handler with it.
    pub(crate) async fn cancelled(&self) {
        loop {
            if self.cancelled.load(Ordering::Acquire) {
                return;
            }
            let listener = self.cancel.listen();
            if self.cancelled.load(Ordering::Acquire) {
                return;
            }
            listener.await;
        }
    }

    /// The first handler panic, if any.
    pub(crate) fn take_failure(&self) -> Option<Error> {
        lock(&self.failure).take()
    }

    /// Waits until none runs.
    pub(crate) async fn idle(&self) {
        loop {
            let listener = self.done.listen();
            if self.running.load(Ordering::Acquire) == 0 {
                return;
            }
            listener.await;
        }
    }
}
