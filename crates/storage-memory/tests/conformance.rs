//! The whole conformance suite on the memory backend.

use std::sync::{Arc, OnceLock};

use storage_core::StorageBackend;
use storage_memory::MemoryStore;

/// One store for the test binary, like one server: backends on the same namespace share
/// data, other namespaces are isolated.
fn store() -> &'static MemoryStore {
    static STORE: OnceLock<MemoryStore> = OnceLock::new();
    STORE.get_or_init(MemoryStore::new)
}

async fn backend(namespace: String) -> Arc<dyn StorageBackend> {
    Arc::new(store().backend(&namespace).expect("valid namespace"))
}

storage_testkit::conformance_tests!(backend);

/// 10,000 levels of JSON through every write, on a tokio worker in a debug build: refused
/// as `InvalidInput`, no stack overflow (the conformance check uses 1,000 because the
/// facade clones arguments before they are validated).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_levels_are_refused_on_a_tokio_worker() {
    let b = backend("t_hostile_depth_10k".to_owned()).await;
    b.initialize().await.unwrap();
    storage_testkit::data::refuses_hostile_depth(b, 10_000).await;
}
