//! The session's write queue: handles push encoded bytes, the driver drains them.
//!
//! Bytes are numbered from the start of the session: a push learns the offsets `[start, end)`
//! of its bytes, and the driver publishes how many bytes reached the socket. A waiting write is
//! then simply "wait until `written >= end`", and a timed-out one knows how much was sent.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::Waker;

use bytes::Bytes;
use event_listener::Event;

use super::lock;
use crate::error::{Error, Result};

#[derive(Default)]
pub(crate) struct WriteQueue {
    state: Mutex<QueueState>,
    /// Bytes that reached the socket, counted from the start of the session.
    written: AtomicU64,
    /// Set once nothing more will be written (the driver stopped writing).
    dead: AtomicBool,
    /// Notified whenever `written` grows or the queue dies.
    progress: Event,
}

#[derive(Default)]
struct QueueState {
    bufs: VecDeque<Bytes>,
    /// End offset of every queued package, to count packages as they are written.
    ends: VecDeque<u64>,
    /// End offset of everything ever queued.
    enqueued: u64,
    /// No more pushes accepted.
    closed: bool,
    /// The driver's waker, woken on push and on close.
    driver: Option<Waker>,
}

impl WriteQueue {
    /// Queues `bufs` as one package; returns its `[start, end)` byte offsets.
    pub(crate) fn push<I>(&self, id: u64, bufs: I) -> Result<(u64, u64)>
    where
        I: IntoIterator<Item = Bytes>,
    {
        let mut state = lock(&self.state);
        if state.closed {
            return Err(Error::SessionClosed { id });
        }
        let start = state.enqueued;
        for buf in bufs {
            if !buf.is_empty() {
                state.enqueued += buf.len() as u64;
                state.bufs.push_back(buf);
            }
        }
        let end = state.enqueued;
        if end > start {
            state.ends.push_back(end);
        }
        let waker = state.driver.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok((start, end))
    }

    /// Moves everything queued to the driver's `bufs`/`ends` and registers `waker` to be woken
    /// by the next push or close.
    pub(crate) fn drain(
        &self,
        waker: &Waker,
        bufs: &mut VecDeque<Bytes>,
        ends: &mut VecDeque<u64>,
    ) {
        let mut state = lock(&self.state);
        match &mut state.driver {
            Some(w) if w.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
        if !state.bufs.is_empty() {
            if bufs.is_empty() {
                std::mem::swap(bufs, &mut state.bufs);
            } else {
                bufs.append(&mut state.bufs);
            }
            ends.append(&mut state.ends);
        }
    }

    /// Refuses further pushes and wakes the driver.
    pub(crate) fn close(&self) {
        let mut state = lock(&self.state);
        state.closed = true;
        let waker = state.driver.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Bytes queued but not yet handed to the driver.
    pub(crate) fn pending_bytes(&self) -> u64 {
        let state = lock(&self.state);
        state.enqueued - self.written.load(Ordering::Acquire)
    }

    /// Records `n` more bytes written (only the driver writes) and wakes waiting writers.
    pub(crate) fn advance(&self, n: usize) {
        self.written.fetch_add(n as u64, Ordering::AcqRel);
        self.progress.notify(usize::MAX);
    }

    /// Bytes written so far.
    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Declares that nothing more will be written and wakes every waiting writer.
    pub(crate) fn kill(&self) {
        self.dead.store(true, Ordering::Release);
        self.progress.notify(usize::MAX);
    }

    /// Waits until byte offset `end` was written (`Ok`) or the queue died first (`Err`).
    pub(crate) async fn wait_written(&self, end: u64) -> std::result::Result<(), ()> {
        loop {
            if self.written() >= end {
                return Ok(());
            }
            if self.dead.load(Ordering::Acquire) {
                return Err(());
            }
            let listener = self.progress.listen();
            if self.written() >= end {
                return Ok(());
            }
            if self.dead.load(Ordering::Acquire) {
                return Err(());
            }
            listener.await;
        }
    }
}
