//! Whether a backend may do its own blocking work on the thread that polls its future.
//!
//! An embedded backend can run a short operation (an SQLite read of a checkpoint takes tens
//! of microseconds) on the thread that polls it instead of handing it to a thread of its
//! own and waiting to be woken: on a virtual machine each of those two wake-ups costs about
//! as much as the read. Some callers poll while holding something other threads wait for:
//! the Python binding polls a sync call's future once while it holds the GIL, so that a
//! call needing no I/O returns without giving the GIL up. Such a caller polls inside
//! [`forbid`]; a backend that checks [`allowed`] then leaves its work for a later poll, which
//! the caller makes after letting go.
//!
//! ```
//! use storage_core::blocking::{allowed, forbid};
//!
//! assert!(allowed());
//! forbid(|| assert!(!allowed()));
//! assert!(allowed());
//! ```

use std::cell::Cell;

thread_local! {
    static FORBIDDEN: Cell<bool> = const { Cell::new(false) };
}

/// Runs `poll` with blocking work forbidden on this thread, then restores what was (also
/// when `poll` panics).
pub fn forbid<R>(poll: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            FORBIDDEN.set(self.0);
        }
    }
    let _restore = Restore(FORBIDDEN.replace(true));
    poll()
}

/// Whether the current thread may be blocked by a backend's own work (it is, unless inside
/// [`forbid`]).
pub fn allowed() -> bool {
    !FORBIDDEN.get()
}

#[cfg(test)]
mod tests {
    use super::{allowed, forbid};

    #[test]
    fn forbidding_is_undone_after_a_panic_and_nests() {
        let _ = std::panic::catch_unwind(|| forbid(|| panic!("inside")));
        assert!(allowed());
        forbid(|| {
            forbid(|| assert!(!allowed()));
            assert!(!allowed(), "the outer stretch is still forbidden");
        });
        assert!(allowed());
        std::thread::spawn(|| forbid(|| ())).join().unwrap();
        forbid(|| {
            let other = std::thread::spawn(allowed).join().unwrap();
            assert!(other, "another thread is not affected");
        });
    }
}
