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
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use rusqlite::Connection;
use storage_core::{Checkpoint, StorageBackend};
use storage_sqlite::{SqliteBackend, SqliteConfig};
use storage_testkit::bench::{runtime_for, Workload};
use storage_testkit::langgraph_bench::{phases, print_table, RawCheckpointer};

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
            let backend: Arc<dyn StorageBackend> = backend(&ours_path).await;
            let raw: Arc<dyn RawCheckpointer> = Arc::new(Raw::open(&raw_path));
            phases(backend, raw, concurrency, workload.ops).await
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
    print_table(
        "sqlite backend vs raw rusqlite (SqliteSaver's layout)",
        &table,
    );
}

async fn backend(path: &Path) -> Arc<SqliteBackend> {
    let backend = Arc::new(
        SqliteBackend::new(SqliteConfig::new(path).with_namespace("bench")).expect("config"),
    );
    backend.initialize().await.expect("initialize");
    backend
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

impl RawCheckpointer for Raw {
    fn put(&self, checkpoint: Checkpoint, record: Vec<u8>) -> BoxFuture<'static, ()> {
        let raw = self.clone();
        Box::pin(async move {
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
    }

    fn put_write(
        &self,
        thread: String,
        task: String,
        channel: String,
        value: Vec<u8>,
    ) -> BoxFuture<'static, ()> {
        let raw = self.clone();
        Box::pin(async move {
            raw.with(move |conn| {
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO writes (thread_id, checkpoint_ns, checkpoint_id, \
                     task_id, idx, channel, type, value) VALUES (?1, '', 'pending', ?2, 0, ?3, \
                     'json', ?4)",
                )
                .unwrap()
                .execute((thread, task, channel, value))
                .unwrap();
            })
            .await;
        })
    }

    fn newest(&self, thread: String, limit: usize) -> BoxFuture<'static, Vec<Vec<u8>>> {
        let raw = self.clone();
        Box::pin(async move {
            raw.with(move |conn| {
                conn.prepare_cached(
                    "SELECT checkpoint FROM checkpoints WHERE thread_id = ?1 \
                     AND checkpoint_ns = '' ORDER BY checkpoint_id DESC LIMIT ?2",
                )
                .unwrap()
                .query_map((thread, limit as i64), |row| row.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
            })
            .await
        })
    }
}
