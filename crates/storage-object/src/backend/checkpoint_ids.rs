//! How a chain's checkpoint ids are listed, and its newest checkpoints found without
//! listing every id where the store allows: the ids this process remembers
//! ([`crate::recent`]), checked by a listing that starts after them (S3's `start-after`), or
//! on a local directory by the directory's stamp ([`crate::dir_stamp`]).

use storage_core::{Checkpoint, Result};

use super::{in_order, ObjectBackend};
use crate::dir_stamp::DirStamp;
use crate::keys::{parts_after, take_id};

impl ObjectBackend {
    /// The checkpoint ids of (thread, namespace), ascending.
    pub(super) async fn checkpoint_ids(
        &self,
        thread_id: &str,
        namespace: &str,
    ) -> Result<Vec<String>> {
        let prefix = self.keys().checkpoints(thread_id, namespace);
        // Taken before the listing: see `crate::dir_stamp`.
        let mut stamp = self
            .local_dir(&prefix)
            .and_then(|dir| DirStamp::settled(&dir));
        let mut ids: Vec<String> = match self.local_files(&prefix, false).await {
            // On a local disk, names only (see `local_listing`).
            Some(listing) => {
                let listing = listing?;
                // An id of 63 bytes or more is a file in a folder of the chain's directory,
                // where a new one changes only that folder's times: a chain with any folder
                // (an empty one too, which a failed put may leave for a later put of its id
                // to fill) is listed every time.
                if listing.folders {
                    stamp = None;
                }
                listing
                    .files
                    .iter()
                    .filter_map(|(parts, _)| take_id(parts).map(|(id, _)| id))
                    .collect()
            }
            None => self
                .objects()
                .list(&prefix)
                .await?
                .iter()
                .filter_map(|path| take_id(&parts_after(path, &prefix)).map(|(id, _)| id))
                .collect(),
        };
        ids.sort();
        ids.dedup();
        self.recent().listed_all(&prefix, &ids, stamp);
        Ok(ids)
    }

    /// The `limit` newest checkpoints across `namespaces` of a thread (newest first; equal
    /// ids by namespace ascending), found by listing in each namespace only the ids above
    /// the `limit`-th newest this process remembers (see [`crate::recent`]). `None` when
    /// that cannot tell: too few remembered, too few found above it, or a record gone
    /// between the listing and its read; the caller then lists every id.
    pub(super) async fn newest_records(
        &self,
        thread_id: &str,
        namespaces: &[String],
        limit: usize,
    ) -> Result<Option<Vec<Checkpoint>>> {
        if self.objects().local_root.is_some() {
            return self
                .newest_local_records(thread_id, namespaces, limit)
                .await;
        }
        let mut candidates: Vec<(String, String)> = Vec::new();
        for ns in namespaces {
            let chain = self.keys().checkpoints(thread_id, ns);
            let Some(offset) = self.recent().nth_newest(&chain, limit) else {
                return Ok(None);
            };
            let above = self.ids_above(thread_id, ns, &offset).await?;
            self.recent().listed_above(&chain, &offset, &above);
            // The ids from `offset` on are those listed and `offset` itself, if it is still
            // stored (its record is read below: a record gone sends the caller to a full
            // listing).
            if above.len() + 1 < limit {
                return Ok(None);
            }
            candidates.extend(above.into_iter().map(|id| (ns.clone(), id)));
            candidates.push((ns.clone(), offset));
        }
        self.read_newest(thread_id, candidates, limit).await
    }

    /// [`ObjectBackend::newest_records`] on a local directory, where a listing reads every
    /// name of the chain's directory, however few it returns: the ids this process
    /// remembers of a chain whose directory has not changed since the listing they came
    /// from (one `stat`, see [`crate::dir_stamp`]), else a listing of every name. `None`
    /// only when a record is gone between the listing and its read.
    async fn newest_local_records(
        &self,
        thread_id: &str,
        namespaces: &[String],
        limit: usize,
    ) -> Result<Option<Vec<Checkpoint>>> {
        let mut candidates: Vec<(String, String)> = Vec::new();
        for ns in namespaces {
            let chain = self.keys().checkpoints(thread_id, ns);
            let now = self.local_dir(&chain).and_then(|dir| DirStamp::of(&dir));
            let ids = match self.recent().certified(&chain, now) {
                Some(ids) => ids,
                None => self.checkpoint_ids(thread_id, ns).await?,
            };
            let newest = ids.into_iter().rev().take(limit);
            candidates.extend(newest.map(|id| (ns.clone(), id)));
        }
        self.read_newest(thread_id, candidates, limit).await
    }

