//! The session's conversation lock under READ COMMITTED: a rewind, pop or session deletion
//! that waited for a writer holding the lock (as a compaction does while it replaces a
//! prefix by a summary) sees what that writer committed, because it reads in statements
//! that start after the lock is granted. The writer here is a raw transaction holding the
//! counter row as a compaction holds it and inserting a row, so the wait is certain.

use std::time::Duration;

use serde_json::json;
use storage_core::{ConversationStore, NewMessage, NewSession, SessionStore, StorageBackend};
use storage_postgres::{PostgresBackend, PostgresConfig};
use tokio_postgres::NoTls;

async fn backend(namespace: &str) -> PostgresBackend {
    let url = storage_testkit::servers::postgres::postgres_url();
    let b = PostgresBackend::new(PostgresConfig::from_url(url).with_namespace(namespace)).unwrap();
    b.initialize().await.unwrap();
    b
}

/// A connection in the backend's schema, with a transaction that holds the session's
/// counter row and has inserted a message at `sequence`, not yet committed.
async fn writer_holding_the_lock(
    b: &PostgresBackend,
    session_id: &str,
    sequence: i64,
) -> tokio_postgres::Client {
    let url = storage_testkit::servers::postgres::postgres_url();
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(connection);
    let record = storage_core::wire::encode(
        &NewMessage::new("system", json!("written under the lock")).into_message(
            session_id,
            0,
            storage_core::time::now(),
        ),
    )
    .unwrap();
    client
        .batch_execute(&format!("SET search_path = \"{}\"; BEGIN", b.schema()))
        .await
        .unwrap();
    client
        .execute(
            "SELECT 1 FROM message_counters WHERE session_id = $1 FOR UPDATE",
            &[&session_id],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO messages (session_id, sequence, record) VALUES ($1, $2, $3)",
            &[&session_id, &sequence, &record],
        )
        .await
        .unwrap();
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewind_that_waited_removes_what_the_lock_holder_wrote() {
    let b = backend("t_conv_lock_rewind").await;
    for n in 1..=3 {
        b.append_message("s1", NewMessage::new("user", json!(n)))
            .await
            .unwrap();
    }
    let writer = writer_holding_the_lock(&b, "s1", 3_000).await;
    let b = std::sync::Arc::new(b);
    let rewind = {
        let b = b.clone();
        tokio::spawn(async move { b.rewind_conversation("s1", 1).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!rewind.is_finished(), "the rewind waits for the lock");
    writer.batch_execute("COMMIT").await.unwrap();
    assert_eq!(rewind.await.unwrap(), 3);
    let left = b.get_conversation_history("s1", 10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].sequence, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_deletion_that_waited_removes_what_the_lock_holder_wrote() {
    let b = backend("t_conv_lock_delete").await;
    b.create_session(NewSession::new("s1", "u1")).await.unwrap();
    b.append_message("s1", NewMessage::new("user", json!(1)))
        .await
        .unwrap();
    let writer = writer_holding_the_lock(&b, "s1", 3_000).await;
    let b = std::sync::Arc::new(b);
    let deletion = {
        let b = b.clone();
        tokio::spawn(async move { b.delete_session("s1").await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!deletion.is_finished(), "the deletion waits for the lock");
    writer.batch_execute("COMMIT").await.unwrap();
    assert!(deletion.await.unwrap());
    assert!(b
        .get_conversation_history("s1", 10)
        .await
        .unwrap()
        .is_empty());
}
