//! Forking a session: a new session that starts from another's conversation up to a
//! sequence number, with a copy of its own task context (every kept version) and,
//! optionally, of a checkpoint thread up to a checkpoint; it shares nothing writable with
//! the original. Written once over the contract, so it behaves the same on every backend.
//!
//! A summary is copied as it is, except that what it kept stays with the original (the
//! copy's `compacted.kept` is `false`); a number inside a summary's range cannot be forked
//! at (`InvalidInput`: the messages up to it are gone). The messages are read as one state
//! of the conversation (read again when a compaction lands while they are read) before
//! anything is copied. The copy is made of exact imports (messages keep their sequence numbers, context
//! versions their numbers, checkpoints their ids), and the new session's record is
//! created last: a fork interrupted at any point is completed by running it again, and
//! a record means the fork is whole. Appends to the original while it is forked do not
//! reach the fork: it holds exactly the messages up to `at_sequence`.

use async_trait::async_trait;
use std::collections::BTreeMap;

use crate::backend::StorageBackend;
use crate::checkpoint::{CheckpointKey, PendingWrite};
use crate::conversation::MessageRange;
use crate::error::{Result, StorageError};
use crate::session::{NewSession, Session};
use crate::task_context::ContextScope;
use crate::validate::validate_id;

/// Messages copied per round trip.
const PAGE: usize = 500;

/// What [`ForkExt::fork_session`] copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fork {
    /// The session forked.
    pub source_session: String,
    /// The new session's id; `AlreadyExists` if a session record has it.
    pub new_session: String,
    /// The last sequence number copied.
    pub at_sequence: u64,
    /// A checkpoint thread to fork too.
    pub thread: Option<ThreadFork>,
}

/// A checkpoint thread forked at a checkpoint: the checkpoint and its ancestors in the
/// root namespace (`""`), with their pending writes, copied into a new thread under the
/// same ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadFork {
    /// The thread forked.
    pub source_thread: String,
    /// The new thread; must hold no checkpoint yet (`AlreadyExists`).
    pub new_thread: String,
    /// The newest checkpoint copied; `NotFound` if the source thread does not have it.
    pub checkpoint_id: String,
}

/// Forking over any [`StorageBackend`].
///
/// ```
/// use storage_core::fork::{Fork, ForkExt};
/// use storage_core::{Result, StorageBackend};
///
/// async fn try_another_branch(store: &dyn StorageBackend) -> Result<()> {
///     let fork = Fork {
///         source_session: "s1".into(),
///         new_session: "s1-branch".into(),
///         at_sequence: 12,
///         thread: None,
///     };
///     store.fork_session(fork).await?;
///     Ok(())
/// }
/// ```
#[async_trait]
pub trait ForkExt: StorageBackend {
    /// Forks a session as [`Fork`] says; returns the new session's record, whose metadata
    /// is the original's with `forked_from: {"session", "sequence"}` added. `NotFound` if
    /// the source session has no record.
    async fn fork_session(&self, fork: Fork) -> Result<Session> {
        validate_id("session id", &fork.source_session)?;
        validate_id("session id", &fork.new_session)?;
        if fork.source_session == fork.new_session {
            return Err(StorageError::invalid_input(
                "a session cannot be forked into itself",
            ));
        }
        if let Some(thread) = &fork.thread {
            validate_id("thread id", &thread.source_thread)?;
            validate_id("thread id", &thread.new_thread)?;
            validate_id("checkpoint id", &thread.checkpoint_id)?;
            if thread.source_thread == thread.new_thread {
                return Err(StorageError::invalid_input(
                    "a thread cannot be forked into itself",
                ));
            }
        }
        let Some(source) = self.get_session(&fork.source_session).await? else {
            return Err(StorageError::not_found(format!(
                "session {:?} does not exist",
                fork.source_session
            )));
        };
        if self.get_session(&fork.new_session).await?.is_some() {
            return Err(StorageError::already_exists(format!(
                "session {:?} already exists",
                fork.new_session
            )));
        }
        copy_messages(self, &fork).await?;
        copy_context(self, &fork).await?;
        if let Some(thread) = &fork.thread {
            copy_thread_until(self, thread).await?;
        }
        let mut metadata = source.metadata.clone();
        metadata.insert(
            "forked_from".into(),
            serde_json::json!({"session": fork.source_session, "sequence": fork.at_sequence}),
        );
        self.create_session(NewSession {
            id: fork.new_session.clone(),
            user_id: source.user_id.clone(),
            metadata,
        })
        .await
    }
}

impl<S: StorageBackend + ?Sized> ForkExt for S {}

