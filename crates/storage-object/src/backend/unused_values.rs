//! Deferred collection of checkpoint channel values.
//!
//! A put may name a value it does not re-send (a fork from an older checkpoint names the
//! versions that checkpoint wrote), and object storage has no lock that would keep a
//! removal from deleting such a value while a fork of a removed checkpoint is being put: its
//! record would read back without the value. So a prune, a retention sweep or
//! `delete_for_runs` deletes checkpoint records and their writes but never a value; it
//! writes a marker instead, `unused_values/<thread>/<ns>/<uuid>`, naming every value
//! (channel, version) the removed checkpoints used, and touches it again once the records
//! are gone, so the marker's last-modified time says when those records stopped using
//! them. A put that replaces a stored checkpoint id does the same for the versions the
//! replaced record named and the new one does not. The survivors are not read: whether a
//! named value is still used is decided at collection, which reads every record anyway, so
//! a removal costs in proportion to what it removes.
//!
//! [`ObjectBackend::collect_garbage`] handles the markers older than its grace period
//! only: per (thread, namespace), it reads every checkpoint record, read after the markers
//! were listed, then lists the markers again and reads those that are not among the old
//! ones, and deletes the named values that are stored, that no record uses, and that no
//! such recent marker names (a checkpoint that used it was removed less than the grace
//! period ago, or since the first listing); then it deletes the old markers. A value kept
//! because a record or a recent marker names it is named again by the marker of the next
//! removal of a record using it (that marker, or the recent one, becomes old in turn).
//!
//! Why this never deletes a value a checkpoint reads: a put that names a value without
//! re-sending it read a checkpoint that used it. If that checkpoint is still stored when
//! collection reads the records, the value is kept. If it was removed before, its removal
//! wrote a marker naming the value before the record went, so before collection read the
//! records and listed the markers again: while that marker is younger than the grace
//! period the value is kept, and once it is older the put read its checkpoint more than the
//! grace period before (24 h by default; no put is that slow). Crash safety: the marker is
//! written before any record goes, so a removal that dies leaves at most a marker whose
//! values records still use (kept at collection) and never an unused value nobody names;
//! a collection that dies before deleting a marker leaves it for the next one (deleting a
//! value twice is harmless). A chain with a record that does not decode is left as it is,
//! markers included, with a warning. Markers written by the release before, which named only
//! the values no survivor used, are handled the same way.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use object_store::path::Path;
use storage_core::Result;

use super::{in_order, ObjectBackend};
use crate::keys::{parts_after, take_id};

/// A value of a (thread, namespace): (channel, version).
pub(super) type ValueKey = (String, String);

/// A marker written before the records went, to touch once they are gone.
pub(super) struct Marker {
    path: Path,
    bytes: Vec<u8>,
}

impl ObjectBackend {
    /// Writes a new marker naming `values` (none when there are none).
    pub(super) async fn mark_unused(
        &self,
        thread_id: &str,
        namespace: &str,
        values: &BTreeSet<ValueKey>,
    ) -> Result<Option<Marker>> {
        if values.is_empty() {
            return Ok(None);
        }
        let path = self.keys().unused_values_marker(thread_id, namespace);
        let bytes = serde_json::to_vec(values).map_err(|err| {
            storage_core::StorageError::backend(format!("cannot encode a value marker: {err}"))
        })?;
        self.objects().put(&path, bytes.clone()).await?;
        Ok(Some(Marker { path, bytes }))
    }

    /// Writes the marker again: its time becomes the time the records were gone.
    pub(super) async fn touch_marker(&self, marker: Option<Marker>) -> Result<()> {
        match marker {
            Some(Marker { path, bytes }) => self.objects().put(&path, bytes).await,
            None => Ok(()),
        }
    }

    /// The values the checkpoints `ids` of (thread, namespace) use (absent ones: none).
    async fn used_values(
        &self,
        thread_id: &str,
        namespace: &str,
        ids: &[String],
    ) -> Result<HashSet<ValueKey>> {
        let records = in_order(
            16,
            ids.iter()
                .map(|id| self.read_record(thread_id, namespace, id)),
        )
        .await?;
        Ok(records
            .into_iter()
            .flatten()
            .flat_map(|record| record.channel_versions.into_iter())
            .collect())
    }

    /// Every value (thread, namespace) stores.
    async fn stored_values(&self, thread_id: &str, namespace: &str) -> Result<BTreeSet<ValueKey>> {
        let prefix = self.keys().blobs(thread_id, namespace);
        Ok(self
            .objects()
            .list(&prefix)
            .await?
            .iter()
            .filter_map(|path| {
                let parts = parts_after(path, &prefix);
                let (channel, used) = take_id(&parts)?;
                let (version, more) = take_id(&parts[used..])?;
                (used + more == parts.len()).then_some((channel, version))
            })
            .collect())
    }

