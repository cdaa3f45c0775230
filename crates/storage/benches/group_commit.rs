//! `cargo xtask bench group-commit` (or `cargo bench -p storage --bench group_commit`):
//! checkpoint puts on PostgreSQL (a throwaway cluster, or `STORAGE_TEST_POSTGRES_URL`) or
//! Redis (a throwaway server, or `STORAGE_TEST_REDIS_URL`) through the facade with group
//! commit on, through the facade with it off, and on the backend alone, interleaved, with
//! one caller and with 32. LangGraph's workload: 32 threads of ten ~2 KB channels, each put
//! after a thread's first changing one channel; call `i` puts to thread `i % 32`.
//!
//! Flags: `--ops N` (default 2000), `--concurrency 1,32`, `--backend NAME` (default
//! postgres; any backend of `support/backends.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;
use storage::config::GroupCommitSettings;
use storage::Storage;
use storage_core::{ChannelValue, StorageBackend};
use storage_testkit::bench::{
    interleaved, print_ratio, runtime_for, ten_channel_checkpoint, BenchOp, Workload,
};

#[path = "support/backends.rs"]
mod backends;
use backends::{build, ALL};

const THREADS: usize = 32;

fn main() {
    let workload = Workload {
        ops: 2_000,
        checkpoint_ops: 2_000,
        history_lengths: Vec::new(),
        concurrency: vec![1, 32],
    }
    .from_args();
    let name = backend_arg();
    // Where the file-backed backends (sqlite, object) keep their data.
    let root = tempfile::tempdir().expect("a temporary directory");
    println!(
        "group commit of checkpoint puts on {name}; {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for &concurrency in &workload.concurrency {
        runtime_for(concurrency).block_on(async {
            let namespace = format!("bench_gc_{}_c{concurrency}", std::process::id());
            // A connection for every caller.
            let backend = build(&name, &namespace, root.path(), Some(32)).await;
            let facade = |enabled: bool| -> Arc<dyn StorageBackend> {
                Arc::new(
                    Storage::builder(backend.clone())
                        .group_commit(GroupCommitSettings {
                            enabled,
                            ..GroupCommitSettings::default()
                        })
                        .build(),
                )
            };
            let alone = backend.clone();
            // The facade without group commit splits what the facade costs from what
            // group commit does.
            let rows = interleaved(
                concurrency,
                workload.ops,
                &[
                    ("put_gc".to_owned(), puts(facade(true), "gc")),
                    ("put_facade".to_owned(), puts(facade(false), "facade")),
                    ("put_alone".to_owned(), puts(alone, "alone")),
                ],
            )
            .await;
            let rate = |row: usize| rows[row].ops_per_sec;
            print_ratio(
                &format!("put ops/s, facade with group commit / backend alone (c{concurrency})"),
                rate(0),
                rate(2),
            );
            print_ratio(
                &format!("put ops/s, facade without group commit / backend alone (c{concurrency})"),
                rate(1),
                rate(2),
            );
            print_ratio(
                &format!(
                    "put ops/s, group commit on / off, both through the facade (c{concurrency})"
                ),
                rate(0),
                rate(1),
            );
        });
    }
}

/// The backend named by `--backend` (default postgres), one of [`ALL`].
fn backend_arg() -> String {
    let args: Vec<String> = std::env::args().collect();
    let name = args
        .iter()
        .position(|arg| arg == "--backend")
        .map_or("postgres", |at| {
            args.get(at + 1).expect("--backend NAME").as_str()
        });
    assert!(
        ALL.contains(&name),
        "--backend {name}: one of {}",
        ALL.join(", ")
    );
    name.to_owned()
}

/// Puts of LangGraph's shape; each contender writes threads of its own. As in a graph,
/// a put carries new values only for the channels it changed (its `new_versions`); the
/// others are the values the state already holds, built once here and shared, so the
/// driver's own work per put stays small beside what is measured.
fn puts(store: Arc<dyn StorageBackend>, who: &'static str) -> BenchOp {
    let payload = "x".repeat(2_000);
    let held: Arc<BTreeMap<String, ChannelValue>> = Arc::new(
        (0..10)
            .map(|channel| {
                let value = json!({"state": payload, "was": {"channel": channel}});
                (format!("ch{channel}"), value.into())
            })
            .collect(),
    );
    Arc::new(move |i| {
        let (store, payload, held) = (store.clone(), payload.clone(), held.clone());
        Box::pin(async move {
            let thread = format!("{who}-t{}", i % THREADS);
            let (mut checkpoint, new_versions) = ten_channel_checkpoint(&thread, i);
            // A thread's first puts seed every channel; later ones change one.
            let seeding = new_versions.len() == checkpoint.channel_values.len();
            for (channel, value) in checkpoint.channel_values.iter_mut() {
                *value = if !seeding && new_versions.contains_key(channel) {
                    let was = value.to_display_json();
                    json!({"state": payload, "was": was}).into()
                } else {
                    held[channel].clone()
                };
            }
            store
                .put_checkpoint(checkpoint, new_versions)
                .await
                .unwrap();
        })
    })
}
