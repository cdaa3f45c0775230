//! Retention sweeps every series whatever the length of its ids: context scopes, artifact
//! scopes and names, and conversations whose id fills whole path segments (63 bytes, 126
//! bytes, ...) are swept on a local directory as in memory. Local context heads are folders
//! of version files with nothing below them, which the enumeration by delimiter listings
//! once took for no id at all (found in review).

use serde_json::json;
use storage_core::{
    ArtifactStore, ContextScope, ConversationStore, ExpectedVersion, NewArtifact, NewMessage,
    Retention, StorageBackend, TaskContextStore,
};

fn ids() -> Vec<String> {
    let full: String = std::iter::repeat_n('s', 63).collect();
    vec![
        "short".to_owned(),
        full.clone(),
        format!("{full}a"),
        format!("{full}{full}"),
    ]
}

/// Artifact scopes and names, and conversations, of every id length are swept too.
async fn check_others(b: &ObjectBackend) {
    let keep_one = Retention {
        created_before: None,
        keep_last: Some(1),
    };
    for scope in ids() {
        for name in ids() {
            for n in 0..3 {
                let content = NewArtifact::new("text/plain", format!("v{n}"));
                b.save_artifact(&scope, &name, content).await.unwrap();
            }
        }
    }
    for session in ids() {
        for n in 0..3 {
            b.append_message(&session, NewMessage::new("user", json!({ "n": n })))
                .await
                .unwrap();
        }
    }
    let n = ids().len() as u64;
    assert_eq!(
        b.retain_artifact_versions(keep_one).await.unwrap(),
        2 * n * n
    );
    assert_eq!(b.retain_messages(keep_one).await.unwrap(), 2 * n);
    for scope in ids() {
        for name in ids() {
            let left = b.list_artifact_versions(&scope, &name).await.unwrap();
            assert_eq!(left.len(), 1, "{} / {}", scope.len(), name.len());
        }
    }
    for session in ids() {
        let left = b.get_conversation_history(&session, 10).await.unwrap();
        assert_eq!(left.len(), 1, "{}", session.len());
    }
}

#[tokio::test]
async fn full_segment_artifacts_and_conversations_on_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let b = ObjectBackend::new(ObjectConfig::new(url).with_namespace("rev")).unwrap();
    b.initialize().await.unwrap();
    check_others(&b).await;
}

#[tokio::test]
async fn full_segment_artifacts_and_conversations_in_memory() {
    let url = format!("memory://review-obj-others-{}", std::process::id());
    let b = ObjectBackend::new(ObjectConfig::new(url).with_namespace("rev")).unwrap();
    b.initialize().await.unwrap();
    check_others(&b).await;
}
use storage_object::{ObjectBackend, ObjectConfig};

fn scopes() -> Vec<ContextScope> {
    let full: String = std::iter::repeat_n('s', 63).collect();
    let mut out = Vec::new();
    for id in [
        "short".to_owned(),
        full.clone(),
        format!("{full}a"),
        format!("{full}{full}"),
    ] {
        out.push(ContextScope::Session(id.clone()));
        out.push(ContextScope::User(id));
    }
    out.push(ContextScope::App);
    out
}

async fn check(b: &ObjectBackend) {
    let scopes = scopes();
    for scope in &scopes {
        for n in 0..4 {
            b.store_context(scope.clone(), json!({ "n": n }), ExpectedVersion::Any, 10)
                .await
                .unwrap();
        }
    }
    let keep_one = Retention {
        created_before: None,
        keep_last: Some(1),
    };
    let removed = b.retain_context_versions(keep_one).await.unwrap();
    for scope in &scopes {
        let earlier = b.get_context(scope.clone(), Some(3)).await.unwrap();
        assert!(
            earlier.is_none(),
            "scope {} ({} bytes) still holds version 3 after keep_last 1",
            scope.key().chars().take(20).collect::<String>(),
            scope.key().len(),
        );
        assert!(b
            .get_context(scope.clone(), Some(4))
            .await
            .unwrap()
            .is_some());
    }
    assert_eq!(removed, 3 * scopes.len() as u64);
}

#[tokio::test]
async fn full_segment_context_scopes_on_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let b = ObjectBackend::new(ObjectConfig::new(url).with_namespace("rev")).unwrap();
    b.initialize().await.unwrap();
    check(&b).await;
}

#[tokio::test]
async fn full_segment_context_scopes_in_memory() {
    let url = format!("memory://review-obj-{}", std::process::id());
    let b = ObjectBackend::new(ObjectConfig::new(url).with_namespace("rev")).unwrap();
    b.initialize().await.unwrap();
    check(&b).await;
}

/// The local listing with sizes (real `file://` URL; the unit test over a wrapped store
/// never takes that path): versions deleted among the newest do not count.
#[tokio::test]
async fn artifact_keep_last_with_tombstones_on_a_real_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let b = ObjectBackend::new(ObjectConfig::new(url).with_namespace("rev")).unwrap();
    b.initialize().await.unwrap();
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
    assert_eq!(b.retain_artifact_versions(keep).await.unwrap(), 5);
    let left: Vec<u64> = b
        .list_artifact_versions("scope", "a")
        .await
        .unwrap()
        .iter()
        .map(|meta| meta.version)
        .collect();
    assert_eq!(left, vec![5, 7, 9]);
    // A second sweep starts at the floor hint and removes nothing more.
    assert_eq!(b.retain_artifact_versions(keep).await.unwrap(), 0);
    b.delete_artifact("scope", "a", Some(9)).await.unwrap();
    assert_eq!(b.retain_artifact_versions(keep).await.unwrap(), 0);
    let keep_one = Retention {
        created_before: None,
        keep_last: Some(1),
    };
    assert_eq!(b.retain_artifact_versions(keep_one).await.unwrap(), 1);
    let left = b.list_artifact_versions("scope", "a").await.unwrap();
    assert_eq!(left.iter().map(|m| m.version).collect::<Vec<_>>(), vec![7]);
}
