//! The conformance suite against a 3-master Redis Cluster: `STORAGE_TEST_REDIS_CLUSTER_URLS`,
//! or a throwaway cluster this test process starts and stops.

use std::sync::Arc;

use storage_core::StorageBackend;
use storage_redis::{RedisBackend, RedisConfig};

async fn backend(namespace: String) -> Arc<dyn StorageBackend> {
    let urls = storage_testkit::servers::redis::redis_cluster_urls();
    let config = RedisConfig::cluster(urls)
        .with_namespace(namespace)
        .with_pool_size(4);
    Arc::new(RedisBackend::new(config).expect("valid redis cluster config"))
}

storage_testkit::conformance_tests!(backend);
