//! A dataset with every kind and every awkward shape migration must keep: ended sessions
//! with metrics, conversations with gaps in their sequences, task contexts at high
//! versions, checkpoint chains in several namespaces with blobs and normal and special
//! writes, artifacts with deleted versions.

#![allow(dead_code)]

use serde_json::json;
use storage_core::prelude::*;
use storage_core::{Checkpoint, CheckpointKey, ExpectedVersion, NewArtifact, SessionStatus};

/// Sizes of the dataset.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub sessions: usize,
    pub messages: usize,
    pub threads: usize,
    pub artifacts: usize,
}

pub async fn populate(backend: &dyn StorageBackend, sizes: Sizes) {
    for s in 0..sizes.sessions {
        let id = format!("sess-{s:05}");
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
        let messages: Vec<NewMessage> = (0..sizes.messages)
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
        if s % 5 == 0 && sizes.messages > 0 {
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
    for t in 0..sizes.threads {
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
                    .insert("messages".into(), json!([step, thread]));
                checkpoint
                    .channel_values
                    .insert("constant".into(), json!("c"));
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
                            ("x".into(), json!(1)),
                            ("__error__".into(), json!("boom")),
                            ("y".into(), json!(2)),
                        ],
                    )
                    .await
                    .unwrap();
                backend
                    .put_writes(key, "task-b", "path/b", vec![("z".into(), json!(step))])
                    .await
                    .unwrap();
                parent = Some(id);
            }
        }
    }
    for a in 0..sizes.artifacts {
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
}
