//! What the stored counts' triggers (V5's, on deletes) cost appends and saves: two
//! namespaces at the current schema, one with the triggers dropped, timed alternately
//! round by round; the medians per operation are printed. (Appends and saves count in
//! their counter upsert, which this does not separate; an insert trigger, measured here
//! before it was replaced by that, cost an append about 50 us.) Run by hand:
//! `cargo test -p storage-postgres --release --test stored_counts_cost -- --ignored --nocapture`.

use storage_core::StorageBackend;
use storage_postgres::{PostgresBackend, PostgresConfig};

async fn backend(url: &str, namespace: &str, counted: bool) -> PostgresBackend {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {namespace} CASCADE"))
        .await
        .unwrap();
    let b =
        PostgresBackend::new(PostgresConfig::from_url(url.to_owned()).with_namespace(namespace))
            .unwrap();
    b.initialize().await.unwrap();
    if !counted {
        client
            .batch_execute(&format!(
                "SET search_path = {namespace};
                 DROP TRIGGER messages_stored_delete ON messages;
                 DROP TRIGGER artifacts_stored_delete ON artifacts;"
            ))
            .await
            .unwrap();
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn appends_and_saves_with_and_without_counts() {
    let url = storage_testkit::servers::postgres::postgres_url();
    let without = backend(&url, "t_cost_uncounted", false).await;
    let with = backend(&url, "t_cost_counted", true).await;
    storage_testkit::counts::time_writes_with_and_without_counts("postgres", &without, &with).await;
}
