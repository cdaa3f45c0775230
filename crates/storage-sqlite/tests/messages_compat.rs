//! Messages the previous release wrote read and compact through this one: a namespace left
//! at schema version 2 (no `replaced_messages`, no `messages.compacted_from`), its rows
//! planted with raw SQL as that release's appends wrote them, then opened by this release,
//! which migrates it. The messages read back, compact (keeping what they replaced), and
//! rewind and pop as any message.

use storage_core::StorageBackend;
use storage_sqlite::{SqliteBackend, SqliteConfig};

mod previous_release;

const NAMESPACE: &str = "old";

/// The namespace the previous release left (version 2), with its messages.
fn plant_previous_release(path: &std::path::Path) {
    let conn = previous_release::schema_at(path, NAMESPACE, 2);
    previous_release::plant_messages(&conn, NAMESPACE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_the_previous_release_compact_rewind_and_pop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("previous.db");
    plant_previous_release(&path);

    let b = SqliteBackend::new(SqliteConfig::new(&path).with_namespace(NAMESPACE)).unwrap();
    b.initialize().await.unwrap();

    storage_testkit::compat::previous_release_messages_compact(&b).await;
}
