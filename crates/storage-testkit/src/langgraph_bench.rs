//! LangGraph's checkpoint workload, ours beside each backend's raw driver doing the minimal
//! equivalent, interleaved: what `cargo xtask bench <backend> -- --langgraph` prints.
//!
//! The workload: 32 graph threads whose state is 10 channels of about 2 KB each; a step
//! changes one channel. Phases of N operations: `put` (a checkpoint), `put_writes` (one
//! pending write), `get_latest` (the newest checkpoint with its values, decoded),
//! `list10` (the newest 10 with their values, decoded); with one caller and with 32.
//!
//! Raw (a [`RawCheckpointer`]) stores each checkpoint whole, values included, as one record
//! of the same bytes (the checkpoint's wire encoding) and reads it back by the thread's
//! newest ids: one insert and its commit, one write insert, one select of the newest row,
//! one select of the newest 10. Ratios are ours/raw ops/s; p50 columns are per call.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{json, Value};
use storage_core::{
    new_checkpoint_id, wire, ChannelVersions, Checkpoint, CheckpointKey, CheckpointQuery,
    StorageBackend,
};

use crate::bench::{compare_interleaved, runtime_for, BenchOp, Measurement, Workload};

/// Graph threads the calls are spread over.
pub const THREADS: usize = 32;
/// Channels of a graph's state.
pub const CHANNELS: usize = 10;

/// Whether the bench was asked for this workload only (`--langgraph`).
pub fn requested() -> bool {
    std::env::args().any(|arg| arg == "--langgraph")
}

/// A raw driver's minimal equivalent of the checkpointer's calls.
pub trait RawCheckpointer: Send + Sync + 'static {
    /// Stores the checkpoint as one record (`record`, its wire encoding with every value)
    /// under (thread, namespace, id), durably, as a put is.
    fn put(&self, checkpoint: Checkpoint, record: Vec<u8>) -> BoxFuture<'static, ()>;
    /// Stores one pending write's encoded value.
    fn put_write(
        &self,
        thread: String,
        task: String,
        channel: String,
        value: Vec<u8>,
    ) -> BoxFuture<'static, ()>;
    /// The records of the thread's `limit` greatest checkpoint ids, newest first.
    fn newest(&self, thread: String, limit: usize) -> BoxFuture<'static, Vec<Vec<u8>>>;
}

/// A channel's value at a version: about 2 KB of JSON.
pub fn value(channel: usize, version: usize) -> Value {
    let text: String = (0..2000)
        .map(|i| char::from(b'a' + ((i * 7 + channel * 3 + version) % 26) as u8))
        .collect();
    json!({"channel": channel, "version": version, "text": text})
}

