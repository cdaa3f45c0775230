//! The failover policy, once for every operation: where reads go, how writes are mirrored
//! or journaled, and the few calls whose semantics need more (appends, streams,
//! lifecycle).

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use futures::StreamExt;
use storage_core::artifact::check_artifact_size;
use storage_core::operation::Dispatch;
use storage_core::{
    BackendMetrics, Call, HealthStatus, NewArtifact, NewMessage, Reply, Result, StorageError,
};

use super::{within, FailoverBackend, FailoverMode};

#[async_trait]
impl Dispatch for FailoverBackend {
    fn label(&self) -> &'static str {
        self.inner.primary.name()
    }

    async fn dispatch(&self, call: Call) -> Result<Reply> {
        match call {
            Call::Initialize {} => self.initialize().await.map(Reply::Initialize),
            Call::Close {} => self.close().await.map(Reply::Close),
            Call::HealthCheck {} => self.health().await.map(Reply::HealthCheck),
            Call::GetMetrics {} => self.metrics().await.map(Reply::GetMetrics),
            Call::CleanupExpiredSessions { .. } => self.on_both(&call).await,
            Call::SaveArtifactStream { .. } => self.save_stream(call).await,
            call if call.describe().is_write() => self.write(call).await,
            call => self.read(&call).await,
        }
    }
}

impl FailoverBackend {
    /// Calls the primary within the deadline of a read or of a write.
    async fn attempt(&self, call: &Call) -> Result<Reply> {
        let settings = &self.inner.settings;
        let timeout_ms = if call.describe().is_write() {
            settings.write_attempt_timeout_ms
        } else {
            settings.attempt_timeout_ms
        };
        within(timeout_ms, call, self.primary()).await
    }

    /// Appends journaled without a client id get one, so that their replay is
    /// idempotent: the fallback stores (and answers) the message with it too.
    fn with_client_ids(call: Call) -> Call {
        let identify = |mut message: NewMessage| {
            if message.client_id.is_none() {
                message.client_id = Some(format!("failover-{}", storage_core::new_checkpoint_id()));
            }
            message
        };
        match call {
            Call::AppendMessage {
                session_id,
                message,
            } => Call::AppendMessage {
                session_id,
                message: identify(message),
            },
            Call::AppendMessages {
                session_id,
                messages,
            } => Call::AppendMessages {
                session_id,
                messages: messages.into_iter().map(identify).collect(),
            },
            other => other,
        }
    }

    /// A read: on the fallback while the breaker is open, else on the primary with the
    /// fallback answering a temporary failure (a hang past the deadline included).
    async fn read(&self, call: &Call) -> Result<Reply> {
        if self.is_open() {
            return call.apply(self.fallback()).await;
        }
        match self.attempt(call).await {
            Ok(reply) => {
                self.record_success();
                Ok(reply)
            }
            Err(err) if err.is_temporary() => {
                self.record_failure();
                call.apply(self.fallback()).await
            }
            Err(err) => Err(err),
        }
    }

    /// A write under the breaker and the mode; the call itself is what the journal keeps.
    async fn write(&self, call: Call) -> Result<Reply> {
        if !self.is_open() {
            match self.attempt(&call).await {
                Ok(reply) => {
                    self.record_success();
                    if let Err(err) = call.apply(self.fallback()).await {
                        tracing::debug!(error = %err, "failover: mirroring to the fallback failed");
                    }
                    return Ok(reply);
                }
                Err(err) if err.is_temporary() => {
                    self.record_failure();
                    // A failed attempt may still have been applied (a timeout, a connection
                    // lost mid-call). Journaling a write that is not idempotent would apply
                    // it twice on replay, so its caller gets the failure, as without
                    // failover; the writes after it go to the fallback once the breaker
                    // is open.
                    if self.inner.settings.mode == FailoverMode::DualWrite
                        || !call.describe().idempotent
                    {
                        return Err(err);
                    }
                }
                Err(err) => return Err(err),
            }
        } else if self.inner.settings.mode == FailoverMode::DualWrite {
            return Err(primary_down());
        }
        // The outage path: the fallback answers, the journal keeps the write for the
        // primary. The breaker opens first so that every later write queues behind this one.
        let call = Self::with_client_ids(call);
        // Encoded first: a call the journal cannot keep changes nothing anywhere.
        let line = serde_json::to_vec(&call).map_err(|err| {
            StorageError::serialization(format!(
                "failover journal: cannot encode {}: {err}",
                call.name()
            ))
        })?;
        let _in_flight = self.inner.gate.read().await;
        self.trip();
        let reply = call.apply(self.fallback()).await?;
        self.journal(line).await?;
        Ok(reply)
    }

