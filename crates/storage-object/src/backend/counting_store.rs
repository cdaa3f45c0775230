//! A store that counts the requests made of it, for the tests that bound what an operation
//! costs in requests (`cost_tests`, `retention_cost_tests`): counting requests is how such
//! a test can fail, where timing would only be noisy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

const GETS: usize = 0;
const HEADS: usize = 1;
const LISTS: usize = 2;
const LISTED: usize = 3;
const PUTS: usize = 4;
const BYTES_READ: usize = 5;
const RECORD_READS: usize = 6;
const RECORD_KEYS_STREAMED: usize = 7;
const KEYS_STREAMED: usize = 8;
const CHAIN_LISTINGS: usize = 9;

/// Requests since the counts were last taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cost {
    pub gets: u64,
    pub heads: u64,
    /// Listings of every kind, each once.
    pub lists: u64,
    /// Keys (and folders) the listings of every kind yielded.
    pub listed: u64,
    pub puts: u64,
    pub bytes_read: u64,
}

/// Counts requests by kind: a listing counts once, and each key it yields once more.
/// Checkpoint records (keys under `checkpoints/`) are also counted apart, as the reads of
/// them and the keys of them that full listings yield.
#[derive(Debug)]
pub(super) struct Counting {
    inner: Arc<dyn ObjectStore>,
    counts: Arc<[AtomicU64; 10]>,
}

impl std::fmt::Display for Counting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counting")
    }
}

impl Counting {
    pub(super) fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Counting {
            inner,
            counts: Arc::new(Default::default()),
        }
    }

    fn add(&self, which: usize, by: u64) {
        self.counts[which].fetch_add(by, Ordering::Relaxed);
    }

    fn taken(&self, which: usize) -> u64 {
        self.counts[which].swap(0, Ordering::Relaxed)
    }

    /// The requests since the last take, and zero for the next.
    pub(super) fn take(&self) -> Cost {
        self.checkpoint_records();
        Cost {
            gets: self.taken(GETS),
            heads: self.taken(HEADS),
            lists: self.taken(LISTS),
            listed: self.taken(LISTED),
            puts: self.taken(PUTS),
            bytes_read: self.taken(BYTES_READ),
        }
    }

    /// Since the last take: (checkpoint records read, checkpoint record keys and keys of
    /// any kind that full listings yielded), and zero for the next.
    pub(super) fn checkpoint_records(&self) -> (u64, u64, u64) {
        (
            self.taken(RECORD_READS),
            self.taken(RECORD_KEYS_STREAMED),
            self.taken(KEYS_STREAMED),
        )
    }

    /// Listings of a chain's checkpoint ids (a prefix ending in `checkpoints`) since the
    /// last take, and zero for the next.
    pub(super) fn chain_listings(&self) -> u64 {
        self.taken(CHAIN_LISTINGS)
    }

    fn count_chain(&self, prefix: Option<&Path>) {
        if prefix.is_some_and(|prefix| prefix.as_ref().ends_with("/checkpoints")) {
            self.add(CHAIN_LISTINGS, 1);
        }
    }

    fn counted(
        &self,
        listing: BoxStream<'static, object_store::Result<ObjectMeta>>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.add(LISTS, 1);
        let counts = self.counts.clone();
        listing
            .inspect(move |item| {
                counts[LISTED].fetch_add(1, Ordering::Relaxed);
                counts[KEYS_STREAMED].fetch_add(1, Ordering::Relaxed);
                if item
                    .as_ref()
                    .is_ok_and(|meta| meta.location.as_ref().contains("/checkpoints/"))
                {
                    counts[RECORD_KEYS_STREAMED].fetch_add(1, Ordering::Relaxed);
                }
            })
            .boxed()
    }
}

#[async_trait]
impl ObjectStore for Counting {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.add(PUTS, 1);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.add(PUTS, 1);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let head = options.head;
        self.add(if head { HEADS } else { GETS }, 1);
        if location.as_ref().contains("/checkpoints/") {
            self.add(RECORD_READS, 1);
        }
        let result = self.inner.get_opts(location, options).await?;
        if !head {
            self.add(BYTES_READ, result.range.end - result.range.start);
        }
        Ok(result)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.count_chain(prefix);
        self.counted(self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.count_chain(prefix);
        self.counted(self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.count_chain(prefix);
        self.add(LISTS, 1);
        let listing = self.inner.list_with_delimiter(prefix).await?;
        let listed = (listing.objects.len() + listing.common_prefixes.len()) as u64;
        self.add(LISTED, listed);
        Ok(listing)
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
