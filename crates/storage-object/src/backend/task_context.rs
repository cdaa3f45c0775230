//! Task contexts: one head cell per scope and immutable archives of the earlier versions.
//!
//! The head (`contexts/<scope>/<cell>`) holds the current version, the lowest version still
//! readable (`floor`) and the scope's `lineage`, which names the directory of its archives
//! (`context_versions/<scope>/<lineage>/<version>`). A store
//! 1. reads the head,
//! 2. archives the head's version, unless the store trims it: that version's content is
//!    fixed once it is the head, so racing stores write the same bytes,
//! 3. replaces the head by compare-and-set (the commit), with the new floor,
//! 4. deletes the archives that fell below the new floor.
//!
//! Readers never look below the head's floor, so the trim is part of the commit for them
//! even though the deletes come after it; an archive a crash left below a floor is never
//! read, and `collect_garbage` removes it. A new lineage each time a scope is created means
//! an archive left by a deleted history can never be read as the new one's.
//!
//! The release before scopes kept one record per session at the session scope's head path,
//! without `floor` and `lineage`: it reads as a head whose only version is the current one.

use std::collections::BTreeMap;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use storage_core::carried::admit;
use storage_core::task_context::{
    oldest_kept, validate_get, validate_import, validate_list, validate_store,
};
use storage_core::wire::{self, WireRecord};
use storage_core::{
    time, ContextScope, ExpectedVersion, Result, Retention, StorageError, TaskContext,
    TaskContextStore,
};

use super::{in_order, retention, ObjectBackend, CAS_ATTEMPTS};
use crate::error::classify;
use crate::keys::{parse_number, parts_after, take_context_scope};
use crate::store::{backoff, CellMode, Token};

/// The head record of a scope: the `task_context` record of its current version with the
/// two fields readers need to find the kept earlier ones.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Head {
    #[serde(flatten)]
    pub(super) context: TaskContext,
    /// The lowest version still readable. Absent in records of the release before
    /// versions, which kept only the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    floor: Option<u64>,
    /// Names the directory of this history's archives. Absent in records of the release
    /// before versions, which archived nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lineage: Option<String>,
}

impl WireRecord for Head {
    // The kind of the record the release before versions wrote at the same path.
    const KIND: &'static str = "task_context";
}

impl Head {
    pub(super) fn floor(&self) -> u64 {
        self.floor.unwrap_or(self.context.version)
    }

    /// The lineage, checked: it becomes a path segment.
    pub(super) fn lineage(&self) -> Result<Option<&str>> {
        match self.lineage.as_deref() {
            Some(lineage)
                if lineage.is_empty() || !lineage.bytes().all(|b| b.is_ascii_alphanumeric()) =>
            {
                Err(StorageError::serialization(format!(
                    "task context head names lineage {lineage:?}, which is not alphanumeric"
                )))
            }
            other => Ok(other),
        }
    }

    /// Whether version `version`, below the head's, may have an archive a reader may see.
    fn keeps(&self, version: u64) -> bool {
        version >= self.floor() && version < self.context.version
    }
}

fn new_lineage() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// What a store or an import puts after seeing the head.
struct Next {
    context: TaskContext,
    /// The lowest version kept by the rule of this store.
    oldest_kept: u64,
}

#[async_trait]
impl TaskContextStore for ObjectBackend {
    async fn get_context(
        &self,
        scope: ContextScope,
        version: Option<u64>,
    ) -> Result<Option<TaskContext>> {
        self.op("get_context", async {
            validate_get(&scope, version)?;
            let Some((head, _)) = self.read_head(&scope).await? else {
                return Ok(None);
            };
            match version {
                None => Ok(Some(head.context)),
                Some(version) if version == head.context.version => Ok(Some(head.context)),
                Some(version) if head.keeps(version) => {
                    // Absent: trimmed by a store since the head was read, or a version an
                    // import skipped. Either way there is no such version now.
                    self.read_archive(&scope, &head, version).await
                }
                Some(_) => Ok(None),
            }
        })
        .await
    }

