//! Copies every kind of data from one backend to another, then verifies the copy.
//!
//! [`migrate`] walks the source kind by kind (sessions with their conversation and task
//! context, checkpoint threads, artifact scopes) in pages of [`MigrateOptions::batch_size`],
//! copying up to [`MigrateOptions::concurrency`] items at once. Every write it makes is an
//! exact, idempotent import (`import_session`, `import_messages` at the stored sequence
//! numbers, `put_checkpoint` with the stored ids, `put_writes` keyed by task and index,
//! `import_task_context` at the stored version, `import_artifact` at the stored version),
//! so a migration interrupted at any point is resumed by running it again: what was already
//! copied is left as it is and nothing is duplicated.
//!
//! [`verify`] then compares both sides item by item (counts and SHA-256 digests of every
//! record) and lists each difference.
//!
//! Conversations and task contexts of session ids that have no session record are found
//! through `list_conversation_ids` and `list_context_scopes` and copied too, as are shared
//! (user and application) contexts; every kept version of a context is copied, oldest first. A source that
//! cannot list them (`Unsupported`) is named in [`MigrationReport::not_copied`], and a side
//! that cannot be enumerated makes the verification incomplete, never clean.
//!
//! Never copied, and always listed in [`MigrationReport::not_copied`]: pending writes stored
//! against a checkpoint id that has no stored checkpoint (no backend can enumerate them),
//! the messages a compaction replaced and kept (their summary is copied), and the
//! sequence counter's headroom above the highest stored message (after a
//! `pop_last_message` the target's next sequence may be lower than the source's).

mod contexts;
mod url;
mod writes;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures::stream::{self, Stream, StreamExt, TryStreamExt};
use serde::Serialize;
use storage_core::artifact::sha256_hex;
use storage_core::{
    CheckpointQuery, ContextScope, ErrorKind, Message, MessageRange, Result, SessionQuery,
    StorageBackend, StorageError,
};

pub use self::url::config_for_url;

/// How a migration runs.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Items read per page (thread ids, scopes, messages) and sessions handed on per
    /// batch (sessions are listed in pages of at least 2,000).
    pub batch_size: usize,
    /// Items copied at once.
    pub concurrency: usize,
    /// Compare both sides after copying.
    pub verify: bool,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        MigrateOptions {
            batch_size: 200,
            concurrency: 16,
            verify: true,
        }
    }
}

/// What a migration reports as it goes; `storectl` draws a progress bar from it.
pub trait Progress: Send + Sync {
    /// A new phase starts (`sessions`, `conversations`, `contexts`, `threads`, `artifacts`,
    /// `verify`).
    fn phase(&self, name: &str);
    /// `items` more items of the current phase are done.
    fn advance(&self, items: u64);
}

/// A [`Progress`] that shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn phase(&self, _name: &str) {}
    fn advance(&self, _items: u64) {}
}

/// What was copied. Counts include items that were already present in the target (a
/// resumed run counts them again but stores them once).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CopySummary {
    /// Session records.
    pub sessions: u64,
    /// Messages read from the source.
    pub messages: u64,
    /// Messages that were new in the target.
    pub messages_stored: u64,
    /// Conversations of session ids without a session record (their messages are
    /// counted in `messages`).
    pub conversations_without_session: u64,
    /// Task contexts (with or without a session record).
    pub task_contexts: u64,
    /// Task contexts of session ids without a session record (counted in
    /// `task_contexts` too).
    pub task_contexts_without_session: u64,
    /// Checkpoint threads.
    pub threads: u64,
    /// Checkpoints.
    pub checkpoints: u64,
    /// Pending writes.
    pub pending_writes: u64,
    /// Artifact versions.
    pub artifact_versions: u64,
    /// Artifact versions that were new in the target.
    pub artifact_versions_stored: u64,
}

/// One kind's tally on both sides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KindCount {
    /// Items in the source.
    pub source: u64,
    /// Items in the target.
    pub target: u64,
}

