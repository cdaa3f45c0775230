//! `cargo xtask bench flat` (or `cargo bench -p storage --bench flat_reads`): reads that
//! must not slow down as data grows, on every backend. Reading one task-context version
//! and listing the newest 10 of a scope holding 10 versions against one holding 10,000;
//! reading the last 10 turns of a conversation of 1e3 messages against one of 1e6;
//! reading the latest checkpoint and listing the newest 10 (values decoded) of a graph
//! thread holding 10 checkpoints against one holding 3,000 (LangGraph's workload: ten
//! channels of about 2 KB, a step changing one). The
//! small and the large case are measured in alternating rounds (interleaved) in one run,
//! and the ratio of their medians printed: flat means a ratio near 1.
//!
//! Backends: memory, sqlite, object (a local directory), s3 (a throwaway moto server, or
//! `STORAGE_TEST_S3_URL`), redis, redis-cluster and postgres (throwaway servers, or
//! `STORAGE_TEST_*_URL`).
//!
//! Flags: `--backends memory,sqlite,object,s3,redis,redis-cluster,postgres` (default all),
//! `--parts contexts,turns,checkpoints` (default all), `--versions 10,10000`,
//! `--messages 1000,1000000`, `--checkpoints 10,3000`, `--concurrency 1,32` (callers of the
//! checkpoint reads; default 1), `--ops N` reads per case (default 2000).

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use storage_core::task_context::oldest_kept;
use storage_core::turns::{ConversationStoreExt, HistoryWindow};
use storage_core::{ContextScope, ExpectedVersion, NewMessage, StorageBackend};
use storage_testkit::bench::{interleaved, print_ratio, runtime_for, BenchOp, Workload};
use storage_testkit::langgraph_bench::{self, CHANNELS};

#[path = "support/backends.rs"]
mod backends;
use backends::{build, ALL};

/// Messages per turn in the filled conversations.
const TURN: usize = 4;

struct Args {
    backends: Vec<String>,
    parts: Vec<String>,
    versions: [usize; 2],
    messages: [usize; 2],
    checkpoints: [usize; 2],
    concurrency: Vec<usize>,
    ops: usize,
}

impl Args {
    fn wants(&self, part: &str) -> bool {
        self.parts.iter().any(|wanted| wanted == part)
    }
}

/// A comma-separated flag's values.
fn list(value: Option<&String>, flag: &str) -> Vec<String> {
    value
        .unwrap_or_else(|| panic!("{flag} a,b"))
        .split(',')
        .map(str::to_owned)
        .collect()
}

