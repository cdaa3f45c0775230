//! Migrations: concurrent `initialize` calls all succeed, re-running applies nothing, and
//! the schema version is recorded.

use storage_core::StorageBackend;
use storage_postgres::{schema, PostgresBackend, PostgresConfig};

fn fresh_namespace() -> String {
    format!("m_{}", &uuid_like()[..20])
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos:032x}{:08x}", std::process::id())
        .chars()
        .rev()
        .collect()
}

fn config(namespace: &str) -> PostgresConfig {
    PostgresConfig::from_url(storage_testkit::servers::postgres::postgres_url())
        .with_namespace(namespace)
        .with_pool_size(2)
}

async fn applied_versions(namespace: &str) -> Vec<(i32, String)> {
    let url = storage_testkit::servers::postgres::postgres_url();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let sql = format!(
        "SELECT version, applied_on FROM \"{namespace}\".{} ORDER BY version",
        schema::MIGRATION_TABLE
    );
    client
        .query(&sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_initialize_calls_all_succeed_and_rerunning_is_a_no_op() {
    let namespace = fresh_namespace();
    // Separate backends, as separate processes would be, all starting at once.
    let backends: Vec<PostgresBackend> = (0..6)
        .map(|_| PostgresBackend::new(config(&namespace)).unwrap())
        .collect();
    let results = futures::future::join_all(backends.iter().map(|b| b.initialize())).await;
    for result in &results {
        assert!(result.is_ok(), "{result:?}");
    }
    let applied = applied_versions(&namespace).await;
    let versions: Vec<i32> = applied.iter().map(|(v, _)| *v).collect();
    let expected: Vec<i32> = (1..=schema::latest_version() as i32).collect();
    assert_eq!(versions, expected, "each migration recorded exactly once");

    // Again, from a new backend and an old one: nothing is applied a second time.
    PostgresBackend::new(config(&namespace))
        .unwrap()
        .initialize()
        .await
        .unwrap();
    backends[0].initialize().await.unwrap();
    assert_eq!(applied_versions(&namespace).await, applied);

    let health = backends[1].health_check().await.unwrap();
    assert_eq!(
        health.details["schema_version"],
        schema::latest_version().to_string()
    );
    assert!(health.details.contains_key("server_version"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_namespaces_fail_before_any_io() {
    for namespace in ["pg_catalog", "Upper", "a-b", ""] {
        let err = PostgresBackend::new(config(namespace)).unwrap_err();
        assert_eq!(
            err.kind(),
            storage_core::ErrorKind::InvalidInput,
            "{namespace}: {err}"
        );
    }
}