/// An item that differs between source and target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// `session`, `conversation`, `task_context`, `thread` or `artifact`.
    pub kind: &'static str,
    /// The item: a session id, thread id, or `scope/name@version`.
    pub key: String,
    /// `missing in target`, `extra in target` or `content differs`.
    pub problem: &'static str,
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Per kind (`sessions`, `messages`, `task_contexts`, `checkpoints`, `pending_writes`,
    /// `artifact_versions`), how many items each side holds.
    pub counts: BTreeMap<String, KindCount>,
    /// Every item that differs.
    pub differences: Vec<Difference>,
    /// What could not be enumerated on either side, so was not compared.
    pub not_compared: Vec<String>,
}

impl Verification {
    /// Whether both sides hold the same data: every item was compared, and none differs.
    pub fn is_clean(&self) -> bool {
        self.not_compared.is_empty()
            && self.differences.is_empty()
            && self.counts.values().all(|c| c.source == c.target)
    }
}

/// Data of the source that a migration did not copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotCopied {
    /// What was not copied.
    pub what: String,
    /// Why.
    pub reason: String,
}

/// What no migration copies, whatever the backends.
fn never_copied() -> Vec<NotCopied> {
    vec![
        NotCopied {
            what: "pending writes stored against a checkpoint id that has no stored checkpoint"
                .into(),
            reason: "no backend can enumerate them".into(),
        },
        NotCopied {
            what: "messages a compaction replaced and kept (`get_replaced_messages`)".into(),
            reason: "the contract has no import for them yet; the summary that stands for \
                     them is copied"
                .into(),
        },
        NotCopied {
            what: "a conversation's sequence counter above its highest stored message".into(),
            reason: "the counter is not data: the target's next sequence follows its highest \
                     imported message"
                .into(),
        },
    ]
}

/// The outcome of [`migrate`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MigrationReport {
    /// What was copied.
    pub copied: CopySummary,
    /// What was not copied, and why.
    pub not_copied: Vec<NotCopied>,
    /// The comparison, when [`MigrateOptions::verify`] was set.
    pub verification: Option<Verification>,
    /// Wall time of each phase (`sessions`, `without_session`, `threads`, `artifacts`,
    /// `verify`), in milliseconds.
    pub elapsed_ms: BTreeMap<String, u64>,
}

#[derive(Default)]
struct Tally {
    sessions: AtomicU64,
    messages: AtomicU64,
    messages_stored: AtomicU64,
    conversations_without_session: AtomicU64,
    task_contexts: AtomicU64,
    task_contexts_without_session: AtomicU64,
    threads: AtomicU64,
    checkpoints: AtomicU64,
    pending_writes: AtomicU64,
    artifact_versions: AtomicU64,
    artifact_versions_stored: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Runs `work` on every item of one page with at most `concurrency` calls in flight,
/// collects the results in completion order, then advances `progress` by the page's size.
async fn map_page<T, R, F, Fut>(
    items: Vec<T>,
    concurrency: usize,
    progress: &dyn Progress,
    work: F,
) -> Result<Vec<R>>
where
    F: FnMut(T) -> Fut,
    Fut: std::future::Future<Output = Result<R>>,
{
    let count = items.len() as u64;
    let results = stream::iter(items)
        .map(work)
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    progress.advance(count);
    Ok(results)
}

/// The conversation of `session_id`, in pages of `batch_size` messages, oldest first.
fn message_pages<'a>(
    backend: &'a dyn StorageBackend,
    session_id: &'a str,
    batch_size: usize,
) -> impl Stream<Item = Result<Vec<Message>>> + 'a {
    stream::try_unfold(Some(0u64), move |after| async move {
        let Some(after) = after else {
            return Ok(None);
        };
        let page = backend
            .get_messages(session_id, MessageRange::after(after, batch_size))
            .await?;
        let Some(last) = page.last() else {
            return Ok(None);
        };
        let next = (page.len() >= batch_size).then_some(last.sequence);
        Ok(Some((page, next)))
    })
}

impl Tally {
    fn summary(&self) -> CopySummary {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CopySummary {
            sessions: get(&self.sessions),
            messages: get(&self.messages),
            messages_stored: get(&self.messages_stored),
            conversations_without_session: get(&self.conversations_without_session),
            task_contexts: get(&self.task_contexts),
            task_contexts_without_session: get(&self.task_contexts_without_session),
            threads: get(&self.threads),
            checkpoints: get(&self.checkpoints),
            pending_writes: get(&self.pending_writes),
            artifact_versions: get(&self.artifact_versions),
            artifact_versions_stored: get(&self.artifact_versions_stored),
        }
    }
}