fn args() -> Args {
    let mut parsed = Args {
        backends: ALL.iter().map(|b| (*b).to_owned()).collect(),
        parts: ["contexts", "turns", "checkpoints"]
            .map(str::to_owned)
            .to_vec(),
        versions: [10, 10_000],
        messages: [1_000, 1_000_000],
        checkpoints: [10, 3_000],
        concurrency: vec![1],
        ops: 2_000,
    };
    // `--ops` and `--concurrency` are the shared bench flags.
    let shared = Workload {
        ops: parsed.ops,
        checkpoint_ops: parsed.ops,
        history_lengths: Vec::new(),
        concurrency: parsed.concurrency.clone(),
    }
    .from_args();
    (parsed.ops, parsed.concurrency) = (shared.ops, shared.concurrency);
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let pair = |value: Option<&String>, flag: &str| -> [usize; 2] {
        let numbers: Vec<usize> = value
            .unwrap_or_else(|| panic!("{flag} SMALL,LARGE"))
            .split(',')
            .map(|n| n.trim().parse().expect("a number"))
            .collect();
        [numbers[0], numbers[1]]
    };
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1);
        match argv[i].as_str() {
            "--backends" => {
                parsed.backends = list(value, "--backends");
                i += 1;
            }
            "--parts" => {
                parsed.parts = list(value, "--parts");
                i += 1;
            }
            "--checkpoints" => {
                parsed.checkpoints = pair(value, "--checkpoints");
                i += 1;
            }
            "--versions" => {
                parsed.versions = pair(value, "--versions");
                i += 1;
            }
            "--messages" => {
                parsed.messages = pair(value, "--messages");
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    parsed
}

fn main() {
    let args = args();
    println!(
        "flat reads; {} cores; {:?}; versions {:?}, messages {:?}, checkpoints {:?}, {} reads \
         per case",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        args.parts,
        args.versions,
        args.messages,
        args.checkpoints,
        args.ops
    );
    let root = tempfile::tempdir().expect("a temporary directory");
    for name in &args.backends {
        let namespace = format!("flat_{}", std::process::id());
        runtime_for(1).block_on(async {
            let backend = build(name, &namespace, root.path(), None).await;
            println!("\n== {name}");
            if args.wants("contexts") {
                contexts(&backend, &args).await;
            }
            if args.wants("turns") {
                turns(&backend, &args).await;
            }
            backend.close().await.expect("close");
        });
        if !args.wants("checkpoints") {
            continue;
        }
        for &concurrency in &args.concurrency {
            // A backend of the runtime that drives it, on a namespace of its own.
            let namespace = format!("{namespace}_c{concurrency}");
            runtime_for(concurrency).block_on(async {
                let backend = build(name, &namespace, root.path(), None).await;
                checkpoints(&backend, &args, concurrency).await;
                backend.close().await.expect("close");
            });
        }
    }
}

/// Stores `count` versions of `scope`, keeping them all.
async fn fill_versions(backend: &dyn StorageBackend, scope: &ContextScope, count: usize) {
    let started = Instant::now();
    for step in 0..count {
        backend
            .store_context(
                scope.clone(),
                json!({"plan": ["search", "summarize"], "step": step}),
                ExpectedVersion::Any,
                count as u32,
            )
            .await
            .expect("store a version");
    }
    println!(
        "filled {count} versions in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

async fn contexts(backend: &Arc<dyn StorageBackend>, args: &Args) {
    let [small, large] = args.versions;
    let scopes = [
        ContextScope::user("flat-small"),
        ContextScope::user("flat-large"),
    ];
    for (scope, count) in scopes.iter().zip(args.versions) {
        fill_versions(backend.as_ref(), scope, count).await;
    }
    let version_of = |count: usize| -> BenchOp {
        let (backend, scope) = (backend.clone(), scopes[usize::from(count == large)].clone());
        Arc::new(move |i| {
            let (backend, scope) = (backend.clone(), scope.clone());
            // Any kept version, spread over the whole history.
            let first = oldest_kept(count as u64, count as u32);
            let version = first + (i as u64 * 7919) % count as u64;
            Box::pin(async move {
                let read = backend.get_context(scope, Some(version)).await.unwrap();
                assert_eq!(read.map(|c| c.version), Some(version));
            })
        })
    };
    let list_of = |count: usize| -> BenchOp {
        let (backend, scope) = (backend.clone(), scopes[usize::from(count == large)].clone());
        Arc::new(move |_| {
            let (backend, scope) = (backend.clone(), scope.clone());
            Box::pin(async move {
                let page = backend
                    .list_context_versions(scope, None, 10)
                    .await
                    .unwrap();
                assert_eq!(page.len(), 10.min(count));
            })
        })
    };
    let rows = interleaved(
        1,
        args.ops,
        &[
            (format!("context_version@{small}"), version_of(small)),
            (format!("context_version@{large}"), version_of(large)),
            (format!("context_list10@{small}"), list_of(small)),
            (format!("context_list10@{large}"), list_of(large)),
        ],
    )
    .await;
    let ns = |row: usize| rows[row].p50.as_secs_f64() * 1e9;
    print_ratio(
        &format!("context_version p50 ns, {large} vs {small} versions"),
        ns(1),
        ns(0),
    );
    print_ratio(
        &format!("context_list10 p50 ns, {large} vs {small} versions"),
        ns(3),
        ns(2),
    );
}

/// Appends `count` messages to `session` in turns of [`TURN`] messages, a batch of whole
/// turns at a time.
async fn fill_turns(backend: &dyn StorageBackend, session: &str, count: usize) {
    let started = Instant::now();
    let mut stored = 0;
    while stored < count {
        let batch: Vec<NewMessage> = (stored..count.min(stored + 1_000))
            .map(|i| {
                NewMessage::new(
                    if i % TURN == 0 { "user" } else { "assistant" },
                    json!({"text": "turn filler message", "i": i}),
                )
                .in_turn(format!("turn-{}", i / TURN))
            })
            .collect();
        stored += batch.len();
        backend
            .append_messages(session, batch)
            .await
            .expect("append");
    }
    println!(
        "filled {count} messages in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

async fn turns(backend: &Arc<dyn StorageBackend>, args: &Args) {
    let [small, large] = args.messages;
    for count in args.messages {
        fill_turns(backend.as_ref(), &format!("flat-{count}"), count).await;
    }
    let last_turns = |count: usize| -> BenchOp {
        let backend = backend.clone();
        let session = format!("flat-{count}");
        Arc::new(move |_| {
            let (backend, session) = (backend.clone(), session.clone());
            Box::pin(async move {
                let window = HistoryWindow::LastTurns { turns: 10 };
                let read = backend.get_history_window(&session, window).await.unwrap();
                assert_eq!(read.len(), 10 * TURN);
            })
        })
    };
    let rows = interleaved(
        1,
        args.ops,
        &[
            (format!("last10_turns@{small}"), last_turns(small)),
            (format!("last10_turns@{large}"), last_turns(large)),
        ],
    )
    .await;
    let ns = |row: usize| rows[row].p50.as_secs_f64() * 1e9;
    print_ratio(
        &format!("last10_turns p50 ns, {large} vs {small} messages"),
        ns(1),
        ns(0),
    );
}

/// Puts `count` checkpoints of LangGraph's workload in graph thread `thread`.
async fn fill_checkpoints(backend: &dyn StorageBackend, thread: usize, count: usize) {
    let started = Instant::now();
    for step in 0..count {
        let (checkpoint, new_versions) = langgraph_bench::checkpoint(thread, step);
        backend
            .put_checkpoint(checkpoint, new_versions)
            .await
            .expect("put a checkpoint");
    }
    println!(
        "filled {count} checkpoints in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

async fn checkpoints(backend: &Arc<dyn StorageBackend>, args: &Args, concurrency: usize) {
    let [small, large] = args.checkpoints;
    // Graph thread 0 holds the small history, thread 1 the large one.
    for (thread, count) in args.checkpoints.into_iter().enumerate() {
        fill_checkpoints(backend.as_ref(), thread, count).await;
    }
    let newest = |count: usize, limit: usize| -> BenchOp {
        let backend = backend.clone();
        let thread = format!("thread-{}", usize::from(count == large));
        Arc::new(move |_| {
            let (backend, thread) = (backend.clone(), thread.clone());
            Box::pin(async move {
                let tuples = if limit == 1 {
                    let latest = backend.get_checkpoint(&thread, "", None).await.unwrap();
                    latest.into_iter().collect()
                } else {
                    let mut query = storage_core::CheckpointQuery::thread(thread);
                    query.limit = Some(limit);
                    backend.list_checkpoints(query).await.unwrap()
                };
                assert_eq!(tuples.len(), limit.min(count));
                assert!(tuples
                    .iter()
                    .all(|tuple| tuple.checkpoint.channel_values.len() == CHANNELS));
            })
        })
    };
    let rows = interleaved(
        concurrency,
        args.ops,
        &[
            (format!("get_latest@{small}"), newest(small, 1)),
            (format!("get_latest@{large}"), newest(large, 1)),
            (format!("checkpoint_list10@{small}"), newest(small, 10)),
            (format!("checkpoint_list10@{large}"), newest(large, 10)),
        ],
    )
    .await;
    let ns = |row: usize| rows[row].p50.as_secs_f64() * 1e9;
    print_ratio(
        &format!("get_latest p50 ns, {large} vs {small} checkpoints (c{concurrency})"),
        ns(1),
        ns(0),
    );
    print_ratio(
        &format!("checkpoint_list10 p50 ns, {large} vs {small} checkpoints (c{concurrency})"),
        ns(3),
        ns(2),
    );
}
