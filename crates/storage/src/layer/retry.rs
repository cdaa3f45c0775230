//! Retry of temporary failures, with jittered exponential backoff.

use std::time::Duration;

use futures::future::BoxFuture;
use storage_core::{Reply, Result};

use super::{Layer, Next, Operation};

/// Repeats an operation that failed with a temporary error, up to `max_attempts` calls in
/// all, sleeping a random time between zero and an exponentially growing ceiling ("full
/// jitter") between calls.
///
/// Never repeats an operation that is not idempotent: a non-idempotent write whose
/// outcome is unknown (a timeout, a lost connection) may already have been applied, and a
/// second call would apply it twice.
#[derive(Debug, Clone, Copy)]
pub struct RetryLayer {
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl RetryLayer {
    /// At most `max_attempts` calls (1 disables retries), with backoff ceilings starting at
    /// `initial_backoff` and doubling up to `max_backoff`.
    pub fn new(max_attempts: u32, initial_backoff: Duration, max_backoff: Duration) -> Self {
        RetryLayer {
            max_attempts: max_attempts.max(1),
            initial_backoff,
            max_backoff,
        }
    }

    /// The sleep before call number `attempt + 1` (attempt counts from 1).
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.max_backoff);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }
}

impl Layer for RetryLayer {
    fn around<'s, 'f: 's>(
        &'s self,
        op: &'s Operation,
        next: Next<'s, 'f>,
    ) -> BoxFuture<'s, Result<Reply>> {
        if !op.idempotent || self.max_attempts == 1 {
            return next();
        }
        Box::pin(async move {
            let mut attempt = 1;
            loop {
                match next().await {
                    Err(err) if err.is_temporary() && attempt < self.max_attempts => {
                        ::tracing::debug!(
                            operation = op.name,
                            backend = op.backend,
                            attempt,
                            error.kind = %err.kind(),
                            "retrying after a temporary failure"
                        );
                        metrics::counter!(
                            "storage_retries_total",
                            "operation" => op.name,
                            "backend" => op.backend
                        )
                        .increment(1);
                        tokio::time::sleep(self.backoff(attempt)).await;
                        attempt += 1;
                    }
                    outcome => return outcome,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_a_doubling_ceiling() {
        let retry = RetryLayer::new(5, Duration::from_millis(10), Duration::from_millis(50));
        for _ in 0..100 {
            assert!(retry.backoff(1) <= Duration::from_millis(10));
            assert!(retry.backoff(2) <= Duration::from_millis(20));
            assert!(retry.backoff(10) <= Duration::from_millis(50));
        }
    }
}