/// Copies everything from `source` to `target` (both initialized), then verifies when
/// asked. Safe to run again after an interruption: nothing is stored twice.
pub async fn migrate(
    source: &dyn StorageBackend,
    target: &dyn StorageBackend,
    options: &MigrateOptions,
    progress: &dyn Progress,
) -> Result<MigrationReport> {
    if options.batch_size == 0 || options.concurrency == 0 {
        return Err(StorageError::invalid_input(
            "migration batch size and concurrency must be at least 1",
        ));
    }
    let tally = Tally::default();
    let mut elapsed_ms = BTreeMap::new();
    let mut timed = |phase: &str, started: Instant| {
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        elapsed_ms.insert(phase.to_owned(), ms);
    };
    let started = Instant::now();
    copy_sessions(source, target, options, progress, &tally).await?;
    timed("sessions", started);
    let started = Instant::now();
    let mut not_copied = copy_without_session(source, target, options, progress, &tally).await?;
    not_copied.extend(never_copied());
    timed("without_session", started);
    let started = Instant::now();
    copy_threads(source, target, options, progress, &tally).await?;
    timed("threads", started);
    let started = Instant::now();
    copy_artifacts(source, target, options, progress, &tally).await?;
    timed("artifacts", started);
    let verification = if options.verify {
        let started = Instant::now();
        let verification = verify(source, target, options, progress).await?;
        timed("verify", started);
        Some(verification)
    } else {
        None
    };
    Ok(MigrationReport {
        copied: tally.summary(),
        not_copied,
        verification,
        elapsed_ms,
    })
}

/// Fewest sessions listed per page. Object storage keeps no index of sessions by
/// activity, so each `list_sessions` page reads every session record: with pages of the
/// default batch size (200), walking 10,000 sessions read 500,000 records and verifying
/// into a local directory took 148 s of a 173 s run. Pages of 2,000 cut that tenfold and
/// keep memory bounded (a session record is a few hundred bytes).
const SESSION_LISTING_PAGE: usize = 2_000;

/// Every session, page by page (pages of at least [`SESSION_LISTING_PAGE`]): `each` is
/// called once per `batch_size` sessions.
async fn for_each_session_page<F, Fut>(
    backend: &dyn StorageBackend,
    batch_size: usize,
    mut each: F,
) -> Result<()>
where
    F: FnMut(Vec<storage_core::Session>) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut cursor = None;
    loop {
        let page = backend
            .list_sessions(SessionQuery {
                limit: batch_size.max(SESSION_LISTING_PAGE),
                cursor,
                ..SessionQuery::default()
            })
            .await?;
        let mut sessions = page.items.into_iter().peekable();
        while sessions.peek().is_some() {
            each(sessions.by_ref().take(batch_size).collect()).await?;
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(()),
        }
    }
}

/// Pages through a sorted id listing (`list_thread_ids`, `list_artifact_scopes`).
async fn for_each_id_page<L, LFut, F, Fut>(
    batch_size: usize,
    mut list: L,
    mut each: F,
) -> Result<()>
where
    L: FnMut(Option<String>, usize) -> LFut,
    LFut: std::future::Future<Output = Result<Vec<String>>>,
    F: FnMut(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut after: Option<String> = None;
    loop {
        let ids = list(after.clone(), batch_size).await?;
        let done = ids.len() < batch_size;
        after = ids.last().cloned();
        each(ids).await?;
        if done || after.is_none() {
            return Ok(());
        }
    }
}

async fn copy_sessions(
    source: &dyn StorageBackend,
    target: &dyn StorageBackend,
    options: &MigrateOptions,
    progress: &dyn Progress,
    tally: &Tally,
) -> Result<()> {
    progress.phase("sessions");
    for_each_session_page(source, options.batch_size, |sessions| async move {
        map_page(sessions, options.concurrency, progress, |session| {
            copy_session(source, target, options, tally, session)
        })
        .await?;
        Ok(())
    })
    .await
}

