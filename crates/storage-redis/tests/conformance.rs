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
