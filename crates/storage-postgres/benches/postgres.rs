//! `cargo xtask bench postgres` (or `cargo bench -p storage-postgres`): the shared workload
//! on a throwaway PostgreSQL cluster (or `STORAGE_TEST_POSTGRES_URL`), then the same SQL
//! issued directly through the same pool, with the ours/raw ratio, at concurrency 1 and 32;
//! then get-latest-checkpoint and list-10 latency on threads of 10 and 3,000 checkpoints. With
//! `--langgraph`, only LangGraph's checkpoint workload beside raw SQL
//! (`storage_testkit::langgraph_bench`), 2,000 operations per phase.
//!
//! Flags: `--ops N` (default 5000), `--history 1000,1000000`, `--concurrency 1,32`,
//! `--langgraph`.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::json;
use storage_core::{
    time, wire, CheckpointStore, ConversationStore, NewMessage, Session, SessionStore,
    StorageBackend,
};
use storage_core::{Checkpoint, CheckpointQuery};
use storage_postgres::{raw, PostgresBackend, PostgresConfig};
use storage_testkit::bench::{
    compare_interleaved, interleaved, print_history_ratio, print_ratio, runtime_for,
    ten_channel_checkpoint, BenchOp, Workload,
};
use storage_testkit::langgraph_bench::{self, RawCheckpointer};

fn main() {
    let workload = Workload {
        ops: 5_000,
        checkpoint_ops: 2_000,
        history_lengths: vec![1_000, 1_000_000],
        concurrency: vec![1, 32],
    }
    .from_args();
    let url = storage_testkit::servers::postgres::postgres_url();
    println!(
        "postgres backend on {url}; {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if langgraph_bench::requested() {
        return langgraph(&url, &workload);
    }
    for &concurrency in &workload.concurrency {
        let run = Workload {
            concurrency: vec![concurrency],
            ..workload.clone()
        };
        runtime_for(concurrency).block_on(async {
            let backend = backend(
                &url,
                &format!("bench_{}_c{concurrency}", std::process::id()),
            )
            .await;
            let rows = run.run(backend.clone()).await;
            compare_with_raw(&backend, concurrency, workload.ops).await;
            print_history_ratio(&rows, &workload.history_lengths, concurrency);
        });
    }
    runtime_for(1).block_on(checkpoint_depth(&url, workload.checkpoint_ops));
}

/// `--langgraph`: LangGraph's workload beside raw SQL through the same pool (see
/// `storage_testkit::langgraph_bench`), at each concurrency.
fn langgraph(url: &str, workload: &Workload) {
    let title = "postgres backend vs raw tokio-postgres (one record per checkpoint)";
    langgraph_bench::run(title, workload, |concurrency| async move {
        let namespace = format!("bench_{}_lg{concurrency}", std::process::id());
        let backend = backend(url, &namespace).await;
        let raw: Arc<dyn RawCheckpointer> = Arc::new(RawTables::create(&backend, &namespace).await);
        let backend: Arc<dyn StorageBackend> = backend;
        (backend, raw)
    });
}

/// The raw driver's tables, through the backend's own pool: a checkpoint is one row of its
/// whole record, a write one row; every statement commits on its own.
#[derive(Clone)]
struct RawTables {
    pool: deadpool_postgres::Pool,
    schema: String,
}

impl RawTables {
    async fn create(backend: &PostgresBackend, namespace: &str) -> Self {
        let pool = raw::pool(backend).clone();
        let schema = format!("raw_{namespace}");
        let client = pool.get().await.unwrap();
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema};
                 CREATE TABLE IF NOT EXISTS {schema}.checkpoints (thread_id text NOT NULL, \
                 ns text NOT NULL, id text NOT NULL, record bytea NOT NULL, \
                 PRIMARY KEY (thread_id, ns, id));
                 CREATE TABLE IF NOT EXISTS {schema}.writes (thread_id text NOT NULL, \
                 ns text NOT NULL, id text NOT NULL, task_id text NOT NULL, idx int NOT NULL, \
                 channel text NOT NULL, value bytea NOT NULL, \
                 PRIMARY KEY (thread_id, ns, id, task_id, idx));"
            ))
            .await
            .unwrap();
        RawTables { pool, schema }
    }

    /// A pooled client and the statement `sql` prepared on it (cached per connection).
    async fn prepared(&self, sql: &str) -> (deadpool_postgres::Object, tokio_postgres::Statement) {
        let client = self.pool.get().await.unwrap();
        let statement = client.prepare_cached(sql).await.unwrap();
        (client, statement)
    }
}

