//! A short agent loop on the embedded default, no server needed: every kind but artifacts
//! in the SQLite file `./.storage/storage.db`, artifacts as files under `./.storage`. A session, a conversation, checkpoints with pending writes, task context and an
//! artifact, then a look at what was stored.
//!
//! Run it with `cargo run -p storage --example quickstart`. Settings come from
//! `storage.toml` and `STORAGE_*` variables like any application's (try
//! `STORAGE_BACKEND=memory`); see docs/configuration.md.

use serde_json::json;
use storage::config::ConfigLoader;
use storage::Storage;
use storage_core::new_checkpoint_id;
use storage_core::prelude::*;

#[tokio::main]
async fn main() -> storage_core::Result<()> {
    let loaded = ConfigLoader::new()
        .set("sqlite.namespace", "quickstart")
        .set("object.namespace", "quickstart")
        .set("memory.namespace", "quickstart")
        .load()?;
    let storage = Storage::from_config(loaded.config)?;
    storage.initialize().await?;
    println!(
        "storage: sessions on {}, checkpoints on {}, artifacts on {}",
        storage.backend_name_of(storage::Kind::Sessions),
        storage.backend_name_of(storage::Kind::Checkpoints),
        storage.backend_name_of(storage::Kind::Artifacts)
    );

    // Start from a clean slate, so the example can run again on the same directory.
    storage.delete_session("session-1").await?;
    storage.delete_thread("thread-1").await?;
    storage.clear_artifacts("run-1").await?;

    let session = storage
        .create_session(NewSession::new("session-1", "alice"))
        .await?;
    println!("created session {} for {}", session.id, session.user_id);

    let mut parent: Option<String> = None;
    for (step, question) in ["What is 2 + 2?", "And times 10?"].into_iter().enumerate() {
        // A client message id makes the append safe to retry.
        let asked = NewMessage::new("user", question).with_client_id(format!("req-{step}"));
        storage.append_message(&session.id, asked).await?;
        let answer = if step == 0 { "4" } else { "40" };
        storage
            .append_message(&session.id, NewMessage::new("assistant", answer))
            .await?;

        // One checkpoint per step; only the changed channel's value is stored again.
        let mut checkpoint = Checkpoint::new("thread-1", "", new_checkpoint_id());
        checkpoint.parent_id = parent.clone();
        checkpoint
            .channel_versions
            .insert("answer".into(), format!("{}", step + 1));
        checkpoint
            .channel_values
            .insert("answer".into(), json!(answer).into());
        checkpoint.metadata.insert("step".into(), json!(step));
        let new_versions = checkpoint.channel_versions.clone();
        let key = checkpoint.key();
        storage.put_checkpoint(checkpoint, new_versions).await?;
        let writes = vec![("answer".to_string(), json!(answer).into())];
        storage
            .put_writes(key.clone(), "task-1", "", writes)
            .await?;
        parent = Some(key.checkpoint_id);

        let update = SessionUpdate::default()
            .request(120)
            .patch("last_step", json!(step));
        storage.update_session(&session.id, update).await?;
    }

    let version = storage
        .store_task_context_as(
            &session.id,
            &json!({"plan": ["add", "multiply"]}),
            ExpectedVersion::Absent,
        )
        .await?;
    let report = storage
        .save_json("run-1", "report.json", &json!({"result": 40}))
        .await?;
    storage
        .end_session(&session.id, SessionStatus::Completed)
        .await?;

    // What was stored.
    let session = storage
        .get_session(&session.id)
        .await?
        .expect("session exists");
    println!(
        "session {}: {} after {} requests ({} ms)",
        session.id,
        session.status,
        session.metrics.request_count,
        session.metrics.total_processing_ms
    );
    for message in storage.get_conversation_history(&session.id, 10).await? {
        println!(
            "  #{} {:>9}: {}",
            message.sequence, message.role, message.content
        );
    }
    let latest = storage
        .get_checkpoint("thread-1", "", None)
        .await?
        .expect("a checkpoint");
    println!(
        "latest checkpoint {} (parent {:?}): answer = {}, {} pending write(s)",
        latest.checkpoint.id,
        latest.checkpoint.parent_id,
        latest.checkpoint.channel_values["answer"],
        latest.pending_writes.len()
    );
    println!("task context at version {version}");
    println!(
        "artifact {}/{} v{}: {} bytes, sha256 {}",
        report.scope, report.name, report.version, report.size, report.sha256
    );
    for stats in storage.operation_stats() {
        if stats.operation == "append_message" || stats.operation == "get_session" {
            println!(
                "metrics: {} on {}: {} calls, p50 {:.3} ms",
                stats.operation, stats.backend, stats.count, stats.p50_ms
            );
        }
    }
    storage.close().await
}
