//! Retention sweeps (see `storage_core::retention`): each visits the series of its kind
//! through the listing that already enumerates them, a page at a time, and trims each
//! series with the conditional write its other changes already use.
//!
//! - Messages: one compare-and-set of the conversation head hides the expired prefix (as
//!   a rewind or a pop does, so summaries go with what they kept); appends create slots
//!   above the head and are never lost. The compaction objects the head stopped naming
//!   are deleted after; `collect_garbage` removes them if that never happens.
//! - Context versions: one compare-and-set of the scope's head raises its `floor`
//!   (readers never look below it), then the archives below are deleted, as a store's
//!   trim does; `collect_garbage` removes any a crash leaves.
//! - Checkpoints: the expired records are deleted oldest first (a reader never sees a
//!   hole), with their writes; every value they used is named in a marker, and
//!   `collect_garbage` removes those no checkpoint uses then (see `unused_values`), so the
//!   survivors are never read. The count of a chain comes from the listing of its record
//!   keys, read whole for `keep_last` (object storage keeps no count) and, for an age
//!   alone on a store that lists in key order, only up to the first young record.
//! - Artifact versions: each expired version becomes a tombstone and loses its content,
//!   oldest first, exactly as `delete_artifact(.., Some(v))` does; a `floor` hint then
//!   says where the next sweep starts, so tombstones are not read again.
//!
//! Within a series only the expired prefix and the record that ends it are read: for
//! `keep_last` the arithmetic of the head, or a listing of the keys, gives the count. For
//! artifact versions that listing starts at the `floor` hint and its sizes tell the
//! tombstones (a version can be deleted anywhere, so numbers do not count the live
//! ones); only a record too small to be surely live is read.
//!
//! Series are enumerated with delimiter listings where a full listing would yield what
//! they hold (artifact names; context heads, whose cell is a directory of versions on
//! local files), so what grows with a series is at most the keys a count lists: one
//! LIST request per 1,000 on S3, never a read per record kept.

use std::future::Future;

use futures::TryStreamExt;

use storage_core::retention::series_outcome;
use storage_core::{Checkpoint, ContextScope, Result, Retention, StorageError};

use super::conversation::too_many_writers;
use super::{in_order, ObjectBackend, CAS_ATTEMPTS};
use crate::keys::parse_number;
use crate::store::backoff;

/// The length of a tombstone version record as stored: a record no longer than twice
/// this is read to tell whether it is one (a live record is far longer; see the test
/// `a_live_version_record_is_never_as_small_as_a_tombstone`).
pub(super) fn tombstone_len() -> Result<u64> {
    let tombstone = super::artifacts::VersionRecord {
        meta: None,
        data: None,
    };
    Ok(storage_core::wire::encode(&tombstone)?.len() as u64)
}

/// Series listed per page.
const PAGE: usize = 100;
/// Records read at once while walking an expired prefix.
const BATCH: usize = 16;

/// Checks a retention before any I/O; `false`: it removes nothing.
pub(super) fn admits(retention: &Retention) -> Result<bool> {
    retention.check()?;
    Ok(!retention.is_unbounded())
}

/// Walks the pages of a listing (`list(after)`, sorted, at most [`PAGE`] items) and trims
/// each listed series; returns the total removed.
pub(super) async fn sweep<T, L, LF, F, FF>(kind: &str, mut list: L, mut trim: F) -> Result<u64>
where
    T: Clone + std::fmt::Debug,
    L: FnMut(Option<T>, usize) -> LF,
    LF: Future<Output = Result<Vec<T>>>,
    F: FnMut(T) -> FF,
    FF: Future<Output = Result<u64>>,
{
    let mut after = None;
    let mut removed = 0;
    loop {
        let page = list(after.take(), PAGE).await?;
        let full = page.len() == PAGE;
        for series in page {
            after = Some(series.clone());
            let outcome = trim(series.clone()).await;
            removed += series_outcome(kind, &series, outcome)?;
        }
        if !full {
            return Ok(removed);
        }
    }
}

/// Walks records `first..end` in batches of [`BATCH`] (read with `read`), oldest first,
/// while `expired` says they have expired; returns the records that did, each with its
/// number, and where the walk stopped (the first number kept, or `end`). A record `read`
/// finds absent is skipped.
pub(super) async fn walk_expired<T, R, RF>(
    first: u64,
    end: u64,
    mut read: R,
    mut expired: impl FnMut(&T) -> bool,
) -> Result<(Vec<(u64, T)>, u64)>
where
    R: FnMut(u64) -> RF,
    RF: Future<Output = Result<Option<T>>>,
{
    let mut found = Vec::new();
    let mut next = first;
    while next < end {
        let upto = end.min(next.saturating_add(BATCH as u64));
        let read = in_order(BATCH, (next..upto).map(&mut read)).await?;
        for (number, record) in (next..upto).zip(read) {
            match record {
                Some(record) if expired(&record) => found.push((number, record)),
                Some(_) => return Ok((found, number)),
                None => {}
            }
        }
        next = upto;
    }
    Ok((found, end))
}

