//! A listing of one local directory tree that reads names, not metadata.
//!
//! The local store's listing stats every file it yields (some twice) and converts each
//! path through a URL; for the listings a count needs (a chain's checkpoint keys, a name's
//! version keys) that per-key cost is what grows with a series. Reading the directory
//! entries directly costs one `getdents` per few hundred names, and a `stat` only where
//! the size is wanted. Only for `file://` URLs; other stores list as before.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use object_store::path::Path;
use storage_core::{Result, StorageError};

use super::ObjectBackend;

/// One file: the segments of its path below the listed prefix, and its size (0 unless
/// asked for).
pub(crate) type LocalFile = (Vec<String>, u64);

/// The files below a prefix, and whether any folder lies below it (an empty one included:
/// a write that failed may leave one, and a later write into it changes only its times).
pub(crate) struct LocalListing {
    pub(crate) files: Vec<LocalFile>,
    pub(crate) folders: bool,
}

impl ObjectBackend {
    /// The directory of `prefix` when the store is a local directory, else `None`.
    pub(super) fn local_dir(&self, prefix: &Path) -> Option<PathBuf> {
        // The root the store resolved when opened, never `object.url` again: a relative
        // URL read after the process changed its working directory would name another
        // directory, and a listing of that one (empty) would answer for this one.
        let dir = self.objects().local_root.as_ref()?;
        Some(
            prefix
                .parts()
                .fold(PathBuf::clone(dir), |path, part| path.join(part.as_ref())),
        )
    }

    /// The files below `prefix` (recursive, in no set order) when the store is a local
    /// directory, else `None`. Staging files of writes in progress (`<name>#<digits>`),
    /// which the store's own listing hides too, are left out; so is a file removed while
    /// it is listed.
    pub(super) async fn local_files(
        &self,
        prefix: &Path,
        sizes: bool,
    ) -> Option<Result<LocalListing>> {
        let root = self.local_dir(prefix)?;
        self.objects().local_walks.fetch_add(1, Ordering::Relaxed);
        let walk = tokio::task::spawn_blocking(move || walk(root, sizes));
        Some(match walk.await {
            Ok(walked) => walked.map_err(|err| {
                StorageError::backend(format!("cannot list a local directory: {err}"))
                    .with_source(err)
            }),
            Err(err) => Err(StorageError::backend(format!(
                "local directory listing failed: {err}"
            ))),
        })
    }
}

fn walk(root: PathBuf, sizes: bool) -> std::io::Result<LocalListing> {
    let mut files = Vec::new();
    let mut folders = false;
    let mut pending = vec![(root, Vec::new())];
    while let Some((dir, parts)) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // Never written, or removed meanwhile (a delete removes emptied directories).
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue; // never a key of ours
            };
            let kind = match entry.file_type() {
                Ok(kind) => kind,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err),
            };
            let mut path = parts.clone();
            path.push(name);
            if kind.is_dir() {
                folders = true;
                pending.push((entry.path(), path));
                continue;
            }
            if path.last().is_some_and(|name| name.contains('#')) {
                continue; // a staging file; no key of ours holds `#`
            }
            let size = if sizes {
                match entry.metadata() {
                    Ok(meta) => meta.len(),
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(err),
                }
            } else {
                0
            };
            files.push((path, size));
        }
    }
    Ok(LocalListing { files, folders })
}
