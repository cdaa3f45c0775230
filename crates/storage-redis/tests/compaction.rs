//! The Redis layout of kept messages: what removing a summary drops (the nesting rule,
//! also when a rewind ends between messages), that session deletion leaves no kept keys,
//! and that kept messages expire with their conversation, not before it.

use deadpool_redis::redis;
use serde_json::json;
use storage_core::{ConversationStore, NewMessage, NewSession, SessionStore, StorageBackend};
use storage_redis::{RedisBackend, RedisConfig};

fn backend(ttl: Option<u64>) -> RedisBackend {
    let url = storage_testkit::servers::redis::redis_url();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let namespace = format!("kept_{nanos:x}_{}", std::process::id());
    let mut config = RedisConfig::new(url).with_namespace(namespace);
    config.conversation_ttl_secs = ttl;
    RedisBackend::new(config).unwrap()
}

fn numbered(n: u64) -> Vec<NewMessage> {
    (1..=n).map(|i| NewMessage::new("user", json!(i))).collect()
}

/// The kept hash and kept index of a session, named like its messages key.
fn kept_keys(b: &RedisBackend, session: &str) -> [String; 2] {
    let messages = b.messages_key(session);
    let base = messages.strip_suffix(":msgs").unwrap();
    [format!("{base}:kept"), format!("{base}:kidx")]
}

async fn exists(b: &RedisBackend, keys: &[String]) -> i64 {
    b.raw_query(redis::cmd("EXISTS").arg(keys)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewind_between_messages_drops_all_the_removed_summary_nests() {
    let b = backend(None);
    b.initialize().await.unwrap();
    b.append_messages("s", numbered(5)).await.unwrap();
    let summary = || NewMessage::new("system", "sum");
    b.compact_conversation("s", 2, summary(), true)
        .await
        .unwrap();
    let outer = b
        .compact_conversation("s", 5, summary(), true)
        .await
        .unwrap();
    assert_eq!(outer.compacted.map(|c| (c.from, c.to)), Some((1, 5)));
    assert_eq!(b.get_replaced_messages("s", 2).await.unwrap().len(), 2);
    // Nothing is stored at 3: the rewind removes the summary at 5, whose range 1..=5
    // holds the summary sequence 2 as well.
    assert_eq!(b.rewind_conversation("s", 3).await.unwrap(), 1);
    for at in [2, 5] {
        assert!(b.get_replaced_messages("s", at).await.unwrap().is_empty());
    }
    assert_eq!(exists(&b, &kept_keys(&b, "s")).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_session_removes_its_kept_messages() {
    let b = backend(None);
    b.initialize().await.unwrap();
    b.create_session(NewSession::new("s", "u")).await.unwrap();
    b.append_messages("s", numbered(4)).await.unwrap();
    b.compact_conversation("s", 3, NewMessage::new("system", "sum"), true)
        .await
        .unwrap();
    assert_eq!(exists(&b, &kept_keys(&b, "s")).await, 2);
    assert!(b.delete_session("s").await.unwrap());
    assert_eq!(exists(&b, &kept_keys(&b, "s")).await, 0);
    assert!(b.get_replaced_messages("s", 3).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_messages_expire_with_their_conversation() {
    let b = backend(Some(1_000));
    b.initialize().await.unwrap();
    b.append_messages("s", numbered(3)).await.unwrap();
    b.compact_conversation("s", 2, NewMessage::new("system", "sum"), true)
        .await
        .unwrap();
    for key in kept_keys(&b, "s") {
        let _: i64 = b
            .raw_query(redis::cmd("PEXPIRE").arg(&key).arg(5_000))
            .await
            .unwrap();
    }
    // An append refreshes the kept keys' expiry with the conversation's.
    b.append_message("s", NewMessage::new("user", "more"))
        .await
        .unwrap();
    for key in kept_keys(&b, "s") {
        let ttl: i64 = b.raw_query(redis::cmd("PTTL").arg(&key)).await.unwrap();
        assert!(ttl > 5_000, "{key} expires in {ttl} ms");
    }
    assert_eq!(b.get_replaced_messages("s", 2).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_keeps_the_counter_alive_as_long_as_the_messages() {
    let b = backend(Some(1_000));
    b.initialize().await.unwrap();
    b.append_messages("s", numbered(3)).await.unwrap();
    let messages = b.messages_key("s");
    let counter = format!("{}:seq", messages.strip_suffix(":msgs").unwrap());
    // The counter about to expire: a compaction refreshes it with the messages, so the
    // next append never hands out a number again.
    let _: i64 = b
        .raw_query(redis::cmd("PEXPIRE").arg(&counter).arg(5_000))
        .await
        .unwrap();
    b.compact_conversation("s", 2, NewMessage::new("system", "sum"), false)
        .await
        .unwrap();
    for key in [&messages, &counter] {
        let ttl: i64 = b.raw_query(redis::cmd("PTTL").arg(key)).await.unwrap();
        assert!(ttl > 5_000, "{key} expires in {ttl} ms");
    }
    let next = b
        .append_message("s", NewMessage::new("user", "more"))
        .await
        .unwrap();
    assert_eq!(next.sequence, 4);
}
