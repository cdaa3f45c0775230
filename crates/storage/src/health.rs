//! Health of every configured backend, and the deep check that writes, reads back and
//! deletes one record of each kind.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage_core::ext::TaskContextStoreExt;

use serde::{Deserialize, Serialize};
use serde_json::json;
use storage_core::{
    Checkpoint, ExpectedVersion, HealthStatus, NewArtifact, NewMessage, NewSession, Result,
    StorageBackend, StorageError,
};

use crate::config::StorageConfig;
use crate::routes::{route_label, Routes};
use crate::Kind;

/// How long one backend's check may take.
const CHECK_DEADLINE: Duration = Duration::from_secs(10);

/// One backend's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendHealth {
    /// The backend's name.
    pub backend: String,
    /// The kinds it serves.
    pub kinds: Vec<Kind>,
    /// Whether it answered correctly.
    pub healthy: bool,
    /// Round trip of the check, in milliseconds.
    pub latency_ms: f64,
    /// What the backend reports about itself.
    pub details: BTreeMap<String, String>,
    /// Why it is unhealthy.
    pub error: Option<String>,
}

/// The outcome of the deep check of one kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeepCheck {
    /// The kind checked.
    pub kind: Kind,
    /// The backend that serves it.
    pub backend: String,
    /// Whether the record was written, read back equal and deleted.
    pub ok: bool,
    /// Time for the three steps, in milliseconds.
    pub latency_ms: f64,
    /// What went wrong, if anything.
    pub problem: Option<String>,
}

/// Health of every backend of a [`Storage`](crate::Storage).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    /// Whether every backend (and, in deep mode, every kind) is healthy.
    pub healthy: bool,
    /// One entry per backend.
    pub backends: Vec<BackendHealth>,
    /// One entry per kind, in deep mode.
    pub deep: Vec<DeepCheck>,
    /// Where the deep check wrote: a scratch namespace, or the live one with unique ids
    /// when the facade was not built from configuration.
    pub deep_namespace: Option<String>,
}

impl HealthReport {
    /// The report as one [`HealthStatus`] named `name`.
    pub fn summary(&self, name: &str) -> HealthStatus {
        let mut details = BTreeMap::new();
        for backend in &self.backends {
            let label = route_label(&backend.backend, &backend.kinds);
            details.insert(format!("{label}.healthy"), backend.healthy.to_string());
            details.insert(
                format!("{label}.latency_ms"),
                format!("{:.3}", backend.latency_ms),
            );
            for (key, value) in &backend.details {
                details.insert(format!("{label}.{key}"), value.clone());
            }
            if let Some(error) = &backend.error {
                details.insert(format!("{label}.error"), error.clone());
            }
        }
        HealthStatus {
            backend: name.to_owned(),
            healthy: self.healthy,
            latency_ms: self
                .backends
                .iter()
                .map(|b| b.latency_ms)
                .fold(0.0, f64::max),
            details,
        }
    }
}

async fn timed<T>(work: impl Future<Output = Result<T>>) -> (Result<T>, f64) {
    let started = Instant::now();
    let result = match tokio::time::timeout(CHECK_DEADLINE, work).await {
        Ok(result) => result,
        Err(_) => Err(StorageError::timeout(format!(
            "no answer within {} s",
            CHECK_DEADLINE.as_secs()
        ))),
    };
    (result, started.elapsed().as_secs_f64() * 1e3)
}

pub(crate) async fn check(
    routes: &Routes,
    config: Option<&StorageConfig>,
    deep: bool,
) -> HealthReport {
    let mut backends = Vec::new();
    for (backend, kinds) in &routes.distinct {
        let (result, latency_ms) = timed(backend.health_check()).await;
        backends.push(match result {
            Ok(status) => BackendHealth {
                backend: backend.name().to_owned(),
                kinds: kinds.clone(),
                healthy: status.healthy,
                latency_ms: status.latency_ms,
                details: status.details,
                error: None,
            },
            Err(err) => BackendHealth {
                backend: backend.name().to_owned(),
                kinds: kinds.clone(),
                healthy: false,
                latency_ms,
                details: BTreeMap::new(),
                error: Some(err.to_string()),
            },
        });
    }
    let (deep, deep_namespace) = if deep {
        deep_check(routes, config).await
    } else {
        (Vec::new(), None)
    };
    let healthy = backends.iter().all(|b| b.healthy) && deep.iter().all(|c| c.ok);
    HealthReport {
        healthy,
        backends,
        deep,
        deep_namespace,
    }
}

/// The backends the deep check writes to: scratch copies in the health namespace when the
/// facade was built from configuration, else the live ones.
async fn scratch_routes(
    live: &Routes,
    config: Option<&StorageConfig>,
) -> Result<(Vec<(Kind, Arc<dyn StorageBackend>)>, Option<String>)> {
    let Some(config) = config else {
        let routes = Kind::ALL
            .iter()
            .map(|&kind| (kind, live.of(kind).clone()))
            .collect();
        return Ok((routes, None));
    };
    let namespace = config.health.namespace.clone();
    let scratch = Routes::new(crate::factory::build_routes(config, Some(&namespace))?);
    for (backend, _) in &scratch.distinct {
        backend.initialize().await?;
    }
    let routes = Kind::ALL
        .iter()
        .map(|&kind| (kind, scratch.of(kind).clone()))
        .collect();
    Ok((routes, Some(namespace)))
}