impl RawCheckpointer for RawTables {
    fn put(&self, checkpoint: Checkpoint, record: Vec<u8>) -> BoxFuture<'static, ()> {
        let raw = self.clone();
        Box::pin(async move {
            let sql = format!(
                "INSERT INTO {}.checkpoints (thread_id, ns, id, record) VALUES ($1, $2, $3, $4)",
                raw.schema
            );
            let (client, statement) = raw.prepared(&sql).await;
            let Checkpoint {
                thread_id,
                namespace,
                id,
                ..
            } = &checkpoint;
            client
                .execute(&statement, &[thread_id, namespace, id, &record])
                .await
                .unwrap();
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
            let sql = format!(
                "INSERT INTO {}.writes (thread_id, ns, id, task_id, idx, channel, value) \
                 VALUES ($1, '', 'pending', $2, 0, $3, $4)",
                raw.schema
            );
            let (client, statement) = raw.prepared(&sql).await;
            client
                .execute(&statement, &[&thread, &task, &channel, &value])
                .await
                .unwrap();
        })
    }

    fn newest(&self, thread: String, limit: usize) -> BoxFuture<'static, Vec<Vec<u8>>> {
        let raw = self.clone();
        Box::pin(async move {
            let sql = format!(
                "SELECT record FROM {}.checkpoints WHERE thread_id = $1 AND ns = '' \
                 ORDER BY id DESC LIMIT $2",
                raw.schema
            );
            let (client, statement) = raw.prepared(&sql).await;
            let rows = client
                .query(&statement, &[&thread, &(limit as i64)])
                .await
                .unwrap();
            rows.iter().map(|row| row.get::<_, Vec<u8>>(0)).collect()
        })
    }
}

async fn backend(url: &str, namespace: &str) -> Arc<PostgresBackend> {
    let config = PostgresConfig::from_url(url)
        .with_namespace(namespace)
        .with_pool_size(32);
    let backend = Arc::new(PostgresBackend::new(config).expect("config"));
    backend.initialize().await.expect("initialize");
    backend
}

type Op = BenchOp;

/// Ours against the same SQL issued directly through the same pool (`prepare_cached`, the
/// same parameters, the same wire encoding and decoding), interleaved.
async fn compare_with_raw(backend: &Arc<PostgresBackend>, concurrency: usize, ops: usize) {
    let ids: Arc<Vec<String>> = Arc::new(
        (0..ops.min(1000))
            .map(|i| format!("c{concurrency}-s{i}"))
            .collect(),
    );
    let get = (
        ours_get_session(backend, &ids),
        raw_get_session(backend, &ids),
    );
    compare_interleaved("get_session", concurrency, ops, get.0, get.1).await;
    let append = (
        ours_append_message(backend, &ids),
        raw_append_message(backend, &ids),
    );
    compare_interleaved("append_message", concurrency, ops, append.0, append.1).await;
}

fn ours_get_session(backend: &Arc<PostgresBackend>, ids: &Arc<Vec<String>>) -> Op {
    let (b, ids) = (backend.clone(), ids.clone());
    Arc::new(move |i| {
        let (b, ids) = (b.clone(), ids.clone());
        Box::pin(async move {
            assert!(b.get_session(&ids[i % ids.len()]).await.unwrap().is_some());
        })
    })
}

