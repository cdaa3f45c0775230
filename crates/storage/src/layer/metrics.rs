//! Counts, errors and latency percentiles per operation and backend.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use futures::future::BoxFuture;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use storage_core::{Reply, Result};

use super::{Layer, Next, Operation};

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

/// The longest latency the histograms resolve: a day, in microseconds. Anything longer is
/// recorded as a day.
const MAX_LATENCY_MICROS: u64 = 86_400_000_000;

#[derive(Debug)]
struct Series {
    count: AtomicU64,
    errors: AtomicU64,
    /// Latencies in microseconds, 1 µs to a day, 3 significant digits.
    latency: Mutex<Histogram<u64>>,
}

impl Series {
    fn new() -> Self {
        Series {
            count: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            // Explicit bounds: `Histogram::new` starts at a highest value of 2 and
            // `saturating_record` clamps rather than resizes, which once reported every
            // latency above ~2 ms as 0.002 ms.
            latency: Mutex::new(
                Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3)
                    .expect("1 µs to a day at 3 significant digits is a valid histogram"),
            ),
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

    fn record(&self, op: &Operation, elapsed: Duration, error: Option<storage_core::ErrorKind>) {
        let series = self
            .series
            .entry((op.name, op.backend))
            .or_insert_with(Series::new);
        series.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        if let Ok(mut histogram) = series.latency.lock() {
            histogram.saturating_record(micros.clamp(1, MAX_LATENCY_MICROS));
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
    fn around<'s, 'f: 's>(
        &'s self,
        op: &'s Operation,
        next: Next<'s, 'f>,
    ) -> BoxFuture<'s, Result<Reply>> {
        Box::pin(async move {
            let started = Instant::now();
            let result = next().await;
            self.record(
                op,
                started.elapsed(),
                result.as_ref().err().map(|err| err.kind()),
            );
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{Access, CacheEffect};

    fn operation(name: &'static str) -> Operation {
        Operation {
            name,
            kind: None,
            backend: "object",
            access: Access::Write,
            idempotent: false,
            subject: None,
            cache: CacheEffect::None,
        }
    }

    fn within(read_ms: f64, real_ms: f64) -> bool {
        (read_ms - real_ms).abs() <= real_ms * 1e-3
    }

    #[test]
    fn latencies_of_any_size_read_back_within_the_precision() {
        let layer = MetricsLayer::new();
        let op = operation("append_message");
        for _ in 0..10 {
            layer.record(&op, Duration::from_millis(5), None);
        }
        for _ in 0..10 {
            layer.record(&op, Duration::from_secs(2), None);
        }
        let stats = layer.snapshot().pop().unwrap();
        assert_eq!(stats.count, 20);
        // Half the calls took 5 ms, half 2 s: the median is 5 ms, p95 and p99 are 2 s.
        assert!(within(stats.p50_ms, 5.0), "p50 read {} ms", stats.p50_ms);
        assert!(
            within(stats.p95_ms, 2_000.0),
            "p95 read {} ms",
            stats.p95_ms
        );
        assert!(
            within(stats.p99_ms, 2_000.0),
            "p99 read {} ms",
            stats.p99_ms
        );
    }

    #[test]
    fn one_microsecond_and_ten_minutes_both_fit() {
        let layer = MetricsLayer::new();
        let op = operation("get_session");
        layer.record(&op, Duration::from_micros(1), None);
        layer.record(
            &op,
            Duration::from_secs(600),
            Some(storage_core::ErrorKind::Timeout),
        );
        let stats = layer.snapshot().pop().unwrap();
        assert_eq!(stats.errors, 1);
        assert!(within(stats.p50_ms, 0.001), "p50 read {} ms", stats.p50_ms);
        assert!(
            within(stats.p99_ms, 600_000.0),
            "p99 read {} ms",
            stats.p99_ms
        );
    }
}
