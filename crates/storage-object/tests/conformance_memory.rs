//! The conformance suite on `memory://` (object_store's in-memory store, with ETag
//! compare-and-set), every check in a namespace of its own.

use std::sync::Arc;

use storage_core::StorageBackend;
use storage_object::{ObjectBackend, ObjectConfig};

async fn backend(namespace: String) -> Arc<dyn StorageBackend> {
    let config = ObjectConfig::new("memory://conformance").with_namespace(namespace);
    Arc::new(ObjectBackend::new(config).expect("valid object config"))
}

storage_testkit::conformance_tests!(backend);
