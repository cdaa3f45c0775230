//! Records an older release wrote against today's input policy (JSON deeper than this
//! release can decode), planted raw in Redis: they never break listing or cleanup for
//! anyone else, can be deleted by id, and no write path reports failure for a write that
//! took effect (or success for one that did not).

use std::time::Duration;

use deadpool_redis::redis;
use serde_json::{json, Value};
use storage_core::{
    time, wire, ConversationStore, ErrorKind, NewMessage, NewSession, SessionQuery, SessionStore,
    SessionUpdate, StorageBackend,
};
use storage_redis::{RedisBackend, RedisConfig};
use storage_testkit::checks::policy::nested;

fn backend() -> RedisBackend {
    let url = storage_testkit::servers::redis::redis_url();
    let id = uuid_like();
    let namespace = format!("t_{}", &id[id.len() - 20..]);
    RedisBackend::new(RedisConfig::new(url).with_namespace(namespace)).unwrap()
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos:032x}{:08x}", std::process::id())
}

/// JSON 200 levels deep: past serde_json's read limit of 128.
fn too_deep() -> String {
    serde_json::to_string(&nested(200)).unwrap()
}

async fn zcard(b: &RedisBackend, session: &str) -> i64 {
    b.raw_query(redis::cmd("ZCARD").arg(b.messages_key(session)))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_session_breaks_no_listing_or_cleanup_and_can_be_deleted() {
    let b = backend();
    b.initialize().await.unwrap();
    b.create_session(NewSession::new("good", "u1"))
        .await
        .unwrap();
    b.create_session(NewSession::new("bad", "u2"))
        .await
        .unwrap();
    b.append_message("bad", NewMessage::new("user", "hi"))
        .await
        .unwrap();
    // What an older release stored for metadata nested 200 levels deep.
    let _: i64 = b
        .raw_query(
            redis::cmd("HSET")
                .arg(b.session_key("bad"))
                .arg("m:deep")
                .arg(too_deep()),
        )
        .await
        .unwrap();
    let err = b.get_session("bad").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Serialization, "{err}");

    let all = SessionQuery {
        limit: 100,
        ..SessionQuery::default()
    };
    let listed = b.list_sessions(all).await.unwrap();
    let ids: Vec<&str> = listed.items.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["good"], "the bad record is skipped, not fatal");
    let own = SessionQuery {
        user_id: Some("u2".into()),
        ..SessionQuery::default()
    };
    assert!(b.list_sessions(own).await.unwrap().items.is_empty());

    // An update of the bad record takes effect and says so.
    let updated = b
        .update_session("bad", SessionUpdate::default().request(3))
        .await
        .unwrap();
    assert_eq!(updated.metrics.request_count, 1);
    assert_eq!(updated.metrics.total_processing_ms, 3);
    assert!(!updated.metadata.contains_key("deep"));

    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        b.cleanup_expired_sessions(Duration::from_millis(1))
            .await
            .unwrap(),
        2,
        "cleanup removes both, never decoding either"
    );
    assert_eq!(b.get_session("good").await.unwrap(), None);
    assert_eq!(zcard(&b, "bad").await, 0);

    // Deleting by id works on a record nothing can decode.
    b.create_session(NewSession::new("bad2", "u2"))
        .await
        .unwrap();
    let _: i64 = b
        .raw_query(
            redis::cmd("HSET")
                .arg(b.session_key("bad2"))
                .arg("m:deep")
                .arg(too_deep()),
        )
        .await
        .unwrap();
    assert!(b.delete_session("bad2").await.unwrap());
    assert_eq!(b.get_session("bad2").await.unwrap(), None);
}

/// A message an older release stored with content nested 200 levels deep, under client
/// id `c1`: replaying `c1` fails (nothing is stored), a batch mixing the replay with a new
/// message fails before storing anything, and new messages still append exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_report_exactly_what_they_stored() {
    let b = backend();
    b.initialize().await.unwrap();
    b.create_session(NewSession::new("s", "u")).await.unwrap();
    // Content this release could not read back is refused before the script runs, so a
    // retry without a client id cannot store it twice.
    for _ in 0..2 {
        let err = b
            .append_message("s", NewMessage::new("user", nested(200)))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert_eq!(zcard(&b, "s").await, 0, "a failed append stored nothing");
    }
    let mut record = serde_json::to_value(
        NewMessage::new("user", "placeholder")
            .with_client_id("c1")
            .into_message("s", 0, time::now()),
    )
    .unwrap();
    record["content"] = nested(200);
    let message: Value = json!({"v": 1, "kind": "message", "data": record});
    let encoded = serde_json::to_vec(&message).unwrap();
    let _: redis::Value = b
        .raw_query(&b.raw_append_command("s", "c1", &encoded))
        .await
        .unwrap();
    assert_eq!(zcard(&b, "s").await, 1);
    assert!(wire::decode::<storage_core::Message>(&encoded).is_err());

    let replay = b
        .append_message("s", NewMessage::new("user", "again").with_client_id("c1"))
        .await
        .unwrap_err();
    assert_eq!(replay.kind(), ErrorKind::Serialization, "{replay}");
    assert_eq!(zcard(&b, "s").await, 1, "a failed replay stored nothing");

    let mixed = b
        .append_messages(
            "s",
            vec![
                NewMessage::new("user", "again").with_client_id("c1"),
                NewMessage::new("user", "new").with_client_id("c2"),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(mixed.kind(), ErrorKind::Serialization, "{mixed}");
    assert_eq!(
        zcard(&b, "s").await,
        1,
        "a batch that reports failure stored nothing"
    );

    let stored = b
        .append_messages(
            "s",
            vec![
                NewMessage::new("user", "new").with_client_id("c2"),
                NewMessage::new("user", "other"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        stored.iter().map(|m| m.sequence).collect::<Vec<_>>(),
        [2, 3]
    );
    let again = b
        .append_message("s", NewMessage::new("user", "new").with_client_id("c2"))
        .await
        .unwrap();
    assert_eq!(again, stored[0], "a replay returns the stored message");
    assert_eq!(zcard(&b, "s").await, 3);

    // Popping the undecodable message fails and leaves it (and its client id) in place.
    assert_eq!(b.pop_last_message("s").await.unwrap().unwrap().sequence, 3);
    assert_eq!(b.pop_last_message("s").await.unwrap().unwrap().sequence, 2);
    let err = b.pop_last_message("s").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Serialization, "{err}");
    assert_eq!(
        zcard(&b, "s").await,
        1,
        "a pop that reports failure removed nothing"
    );
    let replay = b
        .append_message("s", NewMessage::new("user", "again").with_client_id("c1"))
        .await
        .unwrap_err();
    assert_eq!(replay.kind(), ErrorKind::Serialization, "{replay}");
    assert_eq!(zcard(&b, "s").await, 1, "c1 still names the stored message");
    assert_eq!(b.clear_conversation("s").await.unwrap(), 1);
    assert_eq!(
        b.append_message("s", NewMessage::new("user", "after"))
            .await
            .unwrap()
            .sequence,
        4,
        "numbers are never reused"
    );
}