async fn copy_messages<S: StorageBackend + ?Sized>(store: &S, fork: &Fork) -> Result<()> {
    let messages = snapshot(store, &fork.source_session, fork.at_sequence).await?;
    // The first message after the fork's number: a summary there that stands for it means
    // the messages up to the number are gone.
    let next = store
        .get_messages(
            &fork.source_session,
            MessageRange::after(fork.at_sequence, 1),
        )
        .await?;
    if let Some(compacted) = next.first().and_then(|message| message.compacted) {
        if compacted.from <= fork.at_sequence {
            return Err(StorageError::invalid_input(format!(
                "sequence {} of session {:?} lies inside the summary at {}, which stands for \
                 {} to {}: fork at {} or later, or before {}",
                fork.at_sequence,
                fork.source_session,
                compacted.to,
                compacted.from,
                compacted.to,
                compacted.to,
                compacted.from
            )));
        }
    }
    // A fork interrupted earlier holds a part of the copy; if the original was compacted
    // since, that part no longer matches it.
    let held = snapshot(store, &fork.new_session, fork.at_sequence).await?;
    let copied: std::collections::HashSet<u64> = messages.iter().map(|m| m.sequence).collect();
    if held
        .iter()
        .any(|message| !copied.contains(&message.sequence))
    {
        return Err(StorageError::conflict(format!(
            "session {:?} holds messages of an interrupted fork that no longer match {:?} (it \
             was compacted or rewound since); fork into another id",
            fork.new_session, fork.source_session
        )));
    }
    for page in messages.chunks(PAGE) {
        let copies = page
            .iter()
            .cloned()
            .map(|mut message| {
                message.session_id = fork.new_session.clone();
                // What the original's summaries kept stays with the original.
                if let Some(compacted) = &mut message.compacted {
                    compacted.kept = false;
                }
                message
            })
            .collect();
        store.import_messages(&fork.new_session, copies).await?;
    }
    Ok(())
}

/// The messages of `session` up to `at`, oldest first, as one state of the conversation:
/// read page by page, and read again from the start when a compaction lands in between
/// (a page bringing a summary that stands for numbers already read).
async fn snapshot<S: StorageBackend + ?Sized>(
    store: &S,
    session: &str,
    at: u64,
) -> Result<Vec<crate::conversation::Message>> {
    'read: loop {
        let mut messages: Vec<crate::conversation::Message> = Vec::new();
        let mut after = 0;
        while after < at {
            let range = MessageRange {
                after: Some(after),
                before: at.checked_add(1),
                limit: PAGE,
            };
            let page = store.get_messages(session, range).await?;
            let Some(last) = page.last() else { break };
            after = last.sequence;
            let restarted = page.iter().any(|message| {
                message.compacted.is_some_and(|compacted| {
                    messages
                        .first()
                        .is_some_and(|first| compacted.from <= first.sequence)
                })
            });
            if restarted {
                continue 'read;
            }
            messages.extend(page);
        }
        return Ok(messages);
    }
}

async fn copy_context<S: StorageBackend + ?Sized>(store: &S, fork: &Fork) -> Result<()> {
    let source = ContextScope::session(&fork.source_session);
    let mut versions = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list_context_versions(source.clone(), before, PAGE)
            .await?;
        let Some(oldest) = page.last() else { break };
        before = Some(oldest.version);
        let done = page.len() < PAGE;
        versions.extend(page);
        if done {
            break;
        }
    }
    for mut version in versions.into_iter().rev() {
        version.scope = ContextScope::session(&fork.new_session);
        store.import_task_context(version).await?;
    }
    Ok(())
}

async fn copy_thread_until<S: StorageBackend + ?Sized>(
    store: &S,
    thread: &ThreadFork,
) -> Result<()> {
    let Some(newest) = store
        .get_checkpoint(&thread.source_thread, "", Some(&thread.checkpoint_id))
        .await?
    else {
        return Err(StorageError::not_found(format!(
            "thread {:?} has no checkpoint {:?} in its root namespace",
            thread.source_thread, thread.checkpoint_id
        )));
    };
    let mut chain = vec![newest];
    while let Some(parent) = chain.last().and_then(|t| t.checkpoint.parent_id.clone()) {
        match store
            .get_checkpoint(&thread.source_thread, "", Some(&parent))
            .await?
        {
            Some(tuple) => chain.push(tuple),
            None => break,
        }
    }
    if let Some(held) = store.get_checkpoint(&thread.new_thread, "", None).await? {
        // A fork interrupted after some puts holds part of this very chain; anything else
        // is another thread's data.
        if !chain.iter().any(|t| t.checkpoint.id == held.checkpoint.id) {
            return Err(StorageError::already_exists(format!(
                "thread {:?} already holds checkpoints",
                thread.new_thread
            )));
        }
    }
    for tuple in chain.into_iter().rev() {
        let mut checkpoint = tuple.checkpoint;
        checkpoint.thread_id = thread.new_thread.clone();
        let versions = checkpoint.all_versions();
        let key = CheckpointKey {
            thread_id: thread.new_thread.clone(),
            namespace: String::new(),
            checkpoint_id: checkpoint.id.clone(),
        };
        store.put_checkpoint(checkpoint, versions).await?;
        let mut by_task: BTreeMap<(String, String), Vec<PendingWrite>> = BTreeMap::new();
        for write in tuple.pending_writes {
            by_task
                .entry((write.task_id.clone(), write.task_path.clone()))
                .or_default()
                .push(write);
        }
        for ((task_id, task_path), mut writes) in by_task {
            writes.sort_by_key(|write| write.index);
            let writes = writes.into_iter().map(|w| (w.channel, w.value)).collect();
            store
                .put_writes(key.clone(), &task_id, &task_path, writes)
                .await?;
        }
    }
    Ok(())
}
