//! `cargo xtask bench memory`: the shared workload on the memory backend. With
//! `--langgraph`, only LangGraph's checkpoint workload (`storage_testkit::langgraph_bench`,
//! 50,000 operations per phase) beside a raw map of each thread's records in id order
//! behind a lock.
//!
//! Flags: `--ops N` (default 200000), `--history 1000,100000,1000000`, `--concurrency 1,32`,
//! `--langgraph`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use storage_core::{Checkpoint, StorageBackend};
use storage_memory::MemoryBackend;
use storage_testkit::bench::{print_history_ratio, runtime_for, Workload};
use storage_testkit::langgraph_bench::{self, RawCheckpointer};

fn main() {
    let workload = Workload {
        ops: 200_000,
        checkpoint_ops: 50_000,
        history_lengths: vec![1_000, 100_000, 1_000_000],
        concurrency: vec![1, 32],
    }
    .from_args();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("memory backend; {cores} cores");
    if langgraph_bench::requested() {
        return langgraph(&workload);
    }
    for &concurrency in &workload.concurrency {
        let run = Workload {
            concurrency: vec![concurrency],
            ..workload.clone()
        };
        let rows = runtime_for(concurrency).block_on(async {
            let backend = Arc::new(MemoryBackend::new("bench").expect("namespace"));
            run.run(backend).await
        });
        print_history_ratio(&rows, &workload.history_lengths, concurrency);
    }
}

/// `--langgraph`: LangGraph's workload beside [`RawMap`], at each concurrency.
fn langgraph(workload: &Workload) {
    let title = "memory backend vs a raw map (one record per checkpoint)";
    langgraph_bench::run(title, workload, |_| async {
        let backend: Arc<dyn StorageBackend> =
            Arc::new(MemoryBackend::new("bench").expect("namespace"));
        let raw: Arc<dyn RawCheckpointer> = Arc::new(RawMap::default());
        (backend, raw)
    });
}

/// Each thread's records by checkpoint id, and the writes, behind one lock each.
#[derive(Default)]
struct RawMap {
    checkpoints: Mutex<HashMap<String, BTreeMap<String, Vec<u8>>>>,
    writes: Mutex<HashMap<(String, String, String), Vec<u8>>>,
}

impl RawCheckpointer for RawMap {
    fn put(&self, checkpoint: Checkpoint, record: Vec<u8>) -> BoxFuture<'static, ()> {
        self.checkpoints
            .lock()
            .unwrap()
            .entry(checkpoint.thread_id)
            .or_default()
            .insert(checkpoint.id, record);
        Box::pin(async {})
    }

    fn put_write(
        &self,
        thread: String,
        task: String,
        channel: String,
        value: Vec<u8>,
    ) -> BoxFuture<'static, ()> {
        self.writes
            .lock()
            .unwrap()
            .insert((thread, task, channel), value);
        Box::pin(async {})
    }

    fn newest(&self, thread: String, limit: usize) -> BoxFuture<'static, Vec<Vec<u8>>> {
        let records = self.checkpoints.lock().unwrap()[&thread]
            .values()
            .rev()
            .take(limit)
            .cloned()
            .collect();
        Box::pin(async move { records })
    }
}
