//! Listing checkpoints across every thread: LangGraph's `list(None, ...)`.

use std::cmp::Reverse;

use serde::{Deserialize, Serialize};

use crate::checkpoint::{
    validate_checkpoint_namespace, CheckpointQuery, CheckpointStore, CheckpointTuple,
};
use crate::error::Result;
use crate::json::Metadata;
use crate::page::Page;
use crate::validate::validate_id;

/// What [`CheckpointStore::search_checkpoints`] returns: checkpoints of every thread.
///
/// Newest first (greatest id; equal ids, which `copy_thread` makes, by thread id then
/// namespace ascending); `before` keeps only strictly older ids; `filter` keeps only
/// checkpoints whose metadata has every given top-level key with an equal value; `limit`
/// cuts, except that a page never separates checkpoints with the same id, so it may hold
/// more than `limit` when several threads share its last id. The next page is the same
/// search with `before` set to the page's `next_cursor`.
///
/// ```
/// use storage_core::CheckpointSearch;
///
/// let newest_ten = CheckpointSearch::newest(10);
/// assert_eq!(newest_ten.namespace, None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckpointSearch {
    /// Only this namespace; `None` lists every namespace.
    pub namespace: Option<String>,
    /// Only ids strictly less than this one.
    pub before: Option<String>,
    /// At most this many (see above for equal ids); 0 lists nothing.
    pub limit: usize,
    /// Exact, type-strict, AND-ed match on top-level metadata keys.
    pub filter: Metadata,
}

impl CheckpointSearch {
    /// The `limit` newest checkpoints of every thread and namespace.
    pub fn newest(limit: usize) -> Self {
        CheckpointSearch {
            limit,
            ..Self::default()
        }
    }

    /// Checks the namespace, `before` and the filter, before any I/O.
    pub fn validate(&self) -> Result<()> {
        if let Some(namespace) = &self.namespace {
            validate_checkpoint_namespace(namespace)?;
        }
        if let Some(before) = &self.before {
            validate_id("checkpoint id", before)?;
        }
        crate::policy::check_metadata("checkpoint search filter", &self.filter)
    }

    /// The same search within one thread, fetching one more than the limit so a page
    /// knows whether another may follow.
    pub fn in_thread(&self, thread_id: &str) -> CheckpointQuery {
        CheckpointQuery {
            thread_id: thread_id.to_owned(),
            namespace: self.namespace.clone(),
            before: self.before.clone(),
            limit: Some(self.limit.saturating_add(1)),
            filter: self.filter.clone(),
        }
    }
}

/// Orders `found` newest first (id descending, then thread and namespace ascending) and
/// cuts it into a page of `limit`, keeping every checkpoint that shares the last id.
/// `found` must hold every match down to at least one past the limit, or all there are;
/// when it holds more than `limit`, the page has a next cursor (the page after may turn out
/// empty when the one past the limit shared the last id).
pub fn page_of(mut found: Vec<CheckpointTuple>, limit: usize) -> Page<CheckpointTuple> {
    found.sort_by(|a, b| {
        let key = |t: &CheckpointTuple| {
            let c = &t.checkpoint;
            (
                Reverse(c.id.clone()),
                c.thread_id.clone(),
                c.namespace.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    if found.len() <= limit {
        return Page::last(found);
    }
    if limit == 0 {
        return Page::last(Vec::new());
    }
    let last = found[limit - 1].checkpoint.id.clone();
    let end = limit
        + found[limit..]
            .iter()
            .take_while(|t| t.checkpoint.id == last)
            .count();
    found.truncate(end);
    Page {
        items: found,
        next_cursor: Some(last),
    }
}

/// One thread's part of a search: its newest `limit + 1` matches, extended until it holds
/// every match sharing the id of its `limit`-th (a listing may cut between namespaces of
/// one id, and a page never splits an id).
async fn thread_rows<S: CheckpointStore + ?Sized>(
    store: &S,
    search: &CheckpointSearch,
    thread: &str,
) -> Result<Vec<CheckpointTuple>> {
    let mut query = search.in_thread(thread);
    loop {
        let want = query.limit.unwrap_or(usize::MAX);
        let rows = store.list_checkpoints(query.clone()).await?;
        let cut_inside_the_limit_th_id = rows.len() == want
            && rows.len() > search.limit
            && rows[rows.len() - 1].checkpoint.id == rows[search.limit - 1].checkpoint.id;
        if !cut_inside_the_limit_th_id {
            return Ok(rows);
        }
        query.limit = Some(want.saturating_mul(2));
    }
}

/// Threads listed per call while searching thread by thread.
const THREADS_PER_CALL: usize = 1_000;

/// The search done thread by thread through `list_thread_ids` and `list_checkpoints`:
/// what a backend without a cross-thread index does. Costs one listing per thread.
pub async fn search_thread_by_thread<S: CheckpointStore + ?Sized>(
    store: &S,
    search: CheckpointSearch,
) -> Result<Page<CheckpointTuple>> {
    search.validate()?;
    if search.limit == 0 {
        return Ok(Page::last(Vec::new()));
    }
    let mut found = Vec::new();
    let mut more = false;
    let mut after: Option<String> = None;
    loop {
        let threads = store
            .list_thread_ids(after.as_deref(), THREADS_PER_CALL)
            .await?;
        for thread in &threads {
            found.extend(thread_rows(store, &search, thread).await?);
        }
        // Keep only what the page can still use, remembering that more exist.
        let page = page_of(std::mem::take(&mut found), search.limit);
        more |= page.next_cursor.is_some();
        found = page.items;
        if threads.len() < THREADS_PER_CALL {
            break;
        }
        after = threads.last().cloned();
    }
    let mut page = page_of(found, search.limit);
    if more && page.next_cursor.is_none() {
        page.next_cursor = page.items.last().map(|t| t.checkpoint.id.clone());
    }
    Ok(page)
}
