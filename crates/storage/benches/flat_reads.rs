//! `cargo xtask bench flat` (or `cargo bench -p storage --bench flat_reads`): reads that
//! must not slow down as data grows, on every backend. Reading one task-context version
//! and listing the newest 10 of a scope holding 10 versions against one holding 10,000;
//! reading the last 10 turns of a conversation of 1e3 messages against one of 1e6. The
//! small and the large case are measured in alternating rounds (interleaved) in one run,
//! and the ratio of their medians printed: flat means a ratio near 1.
//!
//! Backends: memory, sqlite, object (a local directory), s3 (a throwaway moto server, or
//! `STORAGE_TEST_S3_URL`), redis and postgres (throwaway servers, or `STORAGE_TEST_*_URL`).
//!
//! Flags: `--backends memory,sqlite,object,s3,redis,postgres` (default all),
//! `--versions 10,10000`, `--messages 1000,1000000`, `--ops N` reads per case (default 2000).

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use storage_core::task_context::oldest_kept;
use storage_core::turns::{ConversationStoreExt, HistoryWindow};
use storage_core::{ContextScope, ExpectedVersion, NewMessage, StorageBackend};
use storage_testkit::bench::{interleaved, print_ratio, runtime_for, BenchOp};

#[path = "support/backends.rs"]
mod backends;
use backends::{build, ALL};

/// Messages per turn in the filled conversations.
const TURN: usize = 4;

struct Args {
    backends: Vec<String>,
    versions: [usize; 2],
    messages: [usize; 2],
    ops: usize,
}

fn args() -> Args {
    let mut parsed = Args {
        backends: ALL.iter().map(|b| (*b).to_owned()).collect(),
        versions: [10, 10_000],
        messages: [1_000, 1_000_000],
        ops: 2_000,
    };
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
                parsed.backends = value
                    .expect("--backends a,b")
                    .split(',')
                    .map(str::to_owned)
                    .collect();
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
            "--ops" => {
                parsed.ops = value.expect("--ops N").parse().expect("--ops N");
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
        "flat reads; {} cores; versions {:?}, messages {:?}, {} reads per case",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        args.versions,
        args.messages,
        args.ops
    );
    let root = tempfile::tempdir().expect("a temporary directory");
    for name in &args.backends {
        let namespace = format!("flat_{}", std::process::id());
        runtime_for(1).block_on(async {
            let backend = build(name, &namespace, root.path()).await;
            println!("\n== {name}");
            contexts(&backend, &args).await;
            turns(&backend, &args).await;
            backend.close().await.expect("close");
        });
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
