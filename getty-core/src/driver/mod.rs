//! Drivers: the session state machines, written once for every runtime.
//!
//! A driver is one task per session. It owns the socket and polls, together, the read side
//! (bytes → codec → `on_message`), the write queue (drained into one vectored write per
//! wake-up), the cron timer, and the close request. While a handler is pending the driver keeps
//! writing, so a handler that awaits its own `write_pkg` cannot deadlock the session.

pub(crate) mod stream;

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_lite::FutureExt;

use crate::error::Error;

/// Runs a user handler future, turning a panic into [`Error::HandlerPanic`].
pub(crate) async fn catch_handler<F: Future>(
    handler: &'static str,
    future: F,
) -> Result<F::Output, Error> {
    AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .map_err(|payload| Error::HandlerPanic {
            handler,
            message: panic_message(payload.as_ref()),
        })
}

/// The text of a panic payload, when it has one.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}
