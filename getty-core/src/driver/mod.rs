//! Drivers: the session state machines, written once for every runtime.
//!
//! A driver is one task per session. It owns the socket and polls, together, the read side
//! (bytes → codec → handler), the write queue, the cron timer, and the close request. While a
//! handler is pending the driver keeps writing, so a handler that awaits its own `send_and_flush`
//! cannot deadlock the session.
//!
//! Two transports, one life cycle: [`stream`] reads a byte stream (TCP, later TLS) and writes
//! the queue as vectored writes; [`datagram`] reads and writes one datagram per package (UDP).
//! What they share lives here: opening (`on_open`), running a handler while the write side
//! moves ([`pump_while`]), the cron and read-timeout timers ([`Timers`]), and the close
//! sequence ([`close`]).

pub(crate) mod datagram;
#[cfg(feature = "ws")]
pub(crate) mod message;
pub(crate) mod stream;

use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use futures_lite::future::poll_fn;
use futures_lite::FutureExt;

use crate::codec::{Codec, CodecError, Decoded};
use crate::error::Error;
use crate::listener::{invoke, Call, EventListener};
use crate::panic::panic_message;
use crate::pool::{Jobs, Lane, TaskPool};
use crate::runtime::{timeout_at, BoxFuture, Runtime, Timer};
use crate::session::{CloseReason, Session};

/// Runs one call of the user's codec: a panic becomes [`Error::HandlerPanic`] (the caller
/// closes its session, or drops its datagram, as for a handler's), a codec error the read
/// error it is.
// Runs once per frame: inlined into each driver's decode loop, as the code it replaced was.
#[inline(always)]
pub(crate) fn guarded_decode<T>(
    decode: impl FnOnce() -> Result<Decoded<T>, CodecError>,
) -> Result<Decoded<T>, Error> {
    std::panic::catch_unwind(AssertUnwindSafe(decode))
        .map_err(|payload| handler_panic("decode", payload))?
        .map_err(Error::decoding)
}

/// Runs a user handler (`make` makes its future), turning a panic into
/// [`Error::HandlerPanic`].
pub(crate) async fn catch_handler<F: Future>(
    handler: &'static str,
    make: impl FnOnce() -> F,
) -> Result<F::Output, Error> {
    AssertUnwindSafe(start_handler(handler, make)?)
        .catch_unwind()
        .await
        .map_err(|payload| handler_panic(handler, payload))
}

/// The error a panic in user code (`handler`: which one) becomes.
fn handler_panic(handler: &'static str, payload: Box<dyn std::any::Any + Send>) -> Error {
    Error::HandlerPanic {
        handler,
        message: panic_message(payload.as_ref()),
    }
}

/// Makes a handler's future. A hand-written handler (a plain `fn` returning a future) runs
/// user code as it does: a panic there becomes [`Error::HandlerPanic`] of `handler`, as one
/// while the future is polled does.
pub(crate) fn start_handler<F>(
    handler: &'static str,
    make: impl FnOnce() -> F,
) -> Result<F, Error> {
    std::panic::catch_unwind(AssertUnwindSafe(make))
        .map_err(|payload| handler_panic(handler, payload))
}

/// A driver's socket side, as the shared parts of the life cycle need it.
pub(crate) trait DriverIo {
    /// Writes everything queued. `Ready(Ok)` once the queue is empty; the waker is then
    /// registered for the next push or close request.
    fn poll_drain<C: Codec>(
        &mut self,
        cx: &mut Context<'_>,
        session: &Session<C>,
    ) -> Poll<Result<(), Error>>;

    /// Keeps a write error seen while a handler ran, for the event loop to report.
    fn set_write_error(&mut self, err: Error);

    /// The write error kept by [`set_write_error`](Self::set_write_error), once.
    fn take_write_error(&mut self) -> Option<Error>;

    /// Whether writing has failed for good (closing then flushes nothing).
    fn write_dead(&self) -> bool;