fn raw_get_session(backend: &Arc<PostgresBackend>, ids: &Arc<Vec<String>>) -> Op {
    let (b, ids) = (backend.clone(), ids.clone());
    Arc::new(move |i| {
        let (b, ids) = (b.clone(), ids.clone());
        Box::pin(async move {
            let client = raw::pool(&b).get().await.unwrap();
            let statement = client.prepare_cached(raw::GET_SESSION).await.unwrap();
            let row = client
                .query_opt(&statement, &[&ids[i % ids.len()]])
                .await
                .unwrap()
                .unwrap();
            let session: Session = wire::decode(row.get::<_, &[u8]>(0)).unwrap();
            assert!(!session.id.is_empty());
        })
    })
}

fn message(i: usize) -> NewMessage {
    NewMessage::new("user", json!({"text": "benchmark message body", "i": i}))
}

fn ours_append_message(backend: &Arc<PostgresBackend>, ids: &Arc<Vec<String>>) -> Op {
    let (b, ids) = (backend.clone(), ids.clone());
    Arc::new(move |i| {
        let (b, ids) = (b.clone(), ids.clone());
        Box::pin(async move {
            b.append_message(&ids[i % ids.len()], message(i))
                .await
                .unwrap();
        })
    })
}

fn raw_append_message(backend: &Arc<PostgresBackend>, ids: &Arc<Vec<String>>) -> Op {
    let (b, ids) = (backend.clone(), ids.clone());
    Arc::new(move |i| {
        let (b, ids) = (b.clone(), ids.clone());
        Box::pin(async move {
            let session = &ids[i % ids.len()];
            let record = message(i).into_message(session, 0, time::now());
            let records = vec![wire::encode(&record).unwrap()];
            let client_ids: Vec<Option<&str>> = vec![None];
            let client = raw::pool(&b).get().await.unwrap();
            let statement = client.prepare_cached(raw::APPEND_MESSAGES).await.unwrap();
            let rows = client
                .query(&statement, &[session, &client_ids, &records])
                .await
                .unwrap();
            assert_eq!(rows.len(), 1);
        })
    })
}

/// get-latest-checkpoint and list-10 latency must not grow with the thread's length. Both
/// threads are filled first, then measured in alternating rounds, so background work the
/// fill causes (autovacuum, checkpoints) weighs on both alike.
async fn checkpoint_depth(url: &str, ops: usize) {
    let backend = backend(url, &format!("bench_{}_depth", std::process::id())).await;
    let depths = [10usize, 3_000];
    for depth in depths {
        let thread = format!("depth-{depth}");
        for i in 0..depth {
            // Every step after the first changes one of the ten channels, as in the workload.
            let (mut checkpoint, new_versions) = ten_channel_checkpoint(&thread, i * 64);
            checkpoint.thread_id = thread.clone();
            backend
                .put_checkpoint(checkpoint, new_versions)
                .await
                .unwrap();
        }
    }
    // `limit` 1 is get latest, anything else a list of that many.
    let newest = |depth: usize, limit: usize| -> Op {
        let b = backend.clone();
        let thread = format!("depth-{depth}");
        Arc::new(move |_| {
            let (b, thread) = (b.clone(), thread.clone());
            Box::pin(async move {
                let checkpoints = if limit == 1 {
                    vec![b.get_checkpoint(&thread, "", None).await.unwrap().unwrap()]
                } else {
                    let mut query = CheckpointQuery::thread(thread);
                    query.limit = Some(limit);
                    b.list_checkpoints(query).await.unwrap()
                };
                assert_eq!(checkpoints.len(), limit);
                assert!(checkpoints
                    .iter()
                    .all(|tuple| tuple.checkpoint.channel_values.len() == 10));
            })
        })
    };
    let reads = [("get_latest_checkpoint", 1), ("list10_checkpoints", 10)];
    let contenders: Vec<(String, Op)> = reads
        .iter()
        .flat_map(|&(name, limit)| {
            depths
                .iter()
                .map(move |&depth| (format!("{name}@{depth}"), newest(depth, limit)))
        })
        .collect();
    let rows = interleaved(1, ops, &contenders).await;
    for (i, (name, _)) in reads.iter().enumerate() {
        print_ratio(
            &format!("{name} p50 us, 3000 vs 10 checkpoints"),
            rows[2 * i + 1].p50.as_secs_f64() * 1e6,
            rows[2 * i].p50.as_secs_f64() * 1e6,
        );
    }
}
