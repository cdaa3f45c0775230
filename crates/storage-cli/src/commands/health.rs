//! `storectl health`: a row per backend, also when a backend cannot be reached.

use std::sync::Arc;
use std::time::{Duration, Instant};

use storage::health::{BackendHealth, HealthReport};
use storage::{Kind, Storage, StorageConfig};
use storage_core::StorageBackend;

use crate::failure::{Failure, Outcome};
use crate::output::{Output, Table};

/// The same bound as the facade's own check of one backend.
const CHECK_DEADLINE: Duration = Duration::from_secs(10);

pub async fn run(config: StorageConfig, deep: bool, out: &Output) -> Outcome {
    let storage = Storage::from_config(config)?;
    let report = match storage.initialize().await {
        Ok(()) => storage.health(deep).await,
        // One backend failed to start: still give every backend its row, the failed one
        // with the error it failed with, instead of a single error line.
        Err(err) => {
            tracing::debug!(error = %err, "initialize failed; checking backends one by one");
            per_backend(&storage, &err).await
        }
    };
    let _ = storage.close().await;
    let mut table = Table::new(["backend", "kinds", "healthy", "latency ms", "details"]);
    for backend in &report.backends {
        let kinds: Vec<&str> = backend.kinds.iter().map(|k| k.as_str()).collect();
        let mut details: Vec<String> = backend
            .details
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        details.extend(backend.error.clone().map(|e| format!("error: {e}")));
        table.row([
            backend.backend.clone(),
            kinds.join(","),
            backend.healthy.to_string(),
            format!("{:.2}", backend.latency_ms),
            details.join(" "),
        ]);
    }
    for check in &report.deep {
        table.row([
            check.backend.clone(),
            format!("deep:{}", check.kind),
            check.ok.to_string(),
            format!("{:.2}", check.latency_ms),
            check.problem.clone().unwrap_or_default(),
        ]);
    }
    out.emit(&report, &table);
    if report.healthy {
        return Ok(());
    }
    let down: Vec<String> = report
        .backends
        .iter()
        .filter(|b| !b.healthy)
        .map(|b| {
            format!(
                "{}: {}",
                b.backend,
                b.error.as_deref().unwrap_or("unhealthy")
            )
        })
        .collect();
    if down.is_empty() {
        Err(Failure::Failed(
            "storage is unhealthy: a deep check failed".into(),
        ))
    } else {
        Err(Failure::Unavailable(format!(
            "storage is unhealthy: {}",
            down.join("; ")
        )))
    }
}

/// Every distinct backend with the kinds it serves, in the order of `Kind::ALL`.
fn distinct(storage: &Storage) -> Vec<(Arc<dyn StorageBackend>, &'static str, Vec<Kind>)> {
    let mut out: Vec<(Arc<dyn StorageBackend>, &'static str, Vec<Kind>)> = Vec::new();
    for kind in Kind::ALL {
        let backend = storage.backend_of(kind);
        match out.iter_mut().find(|(b, _, _)| Arc::ptr_eq(b, &backend)) {
            Some((_, _, kinds)) => kinds.push(kind),
            None => out.push((backend, storage.backend_name_of(kind), vec![kind])),
        }
    }
    out
}

/// The report when `initialize` failed: the backend the error names gets that error
/// (it was already retried; asking again would only double the wait), every other one is
/// initialized and checked on its own within [`CHECK_DEADLINE`].
async fn per_backend(storage: &Storage, init_error: &storage_core::StorageError) -> HealthReport {
    let mut backends = Vec::new();
    for (backend, name, kinds) in distinct(storage) {
        let started = Instant::now();
        let result = if name == init_error.backend_name() {
            Err(init_error.to_string())
        } else {
            let check = async {
                backend.initialize().await?;
                backend.health_check().await
            };
            match tokio::time::timeout(CHECK_DEADLINE, check).await {
                Ok(Ok(status)) => Ok(status),
                Ok(Err(err)) => Err(err.to_string()),
                Err(_) => Err(format!("no answer within {} s", CHECK_DEADLINE.as_secs())),
            }
        };
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        backends.push(match result {
            Ok(status) => BackendHealth {
                backend: name.to_owned(),
                kinds,
                healthy: status.healthy,
                latency_ms,
                details: status.details,
                error: None,
            },
            Err(error) => BackendHealth {
                backend: name.to_owned(),
                kinds,
                healthy: false,
                latency_ms,
                details: Default::default(),
                error: Some(error),
            },
        });
    }
    HealthReport {
        healthy: false,
        backends,
        deep: Vec::new(),
        deep_namespace: None,
    }
}