async fn copy_session(
    source: &dyn StorageBackend,
    target: &dyn StorageBackend,
    options: &MigrateOptions,
    tally: &Tally,
    session: storage_core::Session,
) -> Result<()> {
    let id = session.id.clone();
    // Conversation and context first: a session record in the target means its session
    // was copied whole (the record is what listing shows and cleanup expires by).
    copy_conversation(source, target, options, tally, &id).await?;
    contexts::copy_context(source, target, options, tally, &ContextScope::session(&id)).await?;
    target.import_session(session).await?;
    add(&tally.sessions, 1);
    Ok(())
}

/// Copies the conversation of `id`; returns how many messages it has in the source.
async fn copy_conversation(
    source: &dyn StorageBackend,
    target: &dyn StorageBackend,
    options: &MigrateOptions,
    tally: &Tally,
    id: &str,
) -> Result<u64> {
    let mut read = 0;
    let mut pages = std::pin::pin!(message_pages(source, id, options.batch_size));
    while let Some(messages) = pages.try_next().await? {
        read += messages.len() as u64;
        add(&tally.messages, messages.len() as u64);
        add(
            &tally.messages_stored,
            target.import_messages(id, messages).await?,
        );
    }
    Ok(read)
}

/// Whether a listing works on this backend: `false` when it answers `Unsupported`.
fn listable<T>(probe: Result<Vec<T>>) -> Result<bool> {
    match probe {
        Ok(_) => Ok(true),
        Err(err) if err.kind() == ErrorKind::Unsupported => Ok(false),
        Err(err) => Err(err),
    }
}

/// The ids of `ids` that have no session record in `backend` (asked in batches of 100,
/// whatever the page size, so no batch-size limit of a backend is reached).
async fn without_session(backend: &dyn StorageBackend, ids: Vec<String>) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for batch in ids.chunks(100) {
        let records = backend.get_sessions(batch).await?;
        missing.extend(
            batch
                .iter()
                .zip(records)
                .filter_map(|(id, record)| record.is_none().then(|| id.clone())),
        );
    }
    Ok(missing)
}

/// Copies conversations and task contexts of session ids that have no session record
/// (those with one were copied with their session). Returns what could not be copied
/// because the source cannot enumerate it.
async fn copy_without_session(
    source: &dyn StorageBackend,
    target: &dyn StorageBackend,
    options: &MigrateOptions,
    progress: &dyn Progress,
    tally: &Tally,
) -> Result<Vec<NotCopied>> {
    let mut not_copied = Vec::new();
    progress.phase("conversations");
    if listable(source.list_conversation_ids(None, 1).await)? {
        for_each_id_page(
            options.batch_size,
            |after, limit| async move { source.list_conversation_ids(after.as_deref(), limit).await },
            |ids| async move {
                let orphans = without_session(source, ids).await?;
                map_page(orphans, options.concurrency, progress, |id| async move {
                    if copy_conversation(source, target, options, tally, &id).await? > 0 {
                        add(&tally.conversations_without_session, 1);
                    }
                    Ok::<(), StorageError>(())
                })
                .await?;
                Ok(())
            },
        )
        .await?;
    } else {
        not_copied.push(NotCopied {
            what: "conversations of session ids that have no session record".into(),
            reason: format!(
                "the source ({}) cannot list conversation ids",
                source.name()
            ),
        });
    }
    progress.phase("contexts");
    if listable(source.list_context_scopes(None, 1).await)? {
        for_each_id_page(
            options.batch_size,
            |after, limit| contexts::scope_keys(source, after, limit),
            |keys| async move {
                // Shared scopes are copied here; a session's own context here only when
                // the session has no record (otherwise it went with its session).
                let scopes = keys
                    .iter()
                    .map(|key| ContextScope::from_key(key))
                    .collect::<Result<Vec<_>>>()?;
                let session_ids = scopes
                    .iter()
                    .filter_map(|scope| scope.session_id().map(str::to_owned))
                    .collect();
                let orphans = without_session(source, session_ids).await?;
                let to_copy = scopes.into_iter().filter(|scope| {
                    scope
                        .session_id()
                        .is_none_or(|id| orphans.iter().any(|orphan| orphan == id))
                });
                map_page(
                    to_copy.collect(),
                    options.concurrency,
                    progress,
                    |scope| async move {
                        let copied =
                            contexts::copy_context(source, target, options, tally, &scope).await?;
                        if copied && scope.session_id().is_some() {
                            add(&tally.task_contexts_without_session, 1);
                        }
                        Ok::<(), StorageError>(())
                    },
                )
                .await?;
                Ok(())
            },
        )
        .await?;
    } else {
        not_copied.push(NotCopied {
            what: "shared task contexts, and task contexts of session ids that have no \
                   session record"
                .into(),
            reason: format!(
                "the source ({}) cannot list task context scopes",
                source.name()
            ),
        });
    }
    Ok(not_copied)
}

