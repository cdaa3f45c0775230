//! What this process remembers of each versioned cell (local files): the highest version
//! it saw, so that a read probes upward from it instead of listing, and when a collection
//! of the cell's old versions can next find one, so that a write lists only then.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use object_store::path::Path;

/// The highest version seen per versioned cell, and when a collection of its old versions
/// can next find one, forgotten wholesale past [`NewestVersions::MAX_CELLS`] cells (a miss
/// only costs a listing).
#[derive(Debug, Default)]
pub(crate) struct NewestVersions {
    seen: Mutex<HashMap<String, u64>>,
    collect_at: Mutex<HashMap<String, Instant>>,
}

impl NewestVersions {
    const MAX_CELLS: usize = 100_000;

    pub(crate) fn get(&self, cell: &Path) -> Option<u64> {
        lock(&self.seen).get(cell.as_ref()).copied()
    }

    pub(crate) fn set(&self, cell: &Path, version: u64) {
        bounded_insert(&mut lock(&self.seen), cell, version);
    }

    pub(crate) fn forget(&self, cell: &Path) {
        lock(&self.seen).remove(cell.as_ref());
        lock(&self.collect_at).remove(cell.as_ref());
    }

    /// Whether a collection of the cell's old versions may find one (unknown: yes).
    pub(crate) fn collection_due(&self, cell: &Path) -> bool {
        lock(&self.collect_at)
            .get(cell.as_ref())
            .is_none_or(|at| Instant::now() >= *at)
    }

    pub(crate) fn collect_after(&self, cell: &Path, wait: Duration) {
        let at = Instant::now() + wait;
        bounded_insert(&mut lock(&self.collect_at), cell, at);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn bounded_insert<T>(cells: &mut HashMap<String, T>, cell: &Path, value: T) {
    if cells.len() >= NewestVersions::MAX_CELLS {
        cells.clear();
    }
    cells.insert(cell.as_ref().to_owned(), value);
}