/// Step `step` of graph thread `thread`: the first stores all ten channels, every later
/// step changes channel `step % 10`. Returns the checkpoint and its new versions.
pub fn checkpoint(thread: usize, step: usize) -> (Checkpoint, ChannelVersions) {
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

/// One phase's figures: (phase, callers, ours, raw).
pub type Row = (&'static str, usize, Measurement, Measurement);

/// The four phases at `concurrency`, ours against `raw`, each interleaved.
pub async fn phases(
    backend: Arc<dyn StorageBackend>,
    raw: Arc<dyn RawCheckpointer>,
    concurrency: usize,
    ops: usize,
) -> Vec<Row> {
    let counters = || Arc::new((0..THREADS).map(|_| AtomicUsize::new(0)).collect());
    let tasks = Arc::new(AtomicUsize::new(0));
    let pairs: [(&'static str, BenchOp, BenchOp); 4] = [
        (
            "put",
            ours_put(&backend, counters()),
            raw_put(&raw, counters()),
        ),
        (
            "put_writes",
            ours_put_writes(&backend, tasks.clone()),
            raw_put_writes(&raw, tasks),
        ),
        ("get_latest", ours_newest(&backend, 1), raw_newest(&raw, 1)),
        ("list10", ours_newest(&backend, 10), raw_newest(&raw, 10)),
    ];
    let mut rows = Vec::new();
    for (phase, ours, raw) in pairs {
        let (ours, raw) = compare_interleaved(phase, concurrency, ops, ours, raw).await;
        rows.push((phase, concurrency, ours, raw));
    }
    rows
}

/// The four phases at each of the workload's concurrencies, on what `setup` builds for
/// it (ours and raw), then the table under `title`: a backend bench's `--langgraph`.
pub fn run<F, Fut>(title: &str, workload: &Workload, setup: F)
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = (Arc<dyn StorageBackend>, Arc<dyn RawCheckpointer>)>,
{
    let mut table = Vec::new();
    for &concurrency in &workload.concurrency {
        table.extend(runtime_for(concurrency).block_on(async {
            let (backend, raw) = setup(concurrency).await;
            phases(backend, raw, concurrency, workload.checkpoint_ops).await
        }));
    }
    print_table(title, &table);
}

/// Prints the rows as one table under `title`.
pub fn print_table(title: &str, rows: &[Row]) {
    println!();
    println!("{title}");
    println!(
        "{:<12} {:>3} {:>12} {:>12} {:>8} {:>10} {:>10}",
        "phase", "c", "ours ops/s", "raw ops/s", "ours/raw", "ours p50", "raw p50"
    );
    for (phase, concurrency, ours, raw) in rows {
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

type Steps = Arc<Vec<AtomicUsize>>;

/// The next step of the thread call `i` goes to.
fn next_step(steps: &Steps, i: usize) -> (usize, usize) {
    let thread = i % THREADS;
    (thread, steps[thread].fetch_add(1, Ordering::Relaxed))
}

fn ours_put(backend: &Arc<dyn StorageBackend>, steps: Steps) -> BenchOp {
    let b = backend.clone();
    Arc::new(move |i| {
        let (b, (thread, step)) = (b.clone(), next_step(&steps, i));
        Box::pin(async move {
            let (checkpoint, new_versions) = checkpoint(thread, step);
            b.put_checkpoint(checkpoint, new_versions).await.unwrap();
        })
    })
}

fn raw_put(raw: &Arc<dyn RawCheckpointer>, steps: Steps) -> BenchOp {
    let raw = raw.clone();
    Arc::new(move |i| {
        let (thread, step) = next_step(&steps, i);
        let (checkpoint, _) = checkpoint(thread, step);
        // The whole checkpoint, values included, as a saver that stores it whole does.
        let record = wire::encode(&checkpoint).unwrap();
        raw.put(checkpoint, record)
    })
}

/// The write of call `i`: (thread, task, channel, value).
fn write_of(i: usize, tasks: &AtomicUsize) -> (String, String, String, Value) {
    let task = tasks.fetch_add(1, Ordering::Relaxed);
    (
        format!("thread-{}", i % THREADS),
        format!("task-{task}"),
        format!("ch{}", i % CHANNELS),
        value(i % CHANNELS, i),
    )
}

fn ours_put_writes(backend: &Arc<dyn StorageBackend>, tasks: Arc<AtomicUsize>) -> BenchOp {
    let b = backend.clone();
    Arc::new(move |i| {
        let b = b.clone();
        let (thread, task, channel, value) = write_of(i, &tasks);
        Box::pin(async move {
            let key = CheckpointKey::new(thread, "pending");
            b.put_writes(key, &task, "", vec![(channel, value.into())])
                .await
                .unwrap();
        })
    })
}

fn raw_put_writes(raw: &Arc<dyn RawCheckpointer>, tasks: Arc<AtomicUsize>) -> BenchOp {
    let raw = raw.clone();
    Arc::new(move |i| {
        let (thread, task, channel, value) = write_of(i, &tasks);
        raw.put_write(thread, task, channel, serde_json::to_vec(&value).unwrap())
    })
}

fn ours_newest(backend: &Arc<dyn StorageBackend>, limit: usize) -> BenchOp {
    let b = backend.clone();
    Arc::new(move |i| {
        let b = b.clone();
        Box::pin(async move {
            let thread = format!("thread-{}", i % THREADS);
            let checkpoints: Vec<Checkpoint> = if limit == 1 {
                let tuple = b.get_checkpoint(&thread, "", None).await.unwrap();
                vec![tuple.unwrap().checkpoint]
            } else {
                let mut query = CheckpointQuery::thread(thread);
                query.limit = Some(limit);
                let tuples = b.list_checkpoints(query).await.unwrap();
                tuples.into_iter().map(|tuple| tuple.checkpoint).collect()
            };
            assert_eq!(checkpoints.len(), limit);
            assert!(checkpoints
                .iter()
                .all(|checkpoint| checkpoint.channel_values.len() == CHANNELS));
        })
    })
}

fn raw_newest(raw: &Arc<dyn RawCheckpointer>, limit: usize) -> BenchOp {
    let raw = raw.clone();
    Arc::new(move |i| {
        let read = raw.newest(format!("thread-{}", i % THREADS), limit);
        Box::pin(async move {
            let records = read.await;
            assert_eq!(records.len(), limit);
            for record in records {
                let checkpoint: Checkpoint = wire::decode(&record).unwrap();
                assert_eq!(checkpoint.channel_values.len(), CHANNELS);
            }
        })
    })
}
