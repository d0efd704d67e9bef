//! The simulated executor and clock: one thread, a seed choosing which ready task runs next,
//! and virtual time that jumps to the next timer whenever no task can run.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crate::trace::{Event, Trace};

type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Where a [`Sim`] stands: everything its handles share. One lock: the simulation runs on
/// one thread, the lock only makes the handles `Send + Sync` as the runtime seam requires.
pub(crate) struct World {
    state: Mutex<State>,
    /// Tasks woken and not yet polled, each at most once. A lock of its own, never held
    /// while taking `state`: wakers only take this one, so anything may wake a task while
    /// holding `state` (the network wakes readers and writers from inside it).
    ready: Mutex<Ready>,
    /// The `block_on` future was woken.
    main_ready: AtomicBool,
}

#[derive(Default)]
struct Ready {
    list: Vec<usize>,
    queued: Vec<bool>,
}

impl Ready {
    fn push(&mut self, id: usize) {
        if self.queued.len() <= id {
            self.queued.resize(id + 1, false);
        }
        if !self.queued[id] {
            self.queued[id] = true;
            self.list.push(id);
        }
    }
}

pub(crate) struct State {
    pub(crate) seed: u64,
    pub(crate) rng: fastrand::Rng,
    /// The real instant virtual time 0 stands for (only ever used as an origin).
    base: Instant,
    /// Virtual time since `base`.
    pub(crate) now: Duration,
    /// Tasks by id; `None` while one is being polled or once it finished.
    tasks: Vec<Option<Task>>,
    /// The host each task was spawned on (a crash stops them).
    task_hosts: Vec<IpAddr>,
    /// The task being polled, if any.
    running: Option<usize>,
    /// The running task's host crashed while it ran: it is dropped when its poll returns.
    running_doomed: bool,
    /// Pending timer deadlines; an entry whose timer was dropped or moved is stale and
    /// skipped.
    timers: BinaryHeap<Reverse<TimerEntry>>,
    timer_seq: u64,
    pub(crate) trace: Trace,
    pub(crate) net: crate::net::NetState,
}

impl fmt::Debug for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("World").finish_non_exhaustive()
    }
}

impl World {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock is held fails the whole run anyway.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ready(&self) -> MutexGuard<'_, Ready> {
        self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake_task(&self, id: usize) {
        self.ready().push(id);
    }
}

/// A deterministic simulation: one seed, one thread, virtual time.
///
/// ```
/// use std::time::Duration;
/// use getty_sim::Sim;
///
/// let sim = Sim::new(7);
/// let rt = sim.runtime();
/// let took = sim.block_on(async move {
///     let start = rt.now();
///     // An hour of virtual time passes at once: no task can run until the timer fires.
///     rt.sleep(Duration::from_secs(3600)).await;
///     rt.now() - start
/// });
/// assert_eq!(took, Duration::from_secs(3600));
/// ```
pub struct Sim {
    world: Arc<World>,
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.world.lock();
        f.debug_struct("Sim")
            .field("seed", &state.seed)
            .field("now", &state.now)
            .field("tasks", &state.tasks.iter().filter(|t| t.is_some()).count())
            .finish()
    }
}

impl Sim {
    /// A simulation whose every choice follows `seed`.
    pub fn new(seed: u64) -> Sim {
        Sim {
            world: Arc::new(World {
                state: Mutex::new(State {
                    seed,
                    rng: fastrand::Rng::with_seed(seed),
                    base: Instant::now(),
                    now: Duration::ZERO,
                    tasks: Vec::new(),
                    task_hosts: Vec::new(),
                    running: None,
                    running_doomed: false,
                    timers: BinaryHeap::new(),
                    timer_seq: 0,
                    trace: Trace::default(),
                    net: crate::net::NetState::new(),
                }),
                ready: Mutex::new(Ready::default()),
                main_ready: AtomicBool::new(true),
            }),
        }
    }

    /// The seed this simulation follows.
    pub fn seed(&self) -> u64 {
        self.world.lock().seed
    }

