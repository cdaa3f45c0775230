//! `cargo xtask bench memory`: the shared workload on the memory backend.
//!
//! Flags: `--ops N` (default 200000), `--history 1000,100000,1000000`, `--concurrency 1,32`.

use std::sync::Arc;

use storage_memory::MemoryBackend;
use storage_testkit::bench::{print_ratio, Workload};

fn main() {
    let workload = Workload {
        ops: 200_000,
        checkpoint_ops: 50_000,
        history_lengths: vec![1_000, 100_000, 1_000_000],
        concurrency: vec![1, 32],
    }
    .from_args();
    println!(
        "memory backend; {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for &concurrency in &workload.concurrency {
        // Concurrency 1 runs on one thread: the single-threaded figure the targets name.
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
        let rows = runtime.block_on(async {
            let backend = Arc::new(MemoryBackend::new("bench").expect("namespace"));
            run.run(backend).await
        });
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
                    &format!("history_last50 p50 ns, {last} vs {first} messages (c{concurrency})"),
                    long * 1e9,
                    short * 1e9,
                );
            }
        }
    }
}