    /// Says why the session closes, for transports that tell the peer (WebSocket); called
    /// before [`poll_shutdown`](Self::poll_shutdown).
    fn set_close_reason(&mut self, reason: CloseReason) {
        let _ = reason;
    }

    /// Ends the transport once flushed (a stream's FIN; nothing for datagrams).
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Packages taken from the queue whose last byte was not written.
    fn unsent_packages(&self) -> usize;
}

/// What every driver holds, whatever its transport: the runtime, its side of the socket, the
/// session, its listener and its timers.
pub(crate) struct Core<R: Runtime, C: Codec, L, I> {
    pub(crate) rt: R,
    pub(crate) io: I,
    pub(crate) session: Session<C>,
    pub(crate) listener: Arc<L>,
    pub(crate) timers: Timers<R>,
    /// Where handlers run when not on this task.
    pool: Option<Arc<TaskPool>>,
    /// This session's handlers on the pool.
    jobs: Arc<Jobs>,
    /// Where this session's handlers wait on the pool.
    lane: Option<Arc<Lane>>,
}

impl<R: Runtime, C: Codec, L: EventListener<C>, I: DriverIo> Core<R, C, L, I> {
    /// Runs the handler `call` names: on the task pool when there is one (waiting, with
    /// writes moving, while the session's queue there is full), otherwise here, before the
    /// next event (statically dispatched, neither the listener nor the session cloned).
    pub(crate) async fn dispatch(&mut self, call: Call<C::Inbound>) -> Result<Option<()>, Error> {
        match call {
            Call::Message(pkg) => {
                let pkg = self.answer(pkg);
                self.on_message(pkg).await
            }
            Call::Datagram(pkg, from) => {
                // On a UDP endpoint nobody waits for a reply: every one passes.
                let Some(pkg) = self.answer(pkg) else {
                    return Ok(Some(()));
                };
                if let Some(pool) = self.pool_or_here() {
                    let call = Call::Datagram(pkg, from);
                    return Box::pin(self.dispatch_to_pool(pool, call)).await;
                }
                let (rt, io, session) = (&self.rt, &mut self.io, &self.session);
                let listener = self.listener.as_ref();
                let future =
                    start_handler("on_datagram", || listener.on_datagram(session, pkg, from))?;
                pump_while(rt, io, session, "on_datagram", pin!(future)).await
            }
            Call::Cron => {
                if let Some(pool) = self.pool_or_here() {
                    return Box::pin(self.dispatch_to_pool(pool, Call::Cron)).await;
                }
                let (rt, io, session) = (&self.rt, &mut self.io, &self.session);
                let listener = self.listener.as_ref();
                let future = start_handler("on_cron", || listener.on_cron(session))?;
                pump_while(rt, io, session, "on_cron", pin!(future)).await
            }
        }
    }

    /// [`dispatch`](Self::dispatch) of one package for `on_message`: the per-package path of
    /// streams and WebSocket, without [`Call`] around the package. `None`: the package was a
    /// reply a `Session::call` took ([`received`](Self::received)); nothing to run.
    pub(crate) async fn on_message(
        &mut self,
        pkg: Option<C::Inbound>,
    ) -> Result<Option<()>, Error> {
        let Some(pkg) = pkg else {
            return Ok(Some(()));
        };
        if let Some(pool) = self.pool_or_here() {
            // Boxed: the pool's states would otherwise make every inline dispatch, the hot
            // path, a larger future to build and move (a bench A/B showed it).
            return Box::pin(self.dispatch_to_pool(pool, Call::Message(pkg))).await;
        }
        let (rt, io, session) = (&self.rt, &mut self.io, &self.session);
        let listener = self.listener.as_ref();
        // Pinned here, not behind a generic `invoke`: one async layer less per package.
        let future = start_handler("on_message", || listener.on_message(session, pkg))?;
        pump_while(rt, io, session, "on_message", pin!(future)).await
    }

