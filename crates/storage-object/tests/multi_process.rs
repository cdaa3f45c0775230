//! Writers in several OS processes on the same store: sequences stay gapless, counters
//! exact and artifact versions distinct. The test re-runs this test binary as worker
//! processes (selected by `OBJECT_TEST_WORKER`), each with its own backend value and
//! runtime, against one local directory and against one S3 bucket.

use std::process::{Command, Stdio};

use storage_core::{
    ArtifactStore, ConversationStore, NewArtifact, NewMessage, NewSession, SessionStore,
    SessionUpdate, StorageBackend,
};
use storage_object::{ObjectBackend, ObjectConfig};

const PROCESSES: usize = 3;

fn s3_config(namespace: &str) -> ObjectConfig {
    let target = storage_testkit::servers::s3::s3_target();
    ObjectConfig::new(format!("s3://{}/multi", target.bucket))
        .with_namespace(namespace)
        .with_option("aws_endpoint", target.endpoint)
        .with_option("aws_allow_http", "true")
        .with_option("aws_access_key_id", target.access_key_id)
        .with_option("aws_secret_access_key", target.secret_access_key)
        .with_option("aws_region", target.region)
}

fn config_for(store: &str, namespace: &str) -> ObjectConfig {
    if store == "s3" {
        s3_config(namespace)
    } else {
        ObjectConfig::new(store).with_namespace(namespace)
    }
}

/// What one worker process does: `ops` appends, `ops` increments, `ops / 4` artifact saves,
/// interleaved, from 4 tasks.
async fn work(backend: ObjectBackend, worker: usize, ops: usize) {
    let tasks: Vec<_> = (0..4)
        .map(|task| {
            let backend = backend.clone();
            tokio::spawn(async move {
                for i in (task..ops).step_by(4) {
                    let message = NewMessage::new("user", format!("w{worker}-{i}"));
                    backend.append_message("shared", message).await.unwrap();
                    backend
                        .update_session("shared", SessionUpdate::default().request(1))
                        .await
                        .unwrap();
                    if i % 4 == 0 {
                        let artifact = NewArtifact::new("text/plain", format!("w{worker}-{i}"));
                        backend
                            .save_artifact("scope", "shared", artifact)
                            .await
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// The worker entry point: does nothing unless started by [`run_processes`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_process() {
    let Ok(spec) = std::env::var("OBJECT_TEST_WORKER") else {
        return;
    };
    let parts: Vec<&str> = spec.splitn(4, '|').collect();
    let (worker, ops, namespace, store) = (
        parts[0].parse().unwrap(),
        parts[1].parse().unwrap(),
        parts[2],
        parts[3],
    );
    let backend = ObjectBackend::new(config_for(store, namespace)).unwrap();
    work(backend, worker, ops).await;
}

async fn run_processes(store: &str, ops: usize, extra_env: Vec<(String, String)>) {
    let namespace = format!("mp_{}", uuid_like());
    let backend = ObjectBackend::new(config_for(store, &namespace)).unwrap();
    backend.initialize().await.unwrap();
    backend
        .create_session(NewSession::new("shared", "u"))
        .await
        .unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|worker| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "worker_process",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env(
                    "OBJECT_TEST_WORKER",
                    format!("{worker}|{ops}|{namespace}|{store}"),
                )
                .envs(extra_env.iter().cloned())
                // A worker's own test-harness output would be counted as extra tests by
                // whoever reads this run's output; keep it for the failure message.
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let pids: std::collections::BTreeSet<u32> = children.iter().map(|c| c.id()).collect();
    assert_eq!(pids.len(), PROCESSES, "distinct OS processes");
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "a worker process failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let total = PROCESSES * ops;
    let history = backend
        .get_conversation_history("shared", total + 10)
        .await
        .unwrap();
    let sequences: Vec<u64> = history.iter().map(|m| m.sequence).collect();
    assert_eq!(sequences, (1..=total as u64).collect::<Vec<_>>(), "gapless");
    let session = backend.get_session("shared").await.unwrap().unwrap();
    assert_eq!(session.metrics.request_count, total as u64, "exact counter");
    let versions: Vec<u64> = backend
        .list_artifact_versions("scope", "shared")
        .await
        .unwrap()
        .iter()
        .map(|meta| meta.version)
        .collect();
    let saves = PROCESSES * ops.div_ceil(4);
    assert_eq!(
        versions,
        (0..saves as u64).collect::<Vec<_>>(),
        "distinct versions"
    );
    let _ = backend.close().await;
}

fn uuid_like() -> String {
    format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_share_local_files_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("file://{}", dir.path().display());
    run_processes(&store, 40, Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_share_an_s3_bucket_exactly() {
    // Start (or find) the server here and hand it to the workers, so all use one bucket.
    let target = storage_testkit::servers::s3::s3_target();
    let env = vec![
        ("STORAGE_TEST_S3_URL".to_owned(), target.endpoint.clone()),
        ("STORAGE_TEST_S3_BUCKET".to_owned(), target.bucket.clone()),
    ];
    run_processes("s3", 12, env).await;
}
