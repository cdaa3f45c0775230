//! Garbage collection of artifact content that no committed version references, and of
//! task context archives and compaction objects no reader can see.
//!
//! A save writes its content to a unique data object (`artifacts/<scope>/<name>/data/<id>`)
//! and then commits by creating the version record; a writer that dies in between, or a
//! delete that dies between writing the tombstone and removing the content, leaves a data
//! object nothing references. On a local directory a writer that dies during any upload
//! also leaves its staging file (`<object>#<n>`, hidden from listings). Neither is ever
//! read, and nothing else removes them.
//!
//! [`ObjectBackend::collect_garbage`] removes both, but only once they are older than a
//! grace period: content younger than that may belong to a save still running in this or
//! another process (its upload done, its record not yet created; or its staging file still
//! being written), and is not even examined. The order makes it safe without any lock:
//! the data objects are listed first, and the version records of their names are read
//! after, so a save that committed before the records were read is seen; a save that had
//! not committed by then would have had to upload its content more than the grace period
//! before committing it, which a save never does (it creates the record right after the
//! upload).
//!
//! On S3 the last-modified time of an object uploaded in parts is when its upload
//! *started*, so the grace period must exceed the longest upload; and parts of an upload
//! that was never completed are not objects at all (S3 keeps them until the upload is
//! aborted): a bucket lifecycle rule `AbortIncompleteMultipartUpload` removes those.
//!
//! A task context store archives the head's version before it replaces the head, and trims
//! the archives below its new floor after; a delete removes the head before the archives.
//! One that dies midway, or loses its race after archiving, leaves archives that readers
//! never see (of another lineage than the head's, or below its floor). They are removed
//! by the same rule: only once older than the grace period, and judged by the head read
//! after the listing, since a store archives before it commits.
//!
//! A compaction writes its summary (and the messages it keeps) before the conversation
//! head's compare-and-set commits it, and deletes what the new head no longer names after;
//! one that dies or loses its race midway leaves objects no head names. They are removed by
//! the same rule, judged by the conversation head read after the listing.
//!
//! A retention sweep of messages commits by raising the conversation head's floor and then
//! empties the slots wholly below it into stubs (see `slot_stubs`); one that dies between
//! leaves full slots no reader asks for. Old ones are stubbed by the same rule.
//!
//! Removing checkpoints (a prune, a retention sweep, `delete_for_runs`, a put replacing a
//! stored id) leaves the channel values the removed records used in place and names them in
//! a marker; they are removed here once the marker is older than the grace period, if no
//! checkpoint stored now uses them and no younger marker names them (see `unused_values`).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use object_store::path::Path;
use object_store::ObjectMeta;
use serde::{Deserialize, Serialize};
use storage_core::{Result, StorageError};

use super::ObjectBackend;
use crate::keys::{parts_after, take_id};

/// The default grace period: content younger than this is never collected. A day, so that
/// no save still running (however large its artifact or slow its network) is touched.
pub const DEFAULT_GARBAGE_GRACE: Duration = Duration::from_secs(24 * 3600);

/// What [`ObjectBackend::collect_garbage`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GarbageReport {
    /// Data objects no version record references, removed.
    pub data_objects: u64,
    /// Their bytes.
    pub data_bytes: u64,
    /// Archived task context versions no reader can see (below their head's floor, or of
    /// a deleted history), removed.
    #[serde(default)]
    pub context_versions: u64,
    /// Compaction objects (summaries, kept messages) no conversation head names, removed.
    #[serde(default)]
    pub compaction_objects: u64,
    /// Message slots wholly below their conversation's floor (removed by a retention
    /// sweep that died before emptying them, or cleared) emptied to stubs.
    #[serde(default)]
    pub message_slots: u64,
    /// Checkpoint channel values that a prune, retention sweep, run deletion or replaced
    /// checkpoint left unused and that no checkpoint stored at collection time uses,
    /// removed (values still used are not counted).
    #[serde(default)]
    pub checkpoint_values: u64,
    /// Abandoned staging files of uploads (local directory only), removed.
    pub staging_files: u64,
    /// Their bytes.
    pub staging_bytes: u64,
    /// Data objects, staging files, archives, compaction objects and markers of unused
    /// checkpoint values younger than the grace period: not examined.
    pub too_young: u64,
}

/// Whether something last written at `written` (ms since the epoch) is still younger than
/// the grace period that ends at `cutoff` ([`cutoff_millis`]): written after it. With no
/// grace, nothing written until now is, even in the millisecond the collection started
/// (a file system may stamp a write with the very millisecond a collection reads as now).
pub(super) fn still_young(written: i64, cutoff: i64) -> bool {
    written > cutoff
}

