//! Connections opened before the server was found read-only, retired from the pool.
//!
//! After a failover the pool can still hold connections to the old primary, now a standby
//! (or a server switched to `default_transaction_read_only`): every write on them fails
//! with SQLSTATE 25006, and the pool's fast recycling, which only checks that a connection
//! is open, would hand them out for ever. Once one such refusal is seen, every connection
//! opened before it is discarded at its next checkout, and a new one is opened in its place,
//! resolving the host again (a DNS name or proxy that now leads to the new primary).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use deadpool::managed::Metrics;
use deadpool_postgres::{Hook, HookError};

/// Since when pooled connections are stale: nothing is until a refusal is seen.
#[derive(Debug)]
pub(crate) struct Retirement {
    /// The instant the nanoseconds below count from (before any connection of the pool).
    origin: Instant,
    /// Nanoseconds after `origin`, plus one, of the last read-only refusal; 0 for none.
    since: AtomicU64,
}

impl Retirement {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Retirement {
            origin: Instant::now(),
            since: AtomicU64::new(0),
        })
    }

    /// Marks every connection opened until now as stale.
    pub(crate) fn retire_open_connections(&self) {
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.since.fetch_max(now + 1, Ordering::AcqRel);
    }

    fn is_stale(&self, created: Instant) -> bool {
        match self.since.load(Ordering::Acquire) {
            0 => false,
            since => {
                let opened = created.saturating_duration_since(self.origin).as_nanos();
                opened < u128::from(since - 1)
            }
        }
    }

    /// The pool's pre-recycle hook: a stale connection is not handed out again.
    pub(crate) fn hook(self: &Arc<Self>) -> Hook {
        let retirement = Arc::clone(self);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_connections_opened_before_a_refusal_are_stale() {
        let retirement = Retirement::new();
        let before = Instant::now();
        assert!(!retirement.is_stale(before));
        std::thread::sleep(Duration::from_millis(2));
        retirement.retire_open_connections();
        std::thread::sleep(Duration::from_millis(2));
        let after = Instant::now();
        assert!(retirement.is_stale(before));
        assert!(!retirement.is_stale(after));
    }
}
