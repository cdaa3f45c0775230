//! The SHA-256 of a save, computed on a blocking thread beside the upload.
//!
//! Hashing inline runs at the speed of one core and the upload waits for it, so a large save
//! would be limited to hashing and writing one after the other. Handing each chunk (a cheap
//! reference-counted `Bytes`) to a thread of its own lets both proceed at once. The hasher
//! may fall behind by a bounded number of bytes, not chunks: a source of large chunks (a
//! ranged read of another store hands over whole parts) would otherwise queue several
//! parts' worth of memory behind a slow hasher.

use bytes::Bytes;
use sha2::{Digest, Sha256};
use storage_core::{Result, StorageError};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

/// Bytes the hasher may lag behind the upload, in KiB (a chunk larger than this waits
/// until the hasher has caught up completely, then goes alone).
const KIB_BEHIND: u32 = 8 * 1024;

/// Content smaller than this is hashed inline: a thread hand-off would cost more.
const INLINE_BYTES: usize = 64 * 1024;

/// The SHA-256 of content held in memory, as lowercase hex: on a blocking thread unless
/// small, so that it can run beside the put of the same bytes.
pub(super) async fn digest_of(chunks: Vec<Bytes>) -> Result<String> {
    let digest = |chunks: Vec<Bytes>| {
        let mut hasher = Sha256::new();
        for chunk in &chunks {
            hasher.update(chunk);
        }
        hex::encode(hasher.finalize())
    };
    if chunks.iter().map(Bytes::len).sum::<usize>() < INLINE_BYTES {
        return Ok(digest(chunks));
    }
    tokio::task::spawn_blocking(move || digest(chunks))
        .await
        .map_err(|err| StorageError::backend(format!("the artifact digest thread failed: {err}")))
}

/// A running SHA-256 that hashes on a blocking thread.
pub(super) struct BackgroundDigest {
    chunks: mpsc::UnboundedSender<(Bytes, OwnedSemaphorePermit)>,
    /// One permit per KiB not yet hashed.
    behind: std::sync::Arc<Semaphore>,
    hasher: JoinHandle<Sha256>,
}

impl BackgroundDigest {
    /// Starts hashing on its own thread.
    pub(super) fn start() -> Self {
        let mut hasher = Sha256::new();
        let (chunks, mut received) = mpsc::unbounded_channel::<(Bytes, OwnedSemaphorePermit)>();
        let hasher = tokio::task::spawn_blocking(move || {
            while let Some((chunk, permit)) = received.blocking_recv() {
                hasher.update(&chunk);
                // The chunk's bytes are no longer held for the hasher.
                drop((chunk, permit));
            }
            hasher
        });
        BackgroundDigest {
            chunks,
            behind: std::sync::Arc::new(Semaphore::new(KIB_BEHIND as usize)),
            hasher,
        }
    }

    /// Hashes `chunk` next, waiting only while the hasher is more than `KIB_BEHIND` KiB
    /// behind.
    pub(super) async fn update(&self, chunk: Bytes) -> Result<()> {
        let kib = u32::try_from(chunk.len().div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, KIB_BEHIND);
        let stopped = || StorageError::backend("the artifact digest thread stopped");
        let permit = self
            .behind
            .clone()
            .acquire_many_owned(kib)
            .await
            .map_err(|_| stopped())?;
        self.chunks.send((chunk, permit)).map_err(|_| stopped())
    }

    /// Waits for every chunk to be hashed and returns the digest as lowercase hex.
    pub(super) async fn finish(self) -> Result<String> {
        drop(self.chunks);
        let hasher = self.hasher.await.map_err(|err| {
            StorageError::backend(format!("the artifact digest thread failed: {err}"))
        })?;
        Ok(hex::encode(hasher.finalize()))
    }
}
