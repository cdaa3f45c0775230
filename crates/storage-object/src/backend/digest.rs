//! The SHA-256 of a save, computed on a blocking thread beside the upload.
//!
//! Hashing inline runs at the speed of one core and the upload waits for it, so a large save
//! would be limited to hashing and writing one after the other. Handing each chunk (a cheap
//! reference-counted `Bytes`) to a thread of its own lets both proceed at once; the bounded
//! channel keeps the hasher from falling more than a few chunks behind.

use bytes::Bytes;
use sha2::{Digest, Sha256};
use storage_core::{Result, StorageError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Chunks the hasher may lag behind the upload.
const CHUNKS_IN_FLIGHT: usize = 8;

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
    chunks: mpsc::Sender<Bytes>,
    hasher: JoinHandle<Sha256>,
}

impl BackgroundDigest {
    /// Starts hashing on its own thread.
    pub(super) fn start() -> Self {
        let mut hasher = Sha256::new();
        let (chunks, mut received) = mpsc::channel::<Bytes>(CHUNKS_IN_FLIGHT);
        let hasher = tokio::task::spawn_blocking(move || {
            while let Some(chunk) = received.blocking_recv() {
                hasher.update(&chunk);
            }
            hasher
        });
        BackgroundDigest { chunks, hasher }
    }

    /// Hashes `chunk` next, waiting only when the hasher is `CHUNKS_IN_FLIGHT` chunks behind.
    pub(super) async fn update(&self, chunk: Bytes) -> Result<()> {
        self.chunks
            .send(chunk)
            .await
            .map_err(|_| StorageError::backend("the artifact digest thread stopped"))
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
