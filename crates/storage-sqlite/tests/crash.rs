//! Durability and multi-process tests on real processes.
//!
//! - Child processes (this test binary, started again with `SQLITE_WORKER` set) append
//!   messages and put checkpoints from several tasks and print every acknowledged write;
//!   each is SIGKILLed mid-write, again and again. After every kill the file opens
//!   cleanly (`PRAGMA integrity_check`), and every acknowledged write is there.
//! - Several processes append to one session of one file at once: none fails, and the
//!   sequence numbers are exactly 1..=N, each client id stored once.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use storage_core::{
    new_checkpoint_id, Checkpoint, CheckpointStore, ConversationStore, MessageRange, NewMessage,
    StorageBackend,
};
use storage_sqlite::{SqliteBackend, SqliteConfig};

const NAMESPACE: &str = "crash";
const TASKS: usize = 8;

async fn open(path: &Path) -> Arc<SqliteBackend> {
    let config = SqliteConfig::new(path)
        .with_namespace(NAMESPACE)
        .with_busy_timeout(Duration::from_secs(30));
    let backend = Arc::new(SqliteBackend::new(config).unwrap());
    backend.initialize().await.unwrap();
    backend
}

/// The worker entry point: does nothing unless started by the tests below.
///
/// `SQLITE_WORKER=crash|<path>|<tag>`: writes until killed, printing `ACK msg <session>
/// <sequence> <client id>` and `ACK cp <thread> <id>` after each acknowledged write.
/// `SQLITE_WORKER=append|<path>|<tag>|<count>`: appends `count` messages to the session
/// `shared` from [`TASKS`] tasks, then exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_process() {
    let Ok(spec) = std::env::var("SQLITE_WORKER") else {
        return;
    };
    let parts: Vec<String> = spec.split('|').map(str::to_owned).collect();
    let backend = open(Path::new(&parts[1])).await;
    let tag = parts[2].clone();
    match parts[0].as_str() {
        "crash" => crash_worker(backend, tag).await,
        "append" => append_worker(backend, tag, parts[3].parse().unwrap()).await,
        other => panic!("unknown worker {other}"),
    }
}

async fn crash_worker(backend: Arc<SqliteBackend>, tag: String) {
    let tasks = (0..TASKS).map(|task| {
        let (backend, tag) = (backend.clone(), tag.clone());
        tokio::spawn(async move {
            let session = format!("session-{task}");
            let thread = format!("thread-{task}");
            let mut parent: Option<String> = None;
            for i in 0.. {
                let client_id = format!("{tag}-{task}-{i}");
                let message = NewMessage::new("user", json!({"i": i, "pad": "x".repeat(500)}))
                    .with_client_id(client_id.clone());
                let stored = backend.append_message(&session, message).await.unwrap();
                println!("ACK msg {session} {} {client_id}", stored.sequence);
                let id = new_checkpoint_id();
                let mut checkpoint = Checkpoint::new(&thread, "", &id);
                checkpoint.parent_id = parent.clone();
                checkpoint
                    .channel_versions
                    .insert("state".into(), format!("{tag}-{i}"));
                checkpoint.channel_values.insert(
                    "state".into(),
                    json!({"i": i, "pad": "y".repeat(2000)}).into(),
                );
                let new_versions = checkpoint.channel_versions.clone();
                backend
                    .put_checkpoint(checkpoint, new_versions)
                    .await
                    .unwrap();
                println!("ACK cp {thread} {id}");
                parent = Some(id);
            }
        })
    });
    futures::future::join_all(tasks).await;
}

async fn append_worker(backend: Arc<SqliteBackend>, tag: String, count: usize) {
    let tasks = (0..TASKS).map(|task| {
        let (backend, tag) = (backend.clone(), tag.clone());
        tokio::spawn(async move {
            for i in (task..count).step_by(TASKS) {
                let message =
                    NewMessage::new("user", json!({"i": i})).with_client_id(format!("{tag}-{i}"));
                backend.append_message("shared", message).await.unwrap();
            }
        })
    });
    for task in futures::future::join_all(tasks).await {
        task.unwrap();
    }
}

