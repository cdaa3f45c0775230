//! Pooled connections made stale by a server's demotion.
//!
//! After a failover a pool can still hold connections to the old primary, now a replica or
//! standby: they are open, so a pool that only checks that a connection is open hands them
//! out for ever, and every write on them is refused (PostgreSQL's SQLSTATE 25006, Redis'
//! `READONLY`). Once a backend sees such a refusal it calls
//! [`Retirement::retire_open_connections`], and its pool, asking
//! [`Retirement::is_stale`] at each checkout, discards every connection opened before then
//! and opens new ones, resolving the host again (a DNS name or proxy the failover re-pointed).
//!
//! ```
//! use std::time::Instant;
//! use storage_core::retirement::Retirement;
//!
//! let retirement = Retirement::new();
//! let opened = Instant::now();
//! assert!(!retirement.is_stale(opened));
//! retirement.retire_open_connections();
//! assert!(retirement.is_stale(opened));
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Since when a pool's connections are stale: none are until a refusal is noted.
#[derive(Debug)]
pub struct Retirement {
    /// The instant the nanoseconds below count from.
    origin: Instant,
    /// Nanoseconds after `origin`, plus one, of the last retirement; 0 for none.
    since: AtomicU64,
}

impl Default for Retirement {
    fn default() -> Self {
        Self::new()
    }
}

impl Retirement {
    /// No connection is stale yet.
    pub fn new() -> Self {
        Retirement {
            origin: Instant::now(),
            since: AtomicU64::new(0),
        }
    }

    /// Marks every connection opened until now as stale, unless the last retirement is
    /// less than [`Retirement::PAUSE`] old: a server that stays read-only (or a name that
    /// still leads to the old primary) then costs at most a pool's worth of new connections
    /// per pause, not one per refused write, and a connection opened since that refuses
    /// again is retired by the next refusal after the pause.
    pub fn retire_open_connections(&self) {
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        let last = self.since.load(Ordering::Acquire);
        let pause = u64::try_from(Self::PAUSE.as_nanos()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_sub(last - 1) < pause {
            return;
        }
        self.since.fetch_max(now + 1, Ordering::AcqRel);
    }

    /// The least time between two retirements.
    pub const PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

    /// Whether a connection opened at `opened` was open at the last retirement; one atomic
    /// load. A connection opened before this value was made counts as open then.
    pub fn is_stale(&self, opened: Instant) -> bool {
        match self.since.load(Ordering::Acquire) {
            0 => false,
            since => {
                let opened = opened.saturating_duration_since(self.origin).as_nanos();
                opened < u128::from(since - 1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_connections_opened_before_a_retirement_are_stale() {
        let retirement = Retirement::new();
        let before = Instant::now();
        assert!(!retirement.is_stale(before));
        std::thread::sleep(Duration::from_millis(2));
        retirement.retire_open_connections();
        std::thread::sleep(Duration::from_millis(2));
        let after = Instant::now();
        assert!(retirement.is_stale(before));
        assert!(!retirement.is_stale(after));
        // A refusal within the pause moves nothing: the connections opened since stay.
        retirement.retire_open_connections();
        assert!(!retirement.is_stale(after));
        // One after it moves the mark on.
        std::thread::sleep(Retirement::PAUSE);
        retirement.retire_open_connections();
        assert!(retirement.is_stale(after));
    }
}
