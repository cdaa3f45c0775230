//! `storectl migrate` of conversations and task contexts whose session has no record:
//! verification counts what the source holds (found through `list_conversation_ids` and
//! `list_context_scopes`), the migration copies it, and "verified" is said only when the
//! target holds the same. Legs: memory to memory (in-process, through the library), a local
//! directory to a local directory, and Redis to PostgreSQL (throwaway servers from the
//! testkit unless `STORAGE_TEST_*_URL` names them).

mod cli_support;

use std::sync::Arc;

use serde_json::json;
use storage::migrate::{config_for_url, MigrateOptions, NoProgress};
use storage_core::ext::TaskContextStoreExt;
use storage_core::{ExpectedVersion, MessageRange, NewMessage, NewSession, StorageBackend};
use storage_testkit::servers::{postgres::postgres_url, redis::redis_url};

/// Conversations without a session record, and messages in each: 1,200 messages.
const ORPHANS: usize = 60;
const MESSAGES: usize = 20;
/// Task contexts without a session record.
const ORPHAN_CONTEXTS: usize = 3;
/// One ordinary session with its conversation and context, so both paths run.
const WITH_SESSION_MESSAGES: usize = 5;

fn namespace() -> String {
    format!("o_{}", &uuid::Uuid::now_v7().simple().to_string()[8..32])
}

fn with_namespace(url: &str, namespace: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}namespace={namespace}")
}

async fn open(url: &str) -> Arc<dyn StorageBackend> {
    let (backend, config) = config_for_url(url).unwrap();
    let built = storage::factory::build_backend(backend, &config, None).unwrap();
    built.initialize().await.unwrap();
    built
}

/// Pages of 7 ids, so every listing is walked across pages.
fn paged() -> MigrateOptions {
    MigrateOptions {
        batch_size: 7,
        ..MigrateOptions::default()
    }
}

fn orphan(i: usize) -> String {
    format!("orphan-{i:03}")
}

async fn populate(source: &dyn StorageBackend) {
    for i in 0..ORPHANS {
        let messages = (0..MESSAGES)
            .map(|m| NewMessage::new("user", format!("{i}/{m}")))
            .collect();
        source.append_messages(&orphan(i), messages).await.unwrap();
    }
    for i in 0..ORPHAN_CONTEXTS {
        source
            .store_task_context(
                &format!("lonely-context-{i}"),
                json!({ "step": i }),
                ExpectedVersion::Any,
            )
            .await
            .unwrap();
    }
    source
        .create_session(NewSession::new("with-session", "u"))
        .await
        .unwrap();
    let messages = (0..WITH_SESSION_MESSAGES)
        .map(|m| NewMessage::new("user", format!("s/{m}")))
        .collect();
    source
        .append_messages("with-session", messages)
        .await
        .unwrap();
    source
        .store_task_context("with-session", json!({"ok": true}), ExpectedVersion::Any)
        .await
        .unwrap();
}

/// The target holds every conversation and context of the source, message for message.
async fn assert_copied(source: &dyn StorageBackend, target: &dyn StorageBackend) {
    for i in 0..ORPHANS {
        let range = || MessageRange::after(0, MESSAGES * 2);
        let want = source.get_messages(&orphan(i), range()).await.unwrap();
        let got = target.get_messages(&orphan(i), range()).await.unwrap();
        assert_eq!(want.len(), MESSAGES);
        assert_eq!(got, want, "conversation {}", orphan(i));
    }
    for i in 0..ORPHAN_CONTEXTS {
        let id = format!("lonely-context-{i}");
        let want = source.get_task_context(&id).await.unwrap();
        assert!(want.is_some());
        assert_eq!(target.get_task_context(&id).await.unwrap(), want, "{id}");
    }
    assert!(target.get_session("with-session").await.unwrap().is_some());
    for i in 0..ORPHANS {
        assert!(target.get_session(&orphan(i)).await.unwrap().is_none());
    }
}

const TOTAL_MESSAGES: u64 = (ORPHANS * MESSAGES + WITH_SESSION_MESSAGES) as u64;
const TOTAL_CONTEXTS: u64 = ORPHAN_CONTEXTS as u64 + 1;