    /// The task pool a handler runs on, if any; `None`: it runs here, on the driver's task,
    /// which is then readied for it.
    fn pool_or_here(&self) -> Option<Arc<TaskPool>> {
        if let Some(pool) = &self.pool {
            return Some(pool.clone());
        }
        // The driver drains the queue right after the handler: replies it queues need no
        // wake-up (which would cost a spurious poll and read).
        self.session.inner().queue.unregister_driver();
        None
    }

    /// Hands `pkg` to the call waiting for it, if it is a reply one waits for; else gives it
    /// back for the listener.
    fn answer(&self, pkg: C::Inbound) -> Option<C::Inbound> {
        match self.session.codec().reply_id(&pkg) {
            None => Some(pkg),
            Some(id) => self.session.inner().calls.answer(id, pkg),
        }
    }

    /// [`dispatch`](Self::dispatch) with a task pool.
    async fn dispatch_to_pool(
        &mut self,
        pool: Arc<TaskPool>,
        call: Call<C::Inbound>,
    ) -> Result<Option<()>, Error> {
        let handler = call.name();
        let (listener, owner) = (self.listener.clone(), self.session.clone());
        let future = async move { invoke(listener.as_ref(), &owner, call).await };
        let mut done = JobDone {
            jobs: self.jobs.clone(),
            failure: None,
        };
        done.jobs.started();
        let session = self.session.clone();
        let jobs = self.jobs.clone();
        let job: BoxFuture<()> = Box::pin(async move {
            // Cancellation first: a job cancelled before it starts never runs its handler.
            let cancelled = async {
                jobs.cancelled().await;
                None
            };
            let run = async { catch_handler(handler, || future).await.err() };
            if let Some(err) = futures_lite::future::or(cancelled, run).await {
                log::error!("session {}: {err}", session.id());
                done.failure = Some(err);
                session.close();
            }
            drop(done);
        });
        let (rt, io, session) = (&self.rt, &mut self.io, &self.session);
        let lane = self.lane.get_or_insert_with(|| pool.lane()).clone();
        let submit = pin!(pool.submit(&lane, job));
        match pump_while(rt, io, session, "a full task pool queue", submit).await? {
            Some(Ok(())) => Ok(Some(())),
            // The pool stopped (its endpoint is closing): run the handler here.
            Some(Err(mut job)) => pump_while(rt, io, session, handler, job.as_mut()).await,
            None => Ok(None),
        }
    }
}

