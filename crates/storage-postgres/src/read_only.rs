//! Connections opened before the server was found read-only, retired from the pool.
//!
//! After a failover the pool can still hold connections to the old primary, now a standby
//! (or a server switched to `default_transaction_read_only`): every write on them fails
//! with SQLSTATE 25006, and the pool's fast recycling, which only checks that a connection
//! is open, would hand them out for ever. Once one such refusal is seen, every connection
//! opened before it is discarded at its next checkout (see [`Retirement`]), and a new one
//! is opened in its place, resolving the host again.

use std::sync::Arc;

use deadpool::managed::Metrics;
use deadpool_postgres::{Hook, HookError};
use storage_core::retirement::Retirement;

/// The pool's pre-recycle hook: a stale connection is not handed out again.
pub(crate) fn hook(retirement: &Arc<Retirement>) -> Hook {
    let retirement = Arc::clone(retirement);
    Hook::sync_fn(move |_, metrics: &Metrics| {
        if retirement.is_stale(metrics.created) {
            Err(HookError::Message(
                "opened before the server was found read-only".into(),
            ))
        } else {
            Ok(())
        }
    })
}
