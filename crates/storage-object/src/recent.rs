//! The newest checkpoint ids this process has seen per (thread, namespace), so that a read
//! of the latest checkpoint, or of the newest few, lists only the ids above one it
//! remembers instead of every id of the chain.
//!
//! What is remembered is a hint, never trusted as an answer: the listing of the ids above
//! the remembered one is the store's own (S3's `start-after`), so ids other processes
//! wrote are found, and the remembered id itself is read back before it is returned. A
//! hint that is wrong (ids another process deleted) costs a full listing, which then
//! replaces it.

use std::collections::HashMap;
use std::sync::Mutex;

use object_store::path::Path;

use crate::dir_stamp::DirStamp;

/// Ids remembered per chain: enough for a list of ten (LangGraph's usual page) and a few
/// more, so that a chain's next puts do not push the tenth out.
pub(crate) const REMEMBERED: usize = 16;

/// The greatest ids seen per chain (keyed by the chain's `checkpoints` prefix), ascending,
/// at most [`REMEMBERED`] each; forgotten wholesale past [`RecentCheckpoints::MAX_CHAINS`]
/// chains (a miss only costs a full listing).
#[derive(Debug, Default)]
pub(crate) struct RecentCheckpoints {
    chains: Mutex<HashMap<String, Chain>>,
}

/// What is remembered of one chain.
#[derive(Debug)]
struct Chain {
    /// Its greatest ids seen, ascending.
    ids: Vec<String>,
    /// The stamp of its directory before the full listing `ids` came from, while nothing
    /// else changed what is remembered (a local disk only).
    stamp: Option<DirStamp>,
}

impl RecentCheckpoints {
    const MAX_CHAINS: usize = 10_000;

    /// The `n`-th greatest id remembered for the chain (1 is the greatest), if as many
    /// are remembered.
    pub(crate) fn nth_newest(&self, chain: &Path, n: usize) -> Option<String> {
        let chains = self.lock();
        let ids = &chains.get(chain.as_ref())?.ids;
        let index = ids.len().checked_sub(n)?;
        (n > 0).then(|| ids[index].clone())
    }

    /// A full listing of the chain (ascending): what is remembered becomes its greatest ids,
    /// certified by `stamp`, the stamp its directory had before the listing, if any.
    pub(crate) fn listed_all(&self, chain: &Path, ids: &[String], stamp: Option<DirStamp>) {
        let newest = &ids[ids.len().saturating_sub(REMEMBERED)..];
        self.store(chain, newest.to_vec(), stamp);
    }

    /// The remembered ids of the chain (ascending, its greatest up to [`REMEMBERED`]) if
    /// its directory still has the stamp that certified them (`now`).
    pub(crate) fn certified(&self, chain: &Path, now: Option<DirStamp>) -> Option<Vec<String>> {
        let chains = self.lock();
        let known = chains.get(chain.as_ref())?;
        (known.stamp.is_some() && known.stamp == now).then(|| known.ids.clone())
    }

    /// A listing of every id above `offset` (ascending): the remembered ids above it are
    /// replaced by those, which are exactly the chain's ids above it now.
    pub(crate) fn listed_above(&self, chain: &Path, offset: &str, above: &[String]) {
        let mut ids: Vec<String> = match self.lock().get(chain.as_ref()) {
            Some(known) => known
                .ids
                .iter()
                .filter(|id| id.as_str() <= offset)
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        ids.extend_from_slice(above);
        let start = ids.len().saturating_sub(REMEMBERED);
        self.store(chain, ids.split_off(start), None);
    }

    /// A checkpoint this process stored.
    pub(crate) fn put(&self, chain: &Path, id: &str) {
        let mut chains = self.lock();
        if let Some(Chain { ids, stamp }) = chains.get_mut(chain.as_ref()) {
            // Its directory changed; what is remembered is a hint again.
            *stamp = None;
            if let Err(at) = ids.binary_search_by(|known| known.as_str().cmp(id)) {
                ids.insert(at, id.to_owned());
                if ids.len() > REMEMBERED {
                    ids.remove(0);
                }
            }
        }
        // An unknown chain stays unknown: one id says nothing of the ids below it, and a
        // list of the newest ten needs ten.
    }

    fn store(&self, chain: &Path, ids: Vec<String>, stamp: Option<DirStamp>) {
        let mut chains = self.lock();
        if chains.len() >= Self::MAX_CHAINS && !chains.contains_key(chain.as_ref()) {
            chains.clear();
        }
        chains.insert(chain.as_ref().to_owned(), Chain { ids, stamp });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Chain>> {
        self.chains
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(range: std::ops::Range<u32>) -> Vec<String> {
        range.map(|n| format!("{n:04}")).collect()
    }

    #[test]
    fn a_full_listing_is_remembered_by_its_greatest_ids() {
        let recent = RecentCheckpoints::default();
        let chain = Path::from("c");
        assert_eq!(recent.nth_newest(&chain, 1), None);
        recent.listed_all(&chain, &ids(0..100), None);
        assert_eq!(recent.nth_newest(&chain, 1).as_deref(), Some("0099"));
        assert_eq!(recent.nth_newest(&chain, 10).as_deref(), Some("0090"));
        assert_eq!(recent.nth_newest(&chain, REMEMBERED + 1), None);
        assert_eq!(recent.nth_newest(&chain, 0), None);
    }

    #[test]
    fn a_listing_above_an_id_replaces_what_is_remembered_above_it() {
        let recent = RecentCheckpoints::default();
        let chain = Path::from("c");
        recent.listed_all(&chain, &ids(0..20), None);
        // 0018 and 0019 were deleted elsewhere, 0020 and 0021 written.
        recent.listed_above(&chain, "0017", &ids(20..22));
        assert_eq!(recent.nth_newest(&chain, 1).as_deref(), Some("0021"));
        assert_eq!(recent.nth_newest(&chain, 2).as_deref(), Some("0020"));
        assert_eq!(recent.nth_newest(&chain, 3).as_deref(), Some("0017"));
        assert_eq!(
            recent.nth_newest(&chain, REMEMBERED).as_deref(),
            Some("0004")
        );
    }

    #[test]
    fn puts_extend_a_known_chain_only() {
        let recent = RecentCheckpoints::default();
        let (known, unknown) = (Path::from("k"), Path::from("u"));
        recent.listed_all(&known, &ids(0..3), None);
        recent.put(&known, "0005");
        recent.put(&known, "0004");
        recent.put(&known, "0004");
        recent.put(&unknown, "0001");
        assert_eq!(recent.nth_newest(&known, 1).as_deref(), Some("0005"));
        assert_eq!(recent.nth_newest(&known, 2).as_deref(), Some("0004"));
        assert_eq!(recent.nth_newest(&known, 5).as_deref(), Some("0000"));
        assert_eq!(recent.nth_newest(&known, 6), None);
        assert_eq!(recent.nth_newest(&unknown, 1), None);
    }
}
