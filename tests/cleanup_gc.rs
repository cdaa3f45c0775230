//! Orphaned artifact content on a local directory is collected by `storectl cleanup` and by
//! the facade's scheduled cleanup, once older than the grace period; a live version stays.

mod cli_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use storage::config::BackendName;
use storage::{Storage, StorageConfig};
use storage_core::prelude::*;

fn hex(id: &str) -> String {
    id.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The data directory of `scope/name` in namespace `ns` (see docs/backends/object.md).
fn data_dir(root: &Path, ns: &str, scope: &str, name: &str) -> PathBuf {
    root.join(ns)
        .join("artifacts")
        .join(format!("i{}", hex(scope)))
        .join(format!("i{}", hex(name)))
        .join("data")
}

/// What a save killed mid-way leaves: a data object nothing references, and a staging file.
fn orphans(root: &Path, ns: &str, tag: &str) -> [PathBuf; 2] {
    let dir = data_dir(root, ns, "scope", "report");
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join(format!("0190aaaa{tag}"));
    let staging = dir.join(format!("0190bbbb{tag}#3"));
    std::fs::write(&data, vec![7u8; 4096]).unwrap();
    std::fs::write(&staging, vec![8u8; 1024]).unwrap();
    [data, staging]
}

fn config(root: &Path) -> (StorageConfig, Vec<(String, String)>) {
    let url = format!("file://{}", root.display());
    let mut config = StorageConfig {
        backend: BackendName::Object,
        ..StorageConfig::default()
    };
    config.object.url = url.clone();
    config.object.namespace = "live".into();
    let env = vec![
        ("STORAGE_BACKEND".to_owned(), "object".to_owned()),
        ("STORAGE_OBJECT__URL".to_owned(), url),
        ("STORAGE_OBJECT__NAMESPACE".to_owned(), "live".to_owned()),
    ];
    (config, env)
}

fn cleanup(env: &[(String, String)], extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(cli_support::storectl_path());
    command
        .current_dir(dir.path())
        .args(["--json", "cleanup", "--max-idle", "1d"])
        .args(extra);
    for (name, _) in std::env::vars() {
        if name.starts_with("STORAGE_") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).unwrap()
}

async fn assert_live(storage: &Storage) {
    let artifact = storage
        .get_artifact("scope", "report", None)
        .await
        .unwrap()
        .expect("the live version");
    assert_eq!(artifact.data.as_ref(), b"committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storectl_cleanup_collects_orphans_older_than_the_grace_period() {
    let root = tempfile::tempdir().unwrap();
    let (config, env) = config(root.path());
    let storage = Storage::from_config(config).unwrap();
    storage.initialize().await.unwrap();
    storage
        .save_artifact(
            "scope",
            "report",
            NewArtifact::new("text/plain", "committed"),
        )
        .await
        .unwrap();
    let [data, staging] = orphans(root.path(), "live", "01");

    // Within the default grace period (24 h) the orphans may be saves still running.
    let report = cleanup(&env, &[]);
    assert_eq!(report["artifact_garbage"]["data_objects"], 0, "{report}");
    assert_eq!(report["artifact_garbage"]["staging_files"], 0, "{report}");
    assert!(report["artifact_garbage"]["too_young"].as_u64().unwrap() >= 3);
    assert!(data.exists() && staging.exists());

    std::thread::sleep(Duration::from_millis(20));
    let report = cleanup(&env, &["--artifact-grace", "0s"]);
    assert_eq!(report["artifact_garbage"]["data_objects"], 1, "{report}");
    assert_eq!(report["artifact_garbage"]["data_bytes"], 4096, "{report}");
    assert_eq!(report["artifact_garbage"]["staging_files"], 1, "{report}");
    assert!(!data.exists() && !staging.exists());
    assert_live(&storage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduled_cleanup_collects_orphans() {
    let root = tempfile::tempdir().unwrap();
    let (mut config, _) = config(root.path());
    config.cleanup.interval_secs = 1;
    config.cleanup.artifact_grace_secs = 0;
    let storage = Arc::new(Storage::from_config(config).unwrap());
    storage.initialize().await.unwrap();
    storage
        .save_artifact(
            "scope",
            "report",
            NewArtifact::new("text/plain", "committed"),
        )
        .await
        .unwrap();
    let left = orphans(root.path(), "live", "02");
    let _task = storage.spawn_configured_cleanup().expect("a schedule");
    let started = Instant::now();
    while left.iter().any(|path| path.exists()) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the scheduled cleanup did not collect {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_live(&storage).await;
}