    /// The records of the `limit` newest of `candidates` (namespace, id) of a thread, newest
    /// first (equal ids by namespace ascending); `None` if one is gone.
    async fn read_newest(
        &self,
        thread_id: &str,
        mut candidates: Vec<(String, String)>,
        limit: usize,
    ) -> Result<Option<Vec<Checkpoint>>> {
        candidates.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        candidates.truncate(limit);
        let read = in_order(
            16,
            candidates
                .iter()
                .map(|(ns, id)| self.read_record(thread_id, ns, id)),
        )
        .await?;
        Ok(read.into_iter().collect())
    }

    /// The checkpoint ids of (thread, namespace) above `offset`, ascending: one listing
    /// that starts after it (S3's `start-after`; local files skip what sorts before it
    /// without reading its metadata).
    async fn ids_above(
        &self,
        thread_id: &str,
        namespace: &str,
        offset: &str,
    ) -> Result<Vec<String>> {
        use futures::TryStreamExt;
        let mut ids: Vec<String> = self
            .checkpoint_id_stream(thread_id, namespace, Some(offset))
            .try_filter(|id| std::future::ready(id.as_str() > offset))
            .try_collect()
            .await?;
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// The checkpoint ids of (thread, namespace) in the order the store lists them
    /// (ascending where [`crate::store::Objects::lists_in_order`]), a page at a time as
    /// they are read; an id may repeat. With `after`, the listing starts after that id's
    /// key (S3's `start-after`; local files skip the metadata of what sorts before it).
    pub(super) fn checkpoint_id_stream(
        &self,
        thread_id: &str,
        namespace: &str,
        after: Option<&str>,
    ) -> futures::stream::BoxStream<'static, Result<String>> {
        use futures::StreamExt;
        let prefix = self.keys().checkpoints(thread_id, namespace);
        let store = &self.objects().store;
        let listing = match after {
            Some(id) => store.list_with_offset(
                Some(&prefix),
                &self.keys().checkpoint(thread_id, namespace, id),
            ),
            None => store.list(Some(&prefix)),
        };
        listing
            .filter_map(move |item| {
                let id = match item {
                    Ok(meta) => {
                        take_id(&parts_after(&meta.location, &prefix)).map(|(id, _)| Ok(id))
                    }
                    // A prefix nothing was ever written under.
                    Err(object_store::Error::NotFound { .. }) => None,
                    Err(err) => Some(Err(crate::error::classify(err))),
                };
                std::future::ready(id)
            })
            .boxed()
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use object_store::local::LocalFileSystem;

    use storage_core::{ChannelVersions, Checkpoint, CheckpointQuery, CheckpointStore};

    use super::super::counting_store::Counting;
    use crate::dir_stamp::tests::trusted_dir;
    use crate::dir_stamp::SETTLED;
    use crate::{ObjectBackend, ObjectConfig};

    /// A backend on `dir`, as another process would open it.
    fn backend(dir: &tempfile::TempDir) -> ObjectBackend {
        let url = format!("file://{}", dir.path().display());
        ObjectBackend::new(ObjectConfig::new(url)).unwrap()
    }

    /// A backend on `dir` whose store requests are counted.
    fn counted(dir: &tempfile::TempDir) -> (ObjectBackend, Arc<Counting>) {
        let root = dir.path().canonicalize().unwrap();
        let local = LocalFileSystem::new_with_prefix(&root).unwrap();
        let store = Arc::new(Counting::new(Arc::new(local)));
        let backend = ObjectBackend::over_local(store.clone(), root, "default");
        (backend, store)
    }

    async fn put(backend: &ObjectBackend, id: &str) {
        let checkpoint = Checkpoint::new("t", "", id);
        backend
            .put_checkpoint(checkpoint, ChannelVersions::new())
            .await
            .unwrap();
    }

    async fn latest(backend: &ObjectBackend) -> Option<String> {
        let tuple = backend.get_checkpoint("t", "", None).await.unwrap();
        tuple.map(|tuple| tuple.checkpoint.id)
    }

    /// Listings of a chain's checkpoint ids: walks of its directory's names and the
    /// store's own listings.
    fn listings(backend: &ObjectBackend, store: &Counting) -> u64 {
        backend.objects().local_walks.swap(0, Ordering::SeqCst) + store.chain_listings()
    }

    /// Once a chain's directory has settled, its newest checkpoints are read without
    /// listing its names again; whatever another process creates or removes there since
    /// is seen at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_settled_chain_is_read_without_listing_and_changes_are_seen() {
        let dir = trusted_dir();
        let ((ours, store), other) = (counted(&dir), backend(&dir));
        for n in 0..30 {
            put(&ours, &format!("cp-{n:03}")).await;
        }
        tokio::time::sleep(SETTLED * 2).await;
        assert_eq!(latest(&ours).await.as_deref(), Some("cp-029"));
        listings(&ours, &store);
        assert_eq!(latest(&ours).await.as_deref(), Some("cp-029"));
        let mut ten = CheckpointQuery::thread("t");
        ten.limit = Some(10);
        let page = ours.list_checkpoints(ten.clone()).await.unwrap();
        let ids: Vec<_> = page.iter().map(|t| t.checkpoint.id.as_str()).collect();
        assert_eq!(ids.first(), Some(&"cp-029"));
        assert_eq!(ids.last(), Some(&"cp-020"));
        assert_eq!(
            listings(&ours, &store),
            0,
            "a settled chain was listed again"
        );

        // Another process adds a newer checkpoint, at once: seen at once.
        put(&other, "cp-030").await;
        assert_eq!(latest(&ours).await.as_deref(), Some("cp-030"));
        assert_eq!(listings(&ours, &store), 1);
        // ... and removes the newest two: seen at once.
        tokio::time::sleep(SETTLED * 2).await;
        assert_eq!(latest(&ours).await.as_deref(), Some("cp-030"));
        let removed = other.prune_checkpoints("t", 29).await.unwrap();
        assert_eq!(removed, 2);
        let page = ours.list_checkpoints(ten).await.unwrap();
        let ids: Vec<_> = page.iter().map(|t| t.checkpoint.id.as_str()).collect();
        assert_eq!(ids.first(), Some(&"cp-030"));
        assert_eq!(ids.last(), Some(&"cp-021"));
        other.delete_thread("t").await.unwrap();
        assert_eq!(latest(&ours).await, None);
    }