    /// The values named by the markers of (thread, namespace) other than `old`: those
    /// younger than the grace period, and those written since `old` was listed.
    async fn recent_marks(
        &self,
        thread_id: &str,
        namespace: &str,
        old: &BTreeSet<Path>,
    ) -> Result<HashSet<ValueKey>> {
        let prefix = self.keys().chain_unused_values(thread_id, namespace);
        let recent: Vec<Path> = self
            .objects()
            .list(&prefix)
            .await?
            .into_iter()
            .filter(|path| !old.contains(path))
            .collect();
        let read = in_order(16, recent.iter().map(|path| self.objects().get(path))).await?;
        Ok(read
            .into_iter()
            .flatten()
            .filter_map(|bytes| serde_json::from_slice::<Vec<ValueKey>>(&bytes).ok())
            .flatten()
            .collect())
    }

    /// The value step of `collect_garbage`: handles the markers last written before
    /// `cutoff` (ms since the epoch); returns the values removed and the markers left
    /// because they are younger.
    pub(super) async fn collect_checkpoint_values(&self, cutoff: i64) -> Result<(u64, u64)> {
        // 1. The markers, with their age, before any record is read.
        let prefix = self.keys().unused_values();
        let mut old: BTreeMap<(String, String), Vec<Path>> = BTreeMap::new();
        // Every old marker per chain, decodable or not: the markers not among them that a
        // later listing finds are recent.
        let mut old_paths: BTreeMap<(String, String), BTreeSet<Path>> = BTreeMap::new();
        let mut young = 0;
        for meta in self.objects().list_meta(&prefix).await? {
            let parts = parts_after(&meta.location, &prefix);
            let Some((thread, a)) = take_id(&parts) else {
                continue;
            };
            let Some((ns, b)) = take_id(&parts[a..]) else {
                continue;
            };
            if parts.len() != a + b + 1 {
                continue;
            }
            if super::gc::still_young(meta.last_modified.timestamp_millis(), cutoff) {
                young += 1;
                continue;
            }
            old_paths
                .entry((thread.clone(), ns.clone()))
                .or_default()
                .insert(meta.location.clone());
            old.entry((thread, ns)).or_default().push(meta.location);
        }
        // 2. Per (thread, namespace): its candidates against the records stored now.
        let mut removed = 0;
        for ((thread, ns), markers) in old {
            let mut candidates = BTreeSet::new();
            let mut handled = Vec::new();
            for marker in markers {
                let Some(bytes) = self.objects().get(&marker).await? else {
                    continue; // handled meanwhile by another collection
                };
                match serde_json::from_slice::<Vec<ValueKey>>(&bytes) {
                    Ok(values) => {
                        candidates.extend(values);
                        handled.push(marker);
                    }
                    Err(err) => tracing::warn!(
                        marker = %marker,
                        error = %err,
                        "undecodable checkpoint value marker left in place"
                    ),
                }
            }
            if candidates.is_empty() {
                continue;
            }
            let ids = self.checkpoint_ids(&thread, &ns).await?;
            let used = match self.used_values(&thread, &ns, &ids).await {
                Ok(used) => used,
                // What a record that does not decode uses is unknown: nothing of its
                // chain is collected, and the markers stay for a later collection.
                Err(err) if err.kind() == storage_core::ErrorKind::Serialization => {
                    tracing::warn!(
                        thread = %thread,
                        namespace = %ns,
                        error = %err,
                        "checkpoint values of a chain with an undecodable record left in place"
                    );
                    continue;
                }
                Err(err) => return Err(err),
            };
            // Listed after the records were read: the values a removal named in a marker
            // younger than the grace period (or written since the first listing) may have
            // been in use until then, by a record a fork still names.
            let recent = self
                .recent_marks(&thread, &ns, &old_paths[&(thread.clone(), ns.clone())])
                .await?;
            let stored = self.stored_values(&thread, &ns).await?;
            let doomed: Vec<Path> = candidates
                .iter()
                .filter(|value| {
                    stored.contains(*value) && !used.contains(*value) && !recent.contains(*value)
                })
                .map(|(channel, version)| self.keys().blob(&thread, &ns, channel, version))
                .collect();
            removed += doomed.len() as u64;
            self.objects().delete_many(doomed).await?;
            self.objects().delete_many(handled).await?;
        }
        Ok((removed, young))
    }
}
