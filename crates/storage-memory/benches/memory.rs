//! `cargo xtask bench memory`: the shared workload on the memory backend.
//!
//! Flags: `--ops N` (default 200000), `--history 1000,100000,1000000`, `--concurrency 1,32`.

use std::sync::Arc;

use storage_memory::MemoryBackend;
use storage_testkit::bench::{print_history_ratio, runtime_for, Workload};

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