async fn deep_check(
    live: &Routes,
    config: Option<&StorageConfig>,
) -> (Vec<DeepCheck>, Option<String>) {
    let (routes, namespace) = match scratch_routes(live, config).await {
        Ok(routes) => routes,
        Err(err) => {
            let checks = Kind::ALL
                .iter()
                .map(|&kind| DeepCheck {
                    kind,
                    backend: live.of(kind).name().to_owned(),
                    ok: false,
                    latency_ms: 0.0,
                    problem: Some(format!("cannot open the scratch namespace: {err}")),
                })
                .collect();
            return (checks, None);
        }
    };
    let id = format!("health-{}", storage_core::new_checkpoint_id());
    let mut checks = Vec::new();
    for (kind, backend) in &routes {
        let (result, latency_ms) = timed(round_trip(&**backend, *kind, &id)).await;
        checks.push(DeepCheck {
            kind: *kind,
            backend: backend.name().to_owned(),
            ok: result.is_ok(),
            latency_ms,
            problem: result.err().map(|err| err.to_string()),
        });
    }
    if namespace.is_some() {
        let mut closed: Vec<&Arc<dyn StorageBackend>> = Vec::new();
        for (_, backend) in &routes {
            if !closed
                .iter()
                .any(|b| std::ptr::addr_eq(Arc::as_ptr(b), Arc::as_ptr(backend)))
            {
                let _ = backend.close().await;
                closed.push(backend);
            }
        }
    }
    (checks, namespace)
}

fn mismatch(what: &str) -> StorageError {
    StorageError::backend(format!("read back {what} differs from what was written"))
}

/// Writes one record of `kind`, reads it back, compares and deletes it, leaving nothing
/// behind: the conversation and task context probes belong to a session record created
/// for them, and deleting that session removes what clearing alone leaves (the sequence
/// counter of a conversation, the client-id index), on every backend.
async fn round_trip(backend: &dyn StorageBackend, kind: Kind, id: &str) -> Result<()> {
    if matches!(kind, Kind::Conversations | Kind::TaskContext) {
        backend
            .create_session(NewSession::new(id, "storage-health"))
            .await?;
        let probed = probe(backend, kind, id).await;
        let removed = backend.delete_session(id).await;
        probed?;
        removed?;
        return Ok(());
    }
    probe(backend, kind, id).await
}

/// One kind's write, read back, comparison and removal.
async fn probe(backend: &dyn StorageBackend, kind: Kind, id: &str) -> Result<()> {
    match kind {
        Kind::Sessions => {
            let created = backend
                .create_session(NewSession::new(id, "storage-health"))
                .await?;
            let read = backend.get_session(id).await?;
            backend.delete_session(id).await?;
            if read.as_ref() != Some(&created) {
                return Err(mismatch("session"));
            }
        }
        Kind::Conversations => {
            let stored = backend
                .append_message(id, NewMessage::new("system", json!({"probe": id})))
                .await?;
            let read = backend.get_conversation_history(id, 1).await?;
            backend.clear_conversation(id).await?;
            if read != [stored] {
                return Err(mismatch("message"));
            }
        }
        Kind::Checkpoints => {
            let mut checkpoint = Checkpoint::new(id, "", storage_core::new_checkpoint_id());
            checkpoint
                .channel_versions
                .insert("probe".into(), "1".into());
            checkpoint
                .channel_values
                .insert("probe".into(), json!(id).into());
            let versions = checkpoint.channel_versions.clone();
            backend.put_checkpoint(checkpoint.clone(), versions).await?;
            let read = backend.get_checkpoint(id, "", None).await?;
            backend.delete_thread(id).await?;
            let same = read.is_some_and(|tuple| {
                tuple.checkpoint.id == checkpoint.id
                    && tuple.checkpoint.channel_values == checkpoint.channel_values
            });
            if !same {
                return Err(mismatch("checkpoint"));
            }
        }
        Kind::TaskContext => {
            let stored = backend
                .store_task_context(id, json!({"probe": id}), ExpectedVersion::Absent)
                .await?;
            let read = backend.get_task_context(id).await?;
            backend.delete_task_context(id).await?;
            if read.as_ref() != Some(&stored) {
                return Err(mismatch("task context"));
            }
        }
        Kind::Artifacts => {
            let data = format!("probe {id}").into_bytes();
            backend
                .save_artifact(
                    id,
                    "probe.txt",
                    NewArtifact::new("text/plain", data.clone()),
                )
                .await?;
            let read = backend.get_artifact(id, "probe.txt", None).await?;
            backend.clear_artifacts(id).await?;
            if read.map(|artifact| artifact.data.to_vec()) != Some(data) {
                return Err(mismatch("artifact"));
            }
        }
    }
    Ok(())
}
