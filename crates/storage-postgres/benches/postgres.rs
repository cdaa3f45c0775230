//! `cargo xtask bench postgres` (or `cargo bench -p storage-postgres`): the shared workload
//! on a throwaway PostgreSQL cluster (or `STORAGE_TEST_POSTGRES_URL`), then the same SQL
//! issued directly through the same pool, with the ours/raw ratio, at concurrency 1 and 32;
//! then get-latest-checkpoint latency on threads of 10 and 3,000 checkpoints.
//!
//! Flags: `--ops N` (default 5000), `--history 1000,1000000`, `--concurrency 1,32`.

use std::sync::Arc;

use futures::future::BoxFuture;

use serde_json::json;
use storage_core::{
    time, wire, CheckpointStore, ConversationStore, NewMessage, Session, SessionStore,
    StorageBackend,
};
use storage_postgres::{raw, PostgresBackend, PostgresConfig};
use storage_testkit::bench::{measure, print_ratio, ten_channel_checkpoint, Measurement, Workload};

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
    for &concurrency in &workload.concurrency {
        let runtime = if concurrency == 1 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
        }
        .expect("tokio runtime");
        let run = Workload {
            concurrency: vec![concurrency],
            ..workload.clone()
        };
        runtime.block_on(async {
            let backend = backend(
                &url,
                &format!("bench_{}_c{concurrency}", std::process::id()),
            )
            .await;
            let rows = run.run(backend.clone()).await;
            compare_with_raw(&backend, concurrency, workload.ops).await;
            let p50 = |name: &str| {
                rows.iter()
                    .find(|m| m.name == name)
                    .map(|m| m.p50.as_secs_f64())
            };
            let lengths = &workload.history_lengths;
            if let (Some(first), Some(last)) = (lengths.first(), lengths.last()) {
                if let (Some(short), Some(long)) = (
                    p50(&format!("history_last50@{first}")),
                    p50(&format!("history_last50@{last}")),
                ) {
                    print_ratio(
                        &format!(
                            "history_last50 p50 us, {last} vs {first} messages (c{concurrency})"
                        ),
                        long * 1e6,
                        short * 1e6,
                    );
                }
            }
        });
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(checkpoint_depth(&url, workload.checkpoint_ops));
}

async fn backend(url: &str, namespace: &str) -> Arc<PostgresBackend> {
    let config = PostgresConfig::from_url(url)
        .with_namespace(namespace)
        .with_pool_size(32);
    let backend = Arc::new(PostgresBackend::new(config).expect("config"));
    backend.initialize().await.expect("initialize");
    backend
}

type Op = Arc<dyn Fn(usize) -> BoxFuture<'static, ()> + Send + Sync>;

/// Rounds in which ours and raw alternate, so drift in the machine's load (a shared
/// 2-core VM) hits both sides alike.
const ROUNDS: usize = 10;

/// Ours against the same SQL issued directly through the same pool (`prepare_cached`, the
/// same parameters, the same wire encoding and decoding), measured in alternating rounds
/// after one untimed warm-up round of each.
async fn compare_with_raw(backend: &Arc<PostgresBackend>, concurrency: usize, ops: usize) {
    let tag = format!("c{concurrency}");
    let ids: Arc<Vec<String>> =
        Arc::new((0..ops.min(1000)).map(|i| format!("{tag}-s{i}")).collect());
    let pairs: [(&str, Op, Op); 2] = [
        (
            "get_session",
            ours_get_session(backend, &ids),
            raw_get_session(backend, &ids),
        ),
        (
            "append_message",
            ours_append_message(backend, &ids),
            raw_append_message(backend, &ids),
        ),
    ];
    for (name, ours, raw) in pairs {
        let per_round = (ops / ROUNDS).max(1);
        run(&ours, "warm-up", concurrency, per_round).await;
        run(&raw, "warm-up", concurrency, per_round).await;
        let (mut ours_rounds, mut raw_rounds) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            ours_rounds.push(run(&ours, name, concurrency, per_round).await);
            raw_rounds.push(run(&raw, &format!("raw_{name}"), concurrency, per_round).await);
        }
        let ours = combine(ours_rounds);
        let raw = combine(raw_rounds);
        println!("{}", ours.row());
        println!("{}", raw.row());
        print_ratio(
            &format!("{name} ops/s ours/raw, interleaved (c{concurrency})"),
            ours.ops_per_sec,
            raw.ops_per_sec,
        );
    }
}

async fn run(op: &Op, label: &str, concurrency: usize, ops: usize) -> Measurement {
    let op = op.clone();
    measure(label, concurrency, ops, move |i| op(i)).await
}

/// Rounds as one row: total ops over total time; the median of the rounds' percentiles.
fn combine(mut rounds: Vec<Measurement>) -> Measurement {
    let ops: usize = rounds.iter().map(|m| m.ops).sum();
    let seconds: f64 = rounds.iter().map(|m| m.ops as f64 / m.ops_per_sec).sum();
    let middle = rounds.len() / 2;
    rounds.sort_by_key(|m| m.p50);
    let p50 = rounds[middle].p50;
    rounds.sort_by_key(|m| m.p99);
    let p99 = rounds[middle].p99;
    Measurement {
        name: format!("{} (interleaved)", rounds[0].name),
        concurrency: rounds[0].concurrency,
        ops,
        ops_per_sec: ops as f64 / seconds,
        p50,
        p99,
    }
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

/// get-latest-checkpoint latency must not grow with the thread's length. Both threads are
/// filled first, then measured in alternating rounds, so background work the fill causes
/// (autovacuum, checkpoints) weighs on both alike.
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
    let get_latest = |depth: usize| -> Op {
        let b = backend.clone();
        let thread = format!("depth-{depth}");
        Arc::new(move |_| {
            let (b, thread) = (b.clone(), thread.clone());
            Box::pin(async move {
                let tuple = b.get_checkpoint(&thread, "", None).await.unwrap().unwrap();
                assert_eq!(tuple.checkpoint.channel_values.len(), 10);
            })
        })
    };
    let ops_list: Vec<Op> = depths.iter().map(|&depth| get_latest(depth)).collect();
    let per_round = (ops / ROUNDS).max(1);
    let mut rounds: Vec<Vec<Measurement>> = vec![Vec::new(), Vec::new()];
    for op in &ops_list {
        run(op, "warm-up", 1, per_round).await;
    }
    for _ in 0..ROUNDS {
        for ((op, depth), measured) in ops_list.iter().zip(depths).zip(rounds.iter_mut()) {
            measured.push(run(op, &format!("get_latest_checkpoint@{depth}"), 1, per_round).await);
        }
    }
    let rows: Vec<Measurement> = rounds.into_iter().map(combine).collect();
    for row in &rows {
        println!("{}", row.row());
    }
    print_ratio(
        "get_latest_checkpoint p50 us, 3000 vs 10 checkpoints",
        rows[1].p50.as_secs_f64() * 1e6,
        rows[0].p50.as_secs_f64() * 1e6,
    );
}
