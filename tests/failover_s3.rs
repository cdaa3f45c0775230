//! Failover with an S3 primary: a throwaway moto server of its own, made durable by moto's
//! request log (every request logged before it is handled, the log replayed on restart),
//! killed with SIGKILL in the middle of a concurrent workload through the facade,
//! restarted, and after the journal's replay holding every acknowledged write, from before
//! the kill and after it, exactly once; reads during the outage succeeded. The scenario is
//! the testkit's `scenarios::outage::primary_killed_mid_workload`, on a smaller workload:
//! moto serves one request at a time.

mod failover_support;

use std::sync::Arc;
use std::time::Duration;

use failover_support::Harness;
use storage_core::StorageBackend;
use storage_object::{ObjectBackend, ObjectConfig};
use storage_testkit::scenarios::outage::{primary_killed_mid_workload, Plan, Process, Server};
use storage_testkit::servers::s3::MotoServer;

const BUCKET: &str = "failover";

struct S3(MotoServer);

impl Server for S3 {
    fn connect(&self) -> Arc<dyn StorageBackend> {
        let config = ObjectConfig::new(format!("s3://{BUCKET}/primary"))
            .with_namespace("failover")
            .with_option("aws_endpoint", self.0.endpoint())
            .with_option("aws_allow_http", "true")
            .with_option("aws_access_key_id", "testing")
            .with_option("aws_secret_access_key", "testing")
            .with_option("aws_region", "us-east-1")
            .with_timeouts(Duration::from_millis(500), Duration::from_secs(5));
        Arc::new(ObjectBackend::new(config).unwrap())
    }

    fn kill(&self) {
        self.0.stop();
    }

    fn restart(&self) {
        self.0.restart();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_primary_killed_mid_workload_loses_no_acknowledged_write() {
    let server = MotoServer::durable();
    server.create_bucket(BUCKET);
    let primary = S3(server);
    let harness = Harness::default();
    primary_killed_mid_workload(&primary, &harness, "s3", Process::Kept, Plan::of(2_100)).await;
}
