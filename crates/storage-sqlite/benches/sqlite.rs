//! `cargo xtask bench sqlite` (or `cargo bench -p storage-sqlite`): LangGraph's checkpoint
//! workload on the SQLite backend beside raw rusqlite doing the same rows the way
//! LangGraph's `SqliteSaver` does, with the same durability, interleaved.
//!
//! The workload: 32 graph threads whose state is 10 channels of about 2 KB each; a step
//! changes one channel. Phases of N operations (default 2000): `put` (a checkpoint),
//! `put_writes` (one pending write), `get_latest` (the newest checkpoint with its values),
//! `list10` (the newest 10 with their values); with one caller and with 32 concurrent
//! callers.
//!
//! Raw is `SqliteSaver`'s layout and calls, on one connection behind a lock (as the saver
//! holds one): `put` is one `INSERT OR REPLACE` of the whole checkpoint, values included,
//! and its commit; `put_writes` one insert and its commit; `get_latest` one primary-key
//! select of the newest row; `list10` one select of the newest 10. Both files are in WAL
//! mode with `synchronous = FULL` (every commit fsynced), and both run their SQLite calls
//! on tokio's blocking threads. Ratios are ours/raw ops/s; p50 columns are per call.
//!
//! Flags: `--ops N` (default 2000), `--concurrency 1,32`.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension};
use serde_json::{json, Value};
use storage_bench::Measurement;
use storage_core::{
    new_checkpoint_id, wire, ChannelVersions, Checkpoint, CheckpointKey, CheckpointQuery,
    CheckpointStore, StorageBackend,
};
use storage_sqlite::{SqliteBackend, SqliteConfig};
use storage_testkit::bench::{compare_interleaved, runtime_for, BenchOp, Workload};

const THREADS: usize = 32;
const CHANNELS: usize = 10;

fn main() {
    let workload = Workload {
        ops: 2_000,
        checkpoint_ops: 2_000,
        history_lengths: vec![],
        concurrency: vec![1, 32],
    }
    .from_args();
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "sqlite backend (synchronous=FULL, WAL) vs raw rusqlite in SqliteSaver's layout; \
         {} cores; {} ops per phase; files in {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        workload.ops,
        dir.path().display()
    );
    let mut table = Vec::new();
    for &concurrency in &workload.concurrency {
        let ours_path = dir.path().join(format!("ours-c{concurrency}.db"));
        let raw_path = dir.path().join(format!("raw-c{concurrency}.db"));
        let rows = runtime_for(concurrency).block_on(async {
            let backend = backend(&ours_path).await;
            let raw = Raw::open(&raw_path);
            phases(&backend, &raw, concurrency, workload.ops).await
        });
        table.extend(rows);
        for path in [&ours_path, &raw_path] {
            let size = |suffix: &str| {
                let mut name = path.clone().into_os_string();
                name.push(suffix);
                std::fs::metadata(name).map_or(0, |m| m.len()) / 1024
            };
            println!(
                "{}: {} KiB, WAL {} KiB",
                path.display(),
                size(""),
                size("-wal")
            );
        }
    }
    println!();
    println!(
        "{:<12} {:>3} {:>12} {:>12} {:>8} {:>10} {:>10}",
        "phase", "c", "ours ops/s", "raw ops/s", "ours/raw", "ours p50", "raw p50"
    );
    for (phase, concurrency, ours, raw) in &table {
        println!(
            "{:<12} {:>3} {:>12.0} {:>12.0} {:>8.3} {:>8.1}us {:>8.1}us",
            phase,
            concurrency,
            ours.ops_per_sec,
            raw.ops_per_sec,
            ours.ops_per_sec / raw.ops_per_sec,
            ours.p50.as_secs_f64() * 1e6,
            raw.p50.as_secs_f64() * 1e6,
        );
    }
}

async fn backend(path: &Path) -> Arc<SqliteBackend> {
    let backend = Arc::new(
        SqliteBackend::new(SqliteConfig::new(path).with_namespace("bench")).expect("config"),
    );
    backend.initialize().await.expect("initialize");
    backend
}