    /// A handle to this simulation's executor, clock and randomness, on the host
    /// `127.0.0.1`.
    pub fn runtime(&self) -> SimRuntime {
        self.host(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// A handle as [`runtime`](Self::runtime), whose sockets are on the host with address
    /// `ip` (its loopback and unspecified addresses mean `ip`).
    pub fn host(&self, ip: IpAddr) -> SimRuntime {
        self.world.lock().net.links.add_host(ip);
        SimRuntime {
            world: self.world.clone(),
            host: ip,
        }
    }

    /// Virtual time elapsed since the simulation started.
    pub fn elapsed(&self) -> Duration {
        self.world.lock().now
    }

    /// What happened so far, in order.
    pub fn trace(&self) -> Trace {
        self.world.lock().trace.clone()
    }

    /// Runs `future` and every task it spawns until `future` completes, returning its output.
    /// Tasks still pending then stay (a later `block_on` goes on with them).
    ///
    /// # Panics
    /// With the seed in the message, so the run can be replayed: when a task panics, and on a
    /// deadlock (nothing can run, no timer is pending, `future` has not completed).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let main_waker = Waker::from(Arc::new(MainWaker {
            world: Arc::downgrade(&self.world),
        }));
        loop {
            // The main future first whenever it was woken: it is what the test waits on.
            if self.world.main_ready.swap(false, Ordering::AcqRel) {
                let mut cx = Context::from_waker(&main_waker);
                let polled =
                    std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx)));
                match polled {
                    Ok(Poll::Ready(out)) => return out,
                    Ok(Poll::Pending) => {}
                    Err(panic) => self.fail("the block_on future panicked", &*panic),
                }
            }
            if self.run_one_task() {
                continue;
            }
            if self.world.main_ready.load(Ordering::Acquire) {
                continue;
            }
            if !self.advance_clock() {
                let state = self.world.lock();
                let (seed, now) = (state.seed, state.now);
                let pending = state.tasks.iter().filter(|t| t.is_some()).count();
                drop(state);
                panic!(
                    "getty-sim deadlock at {now:?} (seed {seed}): no task can run, no timer is \
                     pending, and the block_on future has not completed ({pending} tasks wait \
                     forever)"
                );
            }
        }
    }

    /// Polls one ready task, chosen by the seed; false when none is ready.
    fn run_one_task(&self) -> bool {
        let (id, mut task) = {
            let mut state = self.world.lock();
            let mut ready = self.world.ready();
            if ready.list.is_empty() {
                return false;
            }
            let pick = state.rng.usize(..ready.list.len());
            let id = ready.list.swap_remove(pick);
            ready.queued[id] = false;
            drop(ready);
            let Some(task) = state.tasks[id].take() else {
                // Finished since it was woken.
                return true;
            };
            let at = state.now;
            state.trace.push(at, Event::Poll { task: id });
            state.running = Some(id);
            (id, task)
        };
        let waker = Waker::from(Arc::new(TaskWaker {
            id,
            world: Arc::downgrade(&self.world),
        }));
        let mut cx = Context::from_waker(&waker);
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| task.as_mut().poll(&mut cx)));
        let doomed = {
            let mut state = self.world.lock();
            state.running = None;
            std::mem::take(&mut state.running_doomed)
        };
        if doomed {
            // Its host crashed while it ran: it stops here, as the host's other tasks did.
            drop(task);
            return true;
        }
        match polled {
            Ok(Poll::Pending) => self.world.lock().tasks[id] = Some(task),
            Ok(Poll::Ready(())) => {
                let mut state = self.world.lock();
                let at = state.now;
                state.trace.push(at, Event::Done { task: id });
            }
            Err(panic) => self.fail(&format!("task {id} panicked"), &*panic),
        }
        true
    }

    /// Moves the clock to the next timer's deadline and fires every timer due then; false
    /// when no timer is pending.
    fn advance_clock(&self) -> bool {
        let mut fired = Vec::new();
        {
            let mut state = self.world.lock();
            let Some(next) = state.next_deadline() else {
                return false;
            };
            if next > state.now {
                state.now = next;
                state.trace.push(next, Event::Clock);
            }
            let now = state.now;
            while state.timers.peek().is_some_and(|t| t.0.deadline <= now) {
                let Reverse(entry) = state.timers.pop().expect("peeked");
                let deadline = entry.deadline;
                if let Some(timer) = entry.slot.upgrade() {
                    let mut inner = timer.lock();
                    if inner.deadline <= now && inner.registered == Some(deadline) {
                        inner.registered = None;
                        fired.extend(inner.waker.take());
                    }
                }
            }
        }
        // Woken outside the lock: a waker takes it again.
        fired.into_iter().for_each(Waker::wake);
        true
    }

    fn fail(&self, what: &str, panic: &(dyn std::any::Any + Send)) -> ! {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-string panic".to_string());
        let state = self.world.lock();
        let (seed, now) = (state.seed, state.now);
        drop(state);
        panic!(
            "getty-sim: {what} at {now:?} (seed {seed}; replay with Sim::new({seed})): {message}"
        );
    }
}

