//! The conformance suite on the facade: over one memory backend, over a routed mix of
//! two stores (sessions and conversation in one, task context, checkpoints and artifacts in
//! another), and with group commit on.

use std::sync::{Arc, OnceLock};

use storage::config::GroupCommitSettings;
use storage::{Kind, Storage};
use storage_core::StorageBackend;
use storage_memory::MemoryStore;

fn store(slot: &'static OnceLock<MemoryStore>) -> &'static MemoryStore {
    slot.get_or_init(MemoryStore::new)
}

static MAIN: OnceLock<MemoryStore> = OnceLock::new();
static OTHER: OnceLock<MemoryStore> = OnceLock::new();

mod single {
    use super::*;

    async fn backend(namespace: String) -> Arc<dyn StorageBackend> {
        let memory = Arc::new(store(&MAIN).backend(&namespace).unwrap());
        Arc::new(Storage::builder(memory).build())
    }

    storage_testkit::conformance_tests!(backend);
}

mod routed {
    use super::*;

    async fn backend(namespace: String) -> Arc<dyn StorageBackend> {
        let sessions = Arc::new(store(&MAIN).backend(&namespace).unwrap());
        let rest: Arc<dyn StorageBackend> = Arc::new(store(&OTHER).backend(&namespace).unwrap());
        let storage = Storage::builder(sessions)
            .route(Kind::TaskContext, rest.clone())
            .route(Kind::Checkpoints, rest.clone())
            .route(Kind::Artifacts, rest)
            .build();
        Arc::new(storage)
    }

    storage_testkit::conformance_tests!(backend);
}

mod group_commit {
    use super::*;

    async fn backend(namespace: String) -> Arc<dyn StorageBackend> {
        let memory = Arc::new(store(&MAIN).backend(&namespace).unwrap());
        let storage = Storage::builder(memory)
            .group_commit(GroupCommitSettings {
                enabled: true,
                max_batch: 64,
            })
            .build();
        Arc::new(storage)
    }

    storage_testkit::conformance_tests!(backend);
}

/// The suite over a `FailoverBackend` of two memory backends (the fallback in a store of
/// its own), with the breaker closed: every operation goes through failover's one policy,
/// so a call it forgot or changed fails here.
mod failover {
    use super::*;
    use storage::failover::{FailoverBackend, FailoverMode, FailoverSettings};

    static FALLBACK: OnceLock<MemoryStore> = OnceLock::new();

    fn over_memory(namespace: &str, mode: FailoverMode) -> Arc<dyn StorageBackend> {
        let primary = Arc::new(store(&MAIN).backend(namespace).unwrap());
        let fallback = Arc::new(store(&FALLBACK).backend(namespace).unwrap());
        let journal_dir = std::env::temp_dir().join(format!(
            "storage-conformance-failover-{}",
            storage_core::new_checkpoint_id()
        ));
        let settings = FailoverSettings {
            mode,
            journal_dir,
            ..FailoverSettings::default()
        };
        Arc::new(FailoverBackend::new(primary, fallback, settings).unwrap())
    }

    mod dual_write {
        use super::*;

        async fn backend(namespace: String) -> Arc<dyn StorageBackend> {
            over_memory(&namespace, FailoverMode::DualWrite)
        }

        storage_testkit::conformance_tests!(backend);
    }

    mod journaled {
        use super::*;

        async fn backend(namespace: String) -> Arc<dyn StorageBackend> {
            over_memory(&namespace, FailoverMode::Failover)
        }

        storage_testkit::conformance_tests!(backend);
    }
}
