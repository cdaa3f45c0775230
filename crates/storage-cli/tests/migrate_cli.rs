//! `storectl migrate` from PostgreSQL (a throwaway server, or `STORAGE_TEST_POSTGRES_URL`)
//! to object storage in a local directory: the process is killed halfway, run again, and
//! completes with a clean verification and nothing duplicated.

#[path = "../../storage/tests/migrate_support/mod.rs"]
mod migrate_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use migrate_support::{populate, Sizes};
use storage::migrate::config_for_url;
use storage_core::{SessionQuery, StorageBackend};
use storage_testkit::servers::postgres::postgres_url;

fn namespace() -> String {
    format!("m_{}", &uuid::Uuid::now_v7().simple().to_string()[8..32])
}

async fn open(url: &str) -> std::sync::Arc<dyn StorageBackend> {
    let (backend, config) = config_for_url(url).unwrap();
    let built = storage::factory::build_backend(backend, &config, None).unwrap();
    built.initialize().await.unwrap();
    built
}

fn storectl(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_storectl"));
    command.args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("STORAGE_") {
            command.env_remove(name);
        }
    }
    command
}

async fn session_count(backend: &dyn StorageBackend) -> usize {
    let mut count = 0;
    let mut cursor = None;
    loop {
        let page = backend
            .list_sessions(SessionQuery {
                limit: 500,
                cursor,
                ..SessionQuery::default()
            })
            .await
            .unwrap();
        count += page.items.len();
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return count,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_halfway_and_run_again_completes_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let from = format!("{}?namespace={}", postgres_url(), namespace());
    let to = format!("file://{}?namespace=migrated", dir.path().display());
    let source = open(&from).await;
    let target = open(&to).await;
    populate(
        source.as_ref(),
        Sizes {
            sessions: 600,
            messages: 20,
            threads: 40,
            artifacts: 40,
        },
    )
    .await;

    let args = [
        "migrate",
        "--from",
        &from,
        "--to",
        &to,
        "--batch-size",
        "20",
        "--concurrency",
        "2",
    ];
    let mut child = storectl(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let copied = session_count(target.as_ref()).await;
        if copied >= 60 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no progress: {copied} sessions copied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "storectl finished before it could be killed; the dataset is too small"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = session_count(target.as_ref()).await;
    assert!((60..600).contains(&partial), "{partial} sessions copied");

    let output = storectl(&[&args[..], &["--json"]].concat())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let verification = &report["verification"];
    assert_eq!(verification["differences"], serde_json::json!([]));
    for (kind, count) in [
        ("sessions", 600),
        ("messages", 600 * 20),
        ("checkpoints", 40 * 6),
        ("pending_writes", 40 * 6 * 4),
        ("artifact_versions", 40 * 3 - 14),
    ] {
        assert_eq!(verification["counts"][kind]["source"], count, "{kind}");
        assert_eq!(verification["counts"][kind]["target"], count, "{kind}");
    }
}