    async fn list_context_versions(
        &self,
        scope: ContextScope,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<TaskContext>> {
        self.op("list_context_versions", async {
            validate_list(&scope, limit)?;
            for attempt in 0..CAS_ATTEMPTS {
                backoff(attempt).await;
                let Some((head, _)) = self.read_head(&scope).await? else {
                    return Ok(Vec::new());
                };
                let (page, complete) = self.versions_below(&scope, &head, before, limit).await?;
                // A missing archive is a version an import skipped, unless a store replaced
                // the head and trimmed it meanwhile: then the page mixes two states, and is
                // read again.
                if complete || self.same_head(&scope, &head).await? {
                    return Ok(page);
                }
            }
            Err(
                StorageError::backend("a task context kept changing while it was listed")
                    .with_temporary(true),
            )
        })
        .await
    }

    async fn store_context(
        &self,
        scope: ContextScope,
        value: Value,
        expected: ExpectedVersion,
        keep_versions: u32,
    ) -> Result<TaskContext> {
        let value = admit("store_context", value)?;
        self.op("store_context", async {
            validate_store(&scope, &value, keep_versions)?;
            let stored = self
                .put_version(&scope, |head| {
                    // Checked against every head read, so a lost race on `Exactly` or
                    // `Absent` ends in `Conflict`, and one on `Any` stores after the winner.
                    let version = expected.next_version(&scope, head.map(|h| h.context.version))?;
                    Ok(Some(Next {
                        context: TaskContext {
                            scope: scope.clone(),
                            value: value.clone(),
                            version,
                            updated_at: time::now(),
                        },
                        oldest_kept: oldest_kept(version, keep_versions),
                    }))
                })
                .await?;
            stored.ok_or_else(|| StorageError::backend("a store decided to store nothing"))
        })
        .await
    }

    async fn delete_context(&self, scope: ContextScope) -> Result<bool> {
        self.op("delete_context", async {
            scope.validate()?;
            self.remove_context(&scope).await
        })
        .await
    }

    async fn import_task_context(&self, context: TaskContext) -> Result<bool> {
        let context = admit("import_task_context", context)?;
        self.op("import_task_context", async {
            validate_import(&context)?;
            let scope = context.scope.clone();
            let stored = self
                .put_version(&scope, |head| {
                    if head.is_some_and(|h| h.context.version >= context.version) {
                        return Ok(None);
                    }
                    // An import trims nothing: the floor stays where it is, and a new
                    // history starts at the imported version (nothing lies below it).
                    Ok(Some(Next {
                        context: context.clone(),
                        oldest_kept: head.map_or(context.version, Head::floor),
                    }))
                })
                .await?;
            Ok(stored.is_some())
        })
        .await
    }

    async fn retain_context_versions(&self, retention: Retention) -> Result<u64> {
        self.op("retain_context_versions", async {
            if !retention::admits(&retention)? {
                return Ok(0);
            }
            if self.objects().mode == CellMode::Versions {
                // A head is a directory of cell versions here (one per store in the last
                // minute): enumerate the scope directories instead, once.
                let scopes = &self.context_scope_dirs().await?;
                return retention::sweep(
                    "context_versions",
                    |after: Option<ContextScope>, limit| async move {
                        let after = after.map(|scope| scope.key());
                        Ok(scopes
                            .iter()
                            .filter(|scope| after.as_ref().is_none_or(|a| scope.key() > *a))
                            .take(limit)
                            .cloned()
                            .collect())
                    },
                    |scope| async move { self.retain_scope(&scope, &retention).await },
                )
                .await;
            }
            retention::sweep(
                "context_versions",
                |after, limit| self.context_scopes(after, limit),
                |scope| async move { self.retain_scope(&scope, &retention).await },
            )
            .await
        })
        .await
    }

    async fn list_context_scopes(
        &self,
        after: Option<ContextScope>,
        limit: usize,
    ) -> Result<Vec<ContextScope>> {
        self.op("list_context_scopes", async {
            storage_core::validate::validate_limit("context scope limit", limit)?;
            if let Some(after) = &after {
                after.validate()?;
            }
            self.context_scopes(after, limit).await
        })
        .await
    }
}

impl ObjectBackend {
    /// The scope's head and its compare-and-set token, or `None`.
    pub(super) async fn read_head(&self, scope: &ContextScope) -> Result<Option<(Head, Token)>> {
        match self
            .objects()
            .cell_read(&self.keys().context_head(scope))
            .await?
        {
            Some((bytes, token)) => Ok(Some((wire::decode::<Head>(&bytes)?, token))),
            None => Ok(None),
        }
    }

