//! Retention through the facade: `storectl cleanup` applies the configured policies and
//! the ones given on its command line, and the scheduled cleanup applies the configured
//! ones; the newest record of every series stays.

mod cli_support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use storage::config::BackendName;
use storage::{Storage, StorageConfig};
use storage_core::prelude::*;
use storage_core::ContextScope;

/// Three messages, three context versions, three checkpoints and three artifact versions.
async fn fill(storage: &Storage) {
    for n in 0..3u32 {
        storage
            .append_message("s1", NewMessage::new("user", json!(n)))
            .await
            .unwrap();
        storage
            .store_context(
                ContextScope::session("s1"),
                json!(n),
                ExpectedVersion::Any,
                100,
            )
            .await
            .unwrap();
        let mut checkpoint = Checkpoint::new("t1", "", format!("cp-{n}"));
        checkpoint.parent_id = n.checked_sub(1).map(|parent| format!("cp-{parent}"));
        storage
            .put_checkpoint(checkpoint, Default::default())
            .await
            .unwrap();
        storage
            .save_artifact("run1", "a", NewArtifact::new("text/plain", format!("a{n}")))
            .await
            .unwrap();
    }
}

/// How many records each kind holds: messages, context versions, checkpoints, artifact
/// versions.
async fn counts(storage: &Storage) -> [usize; 4] {
    [
        storage
            .get_messages("s1", MessageRange::after(0, 100))
            .await
            .unwrap()
            .len(),
        storage
            .list_context_versions(ContextScope::session("s1"), None, 100)
            .await
            .unwrap()
            .len(),
        storage
            .list_checkpoints(CheckpointQuery::thread("t1"))
            .await
            .unwrap()
            .len(),
        storage
            .list_artifact_versions("run1", "a")
            .await
            .unwrap()
            .len(),
    ]
}

fn sqlite_config(dir: &Path) -> (StorageConfig, Vec<(String, String)>) {
    let path = dir.join("storage.db");
    let mut config = StorageConfig {
        backend: BackendName::Sqlite,
        ..StorageConfig::default()
    };
    config.sqlite.path = path.clone();
    config.routes.artifacts = Some(BackendName::Sqlite);
    let env = vec![
        ("STORAGE_BACKEND".to_owned(), "sqlite".to_owned()),
        ("STORAGE_ROUTES__ARTIFACTS".to_owned(), "sqlite".to_owned()),
        (
            "STORAGE_SQLITE__PATH".to_owned(),
            path.to_string_lossy().into_owned(),
        ),
    ];
    (config, env)
}

fn storectl(env: &[(String, String)], args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(cli_support::storectl_path());
    command.current_dir(dir.path()).args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("STORAGE_") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storectl_cleanup_applies_configured_and_given_retention() {
    let dir = tempfile::tempdir().unwrap();
    let (config, mut env) = sqlite_config(dir.path());
    let storage = Storage::from_config(config).unwrap();
    storage.initialize().await.unwrap();
    fill(&storage).await;

    // Nothing is configured: nothing is removed, and no session is touched without
    // --max-idle.
    let (code, stdout, stderr) = storectl(&env, &["--json", "cleanup"]);
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["removed"], Value::Null, "{report}");
    assert_eq!(
        report["retention"],
        json!({"messages": 0, "context_versions": 0, "checkpoints": 0, "artifact_versions": 0})
    );
    assert_eq!(counts(&storage).await, [3, 3, 3, 3]);

    // The configuration's policy for messages, by the environment layer.
    env.push((
        "STORAGE_CLEANUP__RETENTION__MESSAGES__KEEP_LAST".into(),
        "2".into(),
    ));
    let (code, stdout, stderr) = storectl(&env, &["--json", "cleanup"]);
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["retention"]["messages"], 1, "{report}");
    assert_eq!(counts(&storage).await, [2, 3, 3, 3]);

    // Flags replace the policy of the kinds --retain names.
    let (code, stdout, stderr) = storectl(
        &env,
        &[
            "--json",
            "cleanup",
            "--keep-last",
            "1",
            "--retain",
            "context-versions,checkpoints",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        report["retention"],
        json!({"messages": 0, "context_versions": 2, "checkpoints": 2, "artifact_versions": 0}),
        "{report}"
    );
    assert_eq!(counts(&storage).await, [2, 1, 1, 3]);
    // Everything is older than a second: every series keeps its newest record only.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (code, stdout, stderr) = storectl(&env, &["cleanup", "--max-age", "1s"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("artifact versions (retention)"), "{stdout}");
    assert_eq!(counts(&storage).await, [1, 1, 1, 1]);
    let latest = storage
        .get_artifact("run1", "a", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.data.as_ref(), b"a2", "the newest version stays");

    // Bad input is refused before anything is removed.
    for args in [
        &["cleanup", "--keep-last", "0"][..],
        &["cleanup", "--retain", "messages"],
        &["cleanup", "--max-age", "0s"],
    ] {
        let (code, _, stderr) = storectl(&env, args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
    }
    env.push((
        "STORAGE_CLEANUP__RETENTION__CHECKPOINTS__KEEP_LAST".into(),
        "0".into(),
    ));
    let (code, _, stderr) = storectl(&env, &["cleanup"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("cleanup.retention.checkpoints.keep_last"),
        "{stderr}"
    );
    assert_eq!(counts(&storage).await, [1, 1, 1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduled_cleanup_applies_the_configured_retention() {
    let mut config = StorageConfig {
        backend: BackendName::Memory,
        ..StorageConfig::default()
    };
    config.cleanup.interval_secs = 1;
    config.cleanup.retention.messages.keep_last = Some(1);
    config.cleanup.retention.context_versions.keep_last = Some(2);
    config.cleanup.retention.checkpoints.max_age_secs = Some(3600);
    config.cleanup.retention.artifact_versions.keep_last = Some(1);
    let storage = Arc::new(Storage::from_config(config).unwrap());
    storage.initialize().await.unwrap();
    fill(&storage).await;
    let _task = storage.spawn_configured_cleanup().expect("a schedule");
    let started = Instant::now();
    // The checkpoints are younger than an hour: they all stay.
    while counts(&storage).await != [1, 2, 3, 1] {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the scheduled cleanup did not apply retention: {:?}",
            counts(&storage).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