impl<R: Runtime, C: Codec, L: EventListener<C>, I: DriverIo> Core<R, C, L, I> {
    /// [`deliver`](Self::deliver) for a package of a session with one peer (WebSocket):
    /// straight to `on_message`, or to the call waiting for it.
    #[cfg(feature = "ws")]
    pub(crate) fn deliver_message(
        &mut self,
        at: Instant,
        pkg: C::Inbound,
    ) -> impl Future<Output = Result<Option<()>, Error>> + '_ {
        let pkg = self.received(at, pkg);
        self.on_message(pkg)
    }

    /// A package for `on_message` arrived at `at`: it is counted and the session's activity
    /// time set. `None` when it was the reply a `Session::call` waits for (handed to it);
    /// otherwise the package, for the listener.
    pub(crate) fn received(&mut self, at: Instant, pkg: C::Inbound) -> Option<C::Inbound> {
        self.session.touch(at);
        self.session.inner().stats.add_pkgs_read(1);
        self.answer(pkg)
    }

    /// Hands a package that arrived at `at` to its handler (see [`dispatch`](Self::dispatch)):
    /// the session's activity time and statistics count it first.
    pub(crate) fn deliver(
        &mut self,
        at: Instant,
        call: Call<C::Inbound>,
    ) -> impl Future<Output = Result<Option<()>, Error>> + '_ {
        // Counted now, and no async layer of its own around `dispatch`'s future.
        self.session.touch(at);
        self.session.inner().stats.add_pkgs_read(1);
        self.dispatch(call)
    }

    /// The event loop ends with `err`: for a read or idle timeout the listener's `on_timeout`
    /// runs first (bounded by the close-wait), while writes are still taken, so a last message
    /// it queues is flushed by the close that follows.
    pub(crate) async fn failing(&mut self, err: Error) -> Error {
        if matches!(err, Error::ReadTimeout(_) | Error::IdleTimeout(_)) {
            let deadline = self.rt.now() + self.session.close_wait();
            let (rt, io, session) = (&self.rt, &mut self.io, &self.session);
            let listener = self.listener.as_ref();
            let ran = match start_handler("on_timeout", || listener.on_timeout(session, &err)) {
                Ok(future) => {
                    let future = pin!(future);
                    let run = pump_while(rt, io, session, "on_timeout", future);
                    timeout_at(rt, deadline, run).await
                }
                Err(panic) => Ok(Err(panic)),
            };
            match ran {
                Ok(Ok(_)) => {}
                Ok(Err(panic)) => log::error!("session {}: {panic}", self.session.id()),
                Err(_) => log::warn!(
                    "session {}: on_timeout cancelled after the close-wait",
                    self.session.id()
                ),
            }
        }
        err
    }

    /// The start of every driver's poll: a write error seen while a handler ran, or a close
    /// request, ends the event loop.
    pub(crate) fn poll_start<P>(&mut self) -> Option<Event<P>> {
        if let Some(err) = self.io.take_write_error() {
            return Some(Event::Failed(err));
        }
        self.session.is_closing().then_some(Event::CloseRequested)
    }

    /// The part of every driver's poll between handing out decoded packages and reading
    /// more: write what is queued (which also registers for pushes and close requests), see a
    /// close request, yield once `budget` is spent, then the cron and read-timeout timers.
    /// `Ready(None)`: nothing happened, go on and read.
    pub(crate) fn poll_turn<P>(
        &mut self,
        budget: &mut u32,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Event<P>>> {
        if let Poll::Ready(Err(err)) = self.io.poll_drain(cx, &self.session) {
            return Poll::Ready(Some(Event::Failed(err)));
        }
        // Checked again now that the waker is registered: a close requested before the
        // registration found no waker to wake, and must be seen here.
        if self.session.is_closing() {
            return Poll::Ready(Some(Event::CloseRequested));
        }
        if *budget == 0 {
            *budget = YIELD_BUDGET;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if self.timers.poll_cron(&self.rt, cx).is_ready() {
            return Poll::Ready(Some(Event::Cron));
        }
        if let Poll::Ready(err) = self.timers.poll_read_timeout(&self.rt, &self.session, cx) {
            return Poll::Ready(Some(Event::Failed(err)));
        }
        if let Poll::Ready(err) = self.timers.poll_idle_timeout(&self.rt, &self.session, cx) {
            return Poll::Ready(Some(Event::Failed(err)));
        }
        Poll::Ready(None)
    }

    /// A handler starts: what to pass to [`handler_done`](Self::handler_done).
    pub(crate) fn handler_start(&self) -> Option<Instant> {
        self.timers.handler_start(&self.rt)
    }

    /// A handler that started at `started` returned (see [`Timers::handler_done`]).
    pub(crate) fn handler_done(&mut self, started: Option<Instant>) {
        self.timers.handler_done(&self.rt, &self.session, started);
    }
}

/// Counts a pool job as finished when it ends or is dropped unrun (a cancelled submit).
struct JobDone {
    jobs: Arc<Jobs>,
    failure: Option<Error>,
}

impl Drop for JobDone {
    fn drop(&mut self) {
        self.jobs.finished(self.failure.take());
    }
}

/// A transport's event loop, run by [`run_session`].
pub(crate) trait Serve<R: Runtime, C: Codec, L, I> {
    /// The shared parts.
    fn core(&mut self) -> &mut Core<R, C, L, I>;
    /// Handles events until the session ends; returns why (`None`: a clean end).
    fn serve(&mut self) -> impl Future<Output = Option<Error>> + Send;
}

/// One session's whole life, the same for every transport: `on_open` (a refusal ends it
/// there), the event loop of the driver `make` builds, then the close sequence.
///
/// The driver is built before the future, and moved into it: the session's task then holds
/// it once. (An `async fn` keeps its arguments for its whole life, beside what it builds
/// from them: an idle session is mostly its task.)
pub(crate) fn run_session<R, C, L, I, D>(
    rt: R,
    io: I,
    session: Session<C>,
    listener: Arc<L>,
    pool: Option<Arc<TaskPool>>,
    on_established: impl FnOnce(),
    make: impl FnOnce(Core<R, C, L, I>) -> D,
) -> impl Future<Output = ()>
where
    R: Runtime,
    C: Codec,
    L: EventListener<C>,
    I: DriverIo,
    D: Serve<R, C, L, I>,
{
    let timers = Timers::new(&rt, &session);
    let mut driver = make(Core {
        rt,
        io,
        session,
        listener,
        timers,
        pool,
        jobs: Arc::default(),
        lane: None,
    });
    async move {
        // The opening and the closing run once: boxed, their futures take no room in the
        // session's task for its whole life.
        let core = driver.core();
        let listener = core.listener.as_ref();
        if !Box::pin(open(&core.rt, &mut core.io, &core.session, listener)).await {
            return;
        }
        on_established();
        // The timers count from the end of `on_open`, however long it took.
        let core = driver.core();
        core.timers.restart(&core.rt, &core.session);
        let reason = driver.serve().await;
        Box::pin(finish(driver.core(), reason)).await;
    }
}

/// After the event loop: handlers still on the pool, then the close sequence.
async fn finish<R, C, L, I>(core: &mut Core<R, C, L, I>, mut reason: Option<Error>)
where
    R: Runtime,
    C: Codec,
    L: EventListener<C>,
    I: DriverIo,
{
    // Handlers still running on the pool finish first (writes moving, within the close-wait),
    // so that `on_close` stays last; a panic among them is the reason. Those still running
    // after the close-wait are cancelled, as a handler on the session's task would be: a
    // stuck handler must hold up neither the close nor its pool worker.
    let jobs = core.jobs.clone();
    let (rt, io, session) = (&core.rt, &mut core.io, &core.session);
    let deadline = rt.now() + session.close_wait();
    let idle = pin!(timeout_at(rt, deadline, jobs.idle()));
    let _ = pump_while(rt, io, session, "pool handlers", idle).await;
    if jobs.running() > 0 {
        log::warn!(
            "session {}: pool handlers still running after the close-wait; cancelled",
            session.id()
        );
        jobs.cancel();
        if let (Some(pool), Some(lane)) = (&core.pool, &core.lane) {
            pool.drop_queued(lane);
        }
        jobs.idle().await;
    }
    if reason.is_none() {
        reason = jobs.take_failure();
    }
    close(
        &core.rt,
        &mut core.io,
        &core.session,
        core.listener.as_ref(),
        reason,
    )
    .await;
}

/// Runs `on_open`. True if the session was accepted (it is then marked established); otherwise
/// the session is shut down and closed without `on_error` or `on_close`.
pub(crate) async fn open<R, C, L, I>(rt: &R, io: &mut I, session: &Session<C>, listener: &L) -> bool
where
    R: Runtime,
    C: Codec,
    L: EventListener<C>,
    I: DriverIo,
{
    let opened = match start_handler("on_open", || listener.on_open(session)) {
        Ok(future) => pump_while(rt, io, session, "on_open", pin!(future)).await,
        Err(panic) => Err(panic),
    };
    match opened {
        Ok(Some(Ok(()))) => {
            log::debug!("session {} open", session.id());
            session.mark_established();
            return true;
        }
        Ok(Some(Err(reason))) => {
            log::info!("session {} refused by on_open: {reason}", session.id());
        }
        Ok(None) => log::info!("session {} closed while on_open was running", session.id()),
        Err(panic) => log::error!("session {} refused: {panic}", session.id()),
    }
    session.begin_closing();
    let deadline = rt.now() + session.close_wait();
    let _ = timeout_at(rt, deadline, poll_fn(|cx| io.poll_shutdown(cx))).await;
    session.finish_closed();
    false
}

/// Runs a handler while keeping the write side moving, so that a handler awaiting its own
/// writes cannot deadlock the session.
///
/// Returns `Ok(Some(output))`, `Ok(None)` when the session was asked to close and the handler
/// was still running after the close-wait (it is then dropped), or the handler's panic.
///
/// The handler comes pinned by the caller: held once, in the caller's future. (Taken by value,
/// an `async fn` keeps it twice, as its argument and inside what it awaits, and every layer
/// doubles again: that was most of a session task's size.)
pub(crate) async fn pump_while<R, C, I, F>(
    rt: &R,
    io: &mut I,
    session: &Session<C>,
    handler: &'static str,
    mut future: Pin<&mut F>,
) -> Result<Option<F::Output>, Error>
where
    R: Runtime,
    C: Codec,
    I: DriverIo,
    F: Future + ?Sized,
{
    let mut run = HandlerRun::new(handler);
    poll_fn(|cx| run.poll(rt, io, session, future.as_mut(), cx)).await
}

/// What polling a handler on the driver's task takes besides the handler itself: the write
/// side, and the close-wait once the session is closing (see [`pump_while`], which is this in
/// a future; the stream driver polls it inline).
pub(crate) struct HandlerRun<R: Runtime> {
    handler: &'static str,
    /// Boxed: armed only once the session is closing, and otherwise no room in every handler
    /// call's future.
    close_timer: Option<(Box<R::Timer>, Instant)>,
}

impl<R: Runtime> HandlerRun<R> {
    /// A run of the handler named `handler` (for logs and panics).
    pub(crate) fn new(handler: &'static str) -> Self {
        HandlerRun {
            handler,
            close_timer: None,
        }
    }

    /// Polls `future`, and while it is pending writes what is queued and watches the
    /// close-wait. `Ready` as [`pump_while`] returns.
    pub(crate) fn poll<C, I, F>(
        &mut self,
        rt: &R,
        io: &mut I,
        session: &Session<C>,
        future: Pin<&mut F>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<F::Output>, Error>>
    where
        C: Codec,
        I: DriverIo,
        F: Future + ?Sized,
    {
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Ready(out)) => return Poll::Ready(Ok(Some(out))),
            Ok(Poll::Pending) => {}
            Err(payload) => return Poll::Ready(Err(handler_panic(self.handler, payload))),
        }
        if let Poll::Ready(Err(err)) = io.poll_drain(cx, session) {
            io.set_write_error(err);
        }
        if session.is_closing() {
            let (timer, deadline) = self.close_timer.get_or_insert_with(|| {
                let deadline = rt.now() + session.close_wait();
                (Box::new(rt.timer(deadline)), deadline)
            });
            if Pin::new(&mut **timer).poll(cx).is_ready() && rt.now() >= *deadline {
                log::warn!(
                    "session {}: {} still running after the close-wait; cancelled",
                    session.id(),
                    self.handler
                );
                return Poll::Ready(Ok(None));
            }
        }
        Poll::Pending
    }
}

