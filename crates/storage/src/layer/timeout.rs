//! Deadlines per operation.

use std::time::Duration;

use futures::future::BoxFuture;
use storage_core::{Reply, Result, StorageError};

use super::{Layer, Next, Operation};

/// Fails an operation with a temporary `Timeout` error once it runs longer than its
/// deadline: one for reads, one for writes. A zero deadline means none.
///
/// A write that timed out may still have been applied; the retry layer only repeats it if
/// it is idempotent.
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    read: Duration,
    write: Duration,
}

impl TimeoutLayer {
    /// Deadlines for reads and writes.
    pub fn new(read: Duration, write: Duration) -> Self {
        TimeoutLayer { read, write }
    }
}

impl Layer for TimeoutLayer {
    fn around<'s, 'f: 's>(
        &'s self,
        op: &'s Operation,
        next: Next<'s, 'f>,
    ) -> BoxFuture<'s, Result<Reply>> {
        let deadline = if op.is_read() { self.read } else { self.write };
        if deadline.is_zero() {
            return next();
        }
        Box::pin(async move {
            match tokio::time::timeout(deadline, next()).await {
                Ok(result) => result,
                Err(_) => Err(StorageError::timeout(format!(
                    "no answer within {} ms",
                    deadline.as_millis()
                ))
                .with_backend(op.backend)
                .with_operation(op.name)),
            }
        })
    }
}
