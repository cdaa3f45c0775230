//! The conformance suite against a standalone Redis: `STORAGE_TEST_REDIS_URL`, or a
//! throwaway `redis-server` this test process starts and stops.

use std::sync::Arc;

use storage_core::StorageBackend;
use storage_redis::{RedisBackend, RedisConfig};

async fn backend(namespace: String) -> Arc<dyn StorageBackend> {
    let url = storage_testkit::servers::redis::redis_url();
    let config = RedisConfig::new(url)
        .with_namespace(namespace)
        .with_pool_size(8);
    Arc::new(RedisBackend::new(config).expect("valid redis config"))
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