fn spawn_worker(spec: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "worker_process",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("SQLITE_WORKER", spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A pseudo-random number below `below`, from the clock.
fn random_below(below: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    nanos % below
}

/// Every write a killed worker acknowledged.
#[derive(Default)]
struct Acks {
    /// session → sequence → client id
    messages: BTreeMap<String, BTreeMap<u64, String>>,
    /// thread → checkpoint ids
    checkpoints: BTreeMap<String, BTreeSet<String>>,
}

fn integrity_ok(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let result: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(result, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    // Created first, so every worker starts on an initialized file.
    open(&path).await.close().await.unwrap();
    let mut acks = Acks::default();
    let rounds = 8;
    for round in 0..rounds {
        let mut child = spawn_worker(&format!("crash|{}|r{round}", path.display()));
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<String>>()
        });
        std::thread::sleep(Duration::from_millis(400 + random_below(800)));
        assert!(
            child.try_wait().unwrap().is_none(),
            "the worker ended before it was killed"
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        let before = acks.messages.values().map(BTreeMap::len).sum::<usize>();
        for line in lines {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["ACK", "msg", session, sequence, client_id] => {
                    let previous = acks
                        .messages
                        .entry((*session).to_owned())
                        .or_default()
                        .insert(sequence.parse().unwrap(), (*client_id).to_owned());
                    assert!(previous.is_none(), "sequence {sequence} handed out twice");
                }
                ["ACK", "cp", thread, id] => {
                    acks.checkpoints
                        .entry((*thread).to_owned())
                        .or_default()
                        .insert((*id).to_owned());
                }
                _ => {}
            }
        }
        let after = acks.messages.values().map(BTreeMap::len).sum::<usize>();
        assert!(
            after > before,
            "round {round}: the worker acknowledged nothing"
        );
        integrity_ok(&path);
        verify(&path, &acks).await;
    }
    let checkpoints = acks.checkpoints.values().map(BTreeSet::len).sum::<usize>();
    println!(
        "{rounds} kills; {} messages and {checkpoints} checkpoints acknowledged and found",
        acks.messages.values().map(BTreeMap::len).sum::<usize>()
    );
}

/// Every acknowledged message is stored under its number with its client id, numbers are
/// gapless, and every acknowledged checkpoint reads back with its value.
async fn verify(path: &Path, acks: &Acks) {
    let backend = open(path).await;
    for (session, acked) in &acks.messages {
        let stored = backend
            .get_messages(session, MessageRange::after(0, 1_000_000))
            .await
            .unwrap();
        let numbers: Vec<u64> = stored.iter().map(|m| m.sequence).collect();
        let expected: Vec<u64> = (1..=stored.len() as u64).collect();
        assert_eq!(numbers, expected, "{session}: numbers are not gapless");
        for (sequence, client_id) in acked {
            let message = &stored[(*sequence - 1) as usize];
            assert_eq!(message.client_id.as_deref(), Some(client_id.as_str()));
        }
    }
    for (thread, ids) in &acks.checkpoints {
        for id in ids {
            let tuple = backend
                .get_checkpoint(thread, "", Some(id))
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("acknowledged checkpoint {thread}/{id} is lost"));
            assert!(tuple.checkpoint.channel_values.contains_key("state"));
        }
    }
    backend.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_appending_to_one_file_lose_and_repeat_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    open(&path).await.close().await.unwrap();
    let (processes, per_process) = (4, 150);
    let mut children: Vec<Child> = (0..processes)
        .map(|p| spawn_worker(&format!("append|{}|p{p}|{per_process}", path.display())))
        .collect();
    for child in &mut children {
        let status = child.wait().unwrap();
        assert!(status.success(), "a writer process failed: {status}");
    }
    integrity_ok(&path);
    let backend = open(&path).await;
    let stored = backend
        .get_messages("shared", MessageRange::after(0, 1_000_000))
        .await
        .unwrap();
    let total = processes * per_process;
    let numbers: Vec<u64> = stored.iter().map(|m| m.sequence).collect();
    assert_eq!(numbers, (1..=total as u64).collect::<Vec<_>>());
    let client_ids: BTreeSet<String> = stored.iter().filter_map(|m| m.client_id.clone()).collect();
    assert_eq!(
        client_ids.len(),
        total,
        "a client id was stored twice or lost"
    );
    // Replaying every append stores nothing new.
    let replay = backend
        .append_message(
            "shared",
            NewMessage::new("user", json!({"i": 0})).with_client_id("p0-0"),
        )
        .await
        .unwrap();
    assert!(replay.sequence <= total as u64);
}