impl ObjectBackend {
    /// `retain_messages` for one conversation: one compare-and-set of its head.
    pub(super) async fn retain_conversation(
        &self,
        session_id: &str,
        retention: &Retention,
    ) -> Result<u64> {
        'attempt: for attempt in 0..CAS_ATTEMPTS {
            backoff(attempt.min(4)).await;
            let (mut head, token) = self.sync_head(session_id).await?;
            let live = head.live_in(1, head.last);
            if live <= 1 {
                return Ok(0);
            }
            // The oldest `live - keep_last` have expired by count: no read needed.
            let by_count = retention
                .keep_last
                .map_or(0, |keep| live.saturating_sub(keep));
            let mut removed = by_count;
            let mut end = head
                .live_window(1, head.last, by_count as usize, true)
                .last()
                .copied()
                .unwrap_or(head.floor);
            if let Some(cutoff) = retention.created_before {
                // Then by age, a batch of live messages at a time, never the newest.
                while removed < live - 1 {
                    let wanted = (live - 1 - removed).min(BATCH as u64) as usize;
                    let sequences = head.live_window(end + 1, head.last, wanted, true);
                    let Some(read) = self.read_live(session_id, &head, &sequences).await? else {
                        continue 'attempt;
                    };
                    let old = read
                        .iter()
                        .take_while(|message| message.created_at < cutoff)
                        .count();
                    removed += old as u64;
                    if let Some(message) = old.checked_sub(1).map(|i| &read[i]) {
                        end = message.sequence;
                    }
                    if old < read.len() || read.is_empty() {
                        break;
                    }
                }
            }
            if removed == 0 {
                return Ok(0);
            }
            let floor = head.floor;
            let unnamed = head.remove(1, end);
            if self.write_head(session_id, token.as_ref(), &head).await? {
                self.delete_unnamed(session_id, unnamed).await;
                self.stub_slots(session_id, floor, head.floor).await?;
                return Ok(removed);
            }
        }
        Err(too_many_writers())
    }

    /// `retain_context_versions` for one scope: one compare-and-set of its head raises the
    /// floor, then the archives below it go.
    pub(super) async fn retain_scope(
        &self,
        scope: &ContextScope,
        retention: &Retention,
    ) -> Result<u64> {
        for attempt in 0..CAS_ATTEMPTS {
            backoff(attempt).await;
            let Some((head, token)) = self.read_head(scope).await? else {
                return Ok(0);
            };
            let Some(lineage) = head.lineage()?.map(str::to_owned) else {
                return Ok(0); // a record of the release before versions: one version
            };
            let version = head.context.version;
            let floor = head.floor().max(1);
            if floor >= version {
                return Ok(0);
            }
            // Versions are numbered consecutively (as a store's own trim counts them):
            // those below `version + 1 - keep_last` have expired by count.
            let by_count = retention
                .keep_last
                .map_or(floor, |keep| (version + 1).saturating_sub(keep))
                .clamp(floor, version);
            let (counted, _) = walk_expired(
                floor,
                by_count,
                |v| self.read_archive(scope, &head, v),
                |_| true,
            )
            .await?;
            let mut removed = counted.len() as u64;
            let mut new_floor = by_count;
            if let Some(cutoff) = retention.created_before {
                let (old, _) = walk_expired(
                    by_count,
                    version,
                    |v| self.read_archive(scope, &head, v),
                    |context| context.updated_at < cutoff,
                )
                .await?;
                if let Some((last, _)) = old.last() {
                    new_floor = last + 1;
                }
                removed += old.len() as u64;
            }
            if new_floor <= floor {
                return Ok(0);
            }
            if !self
                .write_context_floor(scope, &head, &token, new_floor)
                .await?
            {
                continue;
            }
            let trimmed = (floor..new_floor)
                .map(|v| self.keys().context_archive(scope, &lineage, v))
                .collect();
            self.objects().delete_many(trimmed).await?;
            return Ok(removed);
        }
        Err(StorageError::backend("too many concurrent writers on one record").with_temporary(true))
    }

    /// `retain_checkpoints` for one (thread, namespace): the expired records are read,
    /// then removed oldest first (see `retire_checkpoints`); the survivors are not read.
    pub(super) async fn retain_chain(
        &self,
        thread_id: &str,
        namespace: &str,
        retention: &Retention,
    ) -> Result<u64> {
        let doomed = match (retention.keep_last, retention.created_before) {
            (None, Some(cutoff)) if self.objects().lists_in_order() => {
                self.aged_checkpoints(thread_id, namespace, cutoff).await?
            }
            _ => {
                self.expired_checkpoints(thread_id, namespace, retention)
                    .await?
            }
        };
        self.retire_checkpoints(thread_id, namespace, &doomed).await
    }

    /// The expired prefix of a chain, from the whole listing of its record keys: a count
    /// needs every key (one LIST request per 1,000 on S3), and a local directory lists
    /// in no order.
    async fn expired_checkpoints(
        &self,
        thread_id: &str,
        namespace: &str,
        retention: &Retention,
    ) -> Result<Vec<Checkpoint>> {
        let ids = self.checkpoint_ids(thread_id, namespace).await?;
        let len = ids.len() as u64;
        if len <= 1 {
            return Ok(Vec::new());
        }
        let by_count = retention
            .keep_last
            .map_or(0, |keep| len.saturating_sub(keep));
        let read = |i: u64| self.read_record(thread_id, namespace, &ids[i as usize]);
        let (mut doomed, _) = walk_expired(0, by_count, read, |_| true).await?;
        if let Some(cutoff) = retention.created_before {
            let (old, _) = walk_expired(by_count, len - 1, read, |cp: &Checkpoint| {
                cp.created_at < cutoff
            })
            .await?;
            doomed.extend(old);
        }
        Ok(doomed.into_iter().map(|(_, record)| record).collect())
    }

    /// The prefix of a chain older than `cutoff`, where listings come in key order (and
    /// record keys sort like checkpoint ids): the listing is read only up to the first
    /// young record, plus a batch, so the cost follows what is removed; a record is
    /// removed only once a newer key is listed (never the newest).
    async fn aged_checkpoints(
        &self,
        thread_id: &str,
        namespace: &str,
        cutoff: storage_core::Timestamp,
    ) -> Result<Vec<Checkpoint>> {
        let mut listing = self.checkpoint_id_stream(thread_id, namespace, None);
        let mut ids: Vec<String> = Vec::new();
        let mut exhausted = false;
        let mut doomed = Vec::new();
        let mut next = 0;
        loop {
            while !exhausted && ids.len() <= next + BATCH {
                match listing.try_next().await? {
                    Some(id) if ids.last() != Some(&id) => ids.push(id),
                    Some(_) => {}
                    None => exhausted = true,
                }
            }
            let end = if exhausted {
                ids.len().saturating_sub(1)
            } else {
                next + BATCH
            };
            if next >= end {
                break;
            }
            let read = |i: u64| self.read_record(thread_id, namespace, &ids[i as usize]);
            let (old, stop) = walk_expired(next as u64, end as u64, read, |cp: &Checkpoint| {
                cp.created_at < cutoff
            })
            .await?;
            doomed.extend(old.into_iter().map(|(_, record)| record));
            if stop < end as u64 {
                break;
            }
            next = end;
        }
        Ok(doomed)
    }

    /// `retain_artifact_versions` for one (scope, name): from the `floor` hint up, each
    /// expired version becomes a tombstone (as `delete_artifact(.., Some(v))` does),
    /// oldest first; the hint then moves past them.
    pub(super) async fn retain_artifact(
        &self,
        scope: &str,
        name: &str,
        retention: &Retention,
    ) -> Result<u64> {
        let Some(last) = self.last_version_number(scope, name).await? else {
            return Ok(0);
        };
        let floor = self.artifact_floor(scope, name).await?;
        if floor >= last {
            return Ok(0);
        }
        let live = |version: u64| async move {
            Ok(self
                .read_version(scope, name, version)
                .await?
                .filter(|record| record.meta.is_some()))
        };
        // Down from the newest number to the newest live version and, for keep_last,
        // to the oldest of the newest `keep_last` live ones: numbers below it expired.
        let keep = retention.keep_last.unwrap_or(1);
        if retention.created_before.is_none() && last - floor < keep {
            return Ok(0);
        }
        let (newest, boundary) = match retention.keep_last {
            Some(keep) => self.newest_live_listed(scope, name, floor, keep).await?,
            None => self.newest_live_read(scope, name, floor, last).await?,
        };
        let Some(newest) = newest else {
            return Ok(0);
        };
        let (mut doomed, mut stop) = walk_expired(floor, boundary, live, |_| true).await?;
        if let Some(cutoff) = retention.created_before {
            let (old, at) = walk_expired(boundary, newest, live, |record| {
                record
                    .meta
                    .as_ref()
                    .is_some_and(|meta| meta.created_at < cutoff)
            })
            .await?;
            doomed.extend(old);
            stop = at;
        }
        let mut removed = 0;
        for (version, record) in doomed {
            if self.tombstone(scope, name, version, record).await? {
                removed += 1;
            }
        }
        if stop > floor {
            let hint = self.keys().artifact_floor(scope, name);
            self.objects()
                .put(&hint, stop.to_string().into_bytes())
                .await?;
        }
        Ok(removed)
    }

    /// For an age alone: the newest live version, read down from the newest number
    /// (usually one read); the sweep then starts at `floor`.
    async fn newest_live_read(
        &self,
        scope: &str,
        name: &str,
        floor: u64,
        last: u64,
    ) -> Result<(Option<u64>, u64)> {
        let mut next = Some(last);
        while let Some(top) = next.filter(|&top| top >= floor) {
            let bottom = top.saturating_sub(BATCH as u64 - 1).max(floor);
            let read = in_order(
                BATCH,
                (bottom..=top)
                    .rev()
                    .map(|version| self.read_version(scope, name, version)),
            )
            .await?;
            for (version, record) in (bottom..=top).rev().zip(read) {
                if record.is_some_and(|record| record.meta.is_some()) {
                    return Ok((Some(version), floor));
                }
            }
            next = bottom.checked_sub(1);
        }
        Ok((None, floor))
    }

    /// For `keep_last`: the newest live version and the oldest of the newest `keep` live
    /// ones (numbers below it have expired by count), from one listing of the version
    /// keys from `floor` up. A version can be deleted anywhere, so numbers do not count
    /// the live ones, but the listed sizes do: a tombstone is a few dozen bytes, a live
    /// record (metadata and a content path) far more, and only a record too small to be
    /// surely live is read to tell. So the survivors' keys are listed (one request per
    /// 1,000 on S3) but not read.
    async fn newest_live_listed(
        &self,
        scope: &str,
        name: &str,
        floor: u64,
        keep: u64,
    ) -> Result<(Option<u64>, u64)> {
        let prefix = self.keys().artifact_versions(scope, name);
        let mut listed = match self.local_files(&prefix, true).await {
            Some(listing) => listing?
                .files
                .into_iter()
                .filter_map(|(parts, size)| match &parts[..] {
                    [version] => parse_number(version).map(|version| (version, size)),
                    _ => None,
                })
                .filter(|&(version, _)| version >= floor)
                .collect(),
            None => self.listed_versions(&prefix, scope, name, floor).await?,
        };
        listed.sort_unstable();
        let small = 2 * tombstone_len()?;
        let mut newest = None;
        let mut found = 0;
        for &(version, size) in listed.iter().rev() {
            let live = size > small
                || self
                    .read_version(scope, name, version)
                    .await?
                    .is_some_and(|record| record.meta.is_some());
            if live {
                newest = newest.or(Some(version));
                found += 1;
                if found == keep {
                    return Ok((newest, version));
                }
            }
        }
        Ok((newest, floor))
    }

    /// The versions from `floor` up with their sizes, from one listing of the store that
    /// starts right below `floor` (S3's `start-after`).
    async fn listed_versions(
        &self,
        prefix: &object_store::path::Path,
        scope: &str,
        name: &str,
        floor: u64,
    ) -> Result<Vec<(u64, u64)>> {
        let listing = match floor.checked_sub(1) {
            Some(below) => {
                let offset = self.keys().artifact_version(scope, name, below);
                self.objects().store.list_with_offset(Some(prefix), &offset)
            }
            None => self.objects().store.list(Some(prefix)),
        };
        listing
            .try_filter_map(|meta| async move {
                let version = meta.location.filename().and_then(parse_number);
                Ok(version
                    .filter(|&version| version >= floor)
                    .map(|version| (version, meta.size)))
            })
            .try_collect()
            .await
            .or_else(|err| match err {
                object_store::Error::NotFound { .. } => Ok(Vec::new()),
                err => Err(crate::error::classify(err)),
            })
    }

    /// Where a sweep of the name starts: the `floor` hint when the version right below
    /// it is a tombstone (a hint of a deleted history says nothing), otherwise 0.
    async fn artifact_floor(&self, scope: &str, name: &str) -> Result<u64> {
        let hint = self
            .objects()
            .get(&self.keys().artifact_floor(scope, name))
            .await?
            .and_then(|bytes| std::str::from_utf8(&bytes).ok()?.parse::<u64>().ok());
        let Some(floor) = hint.filter(|&floor| floor > 0) else {
            return Ok(0);
        };
        let below = self.read_version(scope, name, floor - 1).await?;
        Ok(if below.is_some_and(|record| record.meta.is_none()) {
            floor
        } else {
            0
        })
    }
}
