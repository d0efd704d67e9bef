//! Session and endpoint options beyond the transports: close callbacks, socket options, the
//! task pool, compression.

use std::sync::{Arc, Mutex};

use super::support::*;
use crate::codec::LengthDelimited;
use crate::runtime::Runtime;
use crate::session::lock;
use crate::{async_trait, Error, EventListener, Session};

/// Logs `on_close` into a shared log, to order it against close callbacks.
struct LogClose(Arc<Mutex<Vec<String>>>);

#[async_trait]
impl EventListener<Hello> for LogClose {
    async fn on_message(&self, _: &Session<Hello>, _: bytes::Bytes) {}
    async fn on_close(&self, _: &Session<Hello>) {
        lock(&self.0).push("on_close".into());
    }
}

/// Close callbacks run once, after `on_close`, in registration order; a key registered again
/// replaces its callback in place; a removed one does not run; a panicking one is logged and
/// the rest still run; once they ran, registering is refused.
pub async fn close_callbacks_order_replace_remove_panic<R: Runtime>(rt: R) {
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let listener: Arc<dyn EventListener<Hello>> = Arc::new(LogClose(log.clone()));
    let (cli, session, _peer) =
        client_with_raw_peer(&rt, LengthDelimited::hello(), move |_: &Session<Hello>| {
            Ok(listener.clone())
        })
        .await;
    let push = |name: &'static str| {
        let log = log.clone();
        move |s: &Session<Hello>| {
            assert!(s.is_closed());
            lock(&log).push(name.to_string());
        }
    };
    session.add_close_callback("a", push("a")).expect("add");
    session
        .add_close_callback("b", push("b, first"))
        .expect("add");
    session.add_close_callback("c", push("c")).expect("add");
    session
        .add_close_callback("boom", |_: &Session<Hello>| panic!("callback panics"))
        .expect("add");
    session.add_close_callback("d", push("d")).expect("add");
    session
        .add_close_callback("b", push("b, replaced"))
        .expect("replace");
    assert!(session.remove_close_callback("c"));
    assert!(!session.remove_close_callback("never added"));
    session.close();
    within(&rt, "closed", session.closed()).await;
    assert_eq!(
        *lock(&log),
        vec!["on_close", "a", "b, replaced", "d"],
        "on_close first, then the callbacks in order"
    );
    assert!(matches!(
        session.add_close_callback("late", push("late")),
        Err(Error::SessionClosed { .. })
    ));
    within(&rt, "cli close", cli.close()).await;
    assert_eq!(lock(&log).len(), 4, "each ran once");
}
