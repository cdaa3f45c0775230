//! What a retention sweep removing 10 records costs in requests, at two series sizes, for
//! every kind, on a store that lists in key order (as S3 does) and on local files: the
//! count of objects read and keys listed must follow what is removed, not the series.

use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::ObjectStore;
use serde_json::json;
use storage_core::{
    ArtifactStore, Checkpoint, CheckpointStore, ContextScope, ConversationStore, ExpectedVersion,
    NewArtifact, NewMessage, Retention, TaskContextStore,
};

use super::counting_store::{Cost, Counting};
use super::ObjectBackend;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Messages,
    ContextVersions,
    Checkpoints,
    ArtifactVersions,
}

/// Records each round adds, and each sweep removes.
const ADDED: usize = 10;

impl Kind {
    /// Adds `count` records to the series, whose records so far number `stored`, as the
    /// retention bench does.
    async fn add(self, b: &ObjectBackend, stored: usize, count: usize) {
        match self {
            Kind::Messages => {
                for start in (0..count).step_by(1_000) {
                    // With client ids: each is an object under the conversation too.
                    let batch = (start..count.min(start + 1_000))
                        .map(|i| {
                            NewMessage::new("user", json!({ "i": i }))
                                .with_client_id(format!("c{}", stored + i))
                        })
                        .collect();
                    b.append_messages("s", batch).await.unwrap();
                }
            }
            Kind::ContextVersions => {
                for step in 0..count {
                    b.store_context(
                        ContextScope::user("u"),
                        json!({ "step": step }),
                        ExpectedVersion::Any,
                        1_000_000,
                    )
                    .await
                    .unwrap();
                }
            }
            Kind::Checkpoints => {
                for n in stored..stored + count {
                    let mut cp = Checkpoint::new("t", "", format!("cp-{n:08}"));
                    cp.parent_id = n.checked_sub(1).map(|p| format!("cp-{p:08}"));
                    cp.channel_versions.insert("step".into(), format!("{n:08}"));
                    cp.channel_values.insert("step".into(), json!(n).into());
                    let mut new = storage_core::ChannelVersions::new();
                    new.insert("step".into(), format!("{n:08}"));
                    b.put_checkpoint(cp, new).await.unwrap();
                }
            }
            Kind::ArtifactVersions => {
                for n in 0..count {
                    let content = NewArtifact::new("text/plain", format!("version {n}"));
                    b.save_artifact("scope", "a", content).await.unwrap();
                }
            }
        }
    }

    async fn sweep(self, b: &ObjectBackend, keep_last: usize) -> u64 {
        let retention = Retention {
            created_before: None,
            keep_last: Some(keep_last as u64),
        };
        match self {
            Kind::Messages => b.retain_messages(retention).await,
            Kind::ContextVersions => b.retain_context_versions(retention).await,
            Kind::Checkpoints => b.retain_checkpoints(retention).await,
            Kind::ArtifactVersions => b.retain_artifact_versions(retention).await,
        }
        .unwrap()
    }
}

/// The requests of the third sweep removing [`ADDED`] from a series of `size` kept.
async fn sweep_cost(kind: Kind, size: usize, files: bool) -> Cost {
    let dir = tempfile::tempdir().unwrap();
    let inner: Arc<dyn ObjectStore> = if files {
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap())
    } else {
        Arc::new(InMemory::new())
    };
    let store = Arc::new(Counting::new(inner));
    let b = ObjectBackend::over_as(store.clone(), "cost", files);
    kind.add(&b, 0, size).await;
    let mut stored = size;
    let mut cost = None;
    for _ in 0..3 {
        kind.add(&b, stored, ADDED).await;
        stored += ADDED;
        store.take();
        assert_eq!(kind.sweep(&b, size).await, ADDED as u64, "{kind:?}");
        cost = Some(store.take());
    }
    cost.unwrap()
}

/// Series sizes compared.
const SMALL: usize = 100;
const LARGE: usize = 1_000;