/// Milliseconds since the epoch of `now - grace` (0 when that is before the epoch).
fn cutoff_millis(grace: Duration) -> i64 {
    SystemTime::now()
        .checked_sub(grace)
        .and_then(|cutoff| cutoff.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

impl ObjectBackend {
    /// Removes artifact data objects that no version record references, task context
    /// archives and compaction objects no reader can see and, on a local directory,
    /// abandoned upload staging files anywhere in the namespace, checkpoint values that
    /// removed checkpoints left unused and no stored checkpoint uses, and empties message
    /// slots below their conversation's floor, when they are older than `grace` (see
    /// [`DEFAULT_GARBAGE_GRACE`]). Safe while other processes save: what is younger than
    /// `grace` is not examined, and what is older and unreferenced belongs to no save that
    /// can still commit. Costs one listing of the namespace's artifacts, context archives,
    /// compaction objects, conversations and unused-value markers, plus reading the version
    /// records of each name that has old content, the head of each scope that has old
    /// archives, the head of each conversation and, per checkpoint namespace with an old
    /// marker, its markers (listed twice), its checkpoint records and the listing of its
    /// values.
    pub async fn collect_garbage(&self, grace: Duration) -> Result<GarbageReport> {
        self.op("collect_garbage", async {
            let cutoff = cutoff_millis(grace);
            let mut report = GarbageReport::default();
            // 1. The content, with its age, before any record is read.
            let prefix = self.keys().artifacts();
            let listed = self.objects().list_meta(&prefix).await?;
            let mut old: BTreeMap<(String, String), Vec<ObjectMeta>> = BTreeMap::new();
            for meta in listed {
                let parts = parts_after(&meta.location, &prefix);
                let Some((scope, used)) = take_id(&parts) else {
                    continue;
                };
                let Some((name, more)) = take_id(&parts[used..]) else {
                    continue;
                };
                let tail = &parts[used + more..];
                if tail.len() != 2 || tail[0] != "data" {
                    continue;
                }
                if still_young(meta.last_modified.timestamp_millis(), cutoff) {
                    report.too_young += 1;
                    continue;
                }
                old.entry((scope, name)).or_default().push(meta);
            }
            // 2. What the records reference, read after the listing.
            for ((scope, name), metas) in old {
                let referenced = self.referenced_data(&scope, &name).await?;
                for meta in metas {
                    if referenced.contains(meta.location.as_ref()) {
                        continue;
                    }
                    self.objects().delete(&meta.location).await?;
                    report.data_objects += 1;
                    report.data_bytes += meta.size;
                }
            }
            // 3. Task context archives that died with the store or delete writing them.
            let (archives, young) = self.old_context_archives(cutoff).await?;
            report.too_young += young;
            for (_, (scope, archives)) in archives {
                let unreachable = self.unreachable_archives(&scope, archives).await?;
                report.context_versions += unreachable.len() as u64;
                self.objects().delete_many(unreachable).await?;
            }
            // 4. Compaction objects that died with the compaction or the change unnaming
            // them.
            let (removed, young) = self.collect_compactions(cutoff).await?;
            report.compaction_objects = removed;
            report.too_young += young;
            // 5. Slots of removed messages a retention sweep died before emptying.
            report.message_slots = self.collect_slots(cutoff).await?;
            // 6. Checkpoint values a prune or retention sweep left unused.
            let (removed, young) = self.collect_checkpoint_values(cutoff).await?;
            report.checkpoint_values = removed;
            report.too_young += young;
            // 7. Staging files of uploads that died, which listings do not show.
            if let Some(root) = self.local_namespace_dir() {
                let (files, bytes, young) =
                    tokio::task::spawn_blocking(move || remove_stale_staging(&root, cutoff))
                        .await
                        .map_err(|err| {
                            StorageError::backend(format!("staging file sweep failed: {err}"))
                        })??;
                report.staging_files = files;
                report.staging_bytes = bytes;
                report.too_young += young;
            }
            Ok(report)
        })
        .await
    }

    /// The namespace's directory on a local disk, for `file://` URLs.
    fn local_namespace_dir(&self) -> Option<std::path::PathBuf> {
        if self.objects().provider != "file" {
            return None;
        }
        let dir = self.config().url.trim_start_matches("file://");
        let root: &Path = &self.keys().namespace_root();
        Some(
            root.parts()
                .fold(std::path::PathBuf::from(dir), |path, part| {
                    path.join(part.as_ref())
                }),
        )
    }
}

/// Whether `name` is a staging file name of the local store: `<object>#<digits>`.
fn is_staging(name: &str) -> bool {
    name.rsplit_once('#').is_some_and(|(object, suffix)| {
        !object.is_empty() && !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Removes staging files under `root` last written before `cutoff` (ms since the epoch);
/// returns how many were removed, their bytes, and how many younger ones were left.
fn remove_stale_staging(root: &std::path::Path, cutoff: i64) -> Result<(u64, u64, u64)> {
    let (mut removed, mut bytes, mut young) = (0, 0, 0);
    let mut pending = vec![root.to_path_buf()];
    let io = |err: std::io::Error| {
        StorageError::backend(format!("cannot sweep staging files: {err}")).with_source(err)
    };
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // Removed meanwhile, or never created: nothing to sweep.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(io(err)),
        };
        for entry in entries {
            let entry = entry.map_err(io)?;
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                pending.push(entry.path());
                continue;
            }
            if !entry.file_name().to_str().is_some_and(is_staging) {
                continue;
            }
            let Ok(meta) = entry.metadata() else {
                continue; // finished (renamed) or removed meanwhile
            };
            let written = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(i64::MAX, |d| {
                    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
                });
            if still_young(written, cutoff) {
                young += 1;
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    removed += 1;
                    bytes += meta.len();
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(io(err)),
            }
        }
    }
    Ok((removed, bytes, young))
}

#[cfg(test)]
mod tests {
    use super::{is_staging, still_young};

    /// With no grace, what was written in the very millisecond a collection reads as now
    /// is collected (a file system with fine-grained times may stamp a marker so); with a
    /// grace, only what was written before it began.
    #[test]
    fn the_grace_ends_at_the_cutoff_itself() {
        let now = 1_700_000_000_000;
        assert!(!still_young(now, now));
        assert!(!still_young(now - 1, now));
        assert!(still_young(now + 1, now));
    }

    #[test]
    fn staging_names_are_recognized() {
        assert!(is_staging("0190aa#1"));
        assert!(is_staging("00000000000000000001#42"));
        assert!(!is_staging("0190aa"));
        assert!(!is_staging("0190aa#"));
        assert!(!is_staging("#12"));
        assert!(!is_staging("x#1a"));
    }
}
