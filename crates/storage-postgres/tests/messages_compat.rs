//! Messages the previous release wrote read and compact through this one: a schema left at
//! version 3 by that release's migrations (no `replaced_messages`, no
//! `messages.compacted_from`), its rows planted with raw SQL as that release's appends wrote
//! them, then opened by this release, which migrates it. The messages read back, compact
//! (keeping what they replaced), and rewind and pop as any message.

use storage_core::StorageBackend;
use storage_postgres::{PostgresBackend, PostgresConfig};

mod previous_release;

/// The schema the previous release left (version 3), with its messages.
async fn plant_previous_release(url: &str, namespace: &str) {
    let client = previous_release::schema_at(url, namespace, 3).await;
    previous_release::plant_messages(&client).await;
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
