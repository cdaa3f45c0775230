//! `storectl migrate`, killed (SIGKILL) once the target holds half the sessions and run
//! again, completes with a clean verification, exact counts and nothing duplicated. Three
//! legs: Redis to PostgreSQL, PostgreSQL to a local directory, PostgreSQL to S3 (moto).
//! The servers are throwaway ones from the testkit unless `STORAGE_TEST_*_URL` names them.
//!
//! Dataset size: small by default; `STORAGE_MIGRATE_SCALE=full` runs the Redis and
//! directory legs at the acceptance size (10,000 sessions × 20 messages, 1,000 threads,
//! 1,000 artifacts), a number N at N sessions (see `Sizes::from_env`). The S3 leg reads
//! `STORAGE_MIGRATE_S3_SCALE` instead: moto serves one request at a time. Each leg prints
//! its timings to stderr (`-- --nocapture` shows them).

mod cli_support;
mod migrate_support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use migrate_support::{expected_sequences, populate, session_id, Sizes};
use storage::migrate::config_for_url;
use storage_core::{MessageRange, SessionQuery, StorageBackend};
use storage_testkit::servers::{postgres::postgres_url, redis::redis_url, s3::s3_target};

/// The default size of the Redis and directory legs.
const SMALL: Sizes = Sizes {
    sessions: 600,
    messages: 20,
    threads: 40,
    artifacts: 40,
};

/// The default size of the S3 leg.
const SMALL_S3: Sizes = Sizes {
    sessions: 100,
    messages: 20,
    threads: 10,
    artifacts: 10,
};

fn namespace() -> String {
    format!("m_{}", &uuid::Uuid::now_v7().simple().to_string()[8..32])
}

fn with_namespace(url: &str, namespace: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}namespace={namespace}")
}

async fn open(url: &str) -> Arc<dyn StorageBackend> {
    let (backend, config) = config_for_url(url).unwrap();
    let built = storage::factory::build_backend(backend, &config, None).unwrap();
    built.initialize().await.unwrap();
    built
}

fn storectl(args: &[&str]) -> Command {
    let mut command = Command::new(cli_support::storectl_path());
    command.args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("STORAGE_") {
            command.env_remove(name);
        }
    }
    command
}

/// Session ids in listing order, which is the order a migration copies them in. Large
/// pages: object storage reads every session record for each page.
async fn session_ids(backend: &dyn StorageBackend) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = backend
            .list_sessions(SessionQuery {
                limit: 5_000,
                cursor,
                ..SessionQuery::default()
            })
            .await
            .unwrap();
        ids.extend(page.items.into_iter().map(|session| session.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return ids,
        }
    }
}

/// Page size and concurrency of the migration: slowed down for small datasets so that
/// the first run is still going when the target holds half the sessions; the defaults
/// otherwise, which is what the full-size figures measure.
fn tuning(sizes: Sizes) -> [&'static str; 4] {
    if sizes.sessions < 2_000 {
        ["--batch-size", "20", "--concurrency", "2"]
    } else {
        ["--batch-size", "200", "--concurrency", "16"]
    }
}

fn seconds(started: Instant) -> f64 {
    started.elapsed().as_secs_f64()
}

