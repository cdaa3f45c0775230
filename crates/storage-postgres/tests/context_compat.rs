//! Task contexts the previous release wrote read through this one: a schema left at
//! version 2 by that release's migrations (one `task_contexts` row per session), its rows
//! planted with raw SQL exactly as that release's `store_task_context` wrote them, then
//! opened by this release, which migrates it. Each context is its session scope's current
//! version, is listed, and keeps working with compare-and-set; deleting or cleaning up its
//! session removes it.

use storage_core::StorageBackend;
use storage_postgres::{PostgresBackend, PostgresConfig};

mod previous_release;

/// Rows as the previous release wrote them: the version column is authoritative, and the
/// record is the context encoded with `session_id` and version 0.
const OLD_CONTEXTS: [(&str, i64, &str); 3] = [
    (
        "s1",
        3,
        r#"{"v":1,"kind":"task_context","data":{"session_id":"s1","value":{"plan":["a","b"],"step":3},"version":0,"updated_at":"2026-11-01T10:00:00.123456Z"}}"#,
    ),
    (
        "s:2",
        1,
        r#"{"v":1,"kind":"task_context","data":{"session_id":"s:2","value":"just text","version":0,"updated_at":"2026-11-02T08:30:00Z"}}"#,
    ),
    (
        "idle",
        7,
        r#"{"v":1,"kind":"task_context","data":{"session_id":"idle","value":[1,2,3],"version":0,"updated_at":"2026-10-01T00:00:00Z"}}"#,
    ),
];

async fn plant_previous_release(url: &str, namespace: &str) {
    let client = previous_release::schema_at(url, namespace, 2).await;
    for (session_id, version, record) in OLD_CONTEXTS {
        client
            .execute(
                "INSERT INTO task_contexts (session_id, version, record) VALUES ($1, $2, $3)",
                &[&session_id, &version, &record.as_bytes()],
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contexts_of_the_previous_release_are_their_session_scopes_current_versions() {
    let url = storage_testkit::servers::postgres::postgres_url();
    let namespace = "t_context_compat";
    plant_previous_release(&url, namespace).await;

    let b = PostgresBackend::new(PostgresConfig::from_url(url.clone()).with_namespace(namespace))
        .unwrap();
    b.initialize().await.unwrap();

    storage_testkit::compat::previous_release_contexts_read(&b).await;

    // The old table is gone, not left for a process of the previous release to write to.
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let old_table: Option<String> = client
        .query_one(
            "SELECT to_regclass($1)::text",
            &[&format!("{namespace}.task_contexts")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(old_table, None);
}
