//! Request/response over a session: [`Session::call`] sends a request carrying a correlation id
//! and waits for the reply carrying the same id.
//!
//! The codec decides what an id looks like on the wire ([`Codec::encode_request`],
//! [`Codec::reply_id`]); the session hands out ids (a counter, never reused while the session
//! lives) and keeps one waiting slot per call in flight. The driver offers every inbound
//! package the codec calls a reply to that table before `on_message`: a reply whose caller
//! waits goes to it, any other package (a reply that came too late included) to the listener.
//! When the session starts closing, every call in flight fails at once with
//! [`Error::SessionClosed`]: no reply can arrive any more.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;

use super::{lock, Session};
use crate::codec::Codec;
use crate::error::{Error, Result};

/// One call in flight: its reply once it came, and the waker of the task awaiting it. Kept in
/// the table itself (no channel per call): a call costs one map entry.
struct Slot<T> {
    reply: Option<Result<T>>,
    waker: Option<Waker>,
}

/// The calls in flight on one session.
pub(crate) struct Calls<T> {
    /// How many calls wait for a reply: the driver skips the lock when none does.
    waiting: AtomicUsize,
    state: Mutex<State<T>>,
}

struct State<T> {
    /// The id the next call gets.
    next_id: u64,
    slots: BTreeMap<u64, Slot<T>>,
    /// Set when the session began closing: new calls are refused.
    closed: bool,
}

impl<T> Default for Calls<T> {
    fn default() -> Self {
        Calls {
            waiting: AtomicUsize::new(0),
            state: Mutex::new(State {
                next_id: 1,
                slots: BTreeMap::new(),
                closed: false,
            }),
        }
    }
}

impl<T> Calls<T> {
    /// Takes a new id with an empty slot; `None` once the session is closing.
    fn register(&self) -> Option<u64> {
        let mut state = lock(&self.state);
        if state.closed {
            return None;
        }
        let id = state.next_id;
        state.next_id += 1;
        state.slots.insert(
            id,
            Slot {
                reply: None,
                waker: None,
            },
        );
        self.waiting.fetch_add(1, Ordering::Release);
        Some(id)
    }

    /// Forgets call `id` (it ended: answered, timed out, or its future was dropped).
    fn forget(&self, id: u64) {
        let removed = lock(&self.state).slots.remove(&id);
        if removed.is_some_and(|slot| slot.reply.is_none()) {
            self.waiting.fetch_sub(1, Ordering::Release);
        }
    }

