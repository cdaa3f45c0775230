//! The SHA-256 of a large save, computed on a blocking thread beside the upload.
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

/// A running SHA-256 that hashes on a blocking thread.
pub(super) struct BackgroundDigest {
    chunks: mpsc::Sender<Bytes>,
    hasher: JoinHandle<Sha256>,
}

impl BackgroundDigest {
    /// Continues `hasher` (which may already hold a prefix of the content) on its own thread.
    pub(super) fn continue_from(mut hasher: Sha256) -> Self {
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
