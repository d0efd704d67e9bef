//! Session groups: a set of sessions that leave it by themselves when they close, with
//! broadcast that never waits on one slow member.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::{lock, Frame, Session};
use crate::codec::Codec;
use crate::error::Error;

static NEXT_GROUP_ID: AtomicU64 = AtomicU64::new(1);

/// What a broadcast does with a member whose write queue is full (it reads slower than the
/// group writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SlowMember {
    /// The member misses this message (counted in [`Broadcast::skipped`]); it stays in the
    /// group and gets the next ones once its queue has room. The default.
    #[default]
    Skip,
    /// The member is closed and leaves the group (counted in [`Broadcast::dropped`]): for
    /// streams where a missed message would leave the member in a wrong state.
    Close,
}

/// What one broadcast did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Broadcast {
    /// Members the message was queued for.
    pub sent: usize,
    /// Members that missed it because their write queue was full ([`SlowMember::Skip`]).
    pub skipped: usize,
    /// Members closed because their write queue was full ([`SlowMember::Close`]).
    pub dropped: usize,
    /// Members that were closing or closed (they leave the group).
    pub closed: usize,
    /// Members whose write failed otherwise (a package their transport or codec refused).
    pub failed: usize,
}

/// A set of sessions, typically "everyone in this room": add a session once (in `on_open`),
/// and it leaves the group by itself when it closes. [`broadcast`](Self::broadcast) queues a
/// message for every member without waiting: a member whose queue is full is handled by the
/// group's [`SlowMember`] policy and counted, so one slow reader never holds up the others.
///
/// Cloning is cheap (an `Arc` inside); every clone is the same group. Iterating takes a
/// snapshot that is rebuilt only after the membership changed, so [`members`](Self::members)
/// and broadcasts allocate nothing while it is stable.
///
/// ```
/// use getty_core::codec::Lines;
/// use getty_core::session::{SessionGroup, SlowMember};
/// use getty_core::{EventListener, Session};
///
/// struct Chat {
///     room: SessionGroup<Lines>,
/// }
///
/// impl EventListener<Lines> for Chat {
///     async fn on_open(&self, session: &Session<Lines>) -> Result<(), getty_core::BoxError> {
///         self.room.insert(session);
///         Ok(())
///     }
///
///     async fn on_message(&self, session: &Session<Lines>, line: String) {
///         // Everyone else; a member too slow to keep up misses the line.
///         self.room.broadcast_except(session.id(), &line);
///     }
/// }
///
/// let chat = Chat { room: SessionGroup::new() };
/// let strict: SessionGroup<Lines> = SessionGroup::with_policy(SlowMember::Close);
/// assert!(chat.room.is_empty() && strict.is_empty());
/// ```
pub struct SessionGroup<C: Codec> {
    inner: Arc<GroupInner<C>>,
}

struct GroupInner<C: Codec> {
    id: u64,
    policy: SlowMember,
    members: Mutex<Members<C>>,
    /// Totals over every broadcast: skipped, dropped.
    skipped: AtomicU64,
    dropped: AtomicU64,
}

struct Members<C: Codec> {
    map: BTreeMap<u64, Session<C>>,
    /// The members, oldest first, while the membership has not changed since it was built.
    snapshot: Option<Arc<[Session<C>]>>,
}

impl<C: Codec> Clone for SessionGroup<C> {
    fn clone(&self) -> Self {
        SessionGroup {
            inner: self.inner.clone(),
        }
    }
}

impl<C: Codec> Default for SessionGroup<C> {
    fn default() -> Self {
        Self::with_policy(SlowMember::default())
    }
}

