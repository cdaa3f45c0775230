//! A dataset with every kind and every awkward shape migration must keep: ended sessions
//! with metrics, conversations with gaps in their sequences, task contexts at high
//! versions, checkpoint chains in several namespaces with blobs and normal and special
//! writes, artifacts with deleted versions.
//!
//! [`populate`] seeds it through the backend with [`SEED_CONCURRENCY`] items in flight, so
//! that the acceptance size (200,000 messages) seeds in seconds rather than minutes;
//! [`Sizes::expected_counts`] and [`expected_sequences`] say what a complete copy holds.

#![allow(dead_code)]

use futures::stream::{self, StreamExt};
use serde_json::json;
use storage_core::prelude::*;
use storage_core::{Checkpoint, CheckpointKey, ExpectedVersion, NewArtifact, SessionStatus};

/// Sessions, threads or artifacts seeded at once. Each item's own calls stay in order.
pub const SEED_CONCURRENCY: usize = 32;

/// Sizes of the dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub sessions: usize,
    pub messages: usize,
    pub threads: usize,
    pub artifacts: usize,
}

/// The acceptance size of issue 7: 10,000 sessions × 20 messages, 1,000 checkpoint
/// threads (6 checkpoints and 24 pending writes each), 1,000 artifacts.
pub const FULL: Sizes = Sizes {
    sessions: 10_000,
    messages: 20,
    threads: 1_000,
    artifacts: 1_000,
};

impl Sizes {
    /// `small` unless the environment variable `name` says otherwise: `full` is [`FULL`];
    /// a number N is N sessions × 20 messages with N/10 threads and N/10 artifacts.
    pub fn from_env(name: &str, small: Sizes) -> Sizes {
        let scale = std::env::var(name).unwrap_or_default();
        match scale.trim() {
            "" | "small" => small,
            "full" => FULL,
            number => {
                let sessions: usize = number.parse().unwrap_or_else(|_| {
                    panic!("{name}={scale:?}: expected small, full or a number of sessions")
                });
                Sizes {
                    sessions,
                    messages: 20,
                    threads: sessions / 10,
                    artifacts: sessions / 10,
                }
            }
        }
    }

    /// What a complete copy holds, per kind of [`storage::migrate::Verification::counts`].
    pub fn expected_counts(&self) -> [(&'static str, u64); 6] {
        let sessions = self.sessions as u64;
        let threads = self.threads as u64;
        let artifacts = self.artifacts as u64;
        [
            ("sessions", sessions),
            ("messages", sessions * self.messages as u64),
            // Even-numbered sessions have one.
            ("task_contexts", sessions.div_ceil(2)),
            // Two namespaces of three checkpoints.
            ("checkpoints", threads * 6),
            // Per checkpoint: three writes of task-a (one special), one of task-b.
            ("pending_writes", threads * 6 * 4),
            // Three versions each; every third artifact lost version 1.
            ("artifact_versions", artifacts * 3 - artifacts.div_ceil(3)),
        ]
    }
}

/// The sequence numbers of session `s`'s conversation: 1..=messages, except that every
/// fifth session's last message was popped and its number skipped.
pub fn expected_sequences(s: usize, messages: usize) -> Vec<u64> {
    let mut sequences: Vec<u64> = (1..=messages as u64).collect();
    if s % 5 == 0 && messages > 0 {
        sequences.pop();
        sequences.push(messages as u64 + 1);
    }
    sequences
}

/// The id of session `s`.
pub fn session_id(s: usize) -> String {
    format!("sess-{s:05}")
}

/// Seeds `sizes` into `backend`.
pub async fn populate(backend: &dyn StorageBackend, sizes: Sizes) {
    for_each_concurrently(sizes.sessions, |s| seed_session(backend, s, sizes.messages)).await;
    for_each_concurrently(sizes.threads, |t| seed_thread(backend, t)).await;
    for_each_concurrently(sizes.artifacts, |a| seed_artifact(backend, a)).await;
}

async fn for_each_concurrently<F, Fut>(count: usize, seed: F)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    stream::iter(0..count)
        .map(seed)
        .buffer_unordered(SEED_CONCURRENCY)
        .collect::<()>()
        .await;
}

