//! The task pool (getty's `WithServerTaskPool` / `WithClientTaskPool`): runs `on_message` and
//! `on_cron` on a bounded set of worker tasks instead of on the session's own task.
//!
//! Without a pool, a session's handlers run on its task, in order, and a slow handler slows
//! only its own session's reading (that is its backpressure). With one, the session goes on
//! reading while its handlers run on the workers:
//! - **ordered** (the default): each session's packages go to one worker's queue (chosen by the
//!   session id), so they are handled one at a time and in order, while different sessions
//!   run in parallel. It is the default because protocol handlers usually depend on the
//!   package before (getty's handlers assume it too).
//! - **unordered**: one queue that every worker takes from, for stateless handlers: a slow
//!   package never delays the next one of the same session, but the order is lost.
//!
//! Queues are bounded: when a session's queue is full, its reading waits (no unbounded
//! growth, unlike getty's `AddTaskAlways`). Workers are spawned through the runtime seam, so a
//! pool works on every runtime; closing the endpoint stops them.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use event_listener::Event;

use crate::error::{Error, Result};
use crate::runtime::{BoxFuture, Runtime};
use crate::session::lock;

/// Options of a task pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

    /// How many handlers may wait in one queue before reading waits (default 256).
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
pub(crate) struct TaskPool {
    queues: Vec<Queue>,
    capacity: usize,
    stopped: AtomicBool,
    alive: AtomicUsize,
    /// Notified when a worker ends.
    exited: Event,
}

struct Queue {
    jobs: Mutex<VecDeque<BoxFuture<()>>>,
    /// Notified when a job is queued or the pool stops.
    queued: Event,
    /// Notified when a job is taken.
    taken: Event,
}

impl TaskPool {
    /// Starts `config.workers` workers on `rt`.
    pub(crate) fn start<R: Runtime>(rt: &R, config: TaskPoolConfig) -> Arc<TaskPool> {
        let queues = if config.ordered { config.workers } else { 1 };
        let pool = Arc::new(TaskPool {
            queues: (0..queues)
                .map(|_| Queue {
                    jobs: Mutex::new(VecDeque::new()),
                    queued: Event::new(),
                    taken: Event::new(),
                })
                .collect(),
            capacity: config.queue_len,
            stopped: AtomicBool::new(false),
            alive: AtomicUsize::new(config.workers),
            exited: Event::new(),
        });
        for worker in 0..config.workers {
            let pool = pool.clone();
            rt.spawn(async move { pool.work(worker % queues).await });
        }
        pool
    }

    /// Queues `job` for the session `key`, waiting while its queue is full. A stopped pool
    /// hands the job back.
    pub(crate) async fn submit(
        &self,
        key: u64,
        job: BoxFuture<()>,
    ) -> std::result::Result<(), BoxFuture<()>> {
        let queue = &self.queues[(key % self.queues.len() as u64) as usize];
        loop {
            let listener = {
                let mut jobs = lock(&queue.jobs);
                if self.stopped.load(Ordering::Acquire) {
                    return Err(job);
                }
                if jobs.len() < self.capacity {
                    jobs.push_back(job);
                    drop(jobs);
                    queue.queued.notify(1);
                    return Ok(());
                }
                queue.taken.listen()
            };
            listener.await;
        }
    }

    /// One worker: runs the jobs of queue `index` until the pool stops and the queue is empty.
    async fn work(&self, index: usize) {
        let queue = &self.queues[index];
        loop {
            let next = {
                let mut jobs = lock(&queue.jobs);
                match jobs.pop_front() {
                    Some(job) => Ok(job),
                    None if self.stopped.load(Ordering::Acquire) => break,
                    None => Err(queue.queued.listen()),
                }
            };
            match next {
                Ok(job) => {
                    queue.taken.notify(1);
                    // Jobs catch their handler's panics themselves (see the drivers).
                    job.await;
                }
                Err(listener) => listener.await,
            }
        }
        self.alive.fetch_sub(1, Ordering::AcqRel);
        self.exited.notify(usize::MAX);
    }

    /// Tells the workers to end once their queues are empty; new jobs are refused.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        for queue in &self.queues {
            queue.queued.notify(usize::MAX);
            queue.taken.notify(usize::MAX);
        }
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
            .field("queues", &self.queues.len())
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
