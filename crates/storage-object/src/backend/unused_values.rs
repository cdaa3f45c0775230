//! Deferred collection of checkpoint channel values.
//!
//! A put may name a value it does not re-send (a fork from an older checkpoint names the
//! versions that checkpoint wrote), and object storage has no lock that would keep a prune
//! from deleting such a value between reading the survivors and deleting: a put whose
//! record lands in that window would read back without the value. So a prune, a retention
//! sweep or `delete_for_runs` deletes checkpoint records and their writes at once but never
//! a value; it writes a marker instead, `unused_values/<thread>/<ns>/<uuid>`, naming the
//! values (channel, version) that no survivor used at that moment, and touches it again
//! once the records are gone, so the marker's last-modified time says when the values
//! became unused.
//!
//! [`ObjectBackend::collect_garbage`] handles the markers older than its grace period
//! only: it reads every checkpoint record of the marker's (thread, namespace), read after
//! the markers were listed, deletes the named values that none of them uses, keeps those a
//! newer checkpoint (a fork) uses again, and then deletes the marker. A value a later
//! prune leaves unused again gets a marker of its own.
//!
//! Crash safety: the marker is written before any record goes, so a prune that dies
//! leaves at most a marker whose values a record still uses (kept at collection) and never
//! an unused value nobody names; a collection that dies before deleting a marker leaves it
//! for the next one (deleting a value twice is harmless). A value is never deleted while a
//! stored checkpoint uses it. What the grace period covers: a put whose record lands after
//! collection read the records, naming a value unused for longer than the grace period,
//! that is, forking from a checkpoint read before the prune removed it, more than the grace
//! period earlier. With the default of a day no put is that slow.

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
    /// Among `candidates` (or all stored values of (thread, namespace)), those no
    /// checkpoint of `keep` uses.
    pub(super) async fn unused_values(
        &self,
        thread_id: &str,
        namespace: &str,
        keep: &[String],
        candidates: Option<HashSet<ValueKey>>,
    ) -> Result<BTreeSet<ValueKey>> {
        let used = self.used_values(thread_id, namespace, keep).await?;
        let candidates = match candidates {
            Some(candidates) => candidates.into_iter().collect(),
            None => self.stored_values(thread_id, namespace).await?,
        };
        Ok(candidates
            .into_iter()
            .filter(|value| !used.contains(value))
            .collect())
    }

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

    /// The value step of `collect_garbage`: handles the markers last written before
    /// `cutoff` (ms since the epoch); returns the values removed and the markers left
    /// because they are younger.
    pub(super) async fn collect_checkpoint_values(&self, cutoff: i64) -> Result<(u64, u64)> {
        // 1. The markers, with their age, before any record is read.
        let prefix = self.keys().unused_values();
        let mut old: BTreeMap<(String, String), Vec<Path>> = BTreeMap::new();
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
            if meta.last_modified.timestamp_millis() >= cutoff {
                young += 1;
                continue;
            }
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
            let ids = self.checkpoint_ids(&thread, &ns).await?;
            let used = self.used_values(&thread, &ns, &ids).await?;
            let stored = self.stored_values(&thread, &ns).await?;
            let doomed: Vec<Path> = candidates
                .iter()
                .filter(|value| stored.contains(*value) && !used.contains(*value))
                .map(|(channel, version)| self.keys().blob(&thread, &ns, channel, version))
                .collect();
            removed += doomed.len() as u64;
            self.objects().delete_many(doomed).await?;
            self.objects().delete_many(handled).await?;
        }
        Ok((removed, young))
    }
}
