//! Drives the built `storectl` binary against the embedded backend (a local directory),
//! Redis and PostgreSQL, each seeded through the library, checking tables, `--json` output
//! that parses, and the exit codes.

mod cli_support;

use std::process::Command;

use serde_json::{json, Value};
use storage::config::BackendName;
use storage::{Storage, StorageConfig};
use storage_core::prelude::*;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|err| {
            panic!(
                "stdout is not JSON ({err}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Runs storectl in an empty directory with only `env` as its `STORAGE_*` settings.
fn storectl(dir: &std::path::Path, env: &[(String, String)], args: &[&str]) -> Run {
    let mut command = Command::new(cli_support::storectl_path());
    command.current_dir(dir).args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("STORAGE_") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let output = command.output().expect("storectl runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn namespace() -> String {
    format!("t_{}", &uuid::Uuid::now_v7().simple().to_string()[8..32])
}

async fn seed(config: StorageConfig) {
    let storage = Storage::from_config(config).unwrap();
    storage.initialize().await.unwrap();
    storage
        .create_session(NewSession::new("s1", "alice"))
        .await
        .unwrap();
    for (role, text) in [
        ("user", "hello"),
        ("assistant", "hi there"),
        ("user", "bye"),
    ] {
        storage
            .append_message("s1", NewMessage::new(role, text))
            .await
            .unwrap();
    }
    let mut checkpoint = Checkpoint::new("thread-1", "", storage_core::new_checkpoint_id());
    checkpoint.channel_versions.insert("a".into(), "1".into());
    checkpoint
        .channel_values
        .insert("a".into(), json!(1).into());
    let versions = checkpoint.channel_versions.clone();
    storage.put_checkpoint(checkpoint, versions).await.unwrap();
    storage
        .save_json("run-1", "report.json", &json!({"ok": true}))
        .await
        .unwrap();
    storage.close().await.unwrap();
}

/// The same scenario on every backend.
async fn exercise(config: StorageConfig, env: Vec<(String, String)>) {
    seed(config).await;
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| storectl(dir.path(), &env, args);

    let list = run(&["--json", "sessions", "list"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    let ids: Vec<String> = list.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["s1"]);
    let table = run(&["sessions", "list"]);
    assert!(
        table.stdout.lines().next().unwrap().starts_with("id"),
        "{}",
        table.stdout
    );
    assert!(table.stdout.contains("alice"), "{}", table.stdout);

    let show = run(&["--json", "sessions", "show", "s1"]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert_eq!(show.json()["user_id"], "alice");
    let missing = run(&["--json", "sessions", "show", "nobody"]);
    assert_eq!(missing.code, 3, "not found: {}", missing.stderr);
    let error: Value = serde_json::from_str(missing.stderr.trim()).unwrap();
    assert_eq!(error["error"]["kind"], "not_found");

    let history = run(&["--json", "history", "s1", "--limit", "2"]);
    assert_eq!(history.code, 0, "{}", history.stderr);
    let sequences: Vec<u64> = history
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(sequences, [2, 3]);
    let bad = run(&["history", "s1", "--limit", "0"]);
    assert_eq!(bad.code, 2, "bad input: {}", bad.stderr);
    let usage = run(&["history"]);
    assert_eq!(usage.code, 2, "usage error: {}", usage.stderr);

    let checkpoints = run(&["--json", "checkpoints", "thread-1"]);
    assert_eq!(checkpoints.code, 0, "{}", checkpoints.stderr);
    assert_eq!(checkpoints.json().as_array().unwrap().len(), 1);

    let names = run(&["--json", "artifacts", "list", "run-1"]);
    assert_eq!(names.json(), json!(["report.json"]));
    let meta = run(&["--json", "artifacts", "get", "run-1", "report.json"]);
    assert_eq!(meta.code, 0, "{}", meta.stderr);
    assert_eq!(meta.json()["version"], 0);
    let content = run(&["artifacts", "get", "run-1", "report.json", "--output", "-"]);
    assert_eq!(content.stdout, r#"{"ok":true}"#);
    let absent = run(&["artifacts", "get", "run-1", "nope.json"]);
    assert_eq!(absent.code, 3, "{}", absent.stderr);

    let health = run(&["--json", "health", "--deep"]);
    assert_eq!(health.code, 0, "{}\n{}", health.stdout, health.stderr);
    let report = health.json();
    assert_eq!(report["healthy"], true, "{report}");
    assert_eq!(report["deep"].as_array().unwrap().len(), 5, "{report}");

    let config = run(&["--json", "config", "show"]);
    assert_eq!(config.code, 0, "{}", config.stderr);
    let entries = config.json();
    let backend = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "backend")
        .unwrap()
        .clone();
    assert_eq!(backend["source"]["kind"], "env", "{backend}");
    assert_eq!(backend["source"]["name"], "STORAGE_BACKEND");

    let cleanup = run(&["--json", "cleanup", "--max-idle", "0s"]);
    assert_eq!(cleanup.code, 0, "{}", cleanup.stderr);
    assert_eq!(cleanup.json()["removed"], 1);
    // The session and its conversation are gone: an unknown id, exit code 3.
    let after = run(&["--json", "history", "s1"]);
    assert_eq!(after.code, 3, "{}", after.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_local_directory() {
    let data = tempfile::tempdir().unwrap();
    let url = format!("file://{}", data.path().display());
    let ns = namespace();
    let mut config = StorageConfig {
        backend: BackendName::Object,
        ..StorageConfig::default()
    };
    config.object.url = url.clone();
    config.object.namespace = ns.clone();
    let env = vec![
        ("STORAGE_BACKEND".to_owned(), "object".to_owned()),
        ("STORAGE_OBJECT__URL".to_owned(), url),
        ("STORAGE_OBJECT__NAMESPACE".to_owned(), ns),
    ];
    exercise(config, env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis() {
    let url = storage_testkit::servers::redis::redis_url();
    let ns = namespace();
    let mut config = StorageConfig {
        backend: BackendName::Redis,
        ..StorageConfig::default()
    };
    config.redis.url = url.clone();
    config.redis.namespace = ns.clone();
    let env = vec![
        ("STORAGE_BACKEND".to_owned(), "redis".to_owned()),
        ("STORAGE_REDIS__URL".to_owned(), url),
        ("STORAGE_REDIS__NAMESPACE".to_owned(), ns),
    ];
    exercise(config, env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let url = storage_testkit::servers::postgres::postgres_url();
    let ns = namespace();
    let mut config = StorageConfig {
        backend: BackendName::Postgres,
        ..StorageConfig::default()
    };
    config.postgres.url = Some(url.clone());
    config.postgres.namespace = ns.clone();
    let env = vec![
        ("STORAGE_BACKEND".to_owned(), "postgres".to_owned()),
        ("STORAGE_POSTGRES__URL".to_owned(), url),
        ("STORAGE_POSTGRES__NAMESPACE".to_owned(), ns),
    ];
    exercise(config, env).await;
}

#[test]
fn unreachable_backend_is_unavailable_and_bad_config_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let port = storage_testkit::servers::free_port();
    let env = vec![
        ("STORAGE_BACKEND".to_owned(), "redis".to_owned()),
        (
            "STORAGE_REDIS__URL".to_owned(),
            format!("redis://:topsecret@127.0.0.1:{port}"),
        ),
        (
            "STORAGE_REDIS__CONNECT_TIMEOUT_MS".to_owned(),
            "300".to_owned(),
        ),
        ("STORAGE_RETRY__MAX_ATTEMPTS".to_owned(), "1".to_owned()),
    ];
    let down = storectl(dir.path(), &env, &["sessions", "show", "s1"]);
    assert_eq!(down.code, 4, "unavailable: {}", down.stderr);
    assert!(!down.stderr.contains("topsecret"), "{}", down.stderr);

    let shown = storectl(dir.path(), &env, &["config", "show"]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    assert!(
        shown.stdout.contains("redis://:***@127.0.0.1"),
        "{}",
        shown.stdout
    );
    assert!(!shown.stdout.contains("topsecret"), "{}", shown.stdout);

    let bad = vec![("STORAGE_CACHE__TTL_MS".to_owned(), "soon".to_owned())];
    let run = storectl(dir.path(), &bad, &["health"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("STORAGE_CACHE__TTL_MS"),
        "{}",
        run.stderr
    );
}
