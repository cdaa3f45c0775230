//! The conformance suite on local files: one temporary directory per test process, every
//! check in a namespace of its own.

use std::sync::{Arc, OnceLock};

use storage_core::StorageBackend;
use storage_object::{ObjectBackend, ObjectConfig};

fn root() -> &'static tempfile::TempDir {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    ROOT.get_or_init(|| tempfile::tempdir().expect("a temporary directory"))
}

async fn backend(namespace: String) -> Arc<dyn StorageBackend> {
    let url = format!("file://{}", root().path().display());
    let config = ObjectConfig::new(url).with_namespace(namespace);
    Arc::new(ObjectBackend::new(config).expect("valid object config"))
}

storage_testkit::conformance_tests!(backend);