type Row = (&'static str, usize, Measurement, Measurement);

async fn phases(
    backend: &Arc<SqliteBackend>,
    raw: &Raw,
    concurrency: usize,
    ops: usize,
) -> Vec<Row> {
    let steps = Arc::new(
        (0..THREADS)
            .map(|_| AtomicUsize::new(0))
            .collect::<Vec<_>>(),
    );
    let raw_steps = Arc::new(
        (0..THREADS)
            .map(|_| AtomicUsize::new(0))
            .collect::<Vec<_>>(),
    );
    let mut rows = Vec::new();
    let put = compare_interleaved(
        "put",
        concurrency,
        ops,
        ours_put(backend, &steps),
        raw_put(raw, &raw_steps),
    )
    .await;
    rows.push(("put", concurrency, put.0, put.1));
    let writes = compare_interleaved(
        "put_writes",
        concurrency,
        ops,
        ours_put_writes(backend),
        raw_put_writes(raw),
    )
    .await;
    rows.push(("put_writes", concurrency, writes.0, writes.1));
    let get = compare_interleaved(
        "get_latest",
        concurrency,
        ops,
        ours_get_latest(backend),
        raw_get_latest(raw),
    )
    .await;
    rows.push(("get_latest", concurrency, get.0, get.1));
    let list = compare_interleaved(
        "list10",
        concurrency,
        ops,
        ours_list(backend),
        raw_list(raw),
    )
    .await;
    rows.push(("list10", concurrency, list.0, list.1));
    rows
}

/// A channel's value at a version: about 2 KB of JSON.
fn value(channel: usize, version: usize) -> Value {
    let text: String = (0..2000)
        .map(|i| char::from(b'a' + ((i * 7 + channel * 3 + version) % 26) as u8))
        .collect();
    json!({"channel": channel, "version": version, "text": text})
}

/// Step `step` of graph thread `thread`: the first stores all ten channels, every later
/// step changes channel `step % 10`.
fn checkpoint(thread: usize, step: usize) -> (Checkpoint, ChannelVersions) {
    let mut checkpoint = Checkpoint::new(format!("thread-{thread}"), "", new_checkpoint_id());
    for channel in 0..CHANNELS {
        // The version of a channel at this step: the last step (from 1) that changed it.
        let back = (step + CHANNELS - channel) % CHANNELS;
        let version = if step == 0 || back >= step {
            0
        } else {
            step - back
        };
        checkpoint
            .channel_versions
            .insert(format!("ch{channel}"), format!("{version:08}"));
        checkpoint
            .channel_values
            .insert(format!("ch{channel}"), value(channel, version).into());
    }
    checkpoint.metadata.insert("step".into(), json!(step));
    let mut new_versions = checkpoint.channel_versions.clone();
    if step > 0 {
        let changed = format!("ch{}", step % CHANNELS);
        new_versions.retain(|channel, _| *channel == changed);
    }
    (checkpoint, new_versions)
}

fn ours_put(backend: &Arc<SqliteBackend>, steps: &Arc<Vec<AtomicUsize>>) -> BenchOp {
    let (b, steps) = (backend.clone(), steps.clone());
    Arc::new(move |i| {
        let (b, steps) = (b.clone(), steps.clone());
        Box::pin(async move {
            let thread = i % THREADS;
            let step = steps[thread].fetch_add(1, Ordering::Relaxed);
            let (checkpoint, new_versions) = checkpoint(thread, step);
            b.put_checkpoint(checkpoint, new_versions).await.unwrap();
        })
    })
}

static TASKS: AtomicUsize = AtomicUsize::new(0);

fn ours_put_writes(backend: &Arc<SqliteBackend>) -> BenchOp {
    let b = backend.clone();
    Arc::new(move |i| {
        let b = b.clone();
        Box::pin(async move {
            let task = TASKS.fetch_add(1, Ordering::Relaxed);
            let key = CheckpointKey::new(format!("thread-{}", i % THREADS), "pending");
            let writes = vec![(format!("ch{}", i % CHANNELS), value(i % CHANNELS, i).into())];
            b.put_writes(key, &format!("task-{task}"), "", writes)
                .await
                .unwrap();
        })
    })
}

fn ours_get_latest(backend: &Arc<SqliteBackend>) -> BenchOp {
    let b = backend.clone();
    Arc::new(move |i| {
        let b = b.clone();
        Box::pin(async move {
            let thread = format!("thread-{}", i % THREADS);
            let tuple = b.get_checkpoint(&thread, "", None).await.unwrap().unwrap();
            assert_eq!(tuple.checkpoint.channel_values.len(), CHANNELS);
        })
    })
}

fn ours_list(backend: &Arc<SqliteBackend>) -> BenchOp {
    let b = backend.clone();
    Arc::new(move |i| {
        let b = b.clone();
        Box::pin(async move {
            let mut query = CheckpointQuery::thread(format!("thread-{}", i % THREADS));
            query.limit = Some(10);
            let tuples = b.list_checkpoints(query).await.unwrap();
            assert_eq!(tuples.len(), 10);
            assert!(tuples
                .iter()
                .all(|t| t.checkpoint.channel_values.len() == CHANNELS));
        })
    })
}

/// LangGraph's `SqliteSaver`: its two tables, one connection behind one lock.
#[derive(Clone)]
struct Raw {
    conn: Arc<Mutex<Connection>>,
}

impl Raw {
    fn open(path: &Path) -> Self {
        let conn = Connection::open(path).expect("open");
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .expect("wal");
        conn.pragma_update(None, "synchronous", "FULL")
            .expect("sync");
        conn.set_prepared_statement_cache_capacity(64);
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS checkpoints (thread_id TEXT NOT NULL, \
             checkpoint_ns TEXT NOT NULL DEFAULT '', checkpoint_id TEXT NOT NULL, \
             parent_checkpoint_id TEXT, type TEXT, checkpoint BLOB, metadata BLOB, \
             PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id));
             CREATE TABLE IF NOT EXISTS writes (thread_id TEXT NOT NULL, \
             checkpoint_ns TEXT NOT NULL DEFAULT '', checkpoint_id TEXT NOT NULL, \
             task_id TEXT NOT NULL, idx INTEGER NOT NULL, channel TEXT NOT NULL, type TEXT, \
             value BLOB, PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx));",
        )
        .expect("schema");
        Raw {
            conn: Arc::new(Mutex::new(conn)),
        }
    }

    /// Runs `f` on the connection on a blocking thread, as ours runs its SQLite calls.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> T + Send + 'static,
    ) -> T {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || f(&conn.lock().unwrap()))
            .await
            .unwrap()
    }
}