/// Asserts that a sweep of `kind` removing [`ADDED`] costs the same requests and reads
/// the same bytes at [`SMALL`] and [`LARGE`] records kept; of keys listed, those the count
/// of a `keep_last` needs (`counted`: the series' keys above what was removed) may grow.
async fn assert_flat(kind: Kind, files: bool, counted: bool) {
    let small = sweep_cost(kind, SMALL, files).await;
    let large = sweep_cost(kind, LARGE, files).await;
    let context = format!("{kind:?} (files: {files}): {small:?} at {SMALL}, {large:?} at {LARGE}");
    let requests = |c: &Cost| (c.gets, c.heads, c.lists, c.puts);
    assert_eq!(requests(&large), requests(&small), "requests of {context}");
    assert!(
        large.bytes_read <= small.bytes_read + small.bytes_read / 4,
        "bytes read of {context}"
    );
    if counted {
        let grown = (LARGE - SMALL) as u64;
        assert!(
            large.listed <= small.listed + grown,
            "keys listed of {context}"
        );
    } else {
        assert_eq!(large.listed, small.listed, "keys listed of {context}");
    }
}

#[tokio::test]
async fn a_message_sweep_costs_what_it_removes() {
    assert_flat(Kind::Messages, false, false).await;
    assert_flat(Kind::Messages, true, false).await;
}

#[tokio::test]
async fn a_context_version_sweep_costs_what_it_removes() {
    assert_flat(Kind::ContextVersions, false, false).await;
    assert_flat(Kind::ContextVersions, true, false).await;
}

#[tokio::test]
async fn a_checkpoint_count_sweep_lists_the_chain_once_and_reads_what_it_removes() {
    assert_flat(Kind::Checkpoints, false, true).await;
    assert_flat(Kind::Checkpoints, true, true).await;
}

#[tokio::test]
async fn an_artifact_count_sweep_lists_the_versions_once_and_reads_what_it_removes() {
    assert_flat(Kind::ArtifactVersions, false, true).await;
    assert_flat(Kind::ArtifactVersions, true, true).await;
}

/// Versions deleted among the newest do not count toward `keep_last`, though the sweep
/// tells them from the listed sizes: the newest 3 live versions are kept, all the
/// older removed, on both layouts.
#[tokio::test]
async fn artifact_keep_last_skips_versions_deleted_among_the_newest() {
    for files in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn ObjectStore> = if files {
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap())
        } else {
            Arc::new(InMemory::new())
        };
        let b = ObjectBackend::over_as(inner, "tomb", files);
        for n in 0..10 {
            let content = NewArtifact::new("text/plain", format!("version {n}"));
            b.save_artifact("scope", "a", content).await.unwrap();
        }
        for deleted in [8, 6] {
            assert_eq!(
                b.delete_artifact("scope", "a", Some(deleted))
                    .await
                    .unwrap(),
                1
            );
        }
        let keep = Retention {
            created_before: None,
            keep_last: Some(3),
        };
        assert_eq!(
            b.retain_artifact_versions(keep).await.unwrap(),
            5,
            "{files}"
        );
        let left: Vec<u64> = b
            .list_artifact_versions("scope", "a")
            .await
            .unwrap()
            .iter()
            .map(|meta| meta.version)
            .collect();
        assert_eq!(left, vec![5, 7, 9], "{files}");
        assert_eq!(b.retain_artifact_versions(keep).await.unwrap(), 0);
    }
}

/// The smallest live version record there can be (one-byte scope and name, no content
/// type, metadata or namespace) is still longer than twice a tombstone, so a record the
/// listing shows longer than that is surely live.
#[test]
fn a_live_version_record_is_never_as_small_as_a_tombstone() {
    let keys = crate::keys::Keys::new("", "");
    let live = super::artifacts::VersionRecord {
        meta: Some(storage_core::ArtifactMeta {
            scope: "s".into(),
            name: "n".into(),
            version: 0,
            content_type: String::new(),
            size: 0,
            sha256: String::new(),
            metadata: Default::default(),
            created_at: storage_core::time::now(),
        }),
        data: Some(keys.artifact_data("s", "n").to_string()),
    };
    let live = storage_core::wire::encode(&live).unwrap().len() as u64;
    let tombstone = super::retention::tombstone_len().unwrap();
    assert!(live > 2 * tombstone, "live {live}, tombstone {tombstone}");
}
