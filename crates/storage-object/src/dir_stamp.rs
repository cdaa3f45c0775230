//! Whether a local directory's entries changed since a listing, told by one `stat`.
//!
//! A local directory lists in no order and has no `start-after`: the newest checkpoint of a
//! chain is found by reading every name in the chain's directory (about 4 ms for 3,000
//! names). But creating, renaming or removing an entry updates the directory's
//! modification and change times, so a listing can be reused while the directory's
//! [`DirStamp`] is the one taken before it, as git trusts its index (the "racy git" rule):
//!
//! - The stamp is taken before the listing, so whatever changes during the listing moves
//!   the stamp away from it.
//! - The file system takes its times from a clock that advances a tick at a time, so a
//!   change made in the same tick as the last change before the stamp would leave the
//!   times as they were. A stamp therefore certifies a listing only once the directory's
//!   times are [`SETTLED`] older than the clock (two seconds when the file system keeps
//!   whole seconds only); a directory that just changed is listed again next time.
//! - Only file systems whose times are set by this machine's kernel as entries change
//!   certify anything (ext4, XFS, Btrfs, tmpfs; see [`trusted`]): a network file system's
//!   times come from a server and its client caches them, so there every read lists.
//!
//! ```text
//! listing at t0: stamp S (times older than t0 - SETTLED) -> remembered with the ids
//! read at t1:    stat -> S again?  yes: the remembered ids are the directory's
//!                                  no:  list again
//! ```

use std::path::Path;
use std::time::{Duration, SystemTime};

/// How much older than the clock a directory's times must be for its stamp to certify a
/// listing, on file systems that keep fractions of a second: many ticks of the kernel's
/// coarse clock (1 to 10 ms).
pub(crate) const SETTLED: Duration = Duration::from_millis(50);

/// The same for a file system that keeps whole seconds only (its times have no fraction).
const SETTLED_SECONDS: Duration = Duration::from_secs(2);

/// What changes when a directory's entries do: its inode (a directory removed and made
/// again), size, and modification and change times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DirStamp {
    inode: u64,
    size: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl DirStamp {
    /// The stamp of `dir` now; `None` when it cannot be read or its file system's times
    /// are not to be trusted (see the module).
    #[cfg(target_os = "linux")]
    pub(crate) fn of(dir: &Path) -> Option<DirStamp> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(dir).ok()?;
        if !meta.is_dir() || !trusted(dir) {
            return None;
        }
        Some(DirStamp {
            inode: meta.ino(),
            size: meta.size(),
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
        })
    }

    /// Elsewhere directory times are not trusted: every read lists.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn of(_dir: &Path) -> Option<DirStamp> {
        None
    }

    /// The stamp of `dir` if it may certify a listing that starts now: its times are
    /// settled (see the module).
    pub(crate) fn settled(dir: &Path) -> Option<DirStamp> {
        let now = SystemTime::now();
        let stamp = DirStamp::of(dir)?;
        stamp.settled_at(now).then_some(stamp)
    }

    /// Whether both times are at least the settling time older than `now`.
    fn settled_at(&self, now: SystemTime) -> bool {
        let whole_seconds = self.modified.1 == 0 && self.changed.1 == 0;
        let margin = if whole_seconds {
            SETTLED_SECONDS
        } else {
            SETTLED
        };
        [self.modified, self.changed].iter().all(|&(secs, nanos)| {
            let Ok(secs) = u64::try_from(secs) else {
                return false;
            };
            let at =
                SystemTime::UNIX_EPOCH + Duration::new(secs, nanos.clamp(0, 999_999_999) as u32);
            at + margin <= now
        })
    }
}

/// Whether the file system of `path` sets a directory's times in this kernel, as its
/// entries change: ext2/3/4, XFS, Btrfs, tmpfs. Anything else (NFS, SMB, FUSE, overlay
/// mounts, or another operating system) is not trusted, and every read there lists.
#[cfg(target_os = "linux")]
fn trusted(path: &Path) -> bool {
    const EXT4: i64 = 0xEF53;
    const XFS: i64 = 0x5846_5342;
    const BTRFS: i64 = 0x9123_683E;
    const TMPFS: i64 = 0x0102_1994;
    let Ok(stats) = rustix::fs::statfs(path) else {
        return false;
    };
    // The field's integer type differs between targets.
    #[allow(clippy::unnecessary_cast)]
    let kind = stats.f_type as i64;
    matches!(kind, EXT4 | XFS | BTRFS | TMPFS)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A directory on a trusted file system: the temporary directory, or else tmpfs.
    #[cfg(target_os = "linux")]
    pub(crate) fn trusted_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        if trusted(dir.path()) {
            return dir;
        }
        let shm = tempfile::tempdir_in("/dev/shm").expect("a directory in /dev/shm");
        assert!(
            trusted(shm.path()),
            "neither {} nor /dev/shm is on ext4, XFS, Btrfs or tmpfs",
            dir.path().display()
        );
        shm
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_directory_changed_by_any_entry_has_another_stamp() {
        let dir = trusted_dir();
        let empty = DirStamp::of(dir.path()).unwrap();
        assert_eq!(
            DirStamp::of(dir.path()),
            Some(empty),
            "a stat changes nothing"
        );
        let file = dir.path().join("a");
        std::fs::write(&file, b"x").unwrap();
        let created = DirStamp::of(dir.path()).unwrap();
        assert_ne!(created, empty, "an entry created");
        std::fs::rename(&file, dir.path().join("b")).unwrap();
        let renamed = DirStamp::of(dir.path()).unwrap();
        assert_ne!(renamed, created, "an entry renamed");
        std::fs::remove_file(dir.path().join("b")).unwrap();
        assert_ne!(
            DirStamp::of(dir.path()).unwrap(),
            renamed,
            "an entry removed"
        );
        assert_eq!(DirStamp::of(&dir.path().join("missing")), None);
    }

    #[test]
    fn a_stamp_certifies_only_once_the_directory_settled() {
        let stamp = |nanos| DirStamp {
            inode: 1,
            size: 4096,
            modified: (1_000, nanos),
            changed: (1_000, nanos),
        };
        let at = |secs: u64, millis: u32| {
            SystemTime::UNIX_EPOCH + Duration::new(secs, millis * 1_000_000)
        };
        assert!(!stamp(500_000_000).settled_at(at(1_000, 520)));
        assert!(stamp(500_000_000).settled_at(at(1_000, 550)));
        // Whole seconds: the change may have been anywhere in that second or the next.
        assert!(!stamp(0).settled_at(at(1_001, 500)));
        assert!(stamp(0).settled_at(at(1_002, 0)));
        // A time ahead of the clock never settles.
        assert!(!stamp(500_000_000).settled_at(at(999, 0)));
    }
}