    /// Ids longer than one path segment are files in folders of the chain's directory,
    /// whose times a new id leaves alone: such a chain is listed on every read.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_chain_of_long_ids_is_always_listed() {
        let dir = trusted_dir();
        let ((ours, store), other) = (counted(&dir), backend(&dir));
        // 63 bytes fill the first segment; these share it and differ in the second.
        let long = |n: u32| format!("{}-{n:06}", "x".repeat(63));
        put(&ours, &long(1)).await;
        tokio::time::sleep(SETTLED * 2).await;
        assert_eq!(latest(&ours).await, Some(long(1)));
        put(&other, &long(2)).await;
        listings(&ours, &store);
        assert_eq!(latest(&ours).await, Some(long(2)));
        assert_eq!(listings(&ours, &store), 1);
    }

    /// A put that failed may leave an empty folder in the chain's directory (the one its
    /// id of 63 bytes needs), and a later put of that id fills it without changing the
    /// chain directory's times: a chain with a folder, even an empty one, is listed on
    /// every read, so that later put is seen (found in review).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_empty_folder_left_by_a_failed_put_keeps_the_chain_listed() {
        let dir = trusted_dir();
        let ((ours, store), other) = (counted(&dir), backend(&dir));
        put(&ours, "cp-000").await;
        let full = "y".repeat(63);
        // What the failed put left: the folder its key needs, nothing in it.
        let chain = ours.local_dir(&ours.keys().checkpoints("t", "")).unwrap();
        std::fs::create_dir(chain.join(format!("i{}", hex::encode(&full)))).unwrap();
        tokio::time::sleep(SETTLED * 2).await;
        assert_eq!(latest(&ours).await.as_deref(), Some("cp-000"));
        put(&other, &full).await;
        listings(&ours, &store);
        assert_eq!(latest(&ours).await, Some(full));
        assert_eq!(listings(&ours, &store), 1);
    }

    /// A chain this process writes to is listed again after each write (its directory
    /// changed), and the answer is the newest checkpoint every time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_write_sends_the_next_read_to_a_listing() {
        let dir = trusted_dir();
        let (ours, store) = counted(&dir);
        put(&ours, "cp-000").await;
        tokio::time::sleep(SETTLED * 2).await;
        assert_eq!(latest(&ours).await.as_deref(), Some("cp-000"));
        for n in 1..20 {
            put(&ours, &format!("cp-{n:03}")).await;
            listings(&ours, &store);
            assert_eq!(latest(&ours).await, Some(format!("cp-{n:03}")));
            assert_eq!(listings(&ours, &store), 1);
        }
    }
}
