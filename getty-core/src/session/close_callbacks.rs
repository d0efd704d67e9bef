//! Close callbacks (newer getty's `AddCloseCallback`): code to run once when a session closes,
//! registered under a key.

use std::panic::AssertUnwindSafe;
use std::sync::Mutex;

use super::lock;
use crate::panic::panic_message;

/// A callback, given the session that closed.
pub(crate) type Callback<S> = Box<dyn FnOnce(&S) + Send + 'static>;

/// The callbacks of one session, in registration order.
pub(crate) struct CloseCallbacks<S> {
    state: Mutex<State<S>>,
}

struct State<S> {
    callbacks: Vec<(String, Callback<S>)>,
    /// Set once they ran: later registrations are refused.
    ran: bool,
}

impl<S> Default for CloseCallbacks<S> {
    fn default() -> Self {
        CloseCallbacks {
            state: Mutex::new(State {
                callbacks: Vec::new(),
                ran: false,
            }),
        }
    }
}

impl<S> CloseCallbacks<S> {
    /// Registers `callback` under `key`, in place of the one already under it (which it
    /// replaces in the order too). `false` if the callbacks already ran.
    pub(crate) fn add(&self, key: String, callback: Callback<S>) -> bool {
        let mut state = lock(&self.state);
        if state.ran {
            return false;
        }
        match state.callbacks.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = callback,
            None => state.callbacks.push((key, callback)),
        }
        true
    }

    /// Removes the callback under `key`; whether there was one.
    pub(crate) fn remove(&self, key: &str) -> bool {
        let mut state = lock(&self.state);
        let before = state.callbacks.len();
        state.callbacks.retain(|(k, _)| k != key);
        state.callbacks.len() != before
    }

    /// Runs every callback once, in order, outside the lock. A panicking callback is logged
    /// and the others still run.
    pub(crate) fn run(&self, session: &S, id: u64) {
        let callbacks = {
            let mut state = lock(&self.state);
            state.ran = true;
            std::mem::take(&mut state.callbacks)
        };
        for (key, callback) in callbacks {
            if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(|| callback(session))) {
                log::error!(
                    "session {id}: close callback {key:?} panicked: {}",
                    panic_message(payload.as_ref())
                );
            }
        }
    }
}
