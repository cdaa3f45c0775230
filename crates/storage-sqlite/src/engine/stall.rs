//! Telling a disk that stopped answering: when each connection's current work began.
//!
//! Work run on its caller's thread (a read in place, a caller leading a batch) cannot be
//! cut short by the caller's deadline: a file system that hangs (a stalled network volume,
//! a frozen one) holds that thread in the kernel. So once some work has run longer than
//! [`STALL`], nobody starts more work in place: reads go to the reader threads' queue and
//! writes to the writer thread, where the caller only waits for an answer, and its deadline
//! ends the wait. The first caller that meets the hang stays held; later ones fail at their
//! deadlines. Normal work takes microseconds to a few milliseconds, an fsync on a slow disk
//! tens; past the stall everything still works, on the queues, a little slower.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long one connection's work may run before the disk counts as stalled.
pub(crate) const STALL: Duration = Duration::from_millis(200);

/// When each busy connection's work began (milliseconds since `epoch`, plus one; 0 is
/// idle): one slot per connection that can be busy at once.
pub(crate) struct DiskWatch {
    epoch: Instant,
    slots: Box<[AtomicU64]>,
}

/// Work in progress; marks its slot idle again when dropped (also when the work panics).
pub(crate) struct Working<'w> {
    slot: Option<&'w AtomicU64>,
}

impl Drop for Working<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            slot.store(0, Ordering::Release);
        }
    }
}

impl DiskWatch {
    /// A watch over `connections` connections.
    pub(crate) fn new(connections: usize) -> Self {
        DiskWatch {
            epoch: Instant::now(),
            slots: (0..connections).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Marks work as begun until the returned guard is dropped.
    pub(crate) fn begin(&self) -> Working<'_> {
        let now = self.now();
        let slot = self.slots.iter().find(|slot| {
            slot.compare_exchange(0, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        });
        Working { slot }
    }

    /// Whether some work has run longer than [`STALL`].
    pub(crate) fn stalled(&self) -> bool {
        let now = self.now();
        let limit = STALL.as_millis() as u64;
        self.slots.iter().any(|slot| {
            let began = slot.load(Ordering::Acquire);
            began != 0 && now.saturating_sub(began) > limit
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_older_than_the_stall_is_seen_until_it_ends() {
        let watch = DiskWatch::new(2);
        assert!(!watch.stalled());
        let quick = watch.begin();
        assert!(!watch.stalled());
        drop(quick);
        let slow = watch.begin();
        std::thread::sleep(STALL + Duration::from_millis(50));
        assert!(watch.stalled());
        // More work than slots is not watched, and is never refused.
        let (_a, _b) = (watch.begin(), watch.begin());
        drop(slow);
        assert!(!watch.stalled());
    }
}
