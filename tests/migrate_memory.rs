//! Migration between two memory backends: every kind copied exactly, a second run stores
//! nothing, and a run over a partial copy completes it without duplicates.

mod migrate_support;

use migrate_support::{populate, Sizes};
use storage::migrate::{migrate, verify, MigrateOptions, NoProgress};
use storage_core::prelude::*;
use storage_core::{MessageRange, SessionQuery};
use storage_memory::MemoryStore;

const SIZES: Sizes = Sizes {
    sessions: 120,
    messages: 20,
    threads: 30,
    artifacts: 40,
};

fn options() -> MigrateOptions {
    MigrateOptions {
        batch_size: 7,
        concurrency: 4,
        verify: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_everything_exactly_and_a_rerun_stores_nothing() {
    let store = MemoryStore::new();
    let source = store.backend("source").unwrap();
    let target = store.backend("target").unwrap();
    populate(&source, SIZES).await;

    let report = migrate(&source, &target, &options(), &NoProgress)
        .await
        .unwrap();
    let verification = report.verification.unwrap();
    assert!(verification.is_clean(), "{verification:?}");
    for (kind, count) in SIZES.expected_counts() {
        assert_eq!(verification.counts[kind].target, count, "{kind}");
    }
    assert_eq!(report.copied.messages_stored, 120 * 20);

    // Exact copies: sequence numbers with their gaps, versions, timestamps.
    let gap = target
        .get_messages("sess-00005", MessageRange::last(2))
        .await
        .unwrap();
    assert_eq!(
        gap.iter().map(|m| m.sequence).collect::<Vec<_>>(),
        vec![19, 21]
    );
    assert_eq!(
        source.get_session("sess-00003").await.unwrap(),
        target.get_session("sess-00003").await.unwrap()
    );
    let context = target
        .get_task_context("sess-00004")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(context.version, 2);
    // The target continues where the source would: no number handed out twice.
    let next = target
        .append_message("sess-00005", NewMessage::new("user", "new"))
        .await
        .unwrap();
    assert_eq!(next.sequence, 22);
    assert!(!target
        .artifact_exists("scope-0", "artifact-0000.txt", Some(1))
        .await
        .unwrap());
    let next = target
        .save_artifact(
            "scope-0",
            "artifact-0000.txt",
            storage_core::NewArtifact::new("text/plain", "x"),
        )
        .await
        .unwrap();
    assert_eq!(next.version, 3);
    target.pop_last_message("sess-00005").await.unwrap();
    target
        .delete_artifact("scope-0", "artifact-0000.txt", Some(3))
        .await
        .unwrap();

    // Running again stores nothing new and still verifies.
    let again = migrate(&source, &target, &options(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(again.copied.messages_stored, 0);
    assert_eq!(again.copied.artifact_versions_stored, 0);
    assert!(again.verification.unwrap().is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_a_partial_copy_completes_it_without_duplicates() {
    let store = MemoryStore::new();
    let source = store.backend("source").unwrap();
    let target = store.backend("target").unwrap();
    populate(&source, SIZES).await;

    // What an interrupted run leaves: some sessions whole, one conversation half copied.
    let page = source
        .list_sessions(SessionQuery {
            limit: 10,
            ..SessionQuery::default()
        })
        .await
        .unwrap();
    for session in page.items {
        let messages = source
            .get_messages(&session.id, MessageRange::after(0, 8))
            .await
            .unwrap();
        target.import_messages(&session.id, messages).await.unwrap();
        target.import_session(session).await.unwrap();
    }
    let verification = verify(&source, &target, &options(), &NoProgress)
        .await
        .unwrap();
    assert!(!verification.is_clean());
    assert!(verification
        .differences
        .iter()
        .any(|d| d.problem == "missing in target"));

    let report = migrate(&source, &target, &options(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.copied.messages_stored, 120 * 20 - 10 * 8);
    assert!(report.verification.unwrap().is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_names_what_differs() {
    let store = MemoryStore::new();
    let source = store.backend("source").unwrap();
    let target = store.backend("target").unwrap();
    populate(
        &source,
        Sizes {
            sessions: 3,
            messages: 2,
            threads: 1,
            artifacts: 1,
        },
    )
    .await;
    migrate(&source, &target, &options(), &NoProgress)
        .await
        .unwrap();
    target
        .append_message("sess-00001", NewMessage::new("user", "only in target"))
        .await
        .unwrap();
    target.delete_thread("thread-0000").await.unwrap();
    let verification = verify(&source, &target, &options(), &NoProgress)
        .await
        .unwrap();
    assert!(!verification.is_clean());
    let problems: Vec<(&str, &str, &str)> = verification
        .differences
        .iter()
        .map(|d| (d.kind, d.key.as_str(), d.problem))
        .collect();
    assert!(
        problems.contains(&("conversation", "sess-00001", "content differs")),
        "{problems:?}"
    );
    assert!(
        problems.contains(&("thread", "thread-0000", "missing in target")),
        "{problems:?}"
    );
    assert_eq!(
        verification.counts["messages"].target,
        verification.counts["messages"].source + 1
    );
}

/// A source that cannot list conversation or task-context ids: the report names what it
/// did not copy, and the verification what it could not compare, and is never clean.
/// The testkit's fault injector makes the memory backend such a source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_cannot_list_conversations_is_never_called_verified() {
    let store = MemoryStore::new();
    let memory = store.backend("source").unwrap();
    let target = store.backend("target").unwrap();
    memory
        .append_message("no-session", NewMessage::new("user", "hello"))
        .await
        .unwrap();
    use storage_testkit::fault::{Fault, FaultyBackend, Target};
    let source = FaultyBackend::new(std::sync::Arc::new(memory));
    for listing in ["list_conversation_ids", "list_context_scopes"] {
        source.set(
            Target::Operation(listing),
            Fault::Error(storage_core::ErrorKind::Unsupported),
        );
    }
    let unsupported = source.list_conversation_ids(None, 1).await.unwrap_err();
    assert_eq!(unsupported.kind(), storage_core::ErrorKind::Unsupported);

    let report = migrate(&source, &target, &options(), &NoProgress)
        .await
        .unwrap();
    let not_copied: Vec<&str> = report.not_copied.iter().map(|n| n.what.as_str()).collect();
    assert!(
        not_copied.contains(&"conversations of session ids that have no session record"),
        "{not_copied:?}"
    );
    assert!(
        not_copied.contains(
            &"shared task contexts, and task contexts of session ids that have no session record"
        ),
        "{not_copied:?}"
    );
    let verification = report.verification.unwrap();
    assert!(!verification.is_clean(), "{verification:?}");
    assert_eq!(verification.not_compared.len(), 2, "{verification:?}");
    assert!(verification.not_compared[0].starts_with("source: "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_histories_and_shared_scopes_move_whole_and_a_rerun_after_trimming_verifies() {
    let store = MemoryStore::new();
    let source = store.backend("source").unwrap();
    let target = store.backend("target").unwrap();
    let alice = ContextScope::user("alice");
    for step in 1..=5 {
        source
            .store_context(
                alice.clone(),
                serde_json::json!(step),
                ExpectedVersion::Any,
                200,
            )
            .await
            .unwrap();
    }
    source
        .store_context(
            ContextScope::App,
            serde_json::json!("app"),
            ExpectedVersion::Any,
            1,
        )
        .await
        .unwrap();
    let report = migrate(&source, &target, &options(), &NoProgress)
        .await
        .unwrap();
    assert!(report.verification.unwrap().is_clean());
    assert_eq!(
        target
            .list_context_versions(alice.clone(), None, 10)
            .await
            .unwrap(),
        source
            .list_context_versions(alice.clone(), None, 10)
            .await
            .unwrap()
    );
    assert_eq!(report.copied.task_contexts, 2);

    // The source moves on and trims what the target still holds: a second run converges.
    for step in 6..=8 {
        source
            .store_context(
                alice.clone(),
                serde_json::json!(step),
                ExpectedVersion::Any,
                3,
            )
            .await
            .unwrap();
    }
    let report = migrate(&source, &target, &options(), &NoProgress)
        .await
        .unwrap();
    let verification = report.verification.unwrap();
    assert!(verification.is_clean(), "{verification:?}");
    let versions: Vec<u64> = target
        .list_context_versions(alice, None, 10)
        .await
        .unwrap()
        .iter()
        .map(|context| context.version)
        .collect();
    assert_eq!(versions, vec![8, 7, 6]);
}
