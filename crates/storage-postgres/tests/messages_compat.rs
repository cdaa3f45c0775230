//! Messages the previous release wrote read and compact through this one: a schema left at
//! version 3 by that release's migrations (no `replaced_messages`, no
//! `messages.compacted_from`), its rows planted with raw SQL as that release's appends wrote
//! them, then opened by this release, which migrates it. The messages read back, compact
//! (keeping what they replaced), and rewind and pop as any message.

use storage_core::StorageBackend;
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

    storage_testkit::compat::previous_release_messages_compact(&b).await;
}