    /// Hands `reply` to the call `id` waits for; gives it back when no call waits for it (none
    /// has that id, or it was answered already).
    pub(crate) fn answer(&self, id: u64, reply: T) -> Option<T> {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return Some(reply);
        }
        let waker = {
            let mut state = lock(&self.state);
            match state.slots.get_mut(&id) {
                Some(slot) if slot.reply.is_none() => {
                    slot.reply = Some(Ok(reply));
                    self.waiting.fetch_sub(1, Ordering::Release);
                    slot.waker.take()
                }
                _ => return Some(reply),
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        None
    }

    /// Fails every call in flight (the session `id` is closing) and refuses new ones.
    pub(crate) fn close(&self, id: u64) {
        let wakers: Vec<Waker> = {
            let mut state = lock(&self.state);
            state.closed = true;
            let mut unanswered = 0;
            let wakers = state
                .slots
                .values_mut()
                .filter(|slot| slot.reply.is_none())
                .filter_map(|slot| {
                    unanswered += 1;
                    slot.reply = Some(Err(Error::SessionClosed { id }));
                    slot.waker.take()
                })
                .collect();
            self.waiting.fetch_sub(unanswered, Ordering::Release);
            wakers
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// The reply to call `id` once it is there (taking it), else registers `cx`'s waker.
    fn poll_reply(&self, id: u64, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let mut state = lock(&self.state);
        let Some(slot) = state.slots.get_mut(&id) else {
            // Removed with its reply below, and a completed future is not polled again.
            return Poll::Ready(Err(Error::SessionClosed { id: 0 }));
        };
        if slot.reply.is_none() {
            match &mut slot.waker {
                Some(waker) => waker.clone_from(cx.waker()),
                none => *none = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        // Answered: the slot goes with its reply (so `forget` finds nothing to undo).
        let reply = state.slots.remove(&id).and_then(|slot| slot.reply);
        Poll::Ready(reply.unwrap_or(Err(Error::SessionClosed { id: 0 })))
    }
}

/// The reply of one call, as a future; forgets its call when dropped, so that a call future
/// dropped by its caller (a `select!`, a cancelled task) leaves nothing behind.
struct Reply<'a, T> {
    calls: &'a Calls<T>,
    id: u64,
}

impl<T> Future for Reply<'_, T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        self.calls.poll_reply(self.id, cx)
    }
}

impl<T> Drop for Reply<'_, T> {
    fn drop(&mut self) {
        self.calls.forget(self.id);
    }
}

impl<C: Codec> Session<C> {
    /// Sends `request` and waits for its reply: the request is encoded with
    /// [`Codec::encode_request`] carrying a new correlation id, and the inbound package whose
    /// [`Codec::reply_id`] is that id is returned instead of going to `on_message`.
    ///
    /// `deadline` bounds the whole call, waiting for room in the write queue included.
    /// Errors: [`Error::CallTimeout`] when it passes (a reply arriving later goes to
    /// `on_message`, never to another call); [`Error::SessionClosed`] at once when the
    /// session closes (or is closing) before the reply; [`Error::Codec`] when the codec does
    /// not implement `encode_request` or refuses the request; [`Error::Unsupported`] on a UDP
    /// endpoint, which has no single peer to answer. Any number of calls may be in flight on
    /// one session; replies may come in any order.
    ///
    /// ```
    /// use bytes::{Buf, BufMut, Bytes, BytesMut};
    /// use getty_core::codec::{Codec, CodecError, Decoded};
    ///
    /// /// Frames: u32 length, u64 id, body. Requests and replies alike carry an id.
    /// struct Rpc;
    ///
    /// impl Codec for Rpc {
    ///     type Inbound = (u64, Bytes);
    ///     type Outbound = (u64, Bytes);
    ///
    ///     fn decode(&self, buf: &mut BytesMut) -> Result<Decoded<(u64, Bytes)>, CodecError> {
    ///         if buf.len() < 12 {
    ///             return Ok(Decoded::Incomplete(None));
    ///         }
    ///         let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
    ///         if buf.len() < 12 + len {
    ///             return Ok(Decoded::Incomplete(Some(12 + len)));
    ///         }
    ///         let mut frame = buf.split_to(12 + len);
    ///         frame.advance(4);
    ///         let id = frame.get_u64();
    ///         Ok(Decoded::Frame((id, frame.freeze())))
    ///     }
    ///
    ///     fn encode(&self, (id, body): &(u64, Bytes), dst: &mut BytesMut) -> Result<(), CodecError> {
    ///         dst.put_u32(body.len() as u32);
    ///         dst.put_u64(*id);
    ///         dst.put_slice(body);
    ///         Ok(())
    ///     }
    ///
    ///     // A request is the same frame with the id the session chose.
    ///     fn encode_request(&self, id: u64, (_, body): &(u64, Bytes), dst: &mut BytesMut)
    ///         -> Result<(), CodecError> {
    ///         self.encode(&(id, body.clone()), dst)
    ///     }
    ///
    ///     // Every inbound frame on the calling side is a reply.
    ///     fn reply_id(&self, (id, _): &(u64, Bytes)) -> Option<u64> {
    ///         Some(*id)
    ///     }
    /// }
    ///
    /// # async fn f(session: getty_core::Session<Rpc>) -> getty_core::Result<()> {
    /// let (_, reply) = session
    ///     .call(&(0, Bytes::from_static(b"ping")), std::time::Duration::from_secs(1))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn call(&self, request: &C::Outbound, deadline: Duration) -> Result<C::Inbound> {
        let inner = self.inner();
        let dest = self.dest(None)?;
        let id = inner
            .calls
            .register()
            .ok_or(Error::SessionClosed { id: self.id() })?;
        let reply = Reply {
            calls: &inner.calls,
            id,
        };
        let deadline_at = inner.rt.now().checked_add(deadline);
        let timed_out = || Error::CallTimeout {
            id: self.id(),
            timeout: deadline,
        };
        let codec = &inner.codec;
        let encode = |dst: &mut BytesMut| codec.encode_request(id, request, dst);
        // Encoded into the queue as `send` does (as the message kind the codec says, on
        // WebSocket): waits for room (within the deadline), then queued past the high-water
        // mark if another writer took the room meanwhile.
        match self.push_encoded_pkg(request, false, dest, encode) {
            Ok(_) => {}
            Err(Error::WouldBlock { .. }) => {
                match self.until(deadline_at, inner.queue.wait_room()).await {
                    Some(Ok(())) => {}
                    Some(Err(())) => return Err(Error::SessionClosed { id: self.id() }),
                    None => return Err(timed_out()),
                }
                self.push_encoded_pkg(request, true, dest, encode)?;
            }
            Err(err) => return Err(err),
        }
        match self.until(deadline_at, reply).await {
            Some(Err(Error::SessionClosed { .. })) => Err(Error::SessionClosed { id: self.id() }),
            Some(outcome) => outcome,
            None => Err(timed_out()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Noop;
    impl std::task::Wake for Noop {
        fn wake(self: std::sync::Arc<Self>) {}
    }

    fn poll<T>(calls: &Calls<T>, id: u64) -> Poll<Result<T>> {
        let waker = Waker::from(std::sync::Arc::new(Noop));
        calls.poll_reply(id, &mut Context::from_waker(&waker))
    }

    #[test]
    fn ids_are_never_reused_and_late_replies_go_back() {
        let calls = Calls::<&str>::default();
        let first = calls.register().unwrap();
        let second = calls.register().unwrap();
        assert_ne!(first, second);
        assert!(poll(&calls, second).is_pending());
        // The first caller gives up: its reply, when it comes, is nobody's.
        calls.forget(first);
        assert_eq!(calls.answer(first, "late"), Some("late"));
        assert_eq!(calls.answer(second, "on time"), None);
        // Answered once: a duplicate reply is nobody's either.
        assert_eq!(calls.answer(second, "again"), Some("again"));
        assert!(matches!(poll(&calls, second), Poll::Ready(Ok("on time"))));
        calls.forget(second);
        let third = calls.register().unwrap();
        assert!(third > second);
        assert_eq!(calls.waiting.load(Ordering::Acquire), 1);
        calls.forget(third);
        assert_eq!(calls.waiting.load(Ordering::Acquire), 0);
        assert!(lock(&calls.state).slots.is_empty(), "nothing left behind");
    }

    #[test]
    fn closing_fails_every_call_and_refuses_new_ones() {
        let calls = Calls::<()>::default();
        let answered = calls.register().unwrap();
        let waiting = calls.register().unwrap();
        assert_eq!(calls.answer(answered, ()), None);
        calls.close(7);
        assert!(matches!(poll(&calls, answered), Poll::Ready(Ok(()))));
        assert!(matches!(
            poll(&calls, waiting),
            Poll::Ready(Err(Error::SessionClosed { id: 7 }))
        ));
        assert!(calls.register().is_none());
        assert_eq!(calls.waiting.load(Ordering::Acquire), 0);
    }
}