/// The close sequence: stop reading, flush within the close-wait, shut down, then `on_error`
/// (if `reason`) and `on_close`, each bounded by the close-wait too.
pub(crate) async fn close<R, C, L, I>(
    rt: &R,
    io: &mut I,
    session: &Session<C>,
    listener: &L,
    reason: Option<Error>,
) where
    R: Runtime,
    C: Codec,
    L: EventListener<C>,
    I: DriverIo,
{
    session.begin_closing();
    let deadline = rt.now() + session.close_wait();
    let mut reason = reason;
    let told = session
        .close_reason()
        .or_else(|| reason.as_ref().map(CloseReason::for_error))
        .unwrap_or_else(CloseReason::normal);
    session.settle_close_reason(&told);
    io.set_close_reason(told);
    if !io.write_dead() {
        let flushed = timeout_at(rt, deadline, poll_fn(|cx| io.poll_drain(cx, session)));
        match flushed.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                log::debug!("session {}: flush on close failed: {err}", session.id());
                reason.get_or_insert(err);
            }
            Err(_elapsed) => log::warn!(
                "session {}: close-wait of {:?} passed with {} bytes unsent; they are dropped",
                session.id(),
                session.close_wait(),
                session.inner().queue.queued()
            ),
        }
        let _ = timeout_at(rt, deadline, poll_fn(|cx| io.poll_shutdown(cx))).await;
    }
    session.inner().queue.kill();
    // Nothing is dropped silently: what never fully reached the socket is counted.
    let unsent = io.unsent_packages() as u64 + session.inner().queue.discard();
    if unsent > 0 {
        session.inner().stats.add_pkgs_unsent(unsent);
        log::warn!("session {}: {unsent} packages not sent", session.id());
    }

    let handler_deadline = rt.now() + session.close_wait();
    if let Some(err) = &reason {
        log::info!("session {} failed: {err}", session.id());
        let on_error = catch_handler("on_error", || listener.on_error(session, err));
        match timeout_at(rt, handler_deadline, on_error).await {
            Ok(Ok(())) => {}
            Ok(Err(panic)) => log::error!("session {}: {panic}", session.id()),
            Err(_) => log::warn!(
                "session {}: on_error cancelled after the close-wait",
                session.id()
            ),
        }
    }
    let handler_deadline = handler_deadline.max(rt.now() + session.close_wait());
    let on_close = catch_handler("on_close", || listener.on_close(session));
    match timeout_at(rt, handler_deadline, on_close).await {
        Ok(Ok(())) => {}
        Ok(Err(panic)) => log::error!("session {}: {panic}", session.id()),
        Err(_) => log::warn!(
            "session {}: on_close cancelled after the close-wait",
            session.id()
        ),
    }
    log::debug!("closed: {session}");
    session.finish_closed();
}