    /// Appends an encoded call to the durable journal before the write is acknowledged.
    async fn journal(&self, line: Vec<u8>) -> Result<()> {
        let journal = self.inner.journal.clone();
        tokio::task::spawn_blocking(move || journal.append_line(line))
            .await
            .map_err(|err| StorageError::backend(format!("failover journal task: {err}")))??;
        self.inner.journaled.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// A streamed save. With the breaker closed the primary takes the stream as it comes
    /// and the fallback gets a copy streamed back from the primary, so memory stays
    /// bounded at any size. While the primary is down the content is collected, up to
    /// `max_journaled_stream_bytes`, and saved and journaled like `save_artifact`.
    async fn save_stream(&self, call: Call) -> Result<Reply> {
        let Call::SaveArtifactStream {
            scope,
            name,
            content_type,
            metadata,
            content,
            max_size,
        } = &call
        else {
            return Err(StorageError::backend("save_stream takes a streamed save"));
        };
        if !self.is_open() {
            // No attempt deadline: an upload takes as long as its content. A failure once
            // the stream is consumed cannot be sent anywhere else; it is the caller's.
            return match call.apply(self.primary()).await {
                Ok(Reply::SaveArtifactStream(meta)) => {
                    self.record_success();
                    if let Err(err) = self.mirror_artifact(&meta).await {
                        tracing::debug!(error = %err, "failover: mirroring an artifact stream failed");
                    }
                    Ok(Reply::SaveArtifactStream(meta))
                }
                Ok(other) => Err(other.mismatch("save_artifact_stream")),
                Err(err) => {
                    if err.is_temporary() {
                        self.record_failure();
                    }
                    Err(err)
                }
            };
        }
        if self.inner.settings.mode == FailoverMode::DualWrite {
            return Err(primary_down());
        }
        let bound = self.inner.settings.max_journaled_stream_bytes;
        let mut stream = content.take().ok_or_else(|| {
            StorageError::invalid_input("the artifact stream was already consumed")
        })?;
        let mut data = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            let size = (data.len() + chunk.len()) as u64;
            check_artifact_size(size, *max_size)?;
            if size > bound {
                return Err(StorageError::connection(format!(
                    "the primary is down and this streamed artifact is larger than \
                     failover.max_journaled_stream_bytes ({bound} bytes), so it cannot be \
                     journaled; nothing was stored: save it again once the primary is back"
                ))
                .with_backend(self.primary().name())
                .with_operation("save_artifact_stream"));
            }
            data.extend_from_slice(&chunk);
        }
        let save = Call::SaveArtifact {
            scope: scope.clone(),
            name: name.clone(),
            artifact: NewArtifact {
                content_type: content_type.clone(),
                data: data.into(),
                metadata: metadata.clone(),
            },
        };
        match self.write(save).await? {
            Reply::SaveArtifact(meta) => Ok(Reply::SaveArtifactStream(meta)),
            other => Err(other.mismatch("save_artifact_stream")),
        }
    }

    /// Streams the version the primary just saved into the fallback.
    async fn mirror_artifact(&self, meta: &storage_core::ArtifactMeta) -> Result<()> {
        let opened = self
            .primary()
            .open_artifact_stream(&meta.scope, &meta.name, Some(meta.version))
            .await?;
        let Some((stored, content)) = opened else {
            return Ok(());
        };
        self.fallback()
            .save_artifact_stream(
                &stored.scope,
                &stored.name,
                &stored.content_type,
                stored.metadata.clone(),
                content,
                None,
            )
            .await
            .map(drop)
    }

    /// Cleanup: on the fallback alone while the breaker is open, else on the primary and
    /// then the fallback (whose answer does not count). No attempt deadline: cleanup takes
    /// as long as what it removes.
    async fn on_both(&self, call: &Call) -> Result<Reply> {
        if self.is_open() {
            return call.apply(self.fallback()).await;
        }
        let reply = call.apply(self.primary()).await?;
        let _ = call.apply(self.fallback()).await;
        Ok(reply)
    }

    /// Initializes the fallback, then the primary; a primary that is down (a temporary
    /// error) opens the breaker instead of failing. Starts the probe when the
    /// breaker is open (for example with a journal left by an earlier process).
    async fn initialize(&self) -> Result<()> {
        self.fallback().initialize().await?;
        // No deadline: migrations or bucket checks may take their time. A primary that is
        // down fails fast (a refused connection, its own connect timeout).
        match self.primary().initialize().await {
            Ok(()) => {}
            Err(err) if err.is_temporary() => self.trip(),
            Err(err) => return Err(err),
        }
        if self.is_open() {
            self.ensure_prober();
        }
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        if let Some(prober) = self
            .inner
            .prober
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            prober.abort();
        }
        let (primary, fallback) = tokio::join!(self.primary().close(), self.fallback().close());
        primary.and(fallback)
    }

    /// The primary's health (the fallback's when the primary is down), with the breaker's
    /// state.
    async fn health(&self) -> Result<HealthStatus> {
        let status = self.status();
        let mut health = match self.attempt(&Call::HealthCheck {}).await {
            Ok(Reply::HealthCheck(health)) => health,
            Ok(other) => return Err(other.mismatch("health_check")),
            Err(err) if err.is_temporary() => {
                let mut health = self.fallback().health_check().await?;
                health
                    .details
                    .insert("primary_error".into(), err.to_string());
                health
            }
            Err(err) => return Err(err),
        };
        health
            .details
            .insert("failover_open".into(), status.open.to_string());
        health.details.insert(
            "failover_journal_pending".into(),
            status.journal_pending.to_string(),
        );
        Ok(health)
    }

    /// The serving backend's figures with the breaker's and the journal's.
    async fn metrics(&self) -> Result<BackendMetrics> {
        let status = self.status();
        let mut metrics = match self.read(&Call::GetMetrics {}).await? {
            Reply::GetMetrics(metrics) => metrics,
            other => return Err(other.mismatch("get_metrics")),
        };
        metrics
            .counters
            .insert("failover_journaled".into(), status.journaled);
        metrics
            .counters
            .insert("failover_replayed".into(), status.replayed);
        metrics
            .counters
            .insert("failover_refused".into(), status.refused);
        metrics.gauges.insert(
            "failover_journal_pending".into(),
            status.journal_pending as f64,
        );
        metrics
            .gauges
            .insert("failover_open".into(), f64::from(u8::from(status.open)));
        Ok(metrics)
    }
}

fn primary_down() -> StorageError {
    StorageError::connection(
        "the primary is down and failover.mode is dual_write: writes wait for it",
    )
    .with_temporary(true)
}
