//! Counts, errors and latency percentiles per operation and backend.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use dashmap::DashMap;
use futures::future::BoxFuture;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use storage_core::Result;

use super::{Layer, Next, Operation, Outcome};

/// Figures of one (operation, backend) pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationStats {
    /// The operation, e.g. `get_session`.
    pub operation: String,
    /// The backend that served it.
    pub backend: String,
    /// Calls completed.
    pub count: u64,
    /// Calls that returned an error.
    pub errors: u64,
    /// Median latency, in milliseconds.
    pub p50_ms: f64,
    /// 95th percentile latency, in milliseconds.
    pub p95_ms: f64,
    /// 99th percentile latency, in milliseconds.
    pub p99_ms: f64,
}

#[derive(Debug)]
struct Series {
    count: AtomicU64,
    errors: AtomicU64,
    /// Latencies in microseconds, 3 significant digits.
    latency: Mutex<Histogram<u64>>,
}

impl Series {
    fn new() -> Self {
        Series {
            count: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: Mutex::new(Histogram::new(3).expect("3 significant digits is valid")),
        }
    }
}

/// Records every operation: in the facade's own figures (read through
/// [`MetricsLayer::snapshot`] and `get_metrics`), and through the [`metrics`] crate's
/// global recorder (`storage_operations_total`, `storage_operation_errors_total`,
/// `storage_operation_duration_seconds`, labelled by `operation` and `backend`), which an
/// application exports with the exporter of its choice.
#[derive(Debug, Default)]
pub struct MetricsLayer {
    series: DashMap<(&'static str, &'static str), Series>,
}

impl MetricsLayer {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    fn record(&self, op: &Operation, started: Instant, error: Option<storage_core::ErrorKind>) {
        let elapsed = started.elapsed();
        let series = self
            .series
            .entry((op.name, op.backend))
            .or_insert_with(Series::new);
        series.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        if let Ok(mut histogram) = series.latency.lock() {
            histogram.saturating_record(micros.max(1));
        }
        let labels = [("operation", op.name), ("backend", op.backend)];
        metrics::counter!("storage_operations_total", &labels).increment(1);
        metrics::histogram!("storage_operation_duration_seconds", &labels)
            .record(elapsed.as_secs_f64());
        if let Some(kind) = error {
            series.errors.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(
                "storage_operation_errors_total",
                "operation" => op.name,
                "backend" => op.backend,
                "kind" => kind.as_str()
            )
            .increment(1);
        }
    }

    /// Every (operation, backend) pair seen so far, sorted.
    pub fn snapshot(&self) -> Vec<OperationStats> {
        let mut stats: Vec<OperationStats> = self
            .series
            .iter()
            .map(|entry| {
                let (operation, backend) = *entry.key();
                let series = entry.value();
                let quantile = |q: f64| {
                    series
                        .latency
                        .lock()
                        .map(|h| h.value_at_quantile(q) as f64 / 1e3)
                        .unwrap_or(f64::NAN)
                };
                OperationStats {
                    operation: operation.to_owned(),
                    backend: backend.to_owned(),
                    count: series.count.load(Ordering::Relaxed),
                    errors: series.errors.load(Ordering::Relaxed),
                    p50_ms: quantile(0.50),
                    p95_ms: quantile(0.95),
                    p99_ms: quantile(0.99),
                }
            })
            .collect();
        stats.sort_by(|a, b| (&a.operation, &a.backend).cmp(&(&b.operation, &b.backend)));
        stats
    }
}

impl Layer for MetricsLayer {
    fn around<'s, 'f: 's, T: Outcome>(
        &'s self,
        op: &'s Operation,
        next: Next<'s, 'f, T>,
    ) -> BoxFuture<'s, Result<T>> {
        Box::pin(async move {
            let started = Instant::now();
            let result = next().await;
            self.record(op, started, result.as_ref().err().map(|err| err.kind()));
            result
        })
    }
}