/// Packages and reads handled in a row before a driver yields to its executor, so a flooding
/// peer cannot starve other sessions on executors without a cooperative budget.
pub(crate) const YIELD_BUDGET: u32 = 64;

/// What woke a driver's event loop.
pub(crate) enum Event<P> {
    /// A package (for datagrams, with its sender).
    Message(P),
    Cron,
    /// `close()` was called.
    CloseRequested,
    /// The peer ended the stream cleanly, between frames.
    Eof,
    Failed(Error),
}

/// Runs `on_cron` (see [`Core::dispatch`]) and schedules the next tick.
pub(crate) async fn cron<R, C, L, I>(core: &mut Core<R, C, L, I>) -> Result<Option<()>, Error>
where
    R: Runtime,
    C: Codec,
    L: EventListener<C>,
    I: DriverIo,
{
    let outcome = core.dispatch(Call::Cron).await;
    core.timers.rearm_cron(&core.rt, &core.session);
    outcome
}

/// A session's two timers: the cron tick, and the read timeout (armed only while one is set).
/// Neither polls: each is one runtime timer, moved rather than re-created.
pub(crate) struct Timers<R: Runtime> {
    cron: R::Timer,
    cron_deadline: Instant,
    /// Present while a read timeout is set.
    read_timer: Option<R::Timer>,
    /// Since when the session has been waiting for the peer (for the read timeout).
    waiting_since: Instant,
    /// Present while an idle timeout is set.
    idle_timer: Option<R::Timer>,
    /// Since when the session has been waiting for a package, unless the session's last
    /// package is later (for the idle timeout).
    idle_since: Instant,
}

