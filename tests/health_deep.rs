//! `storectl health --deep` leaves nothing behind. Around each deep check the test takes
//! what the backend holds: every key of both namespaces on Redis (`SCAN`), every row of
//! every table of both schemas on PostgreSQL, every file and directory under the local
//! directory, every object under the S3 prefix, and for the memory backend (in-process: a memory store lives in one process)
//! everything its listings enumerate. The first deep check may set up the scratch
//! namespace (PostgreSQL records its applied migrations there); from then on a deep check
//! changes nothing, and no data table ever holds a row.

mod cli_support;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;

use serde_json::Value;
use storage::Storage;
use storage_core::{SessionQuery, StorageBackend};
use storage_testkit::servers::{postgres::postgres_url, redis::redis_url};

fn namespace(tag: &str) -> String {
    format!(
        "{tag}_{}",
        &uuid::Uuid::now_v7().simple().to_string()[8..32]
    )
}

/// Runs `storectl --json health --deep` with only `env` as its settings; returns the report.
fn deep_health(env: &[(String, String)]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(cli_support::storectl_path());
    command
        .current_dir(dir.path())
        .args(["--json", "health", "--deep"]);
    for (name, _) in std::env::vars() {
        if name.starts_with("STORAGE_") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let output = command.output().expect("storectl runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["healthy"], true, "{report}");
    assert_eq!(report["deep"].as_array().unwrap().len(), 5, "{report}");
    report
}

fn tool(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("{program} runs: {err}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every key whose name contains one of `namespaces`, with its type and TTL.
fn redis_keys(url: &str, namespaces: &[&str]) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for ns in namespaces {
        let pattern = format!("*{ns}*");
        for key in tool("redis-cli", &["-u", url, "--scan", "--pattern", &pattern]).lines() {
            let kind = tool("redis-cli", &["-u", url, "TYPE", key]);
            let ttl = tool("redis-cli", &["-u", url, "TTL", key]);
            keys.insert(format!("{key} {} ttl={}", kind.trim(), ttl.trim()));
        }
    }
    keys
}

/// Every row of every table of the `schemas`, as `schema.table: row`.
fn postgres_rows(url: &str, schemas: &[&str]) -> BTreeSet<String> {
    let mut rows = BTreeSet::new();
    for schema in schemas {
        let tables = tool(
            "psql",
            &[
                url,
                "-At",
                "-c",
                &format!(
                    "SELECT table_name FROM information_schema.tables \
                     WHERE table_schema = '{schema}' ORDER BY 1"
                ),
            ],
        );
        for table in tables.lines().filter(|t| !t.is_empty()) {
            let sql = format!("SELECT t::text FROM \"{schema}\".\"{table}\" t");
            for row in tool("psql", &[url, "-At", "-c", &sql]).lines() {
                rows.insert(format!("{schema}.{table}: {row}"));
            }
        }
    }
    rows
}

/// Every file under `dir`, with its size, and every directory (ending in `/`).
fn files(dir: &std::path::Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                found.insert(format!("{}/", entry.path().display()));
                pending.push(entry.path());
            } else {
                let size = entry.metadata().unwrap().len();
                found.insert(format!("{} ({size} bytes)", entry.path().display()));
            }
        }
    }
    found
}

/// Runs the deep check twice and compares what `snapshot` sees before, between and after:
/// the first check may add only what `setup` accepts, the second nothing at all.
fn around_two_checks(
    env: &[(String, String)],
    snapshot: impl Fn() -> BTreeSet<String>,
    setup: impl Fn(&str) -> bool,
) {
    let before = snapshot();
    deep_health(env);
    let between = snapshot();
    let added: Vec<&String> = between.difference(&before).collect();
    let removed: Vec<&String> = before.difference(&between).collect();
    assert!(removed.is_empty(), "the deep check removed {removed:#?}");
    let left: Vec<&&String> = added.iter().filter(|item| !setup(item)).collect();
    assert!(left.is_empty(), "the deep check left behind {left:#?}");
    deep_health(env);
    let after = snapshot();
    assert_eq!(
        after, between,
        "a second deep check changed what the backend holds"
    );
}

#[test]
fn deep_health_leaves_no_key_on_redis() {
    let url = redis_url();
    let (live, scratch) = (namespace("live"), namespace("hc"));
    let env = vec![
        ("STORAGE_BACKEND".to_owned(), "redis".to_owned()),
        ("STORAGE_REDIS__URL".to_owned(), url.clone()),
        ("STORAGE_REDIS__NAMESPACE".to_owned(), live.clone()),
        ("STORAGE_HEALTH__NAMESPACE".to_owned(), scratch.clone()),
    ];
    around_two_checks(&env, || redis_keys(&url, &[&live, &scratch]), |_| false);
}

#[test]
fn deep_health_leaves_no_row_on_postgres() {
    let url = postgres_url();
    let (live, scratch) = (namespace("live"), namespace("hc"));
    let env = vec![
        ("STORAGE_BACKEND".to_owned(), "postgres".to_owned()),
        ("STORAGE_POSTGRES__URL".to_owned(), url.clone()),
        ("STORAGE_POSTGRES__NAMESPACE".to_owned(), live.clone()),
        ("STORAGE_HEALTH__NAMESPACE".to_owned(), scratch.clone()),
    ];
    // Opening a schema records its applied migrations in it: setup, not data.
    let setup = |row: &str| row.contains(".schema_migrations: ") || row.contains("refinery");
    around_two_checks(&env, || postgres_rows(&url, &[&live, &scratch]), setup);
    let rows = postgres_rows(&url, &[&live, &scratch]);
    let data: Vec<&String> = rows.iter().filter(|row| !setup(row)).collect();
    assert!(data.is_empty(), "rows left: {data:#?}");
}

