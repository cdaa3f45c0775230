//! Retention: one policy model for every kind that keeps a history.
//!
//! Four kinds keep records that pile up over time, each in *series*:
//!
//! | kind | series | order | a record's age |
//! | --- | --- | --- | --- |
//! | messages | one session's stored messages | sequence | `created_at` |
//! | context versions | one context scope's versions | version | `updated_at` |
//! | checkpoints | one (thread, namespace) | checkpoint id | the checkpoint's `created_at` |
//! | artifact versions | one (scope, name) | version | `created_at` |
//!
//! A [`Retention`] names at most two limits: `keep_last` (keep the newest N records of
//! each series) and `created_before` (records created before this instant have expired;
//! [`RetentionPolicy`] computes it from a maximum age). Every backend applies it the same
//! way, series by series, in one atomic step per series:
//!
//! - a record is *expired* when it is not among the `keep_last` newest of its series, or
//!   when it was created before `created_before`;
//!   Context versions count by number, as a store's `keep_versions` does: the versions
//!   numbered above `current - keep_last` are the newest (a number an import skipped
//!   takes a place among them), see [`Retention::keep_from`];
//! - the series loses its longest *oldest-first prefix* of expired records, and never its
//!   newest record (the current context, the latest checkpoint, the latest artifact
//!   version, the last message). Survivors are therefore always a contiguous run ending at
//!   the newest record: a conversation never gets a hole, a checkpoint chain never loses a
//!   middle link. A record with an out-of-order timestamp (an import, a checkpoint put with
//!   an old `ts`) behind a survivor stays until the survivor goes.
//!
//! What goes with a removed record: a message's client id is released and a summary's kept
//! originals go with it (they are not counted); a checkpoint's pending writes go with it,
//! and every stored channel value it used that no survivor uses (on object storage, which has no lock
//! against a racing put, by the garbage collection once unused longer than its grace
//! period); an artifact version's content. Nothing
//! renumbers: later records keep their numbers and the next append, store or save
//! continues after the highest number ever handed out. Removal counts records of the series
//! (messages, versions, checkpoints), never the things that went with them.
//!
//! A sweep visits each series of the kind once. Within a series a backend reads only the
//! records of the expired prefix and the one that ends it, and what goes with them: the
//! memory backend counts each channel value's users, so removing checkpoints there never
//! reads the survivors (object storage leaves that question to its garbage collection);
//! PostgreSQL and SQLite count each conversation's and artifact name's stored records, so
//! `keep_last` steps over the removed index entries only. Two costs still grow with what a
//! series keeps, and `docs/operations.md` gives each backend's figures: removing
//! checkpoints on Redis, PostgreSQL and SQLite reads the survivors' version maps (to keep
//! every value one of them uses), and on object storage, which keeps no counts, `keep_last`
//! of checkpoints lists the chain's record keys and `keep_last` of artifact versions reads
//! the newest `keep_last` versions. Writes racing a sweep are never lost: a record stored
//! while its series is trimmed is either counted among the newest or stored after the
//! trim. A series that fails to trim for a reason of its own
//! (an undecodable record, writers it keeps losing to) is left for the next sweep and the
//! sweep goes on: see [`series_outcome`].
//!
//! ```
//! use std::time::Duration;
//! use storage_core::retention::{Retention, RetentionPolicy};
//!
//! let policy = RetentionPolicy {
//!     max_age: Some(Duration::from_secs(30 * 24 * 3600)),
//!     keep_last: Some(100),
//! };
//! let now = storage_core::time::now();
//! let retention: Retention = policy.at(now);
//! assert_eq!(retention.keep_last, Some(100));
//! assert!(retention.created_before.unwrap() < now);
//! // The rule itself, over a series' timestamps oldest first:
//! let old = now - chrono::Duration::days(40);
//! assert_eq!(retention.expired_prefix(&[old, old, now, old]), 2);
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, Result, StorageError};
use crate::time::Timestamp;

