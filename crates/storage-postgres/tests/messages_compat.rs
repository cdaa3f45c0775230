//! Messages the previous release wrote read and compact through this one: a schema left at
//! version 3 by that release's migrations (no `replaced_messages`, no
//! `messages.compacted_from`), its rows planted with raw SQL as that release's appends wrote
//! them, then opened by this release, which migrates it. The messages read back, compact
//! (keeping what they replaced), and rewind and pop as any message.

use serde_json::json;
use storage_core::{ConversationStore, MessageRange, NewMessage, StorageBackend};
use storage_postgres::{PostgresBackend, PostgresConfig};

/// The previous release's migrations, applied by refinery as that release applied them.
const PREVIOUS: [(&str, &str); 3] = [
    (
        "V1__initial_schema",
        include_str!("../migrations/V1__initial_schema.sql"),
    ),
    (
        "V2__checkpoints_across_threads",
        include_str!("../migrations/V2__checkpoints_across_threads.sql"),
    ),
    (
        "V3__context_versions",
        include_str!("../migrations/V3__context_versions.sql"),
    ),
];

/// A message record as the previous release encoded it (sequence 0: the row's column is
/// the number).
fn old_record(session_id: &str, n: i64) -> String {
    format!(
        r#"{{"v":1,"kind":"message","data":{{"session_id":"{session_id}","sequence":0,"role":"user","content":"m{n}","client_id":"c{n}","metadata":{{}},"created_at":"2026-11-01T10:00:0{n}Z"}}}}"#
    )
}

async fn plant_previous_release(url: &str, namespace: &str) {
    let (mut client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {namespace} CASCADE; CREATE SCHEMA {namespace}; \
             SET search_path = {namespace}"
        ))
        .await
        .unwrap();
    let migrations: Vec<refinery::Migration> = PREVIOUS
        .iter()
        .map(|(name, sql)| refinery::Migration::unapplied(name, sql).unwrap())
        .collect();
    refinery::Runner::new(&migrations)
        .set_grouped(true)
        .set_migration_table_name(storage_postgres::schema::MIGRATION_TABLE)
        .run_async(&mut client)
        .await
        .unwrap();
    for (session_id, count) in [("s1", 5_i64), ("s2", 2)] {
        for n in 1..=count {
            client
                .execute(
                    "INSERT INTO messages (session_id, sequence, client_id, record) \
                     VALUES ($1, $2, $3, $4)",
                    &[
                        &session_id,
                        &n,
                        &format!("c{n}"),
                        &old_record(session_id, n).as_bytes(),
                    ],
                )
                .await
                .unwrap();
        }
        client
            .execute(
                "INSERT INTO message_counters (session_id, last_sequence) VALUES ($1, $2)",
                &[&session_id, &count],
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_the_previous_release_compact_rewind_and_pop() {
    let url = storage_testkit::servers::postgres::postgres_url();
    let namespace = "t_messages_compat";
    plant_previous_release(&url, namespace).await;

    let b = PostgresBackend::new(PostgresConfig::from_url(url.clone()).with_namespace(namespace))
        .unwrap();
    b.initialize().await.unwrap();

    let old = b
        .get_messages("s1", MessageRange::after(0, 100))
        .await
        .unwrap();
    let numbers: Vec<u64> = old.iter().map(|m| m.sequence).collect();
    assert_eq!(numbers, vec![1, 2, 3, 4, 5]);
    assert_eq!(old[1].content, json!("m2"));
    assert!(old.iter().all(|m| m.compacted.is_none()));

    let summary = b
        .compact_conversation("s1", 3, NewMessage::new("system", json!("1-3")), true)
        .await
        .unwrap();
    let compacted = summary.compacted.unwrap();
    assert_eq!(
        (compacted.from, compacted.to, compacted.replaced),
        (1, 3, 3)
    );
    assert_eq!(b.get_replaced_messages("s1", 3).await.unwrap(), old[..3]);
    // The replaced client ids are free; numbering continues from the old counter.
    let again = b
        .append_message(
            "s1",
            NewMessage::new("user", json!("again")).with_client_id("c2"),
        )
        .await
        .unwrap();
    assert_eq!(again.sequence, 6);
    assert_eq!(b.rewind_conversation("s1", 2).await.unwrap(), 4);
    assert!(b.get_replaced_messages("s1", 3).await.unwrap().is_empty());
    assert!(b
        .get_conversation_history("s1", 10)
        .await
        .unwrap()
        .is_empty());

    // An old message pops as before.
    let popped = b.pop_last_message("s2").await.unwrap().unwrap();
    assert_eq!((popped.sequence, popped.content), (2, json!("m2")));
    assert_eq!(b.clear_conversation("s2").await.unwrap(), 1);
}