#[test]
fn deep_health_leaves_no_file_in_the_local_directory() {
    let data = tempfile::tempdir().unwrap();
    let env = vec![
        ("STORAGE_BACKEND".to_owned(), "object".to_owned()),
        (
            "STORAGE_OBJECT__URL".to_owned(),
            format!("file://{}", data.path().display()),
        ),
        ("STORAGE_OBJECT__NAMESPACE".to_owned(), "live".to_owned()),
        ("STORAGE_HEALTH__NAMESPACE".to_owned(), "hc".to_owned()),
    ];
    around_two_checks(&env, || files(data.path()), |_| false);
    assert!(files(data.path()).is_empty(), "{:#?}", files(data.path()));
    // Not even an empty directory is left.
}

/// Every object under `prefix` of the S3 bucket, with its size.
fn s3_objects(target: &storage_testkit::servers::s3::S3Target, prefix: &str) -> BTreeSet<String> {
    let config = storage_object::ObjectConfig::new(format!("s3://{}/{prefix}", target.bucket))
        .with_option("aws_endpoint", target.endpoint.clone())
        .with_option("aws_allow_http", "true")
        .with_option("aws_access_key_id", target.access_key_id.clone())
        .with_option("aws_secret_access_key", target.secret_access_key.clone())
        .with_option("aws_region", target.region.clone());
    let store = storage_object::ObjectBackend::new(config)
        .unwrap()
        .object_store();
    let prefix = object_store::path::Path::from(prefix);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use futures::StreamExt;
        let mut listing = store.list(Some(&prefix));
        let mut found = BTreeSet::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.unwrap();
            found.insert(format!("{} ({} bytes)", meta.location, meta.size));
        }
        found
    })
}

#[test]
fn deep_health_leaves_no_object_on_s3() {
    let target = storage_testkit::servers::s3::s3_target();
    let prefix = namespace("health");
    let env = vec![
        ("STORAGE_BACKEND".to_owned(), "object".to_owned()),
        (
            "STORAGE_OBJECT__URL".to_owned(),
            format!("s3://{}/{prefix}", target.bucket),
        ),
        (
            "STORAGE_OBJECT__OPTIONS__AWS_ENDPOINT".to_owned(),
            target.endpoint.clone(),
        ),
        // Quoted: the environment provider reads a bare `true` as a boolean, which
        // `object.options` (strings) refuses.
        (
            "STORAGE_OBJECT__OPTIONS__AWS_ALLOW_HTTP".to_owned(),
            "\"true\"".to_owned(),
        ),
        (
            "STORAGE_OBJECT__OPTIONS__AWS_ACCESS_KEY_ID".to_owned(),
            target.access_key_id.clone(),
        ),
        (
            "STORAGE_OBJECT__OPTIONS__AWS_SECRET_ACCESS_KEY".to_owned(),
            target.secret_access_key.clone(),
        ),
        (
            "STORAGE_OBJECT__OPTIONS__AWS_REGION".to_owned(),
            target.region.clone(),
        ),
        ("STORAGE_OBJECT__NAMESPACE".to_owned(), "live".to_owned()),
        ("STORAGE_HEALTH__NAMESPACE".to_owned(), "hc".to_owned()),
    ];
    around_two_checks(&env, || s3_objects(&target, &prefix), |_| false);
    assert!(s3_objects(&target, &prefix).is_empty());
}

/// Everything the memory backend's listings enumerate.
async fn memory_contents(backend: &dyn StorageBackend) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let sessions = backend
        .list_sessions(SessionQuery {
            limit: 1000,
            ..SessionQuery::default()
        })
        .await
        .unwrap();
    found.extend(sessions.items.iter().map(|s| format!("session {}", s.id)));
    for id in backend.list_conversation_ids(None, 1000).await.unwrap() {
        found.insert(format!("conversation {id}"));
    }
    for scope in backend.list_context_scopes(None, 1000).await.unwrap() {
        found.insert(format!("task context {}", scope.key()));
    }
    for id in backend.list_thread_ids(None, 1000).await.unwrap() {
        found.insert(format!("thread {id}"));
    }
    for id in backend.list_artifact_scopes(None, 1000).await.unwrap() {
        found.insert(format!("artifact scope {id}"));
    }
    found
}

/// A facade not built from configuration checks in the live backend, under unique ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_health_leaves_nothing_in_the_memory_backend() {
    let backend: Arc<dyn StorageBackend> = Arc::new(
        storage_memory::MemoryBackend::from_config(storage_memory::MemoryConfig::new("live"))
            .unwrap(),
    );
    backend.initialize().await.unwrap();
    let storage = Storage::builder(backend.clone()).build();
    let before = memory_contents(backend.as_ref()).await;
    let report = storage.health(true).await;
    assert!(report.healthy, "{report:?}");
    assert_eq!(report.deep.len(), 5);
    assert_eq!(memory_contents(backend.as_ref()).await, before);
    assert!(before.is_empty());
}
