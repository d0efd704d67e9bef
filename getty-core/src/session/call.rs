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

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::BytesMut;

use super::{lock, Session};
use crate::codec::Codec;
use crate::error::{Error, Result};

/// One waiting caller: where its reply (or the reason it will get none) goes.
type Slot<T> = async_channel::Sender<Result<T>>;

/// The calls in flight on one session.
pub(crate) struct Calls<T> {
    /// How many calls wait: the driver skips the lock when none does.
    waiting: AtomicUsize,
    state: Mutex<State<T>>,
}

struct State<T> {
    /// The id the next call gets.
    next_id: u64,
    slots: HashMap<u64, Slot<T>>,
    /// Set when the session began closing: new calls are refused.
    closed: bool,
}

impl<T> Default for Calls<T> {
    fn default() -> Self {
        Calls {
            waiting: AtomicUsize::new(0),
            state: Mutex::new(State {
                next_id: 1,
                slots: HashMap::new(),
                closed: false,
            }),
        }
    }
}

impl<T> Calls<T> {
    /// Takes a new id and its slot; `None` once the session is closing.
    fn register(&self) -> Option<(u64, async_channel::Receiver<Result<T>>)> {
        let mut state = lock(&self.state);
        if state.closed {
            return None;
        }
        let id = state.next_id;
        state.next_id += 1;
        let (sender, receiver) = async_channel::bounded(1);
        state.slots.insert(id, sender);
        self.waiting.fetch_add(1, Ordering::Release);
        Some((id, receiver))
    }

    /// Forgets call `id` (it ended: answered, timed out, or its future was dropped).
    fn forget(&self, id: u64) {
        if lock(&self.state).slots.remove(&id).is_some() {
            self.waiting.fetch_sub(1, Ordering::Release);
        }
    }

    /// Hands `reply` to the call `id` waits for; gives it back when no call waits for it.
    pub(crate) fn answer(&self, id: u64, reply: T) -> Option<T> {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return Some(reply);
        }
        let slot = lock(&self.state).slots.remove(&id);
        let Some(slot) = slot else {
            return Some(reply);
        };
        self.waiting.fetch_sub(1, Ordering::Release);
        // The slot holds one value and only this sends to it; a caller that stopped waiting
        // between the removal and now just drops the reply, as it would a late one.
        let _ = slot.try_send(Ok(reply));
        None
    }

    /// Fails every call in flight (the session `id` is closing) and refuses new ones.
    pub(crate) fn close(&self, id: u64) {
        let slots = {
            let mut state = lock(&self.state);
            state.closed = true;
            std::mem::take(&mut state.slots)
        };
        self.waiting.fetch_sub(slots.len(), Ordering::Release);
        for slot in slots.into_values() {
            let _ = slot.try_send(Err(Error::SessionClosed { id }));
        }
    }
}

/// Forgets its call when dropped: a call future dropped by its caller (a `select!`, a
/// cancelled task) leaves nothing behind.
struct Pending<'a, T> {
    calls: &'a Calls<T>,
    id: u64,
}

impl<T> Drop for Pending<'_, T> {
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
        let (id, reply) = inner
            .calls
            .register()
            .ok_or(Error::SessionClosed { id: self.id() })?;
        let _pending = Pending {
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
        // Encoded into the queue as `send` does: waits for room (within the deadline), then
        // queued past the high-water mark if another writer took the room meanwhile.
        match inner.queue.push_encoded(self.id(), false, dest, encode) {
            Ok(_) => {}
            Err(Error::WouldBlock { .. }) => {
                match self.until(deadline_at, inner.queue.wait_room()).await {
                    Some(Ok(())) => {}
                    Some(Err(())) => return Err(Error::SessionClosed { id: self.id() }),
                    None => return Err(timed_out()),
                }
                inner.queue.push_encoded(self.id(), true, dest, encode)?;
            }
            Err(err) => return Err(err),
        }
        match self.until(deadline_at, reply.recv()).await {
            Some(Ok(outcome)) => outcome,
            // The slot was dropped without an answer: only closing does that.
            Some(Err(_)) => Err(Error::SessionClosed { id: self.id() }),
            None => Err(timed_out()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_never_reused_and_late_replies_go_back() {
        let calls = Calls::<&str>::default();
        let (first, rx1) = calls.register().unwrap();
        let (second, rx2) = calls.register().unwrap();
        assert_ne!(first, second);
        // The first caller gives up: its reply, when it comes, is nobody's.
        drop(rx1);
        calls.forget(first);
        assert_eq!(calls.answer(first, "late"), Some("late"));
        assert_eq!(calls.answer(second, "on time"), None);
        assert_eq!(rx2.try_recv().unwrap().unwrap(), "on time");
        // Answered once: a duplicate reply is nobody's either.
        assert_eq!(calls.answer(second, "again"), Some("again"));
        let (third, _rx3) = calls.register().unwrap();
        assert!(third > second);
        assert_eq!(calls.waiting.load(Ordering::Acquire), 1);
    }

    #[test]
    fn closing_fails_every_call_and_refuses_new_ones() {
        let calls = Calls::<()>::default();
        let (_, rx) = calls.register().unwrap();
        calls.close(7);
        assert!(matches!(
            rx.try_recv().unwrap(),
            Err(Error::SessionClosed { id: 7 })
        ));
        assert!(calls.register().is_none());
        assert_eq!(calls.waiting.load(Ordering::Acquire), 0);
    }
}
