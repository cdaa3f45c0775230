//! Timing of storage operations: [`measure`] runs a closure `ops` times from `concurrency`
//! tasks and returns a [`Measurement`] (throughput, median and 99th percentile latency).
//!
//! What `storectl bench` and the backend benches (through `storage_testkit::bench`, which
//! re-exports this crate) time with. No test servers, no workload: just the clock.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Latency figures of one measured operation.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// What was measured, e.g. `get_session`.
    pub name: String,
    /// Concurrent callers.
    pub concurrency: usize,
    /// Operations completed.
    pub ops: usize,
    /// Operations per second over the whole run.
    pub ops_per_sec: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
}

impl Measurement {
    /// The header matching [`Measurement::row`].
    pub fn header() -> String {
        format!(
            "{:<34} {:>5} {:>9} {:>13} {:>10} {:>10}",
            "operation", "conc", "ops", "ops/s", "p50 us", "p99 us"
        )
    }

    /// One aligned line of figures.
    pub fn row(&self) -> String {
        format!(
            "{:<34} {:>5} {:>9} {:>13.0} {:>10.2} {:>10.2}",
            self.name,
            self.concurrency,
            self.ops,
            self.ops_per_sec,
            self.p50.as_secs_f64() * 1e6,
            self.p99.as_secs_f64() * 1e6
        )
    }
}

/// Runs `op(i)` for `i` in `0..ops` from `concurrency` tasks, timing each call.
///
/// With concurrency 1 the calls run one after another on the current task; otherwise
/// `concurrency` tasks share the range. Panics if an operation fails: a benchmark of
/// failing calls measures nothing.
pub async fn measure<F, Fut>(name: &str, concurrency: usize, ops: usize, op: F) -> Measurement
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let latencies: Vec<u64> = if concurrency <= 1 {
        let mut latencies = Vec::with_capacity(ops);
        for i in 0..ops {
            let t = Instant::now();
            op(i).await;
            latencies.push(t.elapsed().as_nanos() as u64);
        }
        latencies
    } else {
        let tasks: Vec<_> = (0..concurrency)
            .map(|task| {
                let op = op.clone();
                tokio::spawn(async move {
                    let mut latencies = Vec::with_capacity(ops / concurrency + 1);
                    for i in (task..ops).step_by(concurrency) {
                        let t = Instant::now();
                        op(i).await;
                        latencies.push(t.elapsed().as_nanos() as u64);
                    }
                    latencies
                })
            })
            .collect();
        let mut all = Vec::with_capacity(ops);
        for task in tasks {
            all.extend(task.await.expect("benchmark task panicked"));
        }
        all
    };
    Measurement::from_latencies(name, concurrency, latencies, started.elapsed())
}

impl Measurement {
    /// The figures of calls with these latencies (nanoseconds, any order) that took
    /// `elapsed` in all.
    pub fn from_latencies(
        name: &str,
        concurrency: usize,
        mut latencies: Vec<u64>,
        elapsed: Duration,
    ) -> Measurement {
        latencies.sort_unstable();
        let percentile = |p: f64| {
            let index =
                ((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1));
            Duration::from_nanos(latencies.get(index).copied().unwrap_or(0))
        };
        Measurement {
            name: name.to_owned(),
            concurrency,
            ops: latencies.len(),
            ops_per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: percentile(0.50),
            p99: percentile(0.99),
        }
    }
}
