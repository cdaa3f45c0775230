//! One tracing span per operation.

use futures::future::BoxFuture;
use storage_core::{Reply, Result};
use tracing::Instrument;

use super::{Layer, Next, Operation};

/// Runs every operation inside a `storage` span naming the operation, kind, backend and
/// the id it addresses, and records failures by kind. Payloads (messages, values,
/// artifact content) and configuration never reach a span or an event.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingLayer;

impl Layer for TracingLayer {
    fn around<'s, 'f: 's>(
        &'s self,
        op: &'s Operation,
        next: Next<'s, 'f>,
    ) -> BoxFuture<'s, Result<Reply>> {
        let span = ::tracing::debug_span!(
            "storage",
            operation = op.name,
            kind = op.kind.map(|kind| kind.as_str()),
            backend = op.backend,
            id = op.subject.as_deref(),
        );
        Box::pin(
            async move {
                let result = next().await;
                if let Err(err) = &result {
                    ::tracing::debug!(
                        error.kind = %err.kind(),
                        error.temporary = err.is_temporary(),
                        "storage operation failed"
                    );
                }
                result
            }
            .instrument(span),
        )
    }
}