    /// Whether the scope's head is still `head`'s version of `head`'s lineage, with the
    /// same floor (a retention sweep raises it alone).
    async fn same_head(&self, scope: &ContextScope, head: &Head) -> Result<bool> {
        Ok(self.read_head(scope).await?.is_some_and(|(now, _)| {
            now.context.version == head.context.version
                && now.lineage == head.lineage
                && now.floor() == head.floor()
        }))
    }

    /// Replaces `head` (read with `token`) by the same version with the floor `floor`;
    /// returns whether the head was still as read. The commit of a retention sweep.
    pub(super) async fn write_context_floor(
        &self,
        scope: &ContextScope,
        head: &Head,
        token: &Token,
        floor: u64,
    ) -> Result<bool> {
        let record = Head {
            context: head.context.clone(),
            floor: Some(floor),
            lineage: head.lineage.clone(),
        };
        self.objects()
            .cell_write(
                &self.keys().context_head(scope),
                Some(token),
                wire::encode(&record)?,
            )
            .await
    }

    /// Version `version` of `head`'s history from its archive, or `None`.
    pub(super) async fn read_archive(
        &self,
        scope: &ContextScope,
        head: &Head,
        version: u64,
    ) -> Result<Option<TaskContext>> {
        let Some(lineage) = head.lineage()? else {
            return Ok(None);
        };
        let path = self.keys().context_archive(scope, lineage, version);
        match self.objects().get(&path).await? {
            Some(bytes) => Ok(Some(wire::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// The versions of `head`'s history below `before`, newest first, at most `limit`, by
    /// reading the archives of the numbers below, one page at a time: versions are
    /// consecutive unless an import skipped some, so a page costs `limit` reads plus one
    /// per skipped number. Also returns whether every number read had its archive.
    async fn versions_below(
        &self,
        scope: &ContextScope,
        head: &Head,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<TaskContext>, bool)> {
        let below = before.unwrap_or(u64::MAX);
        let mut page = Vec::new();
        if head.context.version < below {
            page.push(head.context.clone());
        }
        // Versions start at 1, whatever a damaged record says.
        let floor = head.floor().max(1);
        // The next number to read, going down.
        let mut next = below.min(head.context.version).saturating_sub(1);
        let mut complete = true;
        while page.len() < limit && next >= floor {
            let wanted = (limit - page.len()) as u64;
            let lowest = next.saturating_sub(wanted - 1).max(floor);
            let read = in_order(
                16,
                (lowest..=next)
                    .rev()
                    .map(|version| self.read_archive(scope, head, version)),
            )
            .await?;
            for context in read {
                match context {
                    Some(context) => page.push(context),
                    None => complete = false,
                }
            }
            next = lowest - 1;
        }
        Ok((page, complete))
    }

    /// Puts the version `decide` chooses after seeing the head (`None`: nothing), by the
    /// steps of the module documentation; returns what it stored.
    async fn put_version(
        &self,
        scope: &ContextScope,
        mut decide: impl FnMut(Option<&Head>) -> Result<Option<Next>>,
    ) -> Result<Option<TaskContext>> {
        let cell = self.keys().context_head(scope);
        for attempt in 0..CAS_ATTEMPTS {
            backoff(attempt).await;
            let (head, token) = match self.read_head(scope).await? {
                Some((head, token)) => (Some(head), Some(token)),
                None => (None, None),
            };
            let Some(next) = decide(head.as_ref())? else {
                return Ok(None);
            };
            let (lineage, floor) = match &head {
                Some(head) => (
                    head.lineage()?.map_or_else(new_lineage, str::to_owned),
                    head.floor().max(next.oldest_kept),
                ),
                None => (new_lineage(), next.oldest_kept),
            };
            if let Some(head) = &head {
                if head.context.version >= floor {
                    let path = self
                        .keys()
                        .context_archive(scope, &lineage, head.context.version);
                    self.objects()
                        .put(&path, wire::encode(&head.context)?)
                        .await?;
                }
            }
            let stored = next.context.clone();
            let record = Head {
                context: next.context,
                floor: Some(floor),
                lineage: Some(lineage.clone()),
            };
            if !self
                .objects()
                .cell_write(&cell, token.as_ref(), wire::encode(&record)?)
                .await?
            {
                continue;
            }
            if let Some(head) = head.filter(|head| head.lineage.is_some()) {
                let trimmed = (head.floor()..floor.min(head.context.version))
                    .map(|version| self.keys().context_archive(scope, &lineage, version))
                    .collect();
                self.objects().delete_many(trimmed).await?;
            }
            return Ok(Some(stored));
        }
        Err(StorageError::backend("too many concurrent writers on one record").with_temporary(true))
    }

    /// Removes a scope's head and every archive; returns whether it had a head. Shared by
    /// `delete_context` and the removal of a session.
    pub(super) async fn remove_context(&self, scope: &ContextScope) -> Result<bool> {
        let existed = self
            .objects()
            .cell_delete(&self.keys().context_head(scope))
            .await?;
        // Listed before the head is read again: a history created since the delete has its
        // head before any archive, so one whose archives are listed is seen and spared.
        let archives = self
            .objects()
            .list(&self.keys().context_archives(scope))
            .await?;
        let spared = match self.read_head(scope).await {
            Ok(Some((head, _))) => head.lineage().ok().flatten().map(|lineage| {
                self.keys()
                    .context_archives(scope)
                    .join(lineage)
                    .to_string()
            }),
            // Nothing readable names a lineage to spare.
            Ok(None) => None,
            Err(err) if err.kind() == storage_core::ErrorKind::Serialization => None,
            Err(err) => return Err(err),
        };
        let doomed = archives
            .into_iter()
            .filter(|path| {
                spared
                    .as_ref()
                    .is_none_or(|spared| !path.as_ref().starts_with(&format!("{spared}/")))
            })
            .collect();
        self.objects().delete_many(doomed).await?;
        Ok(existed)
    }

    /// Every scope with a directory under `contexts/`, in key order, from delimiter
    /// listings (see [`ObjectBackend::ids_below`]): their cost follows the scopes, not the
    /// cell versions a versioned head holds. A directory whose head is gone reads as no
    /// scope later.
    async fn context_scope_dirs(&self) -> Result<Vec<ContextScope>> {
        let root = self.keys().contexts();
        let mut scopes: Vec<ContextScope> = Vec::new();
        for child in self.objects().common_prefixes(&root).await? {
            if child.filename() == Some("app") {
                scopes.push(ContextScope::App);
            }
        }
        scopes.extend(
            self.ids_below(&root)
                .await?
                .into_iter()
                .map(ContextScope::Session),
        );
        let users = self.ids_below(&root.clone().join("user")).await?;
        scopes.extend(users.into_iter().map(ContextScope::User));
        scopes.sort_by_cached_key(ContextScope::key);
        Ok(scopes)
    }

    /// Scopes with a head after `after`, in key order, at most `limit`.
    async fn context_scopes(
        &self,
        after: Option<ContextScope>,
        limit: usize,
    ) -> Result<Vec<ContextScope>> {
        let prefix = self.keys().contexts();
        let listing = match &after {
            Some(after) => self
                .objects()
                .store
                .list_with_offset(Some(&prefix), &self.keys().context_head(after)),
            None => self.objects().store.list(Some(&prefix)),
        };
        let after = after.map(|scope| scope.key());
        let mut scopes = listing
            .filter_map(|item| async move {
                match item {
                    // A prefix nothing was ever written under.
                    Err(object_store::Error::NotFound { .. }) => None,
                    other => Some(other.map_err(classify)),
                }
            })
            .try_filter_map(|meta| {
                let parts = parts_after(&meta.location, &prefix);
                // A head is the cell object below the scope's segments.
                let scope = take_context_scope(&parts)
                    .filter(|(_, used)| parts.len() > *used)
                    .map(|(scope, _)| (scope.key(), scope))
                    .filter(|(key, _)| after.as_ref().is_none_or(|after| key > after));
                async move { Ok(scope) }
            })
            .boxed();
        let mut found: Vec<(String, ContextScope)> = Vec::new();
        if self.objects().lists_in_order() {
            // Paths list in the order of scope keys: stop at the page's end.
            while let Some(scope) = scopes.try_next().await? {
                if found.last().is_none_or(|last| last.0 != scope.0) {
                    found.push(scope);
                    if found.len() == limit {
                        break;
                    }
                }
            }
        } else {
            found = scopes.try_collect().await?;
            found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            found.dedup_by(|a, b| a.0 == b.0);
            found.truncate(limit);
        }
        Ok(found.into_iter().map(|(_, scope)| scope).collect())
    }
}

/// One archive that `collect_garbage` found older than its grace period.
pub(super) struct OldArchive {
    pub path: Path,
    pub lineage: String,
    pub version: u64,
}

impl ObjectBackend {
    /// The archives older than `cutoff` (ms since the epoch), by scope, and how many were
    /// younger (not examined: one may be written by a store that has not committed yet).
    pub(super) async fn old_context_archives(
        &self,
        cutoff: i64,
    ) -> Result<(BTreeMap<String, (ContextScope, Vec<OldArchive>)>, u64)> {
        let prefix = self.keys().context_versions();
        let listed = self.objects().list_meta(&prefix).await?;
        let mut old: BTreeMap<String, (ContextScope, Vec<OldArchive>)> = BTreeMap::new();
        let mut young = 0;
        for meta in listed {
            let parts = parts_after(&meta.location, &prefix);
            let Some((scope, used)) = take_context_scope(&parts) else {
                continue;
            };
            let [lineage, version] = &parts[used..] else {
                continue;
            };
            let Some(version) = parse_number(version) else {
                continue;
            };
            if super::gc::still_young(meta.last_modified.timestamp_millis(), cutoff) {
                young += 1;
                continue;
            }
            old.entry(scope.key())
                .or_insert_with(|| (scope, Vec::new()))
                .1
                .push(OldArchive {
                    path: meta.location,
                    lineage: lineage.clone(),
                    version,
                });
        }
        Ok((old, young))
    }

    /// Which of a scope's old archives no reader can see: those of another lineage than
    /// the head's (left by a delete or a lost race that died midway) or below its floor
    /// (left by a store that died before trimming). The head is read after the listing.
    pub(super) async fn unreachable_archives(
        &self,
        scope: &ContextScope,
        archives: Vec<OldArchive>,
    ) -> Result<Vec<Path>> {
        let head = match self.read_head(scope).await {
            Ok(head) => head.map(|(head, _)| head),
            // An unreadable head says nothing about its archives: leave them.
            Err(err) if err.kind() == storage_core::ErrorKind::Serialization => {
                return Ok(Vec::new())
            }
            Err(err) => return Err(err),
        };
        Ok(archives
            .into_iter()
            .filter(|archive| {
                head.as_ref().is_none_or(|head| {
                    head.lineage.as_deref() != Some(archive.lineage.as_str())
                        || archive.version < head.floor()
                })
            })
            .map(|archive| archive.path)
            .collect())
    }
}