fn raw_put(raw: &Raw, steps: &Arc<Vec<AtomicUsize>>) -> BenchOp {
    let (raw, steps) = (raw.clone(), steps.clone());
    Arc::new(move |i| {
        let (raw, steps) = (raw.clone(), steps.clone());
        Box::pin(async move {
            let thread = i % THREADS;
            let step = steps[thread].fetch_add(1, Ordering::Relaxed);
            let (checkpoint, _) = checkpoint(thread, step);
            // The whole checkpoint, values included, as SqliteSaver serializes it.
            let record = wire::encode(&checkpoint).unwrap();
            let metadata = serde_json::to_vec(&checkpoint.metadata).unwrap();
            raw.with(move |conn| {
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO checkpoints (thread_id, checkpoint_ns, \
                     checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .unwrap()
                .execute((
                    &checkpoint.thread_id,
                    &checkpoint.namespace,
                    &checkpoint.id,
                    &checkpoint.parent_id,
                    "json",
                    record,
                    metadata,
                ))
                .unwrap();
            })
            .await;
        })
    })
}

fn raw_put_writes(raw: &Raw) -> BenchOp {
    let raw = raw.clone();
    Arc::new(move |i| {
        let raw = raw.clone();
        Box::pin(async move {
            let task = TASKS.fetch_add(1, Ordering::Relaxed);
            let value = serde_json::to_vec(&value(i % CHANNELS, i)).unwrap();
            raw.with(move |conn| {
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO writes (thread_id, checkpoint_ns, checkpoint_id, \
                     task_id, idx, channel, type, value) VALUES (?1, '', 'pending', ?2, 0, ?3, \
                     'json', ?4)",
                )
                .unwrap()
                .execute((
                    format!("thread-{}", i % THREADS),
                    format!("task-{task}"),
                    format!("ch{}", i % CHANNELS),
                    value,
                ))
                .unwrap();
            })
            .await;
        })
    })
}

fn raw_get_latest(raw: &Raw) -> BenchOp {
    let raw = raw.clone();
    Arc::new(move |i| {
        let raw = raw.clone();
        Box::pin(async move {
            let record: Vec<u8> = raw
                .with(move |conn| {
                    conn.prepare_cached(
                        "SELECT checkpoint FROM checkpoints WHERE thread_id = ?1 \
                         AND checkpoint_ns = '' ORDER BY checkpoint_id DESC LIMIT 1",
                    )
                    .unwrap()
                    .query_row([format!("thread-{}", i % THREADS)], |row| row.get(0))
                    .optional()
                    .unwrap()
                    .unwrap()
                })
                .await;
            let checkpoint: Checkpoint = wire::decode(&record).unwrap();
            assert_eq!(checkpoint.channel_values.len(), CHANNELS);
        })
    })
}

fn raw_list(raw: &Raw) -> BenchOp {
    let raw = raw.clone();
    Arc::new(move |i| {
        let raw = raw.clone();
        Box::pin(async move {
            let records: Vec<Vec<u8>> = raw
                .with(move |conn| {
                    conn.prepare_cached(
                        "SELECT checkpoint FROM checkpoints WHERE thread_id = ?1 \
                         AND checkpoint_ns = '' ORDER BY checkpoint_id DESC LIMIT 10",
                    )
                    .unwrap()
                    .query_map([format!("thread-{}", i % THREADS)], |row| row.get(0))
                    .unwrap()
                    .collect::<rusqlite::Result<_>>()
                    .unwrap()
                })
                .await;
            assert_eq!(records.len(), 10);
            for record in records {
                let checkpoint: Checkpoint = wire::decode(&record).unwrap();
                assert_eq!(checkpoint.channel_values.len(), CHANNELS);
            }
        })
    })
}