async fn through_storectl(from: &str, to: &str) {
    let source = open(from).await;
    let target = open(to).await;
    populate(source.as_ref()).await;

    let mut command = std::process::Command::new(cli_support::storectl_path());
    for (name, _) in std::env::vars() {
        if name.starts_with("STORAGE_") {
            command.env_remove(name);
        }
    }
    // Pages of 7: the listings are walked page by page (`after`), not in one call.
    let args = [
        "--json",
        "migrate",
        "--from",
        from,
        "--to",
        to,
        "--batch-size",
        "7",
    ];
    let output = command.args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let counts = &report["verification"]["counts"];
    assert_eq!(counts["messages"]["source"], TOTAL_MESSAGES, "{report}");
    assert_eq!(counts["messages"]["target"], TOTAL_MESSAGES, "{report}");
    assert_eq!(
        counts["task_contexts"]["source"], TOTAL_CONTEXTS,
        "{report}"
    );
    assert_eq!(
        counts["task_contexts"]["target"], TOTAL_CONTEXTS,
        "{report}"
    );
    assert_eq!(counts["sessions"]["source"], 1, "{report}");
    assert_eq!(report["verification"]["differences"], json!([]), "{report}");
    assert_eq!(
        report["verification"]["not_compared"],
        json!([]),
        "{report}"
    );
    assert_eq!(report["copied"]["messages"], TOTAL_MESSAGES, "{report}");
    assert_eq!(
        report["copied"]["conversations_without_session"], ORPHANS,
        "{report}"
    );
    assert_eq!(
        report["copied"]["task_contexts_without_session"], ORPHAN_CONTEXTS,
        "{report}"
    );
    // What is never copied is said, every time.
    let not_copied = report["not_copied"].as_array().unwrap();
    assert!(
        not_copied
            .iter()
            .any(|item| item["what"].as_str().unwrap().contains("pending writes")),
        "{report}"
    );
    assert_copied(source.as_ref(), target.as_ref()).await;

    // The table says the same in words.
    let mut command = std::process::Command::new(cli_support::storectl_path());
    for (name, _) in std::env::vars() {
        if name.starts_with("STORAGE_") {
            command.env_remove(name);
        }
    }
    let table = command.args(&args[1..]).output().unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert_eq!(table.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&format!(
            "copied without a session record: {ORPHANS} conversation(s), {ORPHAN_CONTEXTS} \
             task context(s)"
        )),
        "{text}"
    );
    assert!(text.contains("not copied: pending writes"), "{text}");
    assert!(text.contains("verified: source and target hold the same data"));
    let _ = tokio::join!(source.close(), target.close());
}

/// A target that lost one orphan conversation after the copy is never called verified.
async fn a_missing_orphan_is_a_difference(
    source: &dyn StorageBackend,
    target: &dyn StorageBackend,
) {
    target.clear_conversation(&orphan(7)).await.unwrap();
    let verification = storage::migrate::verify(source, target, &paged(), &NoProgress)
        .await
        .unwrap();
    assert!(!verification.is_clean());
    assert_eq!(verification.counts["messages"].source, TOTAL_MESSAGES);
    assert_eq!(
        verification.counts["messages"].target,
        TOTAL_MESSAGES - MESSAGES as u64
    );
    assert!(
        verification
            .differences
            .iter()
            .any(|d| d.kind == "conversation" && d.key == orphan(7)),
        "{verification:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_conversations_without_session_are_copied_and_verified() {
    let source = open("memory://?namespace=from").await;
    let target = open("memory://?namespace=to").await;
    populate(source.as_ref()).await;
    let report = storage::migrate::migrate(source.as_ref(), target.as_ref(), &paged(), &NoProgress)
        .await
        .unwrap();
    let verification = report.verification.unwrap();
    assert!(verification.is_clean(), "{verification:?}");
    assert_eq!(verification.counts["messages"].source, TOTAL_MESSAGES);
    assert_eq!(report.copied.conversations_without_session, ORPHANS as u64);
    assert_copied(source.as_ref(), target.as_ref()).await;
    a_missing_orphan_is_a_difference(source.as_ref(), target.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_conversations_without_session_are_copied_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let from = format!("file://{}?namespace=from", dir.path().display());
    let to = format!("file://{}?namespace=to", dir.path().display());
    through_storectl(&from, &to).await;
    let (source, target) = (open(&from).await, open(&to).await);
    a_missing_orphan_is_a_difference(source.as_ref(), target.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_to_postgres_conversations_without_session_are_copied_and_verified() {
    let from = with_namespace(&redis_url(), &namespace());
    let to = with_namespace(&postgres_url(), &namespace());
    through_storectl(&from, &to).await;
    let (source, target) = (open(&from).await, open(&to).await);
    a_missing_orphan_is_a_difference(source.as_ref(), target.as_ref()).await;
}