impl<R: Runtime> Timers<R> {
    pub(crate) fn new<C: Codec>(rt: &R, session: &Session<C>) -> Self {
        let now = rt.now();
        let cron_deadline = now + session.cron_period();
        Timers {
            cron: rt.timer(cron_deadline),
            cron_deadline,
            read_timer: None,
            waiting_since: now,
            idle_timer: None,
            idle_since: now,
        }
    }

    /// Starts every wait over from now: the session begins (after `on_open`).
    pub(crate) fn restart<C: Codec>(&mut self, rt: &R, session: &Session<C>) {
        self.rearm_cron(rt, session);
        let now = rt.now();
        self.waiting_since = now;
        self.idle_since = now;
    }

    /// Ready when the cron tick is due.
    pub(crate) fn poll_cron(&mut self, rt: &R, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            ready!(Pin::new(&mut self.cron).poll(cx));
            // A timer may fire late, never early; still, trust the clock over the timer.
            if rt.now() >= self.cron_deadline {
                return Poll::Ready(());
            }
            self.cron.reset(self.cron_deadline);
        }
    }

    /// Schedules the next cron tick one period from now (after `on_cron` ran).
    pub(crate) fn rearm_cron<C: Codec>(&mut self, rt: &R, session: &Session<C>) {
        self.cron_deadline = rt.now() + session.cron_period();
        self.cron.reset(self.cron_deadline);
    }

    /// Bytes arrived (or a handler finished) at `now`: the wait for the peer restarts.
    pub(crate) fn waiting_from(&mut self, now: Instant) {
        self.waiting_since = now;
    }

    /// When a handler starts: the time to pass to [`handler_done`](Self::handler_done), if a
    /// read or idle timeout is armed (no clock read otherwise).
    pub(crate) fn handler_start(&self, rt: &R) -> Option<Instant> {
        let armed = self.read_timer.is_some() || self.idle_timer.is_some();
        armed.then(|| rt.now())
    }

    /// A handler that started at `started` returned: the time it ran was not the peer's
    /// silence, so the waits for the peer are extended by that long (not restarted: a cron
    /// tick more frequent than a timeout must not keep a silent peer alive).
    pub(crate) fn handler_done<C: Codec>(
        &mut self,
        rt: &R,
        session: &Session<C>,
        started: Option<Instant>,
    ) {
        if let Some(started) = started {
            let now = rt.now();
            let ran = now - started;
            self.waiting_since = (self.waiting_since + ran).min(now);
            self.idle_since = (self.idle_since.max(session.last_active()) + ran).min(now);
        }
    }

    /// Ready with [`Error::IdleTimeout`] once no package has arrived for the idle timeout
    /// (bytes that complete no package do not count).
    pub(crate) fn poll_idle_timeout<C: Codec>(
        &mut self,
        rt: &R,
        session: &Session<C>,
        cx: &mut Context<'_>,
    ) -> Poll<Error> {
        let Some(timeout) = session.idle_timeout() else {
            self.idle_timer = None;
            return Poll::Pending;
        };
        if self.idle_timer.is_none() {
            // The wait starts when the timeout is set (or the session opens).
            self.idle_since = rt.now();
        }
        loop {
            let deadline = self.idle_since.max(session.last_active()) + timeout;
            let timer = self.idle_timer.get_or_insert_with(|| rt.timer(deadline));
            ready!(Pin::new(&mut *timer).poll(cx));
            let deadline = self.idle_since.max(session.last_active()) + timeout;
            if rt.now() >= deadline {
                return Poll::Ready(Error::IdleTimeout(timeout));
            }
            // Packages arrived since the timer was armed: move it.
            timer.reset(deadline);
        }
    }

    /// Ready with [`Error::ReadTimeout`] once the peer has been silent for the read timeout.
    pub(crate) fn poll_read_timeout<C: Codec>(
        &mut self,
        rt: &R,
        session: &Session<C>,
        cx: &mut Context<'_>,
    ) -> Poll<Error> {
        let Some(timeout) = session.read_timeout() else {
            self.read_timer = None;
            return Poll::Pending;
        };
        if self.read_timer.is_none() {
            // Handlers only keep `waiting_since` current while a timer exists.
            self.waiting_since = rt.now();
        }
        let deadline = self.waiting_since + timeout;
        let timer = self.read_timer.get_or_insert_with(|| rt.timer(deadline));
        loop {
            ready!(Pin::new(&mut *timer).poll(cx));
            let deadline = self.waiting_since + timeout;
            if rt.now() >= deadline {
                return Poll::Ready(Error::ReadTimeout(timeout));
            }
            // Data arrived since the timer was armed: move it instead of re-arming per read.
            timer.reset(deadline);
        }
    }
}
