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

/// 10,000 levels of JSON through every write, on a tokio worker in a debug build: refused
/// as `InvalidInput`, no stack overflow (the conformance check uses 1,000 because the
/// facade clones arguments before they are validated).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_levels_are_refused_on_a_tokio_worker() {
    let b = backend("t_hostile_depth_10k".to_owned()).await;
    b.initialize().await.unwrap();
    storage_testkit::data::refuses_hostile_depth(b, 10_000).await;
}