async fn copy_threads(
    source: &dyn StorageBackend,
    target: &dyn StorageBackend,
    options: &MigrateOptions,
    progress: &dyn Progress,
    tally: &Tally,
) -> Result<()> {
    progress.phase("threads");
    for_each_id_page(
        options.batch_size,
        |after, limit| async move { source.list_thread_ids(after.as_deref(), limit).await },
        |threads| async move {
            map_page(threads, options.concurrency, progress, |thread| {
                copy_thread(source, target, tally, thread)
            })
            .await?;
            Ok(())
        },
    )
    .await
}

async fn copy_thread(
    source: &dyn StorageBackend,
    target: &dyn StorageBackend,
    tally: &Tally,
    thread_id: String,
) -> Result<()> {
    let mut tuples = source
        .list_checkpoints(CheckpointQuery {
            thread_id: thread_id.clone(),
            namespace: None,
            ..CheckpointQuery::default()
        })
        .await?;
    // Oldest first, so that a target read during the copy sees a chain growing in order.
    tuples.reverse();
    for tuple in tuples {
        let key = tuple.checkpoint.key();
        let versions = tuple.checkpoint.all_versions();
        target.put_checkpoint(tuple.checkpoint, versions).await?;
        add(&tally.pending_writes, tuple.pending_writes.len() as u64);
        writes::replay(target, &key, tuple.pending_writes).await?;
        add(&tally.checkpoints, 1);
    }
    add(&tally.threads, 1);
    Ok(())
}

async fn copy_artifacts(
    source: &dyn StorageBackend,
    target: &dyn StorageBackend,
    options: &MigrateOptions,
    progress: &dyn Progress,
    tally: &Tally,
) -> Result<()> {
    progress.phase("artifacts");
    for_each_id_page(
        options.batch_size,
        |after, limit| async move { source.list_artifact_scopes(after.as_deref(), limit).await },
        |scopes| async move {
            for scope in scopes {
                let mut versions = Vec::new();
                for name in source.list_artifacts(&scope).await? {
                    versions.extend(
                        source
                            .list_artifact_versions(&scope, &name)
                            .await?
                            .into_iter()
                            .map(|meta| (meta.name, meta.version)),
                    );
                }
                let scope = scope.as_str();
                map_page(
                    versions,
                    options.concurrency,
                    progress,
                    |(name, version)| async move {
                        let Some(artifact) =
                            source.get_artifact(scope, &name, Some(version)).await?
                        else {
                            return Ok(()); // deleted while we copied
                        };
                        let stored = target.import_artifact(artifact).await?;
                        add(&tally.artifact_versions, 1);
                        add(&tally.artifact_versions_stored, u64::from(stored));
                        Ok::<(), StorageError>(())
                    },
                )
                .await?;
            }
            Ok(())
        },
    )
    .await
}

/// Digests of every item of one backend, by kind and key.
#[derive(Default)]
struct Inventory {
    counts: BTreeMap<String, u64>,
    items: BTreeMap<(&'static str, String), String>,
    /// What could not be enumerated.
    not_listed: Vec<String>,
}

impl Inventory {
    fn count(&mut self, kind: &str, n: u64) {
        *self.counts.entry(kind.to_owned()).or_default() += n;
    }