async fn seed_session(backend: &dyn StorageBackend, s: usize, message_count: usize) {
    let id = session_id(s);
    backend
        .create_session(NewSession::new(&id, format!("user-{}", s % 7)))
        .await
        .unwrap();
    let update = SessionUpdate::default()
        .patch("step", json!(s))
        .request(s as u64 % 50);
    let update = if s % 3 == 0 {
        update.error("tool failed")
    } else {
        update
    };
    backend.update_session(&id, update).await.unwrap();
    if s % 4 == 0 {
        backend
            .end_session(&id, SessionStatus::Completed)
            .await
            .unwrap();
    }
    let messages: Vec<NewMessage> = (0..message_count)
        .map(|m| {
            let message = NewMessage::new(
                if m % 2 == 0 { "user" } else { "assistant" },
                json!(format!("message {m} of {id}")),
            );
            if m % 2 == 0 {
                message.with_client_id(format!("c-{m}"))
            } else {
                message
            }
        })
        .collect();
    if !messages.is_empty() {
        backend.append_messages(&id, messages).await.unwrap();
    }
    if s % 5 == 0 && message_count > 0 {
        // A gap: the popped number is never reused.
        backend.pop_last_message(&id).await.unwrap();
        backend
            .append_message(&id, NewMessage::new("user", "after the gap"))
            .await
            .unwrap();
    }
    if s % 2 == 0 {
        for round in 0..(1 + s % 3) {
            backend
                .store_task_context(
                    &id,
                    json!({"round": round, "session": id}),
                    ExpectedVersion::Any,
                )
                .await
                .unwrap();
        }
    }
}

async fn seed_thread(backend: &dyn StorageBackend, t: usize) {
    let thread = format!("thread-{t:04}");
    for namespace in ["", "sub"] {
        let mut parent = None;
        for step in 0..3 {
            let id = storage_core::new_checkpoint_id();
            let mut checkpoint = Checkpoint::new(&thread, namespace, &id);
            checkpoint.parent_id = parent.clone();
            checkpoint
                .channel_versions
                .insert("messages".into(), format!("v{step}"));
            checkpoint
                .channel_versions
                .insert("constant".into(), "v0".into());
            checkpoint
                .channel_values
                .insert("messages".into(), json!([step, thread]).into());
            checkpoint
                .channel_values
                .insert("constant".into(), json!("c").into());
            checkpoint.metadata.insert("step".into(), json!(step));
            checkpoint
                .metadata
                .insert("run_id".into(), json!(format!("run-{t}")));
            let mut new_versions = storage_core::ChannelVersions::new();
            new_versions.insert("messages".into(), format!("v{step}"));
            if step == 0 {
                new_versions.insert("constant".into(), "v0".into());
            }
            backend
                .put_checkpoint(checkpoint, new_versions)
                .await
                .unwrap();
            let key = CheckpointKey::new(&thread, &id).in_namespace(namespace);
            backend
                .put_writes(
                    key.clone(),
                    "task-a",
                    "path/a",
                    vec![
                        ("x".into(), json!(1).into()),
                        ("__error__".into(), json!("boom").into()),
                        ("y".into(), json!(2).into()),
                    ],
                )
                .await
                .unwrap();
            backend
                .put_writes(
                    key,
                    "task-b",
                    "path/b",
                    vec![("z".into(), json!(step).into())],
                )
                .await
                .unwrap();
            parent = Some(id);
        }
    }
}

async fn seed_artifact(backend: &dyn StorageBackend, a: usize) {
    let scope = format!("scope-{}", a % 10);
    let name = format!("artifact-{a:04}.txt");
    for version in 0..3 {
        backend
            .save_artifact(
                &scope,
                &name,
                NewArtifact::new("text/plain", format!("{name} v{version}").into_bytes()),
            )
            .await
            .unwrap();
    }
    if a % 3 == 0 {
        backend
            .delete_artifact(&scope, &name, Some(1))
            .await
            .unwrap();
    }
}