async fn killed_halfway_and_run_again(leg: &str, from: &str, to: &str, sizes: Sizes) {
    let source = open(from).await;
    let target = open(to).await;
    let started = Instant::now();
    populate(source.as_ref(), sizes).await;
    let seed = seconds(started);

    // The session copied halfway through: its record appears in the target once every
    // session listed before it is (nearly: up to a page) copied too.
    let order = session_ids(source.as_ref()).await;
    assert_eq!(order.len(), sizes.sessions);
    let halfway = &order[sizes.sessions / 2];
    let poll = Duration::from_millis(if sizes.sessions < 2_000 { 10 } else { 200 });

    let mut args = vec!["migrate", "--from", from, "--to", to];
    args.extend(tuning(sizes));
    let started = Instant::now();
    // Its standard error goes to a file, shown if it ends before it can be killed.
    let stderr_file = tempfile::NamedTempFile::new().unwrap();
    let mut child = storectl(&args)
        .stdout(Stdio::null())
        .stderr(stderr_file.reopen().unwrap())
        .spawn()
        .unwrap();
    while target.get_session(halfway).await.unwrap().is_none() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "storectl ended ({status}) before the target held half the sessions; its \
                 standard error:\n{}",
                std::fs::read_to_string(stderr_file.path()).unwrap_or_default()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(1_800),
            "no progress: session {halfway} not copied"
        );
        tokio::time::sleep(poll).await;
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "storectl finished before it could be killed; the dataset is too small"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let first = seconds(started);
    let partial = session_ids(target.as_ref()).await.len();
    assert!(
        (sizes.sessions / 4..sizes.sessions).contains(&partial),
        "{partial} of {} sessions copied",
        sizes.sessions
    );

    args.push("--json");
    let started = Instant::now();
    let output = storectl(&args).output().unwrap();
    let second = seconds(started);
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
    for (kind, count) in sizes.expected_counts() {
        assert_eq!(verification["counts"][kind]["source"], count, "{kind}");
        assert_eq!(verification["counts"][kind]["target"], count, "{kind}");
    }
    // Sessions in the target when the first run was killed had their whole conversation
    // (it is copied before the record): the second run stored at most the rest.
    let messages = (sizes.sessions * sizes.messages) as u64;
    let stored = report["copied"]["messages_stored"].as_u64().unwrap();
    assert!(
        stored <= messages - (partial * sizes.messages) as u64,
        "the second run stored {stored} messages; {partial} sessions were already copied"
    );

    // Independently of the verification: every conversation in the target holds exactly
    // the seeded sequence numbers, once each.
    let started = Instant::now();
    let target = target.as_ref();
    stream::iter(0..sizes.sessions)
        .map(|s| async move {
            let stored = target
                .get_messages(&session_id(s), MessageRange::after(0, sizes.messages * 2))
                .await
                .unwrap();
            let sequences: Vec<u64> = stored.iter().map(|m| m.sequence).collect();
            assert_eq!(
                sequences,
                expected_sequences(s, sizes.messages),
                "session {s}"
            );
        })
        .buffer_unordered(16)
        .collect::<()>()
        .await;
    let check = seconds(started);

    let phase = |name: &str| report["elapsed_ms"][name].as_u64().unwrap() as f64 / 1000.0;
    let (sessions, verify) = (phase("sessions"), phase("verify"));
    eprintln!(
        "{leg}: {sizes:?}\n  seed {seed:.1} s\n  first run killed after {first:.1} s with \
         {partial} sessions copied ({:.0} sessions/s, {:.0} messages/s)\n  second run \
         {second:.1} s: sessions {sessions:.1} s ({:.0} sessions/s, {:.0} messages/s), \
         threads {:.1} s, artifacts {:.1} s, verify {verify:.1} s; {stored} messages \
         stored\n  sequence check of the target {check:.1} s",
        partial as f64 / first,
        (partial * sizes.messages) as f64 / first,
        sizes.sessions as f64 / sessions,
        messages as f64 / sessions,
        phase("threads"),
        phase("artifacts"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_to_postgres_killed_halfway_and_run_again() {
    let from = with_namespace(&redis_url(), &namespace());
    let to = with_namespace(&postgres_url(), &namespace());
    let sizes = Sizes::from_env("STORAGE_MIGRATE_SCALE", SMALL);
    killed_halfway_and_run_again("redis -> postgres", &from, &to, sizes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_to_directory_killed_halfway_and_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let from = with_namespace(&postgres_url(), &namespace());
    let to = format!("file://{}?namespace=migrated", dir.path().display());
    let sizes = Sizes::from_env("STORAGE_MIGRATE_SCALE", SMALL);
    killed_halfway_and_run_again("postgres -> file://", &from, &to, sizes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_to_s3_killed_halfway_and_run_again() {
    let s3 = s3_target();
    let from = with_namespace(&postgres_url(), &namespace());
    let to = format!(
        "s3://{}/migrate?namespace={}&aws_endpoint={}&aws_allow_http=true&\
         aws_access_key_id={}&aws_secret_access_key={}&aws_region={}",
        s3.bucket,
        namespace(),
        s3.endpoint,
        s3.access_key_id,
        s3.secret_access_key,
        s3.region
    );
    let sizes = Sizes::from_env("STORAGE_MIGRATE_S3_SCALE", SMALL_S3);
    killed_halfway_and_run_again("postgres -> s3 (moto)", &from, &to, sizes).await;
}
