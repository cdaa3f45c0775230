//! Failover from configuration: a kind with a fallback runs on a failover pair, and wrong
//! values are errors naming their key.

mod failover_support;

use failover_support::TempDir;
use storage::config::BackendName;
use storage::{Kind, Storage, StorageConfig};
use storage_core::prelude::*;

fn config(journal: &TempDir, fallback_dir: &TempDir) -> StorageConfig {
    let mut config = StorageConfig {
        backend: BackendName::Memory,
        ..StorageConfig::default()
    };
    config.object.url = format!("file://{}", fallback_dir.path().display());
    config.failover.fallbacks.sessions = Some(BackendName::Object);
    config.failover.fallbacks.conversations = Some(BackendName::Object);
    config.failover.journal_dir = journal.path().to_owned();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_fallbacks_mirror_writes_and_share_one_journal() {
    let journal = TempDir::new("journal");
    let fallback_dir = TempDir::new("fallback");
    let config = config(&journal, &fallback_dir);
    let storage = Storage::from_config(config.clone()).unwrap();
    storage.initialize().await.unwrap();
    storage
        .create_session(NewSession::new("s1", "u1"))
        .await
        .unwrap();
    storage
        .append_message("s1", NewMessage::new("user", "hi"))
        .await
        .unwrap();
    // The fallback (object storage in the directory) received the mirrored writes.
    let fallback = storage::factory::build_backend(BackendName::Object, &config, None).unwrap();
    assert!(fallback.get_session("s1").await.unwrap().is_some());
    assert_eq!(
        fallback
            .get_conversation_history("s1", 5)
            .await
            .unwrap()
            .len(),
        1
    );
    // Sessions and conversations share one pair, hence one journal directory.
    assert!(journal.path().join("memory-object").exists());
    assert!(std::ptr::addr_eq(
        std::sync::Arc::as_ptr(&storage.backend_of(Kind::Sessions)),
        std::sync::Arc::as_ptr(&storage.backend_of(Kind::Conversations)),
    ));
    // Kinds without a fallback are not wrapped.
    assert_eq!(storage.backend_name_of(Kind::Artifacts), "memory");
}

#[test]
fn a_fallback_equal_to_its_primary_or_zero_thresholds_are_rejected() {
    let journal = TempDir::new("journal");
    let fallback_dir = TempDir::new("fallback");
    let mut same = config(&journal, &fallback_dir);
    same.failover.fallbacks.checkpoints = Some(BackendName::Memory);
    let err = same.validate().unwrap_err();
    assert!(
        err.message().contains("failover.fallbacks.checkpoints"),
        "{err}"
    );
    let mut zero = config(&journal, &fallback_dir);
    zero.failover.failure_threshold = 0;
    let err = zero.validate().unwrap_err();
    assert!(
        err.message().contains("failover.failure_threshold"),
        "{err}"
    );
}
