//! Task contexts in a migration: every kept version of every scope, session or shared.

use storage_core::{ContextScope, Result, StorageBackend, TaskContext};

use super::{add, digest_of, MigrateOptions, Tally};

/// The keys ([`ContextScope::key`]) of the scopes with a context after the one `after`
/// names: the id pages the migration walks.
pub(super) async fn scope_keys(
    backend: &dyn StorageBackend,
    after: Option<String>,
    limit: usize,
) -> Result<Vec<String>> {
    let after = after.as_deref().map(ContextScope::from_key).transpose()?;
    Ok(backend
        .list_context_scopes(after, limit)
        .await?
        .iter()
        .map(ContextScope::key)
        .collect())
}

/// Every kept version of `scope`, oldest first.
async fn history(
    backend: &dyn StorageBackend,
    scope: &ContextScope,
    page_size: usize,
) -> Result<Vec<TaskContext>> {
    let mut versions = Vec::new();
    let mut before = None;
    loop {
        let page = backend
            .list_context_versions(scope.clone(), before, page_size)
            .await?;
        let done = page.len() < page_size;
        before = page.last().map(|context| context.version);
        versions.extend(page);
        if done || before.is_none() {
            break;
        }
    }
    versions.reverse();
    Ok(versions)
}

/// Copies every kept version of `scope`, oldest first, each an exact import (so the
/// target's history is the source's, and a second run adds nothing); returns whether the
/// source has a context there. Every kept version is held in memory while it is copied
/// (at most the `keep_versions` of the scope's stores).
pub(super) async fn copy_context(
    source: &dyn StorageBackend,
    target: &dyn StorageBackend,
    options: &MigrateOptions,
    tally: &Tally,
    scope: &ContextScope,
) -> Result<bool> {
    let versions = history(source, scope, options.batch_size).await?;
    let (Some(oldest), Some(newest)) = (versions.first(), versions.last()) else {
        return Ok(false);
    };
    // A target copied by an earlier run may still hold versions the source has trimmed
    // since; imports never trim, so such a copy would never match. When the target holds
    // nothing newer than the source, it is copied afresh.
    let held = history(target, scope, options.batch_size).await?;
    let outdated = held
        .first()
        .is_some_and(|held| held.version < oldest.version)
        && held
            .last()
            .is_some_and(|held| held.version <= newest.version);
    if outdated {
        target.delete_context(scope.clone()).await?;
    }
    for version in versions {
        target.import_task_context(version).await?;
    }
    add(&tally.task_contexts, 1);
    Ok(true)
}

/// The digest of every kept version of `scope`, if it has a context.
pub(super) async fn context_digest(
    backend: &dyn StorageBackend,
    options: &MigrateOptions,
    scope: &ContextScope,
) -> Result<Option<String>> {
    let versions = history(backend, scope, options.batch_size).await?;
    if versions.is_empty() {
        return Ok(None);
    }
    digest_of(&versions).map(Some)
}
