//! Retention over records PostgreSQL cannot decode, planted with raw SQL: a sweep decodes
//! only the expired prefix and the record that ends it, and an undecodable record that
//! would end an expired prefix counts as young (`storage_testkit::undecodable`).

use std::sync::Arc;

use futures::future::BoxFuture;
use storage_core::StorageBackend;
use storage_postgres::{PostgresBackend, PostgresConfig};

/// A backend on `namespace` and a raw client that overwrites a message's record.
async fn backend_and_plant(
    namespace: &str,
) -> (
    PostgresBackend,
    impl Fn(&'static str, u64, Vec<u8>) -> BoxFuture<'static, ()> + Sync,
) {
    let url = storage_testkit::servers::postgres::postgres_url();
    let b = PostgresBackend::new(PostgresConfig::from_url(url.clone()).with_namespace(namespace))
        .unwrap();
    b.initialize().await.unwrap();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let client = Arc::new(client);
    let update = format!(
        "UPDATE {}.messages SET record = $1 WHERE session_id = $2 AND sequence = $3",
        b.schema()
    );
    let plant = move |session: &'static str, sequence: u64, bytes: Vec<u8>| {
        let (client, update) = (client.clone(), update.clone());
        Box::pin(async move {
            let sequence = i64::try_from(sequence).unwrap();
            let planted = client
                .execute(&update, &[&bytes, &session, &sequence])
                .await
                .unwrap();
            assert_eq!(planted, 1);
        }) as BoxFuture<'static, ()>
    };
    (b, plant)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_never_decodes_the_records_it_keeps() {
    let (b, plant) = backend_and_plant("t_retain").await;
    storage_testkit::undecodable::a_sweep_never_decodes_the_records_it_keeps(&b, &plant).await;
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_record_ends_its_series_prefix_and_the_sweep_goes_on() {
    let (b, plant) = backend_and_plant("t_retain_undecodable").await;
    storage_testkit::undecodable::an_undecodable_record_ends_its_series_prefix(&b, &plant).await;
    b.close().await.unwrap();
}
