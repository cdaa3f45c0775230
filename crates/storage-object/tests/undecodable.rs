//! A session record an older release wrote against today's input policy (metadata nested
//! deeper than this release can decode), planted as a raw file on the local directory:
//! it never breaks listing or cleanup for anyone else, and can be deleted by id.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use storage_core::ext::TaskContextStoreExt;
use storage_core::{
    CheckpointStore, ConversationStore, ErrorKind, ExpectedVersion, NewMessage, NewSession,
    SessionQuery, SessionStore, StorageBackend,
};
use storage_object::{ObjectBackend, ObjectConfig};
use storage_testkit::checks::policy::nested;

/// Rewrites every file under `dir` with the same record whose metadata holds a value
/// 200 levels deep (past serde_json's read limit of 128).
fn poison(dir: &Path) -> usize {
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            count += poison(&path);
        } else {
            let mut record: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            record["data"]["metadata"]["deep"] = nested(200);
            std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
            count += 1;
        }
    }
    count
}

async fn check(root: &Path, namespace: &str) {
    let url = format!("file://{}", root.display());
    let b = ObjectBackend::new(ObjectConfig::new(url).with_namespace(namespace)).unwrap();
    b.initialize().await.unwrap();
    for (id, user) in [("good", "u1"), ("bad", "u2"), ("bad2", "u2")] {
        b.create_session(NewSession::new(id, user)).await.unwrap();
        b.append_message(id, NewMessage::new("user", "hi"))
            .await
            .unwrap();
        b.store_task_context(id, serde_json::json!(1), ExpectedVersion::Any)
            .await
            .unwrap();
    }
    for id in ["bad", "bad2"] {
        let dir = root
            .join(namespace)
            .join("sessions")
            .join(format!("i{}", hex::encode(id)));
        assert!(poison(&dir) >= 1, "planted {id} in {}", dir.display());
        let err = b.get_session(id).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Serialization, "{err}");
    }

    let all = SessionQuery {
        limit: 100,
        ..SessionQuery::default()
    };
    let listed = b.list_sessions(all).await.unwrap();
    let ids: Vec<&str> = listed.items.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["good"], "the bad records are skipped, not fatal");
    let own = SessionQuery {
        user_id: Some("u2".into()),
        ..SessionQuery::default()
    };
    assert!(b.list_sessions(own).await.unwrap().items.is_empty());

    assert!(b.delete_session("bad2").await.unwrap(), "deletes by id");
    assert!(b
        .get_conversation_history("bad2", 5)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(b.get_task_context("bad2").await.unwrap(), None);
    assert_eq!(b.get_session("bad2").await.unwrap(), None);

    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        b.cleanup_expired_sessions(Duration::from_millis(1))
            .await
            .unwrap(),
        1,
        "cleanup removes the good session and skips the bad one"
    );
    assert_eq!(b.get_session("good").await.unwrap(), None);
    assert!(b.delete_session("bad").await.unwrap());
    assert_eq!(b.get_session("bad").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_session_breaks_no_listing_or_cleanup_and_can_be_deleted() {
    let root = tempfile::tempdir().unwrap();
    check(root.path(), "t_planted").await;
}

/// Overwrites every checkpoint record under `dir` with bytes that do not decode.
fn break_checkpoint_records(dir: &Path) -> usize {
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            count += break_checkpoint_records(&path);
        } else if path
            .parent()
            .is_some_and(|parent| parent.ends_with("checkpoints"))
        {
            std::fs::write(&path, b"\0").unwrap();
            count += 1;
        }
    }
    count
}

/// A retention sweep that meets a checkpoint record it cannot decode leaves that thread's
/// namespace as it is and goes on with the others, instead of failing for every series
/// listed after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_checkpoint_leaves_its_thread_and_the_sweep_goes_on() {
    let root = tempfile::tempdir().unwrap();
    let url = format!("file://{}", root.path().display());
    let b =
        ObjectBackend::new(ObjectConfig::new(url).with_namespace("undecodable_retention")).unwrap();
    b.initialize().await.unwrap();
    for thread in ["a", "b"] {
        for n in 1..=3 {
            let checkpoint = storage_core::Checkpoint::new(thread, "", format!("cp-{n}"));
            b.put_checkpoint(checkpoint, Default::default())
                .await
                .unwrap();
        }
    }
    let thread_a = root
        .path()
        .join("undecodable_retention")
        .join("threads")
        .join(format!("i{}", hex::encode("a")));
    assert_eq!(break_checkpoint_records(&thread_a), 3);
    let keep_one = storage_core::Retention {
        created_before: Some(storage_core::time::now() + Duration::from_secs(3600)),
        keep_last: Some(1),
    };
    assert_eq!(b.retain_checkpoints(keep_one).await.unwrap(), 2, "thread b");
    let left = b
        .list_checkpoints(storage_core::CheckpointQuery::thread("b"))
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].checkpoint.id, "cp-3");
}