/// What a sweep removes, resolved to an instant: see the module docs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Records created before this instant have expired.
    pub created_before: Option<Timestamp>,
    /// Records beyond the newest `keep_last` of their series have expired; 1 or more.
    pub keep_last: Option<u64>,
}

impl Retention {
    /// Checks the limits before any I/O: `keep_last` must be at least 1 (the newest record
    /// of a series is always kept; delete the session, scope, thread or artifact to remove
    /// it).
    pub fn check(&self) -> Result<()> {
        if self.keep_last == Some(0) {
            return Err(StorageError::invalid_input(
                "retention keep_last must be at least 1: the newest record of a series is \
                 always kept",
            ));
        }
        Ok(())
    }

    /// Whether the retention removes nothing whatever is stored (no limit set).
    pub fn is_unbounded(&self) -> bool {
        self.created_before.is_none() && self.keep_last.is_none()
    }

    /// Whether the record at `position` (0 = oldest) of a series of `len` records, created
    /// at `created_at`, has expired.
    pub fn is_expired(&self, position: usize, len: usize, created_at: Timestamp) -> bool {
        let beyond_count = self
            .keep_last
            .is_some_and(|keep| (len as u64).saturating_sub(keep) > position as u64);
        beyond_count || self.is_too_old(created_at)
    }

    /// Whether a record created at `created_at` is older than the cutoff.
    fn is_too_old(&self, created_at: Timestamp) -> bool {
        self.created_before
            .is_some_and(|cutoff| created_at < cutoff)
    }

    /// The lowest version number `keep_last` keeps in a series numbered up to `newest` whose
    /// records count by number (context versions); 1 without `keep_last`.
    pub fn keep_from(&self, newest: u64) -> u64 {
        self.keep_last.map_or(1, |keep| {
            newest.saturating_sub(keep.saturating_sub(1)).max(1)
        })
    }

    /// [`expired_prefix_in`](Self::expired_prefix_in) for a series that counts by number
    /// (context versions): `oldest_first` yields each record's number and time, and a
    /// record numbered below [`keep_from`](Self::keep_from) has expired.
    pub fn expired_numbered_prefix(
        &self,
        newest: u64,
        len: usize,
        oldest_first: impl IntoIterator<Item = (u64, Timestamp)>,
    ) -> usize {
        let keep_from = self.keep_from(newest);
        oldest_first
            .into_iter()
            .take(len.saturating_sub(1))
            .take_while(|(number, at)| *number < keep_from || self.is_too_old(*at))
            .count()
    }

    /// How many records to remove from the front of a series whose records were created at
    /// `created`, oldest first: the longest prefix of expired records, never the newest.
    pub fn expired_prefix(&self, created: &[Timestamp]) -> usize {
        self.expired_prefix_in(created.len(), created.iter().copied())
    }

    /// [`expired_prefix`](Self::expired_prefix) over a series of `len` records whose times
    /// `oldest_first` yields lazily: it takes the expired records and the one that ends
    /// the prefix, nothing more.
    pub fn expired_prefix_in(
        &self,
        len: usize,
        oldest_first: impl IntoIterator<Item = Timestamp>,
    ) -> usize {
        oldest_first
            .into_iter()
            .take(len.saturating_sub(1))
            .enumerate()
            .take_while(|(position, at)| self.is_expired(*position, len, *at))
            .count()
    }
}

/// What a sweep makes of one series' failure: a record it cannot decode (`Serialization`)
/// or writers it kept losing to (`Conflict`, or a temporary `Backend` error such as a lost
/// compare-and-set race or a server's passing failure) leave that series as it is for
/// this sweep, with a warning naming `kind` and the series (never a value), and the sweep
/// goes on with the others, so one bad or busy series never stops retention for the rest.
/// Any other error (a connection, a timeout) ends the sweep.
///
/// ```
/// use storage_core::retention::series_outcome;
/// use storage_core::StorageError;
///
/// let busy = Err(StorageError::conflict("too many concurrent writers"));
/// assert_eq!(series_outcome("checkpoints", &"thread-1", busy).unwrap(), 0);
/// let down = Err(StorageError::connection("refused"));
/// assert!(series_outcome("checkpoints", &"thread-1", down).is_err());
/// ```
pub fn series_outcome(
    kind: &str,
    series: &dyn std::fmt::Debug,
    outcome: Result<u64>,
) -> Result<u64> {
    match outcome {
        Err(err)
            if matches!(err.kind(), ErrorKind::Serialization | ErrorKind::Conflict)
                || (err.kind() == ErrorKind::Backend && err.is_temporary()) =>
        {
            tracing::warn!(
                kind,
                series = ?series,
                error.kind = %err.kind(),
                "retention left a series as it is for this sweep"
            );
            Ok(0)
        }
        other => other,
    }
}