    /// A conversation with messages; an empty one is no data.
    fn add_conversation(&mut self, id: &str, (count, digest): (u64, String)) {
        if count > 0 {
            self.count("messages", count);
            self.items.insert(("conversation", id.to_owned()), digest);
        }
    }
}

/// How many messages the conversation of `id` holds, and their digest.
async fn conversation_digest(
    backend: &dyn StorageBackend,
    options: &MigrateOptions,
    id: &str,
) -> Result<(u64, String)> {
    let messages: Vec<Message> = message_pages(backend, id, options.batch_size)
        .try_concat()
        .await?;
    Ok((messages.len() as u64, digest_of(&messages)?))
}

fn digest_of(value: &impl Serialize) -> Result<String> {
    let encoded = serde_json::to_vec(value).map_err(|err| {
        StorageError::new(
            storage_core::ErrorKind::Serialization,
            format!("cannot encode a record for its digest: {err}"),
        )
    })?;
    Ok(sha256_hex(&encoded))
}

async fn inventory(
    backend: &dyn StorageBackend,
    options: &MigrateOptions,
    progress: &dyn Progress,
) -> Result<Inventory> {
    let inventory = tokio::sync::Mutex::new(Inventory::default());
    let inv = &inventory;
    // Conversations and task contexts are enumerated by their own listings, so that those
    // of session ids without a session record are counted too; a backend without those
    // listings is read session by session, and what that misses is said.
    let conversations_listed = listable(backend.list_conversation_ids(None, 1).await)?;
    let contexts_listed = listable(backend.list_context_scopes(None, 1).await)?;
    for (listed, what, listing) in [
        (
            conversations_listed,
            "conversations of session ids without a session record",
            "conversation ids",
        ),
        (
            contexts_listed,
            "shared task contexts, and task contexts of session ids without a session record",
            "task context scopes",
        ),
    ] {
        if !listed {
            inv.lock()
                .await
                .not_listed
                .push(format!("{what}: {} cannot list {listing}", backend.name()));
        }
    }
    for_each_session_page(backend, options.batch_size, |sessions| async move {
        let digests: Vec<_> = map_page(
            sessions,
            options.concurrency,
            progress,
            |session| async move {
                let messages = if conversations_listed {
                    None
                } else {
                    Some(conversation_digest(backend, options, &session.id).await?)
                };
                let context = if contexts_listed {
                    None
                } else {
                    let scope = ContextScope::session(&session.id);
                    contexts::context_digest(backend, options, &scope).await?
                };
                Ok::<_, StorageError>((session.id.clone(), digest_of(&session)?, messages, context))
            },
        )
        .await?;
        let mut inv = inv.lock().await;
        for (id, session, messages, context) in digests {
            inv.count("sessions", 1);
            inv.items.insert(("session", id.clone()), session);
            if let Some(messages) = messages {
                inv.add_conversation(&id, messages);
            }
            if let Some(context) = context {
                inv.count("task_contexts", 1);
                inv.items
                    .insert(("task_context", ContextScope::session(id).key()), context);
            }
        }
        Ok(())
    })
    .await?;
    if conversations_listed {
        for_each_id_page(
            options.batch_size,
            |after, limit| async move { backend.list_conversation_ids(after.as_deref(), limit).await },
            |ids| async move {
                let digests = map_page(ids, options.concurrency, progress, |id| async move {
                    let digest = conversation_digest(backend, options, &id).await?;
                    Ok::<_, StorageError>((id, digest))
                })
                .await?;
                let mut inv = inv.lock().await;
                for (id, digest) in digests {
                    inv.add_conversation(&id, digest);
                }
                Ok(())
            },
        )
        .await?;
    }
    if contexts_listed {
        for_each_id_page(
            options.batch_size,
            |after, limit| contexts::scope_keys(backend, after, limit),
            |keys| async move {
                let digests = map_page(keys, options.concurrency, progress, |key| async move {
                    let scope = ContextScope::from_key(&key)?;
                    let digest = contexts::context_digest(backend, options, &scope).await?;
                    Ok::<_, StorageError>((key, digest))
                })
                .await?;
                let mut inv = inv.lock().await;
                for (id, digest) in digests {
                    if let Some(digest) = digest {
                        inv.count("task_contexts", 1);
                        inv.items.insert(("task_context", id), digest);
                    }
                }
                Ok(())
            },
        )
        .await?;
    }
    for_each_id_page(
        options.batch_size,
        |after, limit| async move { backend.list_thread_ids(after.as_deref(), limit).await },
        |threads| async move {
            let digests: Vec<_> = map_page(
                threads,
                options.concurrency,
                progress,
                |thread| async move {
                    let tuples = backend
                        .list_checkpoints(CheckpointQuery {
                            thread_id: thread.clone(),
                            namespace: None,
                            ..CheckpointQuery::default()
                        })
                        .await?;
                    let writes: u64 = tuples.iter().map(|t| t.pending_writes.len() as u64).sum();
                    Ok::<_, StorageError>((
                        thread,
                        tuples.len() as u64,
                        writes,
                        digest_of(&tuples)?,
                    ))
                },
            )
            .await?;
            let mut inv = inv.lock().await;
            for (thread, checkpoints, writes, digest) in digests {
                inv.count("checkpoints", checkpoints);
                inv.count("pending_writes", writes);
                inv.items.insert(("thread", thread), digest);
            }
            Ok(())
        },
    )
    .await?;
    for_each_id_page(
        options.batch_size,
        |after, limit| async move { backend.list_artifact_scopes(after.as_deref(), limit).await },
        |scopes| async move {
            for scope in scopes {
                for name in backend.list_artifacts(&scope).await? {
                    let versions = backend.list_artifact_versions(&scope, &name).await?;
                    let mut inv = inv.lock().await;
                    inv.count("artifact_versions", versions.len() as u64);
                    for meta in versions {
                        let key = format!("{}/{}@{}", meta.scope, meta.name, meta.version);
                        inv.items.insert(("artifact", key), digest_of(&meta)?);
                    }
                }
                progress.advance(1);
            }
            Ok(())
        },
    )
    .await?;
    Ok(inventory.into_inner())
}

/// Compares every item of `source` and `target`: counts per kind, and a digest of every
/// session, conversation (with sequence numbers), task context, thread (checkpoints,
/// channel values and pending writes) and artifact version (metadata with its SHA-256).
/// Conversations and task contexts are found through their own listings, whether or not
/// their session has a record; what a side cannot enumerate is in
/// [`Verification::not_compared`], and then the verification is not clean.
pub async fn verify(
    source: &dyn StorageBackend,
    target: &dyn StorageBackend,
    options: &MigrateOptions,
    progress: &dyn Progress,
) -> Result<Verification> {
    progress.phase("verify");
    let from = inventory(source, options, progress).await?;
    let to = inventory(target, options, progress).await?;
    let mut counts = BTreeMap::new();
    for kind in [
        "sessions",
        "messages",
        "task_contexts",
        "checkpoints",
        "pending_writes",
        "artifact_versions",
    ] {
        counts.insert(
            kind.to_owned(),
            KindCount {
                source: from.counts.get(kind).copied().unwrap_or(0),
                target: to.counts.get(kind).copied().unwrap_or(0),
            },
        );
    }
    let mut differences = Vec::new();
    for ((kind, key), digest) in &from.items {
        match to.items.get(&(*kind, key.clone())) {
            None => differences.push(Difference {
                kind,
                key: key.clone(),
                problem: "missing in target",
            }),
            Some(other) if other != digest => differences.push(Difference {
                kind,
                key: key.clone(),
                problem: "content differs",
            }),
            Some(_) => {}
        }
    }
    for (kind, key) in to.items.keys() {
        if !from.items.contains_key(&(*kind, key.clone())) {
            differences.push(Difference {
                kind,
                key: key.clone(),
                problem: "extra in target",
            });
        }
    }
    let not_compared = [("source", from.not_listed), ("target", to.not_listed)]
        .into_iter()
        .flat_map(|(side, notes)| notes.into_iter().map(move |note| format!("{side}: {note}")))
        .collect();
    Ok(Verification {
        counts,
        differences,
        not_compared,
    })
}

/// Builds, initializes and migrates between two backends given by URL (see
/// [`config_for_url`]).
pub async fn migrate_urls(
    from: &str,
    to: &str,
    options: &MigrateOptions,
    progress: &dyn Progress,
) -> Result<MigrationReport> {
    let (source_name, source_config) = config_for_url(from)?;
    let (target_name, target_config) = config_for_url(to)?;
    let source = crate::factory::build_backend(source_name, &source_config, None)?;
    let target = crate::factory::build_backend(target_name, &target_config, None)?;
    source.initialize().await?;
    target.initialize().await?;
    let report = migrate(source.as_ref(), target.as_ref(), options, progress).await;
    let _ = tokio::join!(source.close(), target.close());
    report
}
