//! Group commit: concurrent writes share transactions, and a failing write in a batch fails
//! alone.

use std::sync::Arc;

use storage_core::ConversationStore;
use storage_core::{ErrorKind, NewMessage, NewSession, SessionStore, StorageBackend};
use storage_sqlite::{SqliteBackend, SqliteConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_writes_fail_alone_and_writes_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(
        SqliteBackend::new(SqliteConfig::new(dir.path().join("g.db")).with_namespace("g")).unwrap(),
    );
    backend.initialize().await.unwrap();
    for i in 0..32 {
        backend
            .create_session(NewSession::new(format!("taken-{i}"), "u"))
            .await
            .unwrap();
    }
    let before = backend.get_metrics().await.unwrap().counters;
    // 64 writes at once: every other one creates a session that exists (AlreadyExists),
    // the others append a message.
    let calls = (0..64).map(|i| {
        let backend = backend.clone();
        tokio::spawn(async move {
            if i % 2 == 0 {
                backend
                    .create_session(NewSession::new(format!("taken-{}", i / 2), "u"))
                    .await
                    .map(|_| ())
            } else {
                backend
                    .append_message("s", NewMessage::new("user", "hi"))
                    .await
                    .map(|_| ())
            }
        })
    });
    let results: Vec<_> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    for (i, result) in results.iter().enumerate() {
        if i % 2 == 0 {
            assert_eq!(
                result.as_ref().unwrap_err().kind(),
                ErrorKind::AlreadyExists
            );
        } else {
            result.as_ref().unwrap();
        }
    }
    let history = backend.get_conversation_history("s", 100).await.unwrap();
    let numbers: Vec<u64> = history.iter().map(|m| m.sequence).collect();
    assert_eq!(numbers, (1..=32).collect::<Vec<_>>());
    let after = backend.get_metrics().await.unwrap().counters;
    let commits = after["commits"] - before["commits"];
    let writes = after["writes"] - before["writes"];
    assert_eq!(writes, 64);
    assert!(
        commits < writes,
        "{commits} transactions for {writes} writes"
    );
}