/// A retention as configured: a maximum age instead of an instant.
///
/// [`RetentionPolicy::at`] turns it into the [`Retention`] a sweep applies, so a retried
/// or replayed sweep removes what the first attempt would have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// Records older than this have expired.
    pub max_age: Option<Duration>,
    /// Records beyond the newest `keep_last` of their series have expired; 1 or more.
    pub keep_last: Option<u64>,
}

impl RetentionPolicy {
    /// The retention this policy means at `now`.
    pub fn at(&self, now: Timestamp) -> Retention {
        Retention {
            created_before: self.max_age.map(|age| {
                chrono::Duration::from_std(age)
                    .ok()
                    .and_then(|age| now.checked_sub_signed(age))
                    .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
            }),
            keep_last: self.keep_last,
        }
    }

    /// Whether the policy removes nothing (no limit set).
    pub fn is_unbounded(&self) -> bool {
        self.max_age.is_none() && self.keep_last.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_700_000_000 + minutes * 60, 0).unwrap()
    }

    #[test]
    fn keep_last_trims_the_oldest_and_never_the_newest() {
        let series: Vec<Timestamp> = (0..10).map(at).collect();
        let keep = |n| Retention {
            created_before: None,
            keep_last: Some(n),
        };
        assert_eq!(keep(3).expired_prefix(&series), 7);
        assert_eq!(keep(1).expired_prefix(&series), 9);
        assert_eq!(keep(10).expired_prefix(&series), 0);
        assert_eq!(keep(50).expired_prefix(&series), 0);
        assert_eq!(keep(1).expired_prefix(&[]), 0);
    }

    #[test]
    fn age_trims_a_prefix_and_stops_at_the_first_survivor() {
        let cutoff = Retention {
            created_before: Some(at(5)),
            keep_last: None,
        };
        let series: Vec<Timestamp> = (0..10).map(at).collect();
        assert_eq!(cutoff.expired_prefix(&series), 5);
        // Every record is old: the newest stays.
        assert_eq!(cutoff.expired_prefix(&[at(0), at(1), at(2)]), 2);
        // An old record behind a survivor stays until the survivor goes.
        assert_eq!(cutoff.expired_prefix(&[at(0), at(7), at(1), at(8)]), 1);
    }

    #[test]
    fn either_limit_expires_a_record() {
        let both = Retention {
            created_before: Some(at(2)),
            keep_last: Some(5),
        };
        let series: Vec<Timestamp> = (0..10).map(at).collect();
        assert_eq!(both.expired_prefix(&series), 5);
        let series: Vec<Timestamp> = (0..4).map(at).collect();
        assert_eq!(both.expired_prefix(&series), 2);
    }

    #[test]
    fn keep_last_zero_is_refused_and_nothing_set_is_unbounded() {
        assert!(Retention {
            created_before: None,
            keep_last: Some(0)
        }
        .check()
        .is_err());
        assert!(Retention::default().is_unbounded());
        assert_eq!(Retention::default().expired_prefix(&[at(0), at(1)]), 0);
        let huge = RetentionPolicy {
            max_age: Some(Duration::MAX),
            keep_last: None,
        };
        assert_eq!(
            huge.at(at(0)).created_before,
            Some(chrono::DateTime::<chrono::Utc>::MIN_UTC)
        );
    }
}