impl<C: Codec> SessionGroup<C> {
    /// An empty group that skips slow members ([`SlowMember::Skip`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty group with `policy` for members whose write queue is full.
    pub fn with_policy(policy: SlowMember) -> Self {
        SessionGroup {
            inner: Arc::new(GroupInner {
                id: NEXT_GROUP_ID.fetch_add(1, Ordering::Relaxed),
                policy,
                members: Mutex::new(Members {
                    map: BTreeMap::new(),
                    snapshot: None,
                }),
                skipped: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// The policy for slow members.
    pub fn policy(&self) -> SlowMember {
        self.inner.policy
    }

    /// Adds `session`; it leaves the group when it closes (or by [`remove`](Self::remove)).
    /// False if it was a member already, or is closing or closed (it is then not added).
    pub fn insert(&self, session: &Session<C>) -> bool {
        if session.is_closing() {
            return false;
        }
        {
            let mut members = lock(&self.inner.members);
            if members.map.contains_key(&session.id()) {
                return false;
            }
            members.map.insert(session.id(), session.clone());
            members.snapshot = None;
        }
        // The group is held weakly: a closed session does not keep it alive, nor it the session.
        let group = Arc::downgrade(&self.inner);
        let registered = session.add_close_callback(self.callback_key(), move |closed| {
            if let Some(group) = Weak::upgrade(&group) {
                GroupInner::remove(&group, closed.id());
            }
        });
        if registered.is_err() || session.is_closing() {
            // It closed meanwhile: its callbacks may have run before ours was added.
            GroupInner::remove(&self.inner, session.id());
            return false;
        }
        true
    }

    /// Removes the member `id`, returning it.
    pub fn remove(&self, id: u64) -> Option<Session<C>> {
        let session = GroupInner::remove(&self.inner, id)?;
        session.remove_close_callback(&self.callback_key());
        Some(session)
    }

    /// Whether session `id` is a member.
    pub fn contains(&self, id: u64) -> bool {
        lock(&self.inner.members).map.contains_key(&id)
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        lock(&self.inner.members).map.len()
    }

    /// Whether the group has no member.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The members, oldest first: a snapshot shared with other callers until the membership
    /// changes (no allocation per call while it is stable).
    pub fn members(&self) -> Arc<[Session<C>]> {
        let mut members = lock(&self.inner.members);
        if let Some(snapshot) = &members.snapshot {
            return snapshot.clone();
        }
        // Ordered by id: the oldest first.
        let snapshot: Arc<[Session<C>]> = members.map.values().cloned().collect();
        members.snapshot = Some(snapshot.clone());
        snapshot
    }

    /// Queues `pkg` for every member, never waiting (see [`Session::try_send`]).
    pub fn broadcast(&self, pkg: &C::Outbound) -> Broadcast {
        self.send_each(None, |s| s.try_send(pkg))
    }

    /// Queues `pkg` for every member but session `except` (typically the sender).
    pub fn broadcast_except(&self, except: u64, pkg: &C::Outbound) -> Broadcast {
        self.send_each(Some(except), |s| s.try_send(pkg))
    }

    /// Queues `frame` for every member, never waiting: encode a package once into a
    /// [`Frame::bytes`] (or use [`Frame::payload`], or [`Frame::text`] for WebSocket text)
    /// and every member shares its bytes without a copy.
    pub fn broadcast_frame(&self, frame: Frame) -> Broadcast {
        self.send_each(None, |s| s.try_send_frame(frame.clone()))
    }

    /// Queues `frame` for every member but session `except`, as
    /// [`broadcast_frame`](Self::broadcast_frame) does.
    pub fn broadcast_frame_except(&self, except: u64, frame: Frame) -> Broadcast {
        self.send_each(Some(except), |s| s.try_send_frame(frame.clone()))
    }

    /// Closes every member (each leaves the group as it closes).
    pub fn close_all(&self) {
        for session in self.members().iter() {
            session.close();
        }
    }

    /// Messages members missed ([`SlowMember::Skip`]) and members closed for being slow
    /// ([`SlowMember::Close`]), over every broadcast so far.
    pub fn slow_member_totals(&self) -> (u64, u64) {
        (
            self.inner.skipped.load(Ordering::Relaxed),
            self.inner.dropped.load(Ordering::Relaxed),
        )
    }

    fn send_each(
        &self,
        except: Option<u64>,
        send: impl Fn(&Session<C>) -> crate::Result<usize>,
    ) -> Broadcast {
        let mut outcome = Broadcast::default();
        for session in self.members().iter() {
            if Some(session.id()) == except {
                continue;
            }
            match send(session) {
                Ok(_) => outcome.sent += 1,
                Err(Error::WouldBlock { .. }) => match self.inner.policy {
                    SlowMember::Skip => outcome.skipped += 1,
                    SlowMember::Close => {
                        log::info!(
                            "session {}: closed, too slow for group {}",
                            session.id(),
                            self.inner.id
                        );
                        session.close();
                        self.remove(session.id());
                        outcome.dropped += 1;
                    }
                },
                Err(Error::SessionClosed { .. }) => {
                    self.remove(session.id());
                    outcome.closed += 1;
                }
                Err(err) => {
                    log::debug!("group {}: session {}: {err}", self.inner.id, session.id());
                    outcome.failed += 1;
                }
            }
        }
        self.inner
            .skipped
            .fetch_add(outcome.skipped as u64, Ordering::Relaxed);
        self.inner
            .dropped
            .fetch_add(outcome.dropped as u64, Ordering::Relaxed);
        outcome
    }

    fn callback_key(&self) -> String {
        format!("getty.group.{}", self.inner.id)
    }
}

impl<C: Codec> GroupInner<C> {
    fn remove(this: &Arc<Self>, id: u64) -> Option<Session<C>> {
        let mut members = lock(&this.members);
        let removed = members.map.remove(&id);
        if removed.is_some() {
            members.snapshot = None;
        }
        removed
    }
}

impl<C: Codec> fmt::Debug for SessionGroup<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionGroup")
            .field("id", &self.inner.id)
            .field("members", &self.len())
            .field("policy", &self.inner.policy)
            .finish()
    }
}
