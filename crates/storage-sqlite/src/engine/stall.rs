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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long one connection's work may run before the disk counts as stalled.
pub(crate) const STALL: Duration = Duration::from_millis(200);

/// When each busy connection's work began (milliseconds since `epoch`, plus one; 0 is
/// idle): one slot per connection that can be busy at once.
pub(crate) struct DiskWatch {
    epoch: Instant,
    slots: Box<[AtomicU64]>,
    /// The database file, for the log lines.
    path: String,
    /// Whether the last answer was "stalled": a log line marks a change, not each ask.
    reported: AtomicBool,
    /// When the last warning was logged (as `slots` count time), 0 for never: at most one
    /// a minute, since a lock held by another process for long also trips the watch.
    warned_at: AtomicU64,
    /// Whether a warning was logged and its end not yet.
    warned: AtomicBool,
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
    /// A watch over `connections` connections to the database file at `path`.
    pub(crate) fn new(connections: usize, path: &std::path::Path) -> Self {
        DiskWatch {
            epoch: Instant::now(),
            slots: (0..connections).map(|_| AtomicU64::new(0)).collect(),
            path: path.display().to_string(),
            reported: AtomicBool::new(false),
            warned_at: AtomicU64::new(0),
            warned: AtomicBool::new(false),
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

    /// Whether some work has run longer than [`STALL`]. The first answer after a change
    /// logs it: a warning (at most one a minute) when work stops ending, a note when it
    /// ends again after a warning.
    pub(crate) fn stalled(&self) -> bool {
        let now = self.now();
        let limit = STALL.as_millis() as u64;
        let stalled = self.slots.iter().any(|slot| {
            let began = slot.load(Ordering::Acquire);
            began != 0 && now.saturating_sub(began) > limit
        });
        if self.reported.load(Ordering::Relaxed) != stalled
            && self.reported.swap(stalled, Ordering::Relaxed) != stalled
        {
            if stalled {
                let last = self.warned_at.load(Ordering::Relaxed);
                if last == 0 || now.saturating_sub(last) >= 60_000 {
                    self.warned_at.store(now, Ordering::Relaxed);
                    self.warned.store(true, Ordering::Relaxed);
                    tracing::warn!(
                        path = %self.path,
                        "sqlite: work on the database has not ended for over {} ms (a disk \
                         that stopped answering, or another process holding the write lock); \
                         calls wait on queues, where their deadlines hold, until it ends",
                        limit
                    );
                }
            } else if self.warned.swap(false, Ordering::Relaxed) {
                tracing::info!(path = %self.path, "sqlite: work on the database ends again");
            }
        }
        stalled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer the log lines go to, for reading them back.
    #[derive(Clone, Default)]
    struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// One test, not two, and the interest cache rebuilt under the subscriber: tracing
    /// caches whether a log line is wanted when a thread first reaches it, and a test
    /// running beside this one without a subscriber could have cached "no".
    #[test]
    fn work_older_than_the_stall_is_seen_until_it_ends_and_logged_once_each_way() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::callsite::rebuild_interest_cache();
            let watch = DiskWatch::new(2, std::path::Path::new("/data/agent.db"));
            assert!(!watch.stalled());
            let quick = watch.begin();
            assert!(!watch.stalled());
            drop(quick);
            let slow = watch.begin();
            std::thread::sleep(STALL + Duration::from_millis(50));
            assert!(watch.stalled() && watch.stalled() && watch.stalled());
            // More work than slots is not watched, and is never refused.
            let (_a, _b) = (watch.begin(), watch.begin());
            drop(slow);
            assert!(!watch.stalled() && !watch.stalled());
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let logged: Vec<&str> = text.lines().collect();
        assert_eq!(logged.len(), 2, "{text}");
        assert!(logged[0].contains("WARN") && logged[0].contains("/data/agent.db"));
        assert!(logged[0].contains("stopped answering"), "{text}");
        assert!(logged[0].contains("write lock"), "{text}");
        assert!(
            logged[1].contains("INFO") && logged[1].contains("ends again"),
            "{text}"
        );
    }
}