impl State {
    /// The earliest deadline of a live timer still waiting, dropping stale heap entries.
    fn next_deadline(&mut self) -> Option<Duration> {
        while let Some(Reverse(entry)) = self.timers.peek() {
            let deadline = entry.deadline;
            let live = entry
                .slot
                .upgrade()
                .is_some_and(|t| t.lock().registered == Some(deadline));
            if live {
                return Some(deadline);
            }
            self.timers.pop();
        }
        None
    }

    /// Takes every task spawned on `host` out of the run (the one running now is dropped when
    /// its poll returns), to be dropped by the caller outside the lock.
    pub(crate) fn take_tasks_of(&mut self, host: IpAddr) -> Vec<Task> {
        if self.running.is_some_and(|id| self.task_hosts[id] == host) {
            self.running_doomed = true;
        }
        let mut taken = Vec::new();
        for (task, &on) in self.tasks.iter_mut().zip(&self.task_hosts) {
            if on == host {
                taken.extend(task.take());
            }
        }
        taken
    }
}

/// A pending timer deadline in the heap, earliest first (ties in arming order).
struct TimerEntry {
    deadline: Duration,
    seq: u64,
    slot: Weak<TimerSlot>,
}

impl PartialEq for TimerEntry {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.seq) == (other.deadline, other.seq)
    }
}

impl Eq for TimerEntry {}

impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TimerEntry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deadline, self.seq).cmp(&(other.deadline, other.seq))
    }
}

struct TaskWaker {
    id: usize,
    world: Weak<World>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(world) = self.world.upgrade() {
            world.wake_task(self.id);
        }
    }
}

struct MainWaker {
    world: Weak<World>,
}

impl Wake for MainWaker {
    fn wake(self: Arc<Self>) {
        if let Some(world) = self.world.upgrade() {
            world.main_ready.store(true, Ordering::Release);
        }
    }
}

/// A handle to a [`Sim`]: spawns its tasks, reads and waits on its virtual clock, draws its
/// random numbers. Cheap to clone, `Send + Sync` as the runtime seam requires (the
/// simulation itself runs on the thread that called [`Sim::block_on`]).
#[derive(Clone)]
pub struct SimRuntime {
    pub(crate) world: Arc<World>,
    /// The host this handle's sockets are on.
    pub(crate) host: IpAddr,
}

impl fmt::Debug for SimRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimRuntime")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl SimRuntime {
    /// Spawns a detached task: it runs when the seed picks it among the ready ones.
    pub fn spawn<F: Future<Output = ()> + Send + 'static>(&self, future: F) {
        let mut state = self.world.lock();
        let id = state.tasks.len();
        state.tasks.push(Some(Box::pin(future)));
        state.task_hosts.push(self.host);
        let at = state.now;
        state.trace.push(at, Event::Spawn { task: id });
        self.world.wake_task(id);
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        let state = self.world.lock();
        state.base + state.now
    }

    /// A timer firing at `at` on the virtual clock.
    pub fn timer(&self, at: Instant) -> SimTimer {
        let state = self.world.lock();
        let deadline = at.saturating_duration_since(state.base);
        SimTimer::at(&self.world, deadline)
    }

    /// Waits for `duration` of virtual time.
    pub async fn sleep(&self, duration: Duration) {
        self.timer(self.now() + duration).await
    }
}

impl SimTimer {
    /// A timer firing at `deadline` (virtual time since the start).
    pub(crate) fn at(world: &Arc<World>, deadline: Duration) -> SimTimer {
        let slot = Arc::new(TimerSlot {
            inner: Mutex::new(TimerInner {
                deadline,
                registered: None,
                waker: None,
            }),
        });
        SimTimer {
            world: world.clone(),
            slot,
        }
    }
}

impl SimRuntime {
    /// A random number from the simulation's seeded generator.
    pub fn random_u64(&self) -> u64 {
        self.world.lock().rng.u64(..)
    }

    /// The seed of the simulation.
    pub fn seed(&self) -> u64 {
        self.world.lock().seed
    }
}

pub(crate) struct TimerSlot {
    inner: Mutex<TimerInner>,
}

impl TimerSlot {
    fn lock(&self) -> MutexGuard<'_, TimerInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct TimerInner {
    deadline: Duration,
    /// The deadline of this timer's live heap entry, if it has one.
    registered: Option<Duration>,
    waker: Option<Waker>,
}

/// A timer on the virtual clock (see [`SimRuntime::timer`]): fires once its deadline has
/// passed; [`reset`](SimTimer::reset) moves the deadline.
pub struct SimTimer {
    world: Arc<World>,
    slot: Arc<TimerSlot>,
}

