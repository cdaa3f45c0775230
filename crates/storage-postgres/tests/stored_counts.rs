//! The stored counts retention's `keep_last` trusts (V5's `stored` columns): exact after
//! every path that adds or removes messages or artifact versions, and backfilled for what
//! the previous release stored (a schema left at version 4 by that release's migrations,
//! rows planted with raw SQL as that release wrote them), so the first sweep by count
//! removes exactly the oldest.

use storage_core::StorageBackend;
use storage_postgres::{PostgresBackend, PostgresConfig};

mod previous_release;

/// Series whose count differs from their rows, and counters of names without a version.
const MISCOUNTED: &str = "
    SELECT 'messages ' || c.session_id || ': ' || c.stored || ' counted, ' || count(m.sequence)
    FROM message_counters AS c LEFT JOIN messages AS m ON m.session_id = c.session_id
    GROUP BY c.session_id HAVING c.stored <> count(m.sequence)
    UNION ALL
    SELECT 'messages without a counter: ' || session_id FROM messages
    WHERE session_id NOT IN (SELECT session_id FROM message_counters)
    UNION ALL
    SELECT 'artifacts ' || c.scope || '/' || c.name || ': ' || c.stored || ' counted, '
        || count(a.version)
    FROM artifact_counters AS c LEFT JOIN artifacts AS a
        ON a.scope = c.scope AND a.name = c.name
    GROUP BY c.scope, c.name HAVING c.stored <> count(a.version) OR c.stored = 0
    UNION ALL
    SELECT 'artifacts without a counter: ' || scope || '/' || name FROM artifacts AS a
    WHERE NOT EXISTS (SELECT 1 FROM artifact_counters AS c
        WHERE c.scope = a.scope AND c.name = a.name)";

async fn connect(url: &str, namespace: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {namespace}; SET search_path = {namespace}"
        ))
        .await
        .unwrap();
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_stay_exact_on_every_path() {
    let url = storage_testkit::servers::postgres::postgres_url();
    let namespace = "t_stored_counts";
    let client = connect(&url, namespace).await;
    client
        .batch_execute(&format!("DROP SCHEMA {namespace} CASCADE"))
        .await
        .unwrap();
    let b = PostgresBackend::new(PostgresConfig::from_url(url.clone()).with_namespace(namespace))
        .unwrap();
    b.initialize().await.unwrap();
    let client = connect(&url, namespace).await;
    storage_testkit::counts::every_path(&b, async |step| {
        let wrong: Vec<String> = client
            .query(MISCOUNTED, &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert!(wrong.is_empty(), "after {step}: {wrong:?}");
    })
    .await;
}

/// The schema the previous release left (version 4), with its messages and artifact
/// versions.
async fn plant_previous_release(url: &str, namespace: &str) {
    let client = previous_release::schema_at(url, namespace, 4).await;
    previous_release::plant_messages(&client).await;
    // As a save did: the counter (the next version) and the version.
    for (name, count) in [("a", 4_i64), ("b", 1)] {
        client
            .execute(
                "INSERT INTO artifact_counters (scope, name, next_version) VALUES ('run1', $1, $2)",
                &[&name, &count],
            )
            .await
            .unwrap();
        for version in 0..count {
            let meta = storage_testkit::counts::artifact_meta_record(
                "run1",
                name,
                u64::try_from(version).unwrap(),
            );
            client
                .execute(
                    "INSERT INTO artifacts (scope, name, version, meta, data) \
                     VALUES ('run1', $1, $2, $3, '\\x78')",
                    &[&name, &version, &meta],
                )
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_of_the_previous_release_are_swept_by_count() {
    let url = storage_testkit::servers::postgres::postgres_url();
    let namespace = "t_stored_counts_compat";
    plant_previous_release(&url, namespace).await;
    let b = PostgresBackend::new(PostgresConfig::from_url(url.clone()).with_namespace(namespace))
        .unwrap();
    b.initialize().await.unwrap();
    storage_testkit::counts::previous_release_swept_by_count(&b).await;
}
