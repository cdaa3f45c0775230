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