impl fmt::Debug for SimTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimTimer")
            .field("deadline", &self.slot.lock().deadline)
            .finish()
    }
}

impl SimTimer {
    /// Moves the deadline to `at`; a timer that fired fires again at `at`.
    pub fn reset(&mut self, at: Instant) {
        let base = self.world.lock().base;
        self.slot.lock().deadline = at.saturating_duration_since(base);
    }
}

impl Future for SimTimer {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.world.lock();
        let mut inner = self.slot.lock();
        if inner.deadline <= state.now {
            inner.registered = None;
            return Poll::Ready(());
        }
        inner.waker = Some(cx.waker().clone());
        if inner.registered != Some(inner.deadline) {
            inner.registered = Some(inner.deadline);
            state.timer_seq += 1;
            let entry = TimerEntry {
                deadline: inner.deadline,
                seq: state.timer_seq,
                slot: Arc::downgrade(&self.slot),
            };
            state.timers.push(Reverse(entry));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten tasks, each sleeping a random virtual while then recording itself.
    fn run(seed: u64) -> (Vec<usize>, Trace) {
        let sim = Sim::new(seed);
        let rt = sim.runtime();
        let order = Arc::new(Mutex::new(Vec::new()));
        let out = order.clone();
        sim.block_on(async move {
            for i in 0..10 {
                let (rt2, order) = (rt.clone(), order.clone());
                rt.spawn(async move {
                    let ms = rt2.random_u64() % 3;
                    rt2.sleep(Duration::from_millis(ms)).await;
                    order.lock().unwrap().push(i);
                });
            }
            while order.lock().unwrap().len() < 10 {
                rt.sleep(Duration::from_millis(1)).await;
            }
        });
        let order = out.lock().unwrap().clone();
        (order, sim.trace())
    }

    #[test]
    fn same_seed_same_run_other_seeds_other_runs() {
        let (a, trace_a) = run(1);
        let (b, trace_b) = run(1);
        assert_eq!(a, b);
        assert_eq!(trace_a, trace_b);
        let orders: std::collections::HashSet<Vec<usize>> = (0..20).map(|s| run(s).0).collect();
        assert!(
            orders.len() > 10,
            "seeds change the interleaving: {orders:?}"
        );
    }

    #[test]
    fn virtual_time_jumps_to_the_next_timer() {
        let sim = Sim::new(3);
        let rt = sim.runtime();
        let real = Instant::now();
        let ticks = sim.block_on(async move {
            let mut ticks = 0;
            // An hour of one-second heartbeats.
            for _ in 0..3600 {
                rt.sleep(Duration::from_secs(1)).await;
                ticks += 1;
            }
            ticks
        });
        assert_eq!(ticks, 3600);
        assert_eq!(sim.elapsed(), Duration::from_secs(3600));
        assert!(real.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_reset_timer_fires_at_its_new_deadline_only() {
        let sim = Sim::new(5);
        let rt = sim.runtime();
        sim.block_on(async move {
            let start = rt.now();
            let mut timer = rt.timer(start + Duration::from_secs(1));
            // Polled once (registered at 1 s), then moved later: the old entry must not fire it.
            assert!(futures_lite::future::poll_once(&mut timer).await.is_none());
            timer.reset(start + Duration::from_secs(5));
            (&mut timer).await;
            assert_eq!(rt.now() - start, Duration::from_secs(5));
            // Fired: ready until reset, then again at the new deadline.
            (&mut timer).await;
            timer.reset(start + Duration::from_secs(6));
            timer.await;
            assert_eq!(rt.now() - start, Duration::from_secs(6));
        });
    }

    #[test]
    fn a_deadlock_names_the_seed() {
        let sim = Sim::new(42);
        let panic = std::panic::catch_unwind(AssertUnwindSafe(|| {
            sim.block_on(futures_lite::future::pending::<()>())
        }))
        .expect_err("nothing can ever wake it");
        let message = panic.downcast_ref::<String>().expect("a message");
        assert!(
            message.contains("deadlock") && message.contains("seed 42"),
            "{message}"
        );
    }

    #[test]
    fn a_panicking_task_names_the_seed() {
        let sim = Sim::new(9);
        let rt = sim.runtime();
        let panic = std::panic::catch_unwind(AssertUnwindSafe(|| {
            sim.block_on(async move {
                rt.spawn(async { panic!("boom") });
                rt.sleep(Duration::from_secs(1)).await;
            })
        }))
        .expect_err("the task's panic fails the run");
        let message = panic.downcast_ref::<String>().expect("a message");
        assert!(
            message.contains("boom") && message.contains("seed 9"),
            "{message}"
        );
    }
}
