//! What the shared retention checks cannot see on Redis: the scripts compare record times
//! in Lua (parsing the RFC 3339 text chrono writes), so the cutoff must hold to the
//! nanosecond, before 1970 and on a leap day; and a removed summary drops the kept
//! messages of the summaries nested in it, by range, leaving no kept keys behind.

use deadpool_redis::redis;
use serde_json::json;
use storage_core::time::Timestamp;
use storage_core::{
    Artifact, ArtifactMeta, ArtifactStore, ConversationStore, Message, MessageRange, NewMessage,
    Retention, StorageBackend,
};
use storage_redis::{RedisBackend, RedisConfig};

fn backend() -> RedisBackend {
    let url = storage_testkit::servers::redis::redis_url();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let namespace = format!("retain_{nanos:x}_{}", std::process::id());
    RedisBackend::new(RedisConfig::new(url).with_namespace(namespace)).unwrap()
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn before(cutoff: &str) -> Retention {
    Retention {
        created_before: Some(at(cutoff)),
        keep_last: None,
    }
}

fn message(session: &str, sequence: u64, created_at: &str) -> Message {
    NewMessage::new("user", json!({"created_at": "2999-01-01T00:00:00Z"})).into_message(
        session,
        sequence,
        at(created_at),
    )
}

async fn sequences(b: &RedisBackend, session: &str) -> Vec<u64> {
    b.get_messages(session, MessageRange::after(0, 100))
        .await
        .unwrap()
        .iter()
        .map(|message| message.sequence)
        .collect()
}

const CUTOFF: &str = "2024-02-29T12:00:00.000000500Z";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_ages_are_compared_to_the_nanosecond() {
    let b = backend();
    b.initialize().await.unwrap();
    // The content names a time of its own: only the record's `created_at` counts.
    let series = [
        (1, "1969-07-20T20:17:40.5Z"),
        (2, "2024-02-29T11:59:59.999999999Z"),
        (3, "2024-02-29T12:00:00.000000499Z"),
        (4, CUTOFF),
        (5, "1900-01-01T00:00:00Z"),
        (6, "2024-03-01T00:00:00Z"),
    ];
    let messages = series
        .iter()
        .map(|(sequence, created)| message("s", *sequence, created))
        .collect();
    assert_eq!(b.import_messages("s", messages).await.unwrap(), 6);
    // 4 is exactly at the cutoff, so it stays, and so does the old 5 behind it.
    assert_eq!(b.retain_messages(before(CUTOFF)).await.unwrap(), 3);
    assert_eq!(sequences(&b, "s").await, vec![4, 5, 6]);
    assert_eq!(
        b.retain_messages(before("2024-02-29T12:00:00.000000501Z"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(sequences(&b, "s").await, vec![6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifact_ages_are_compared_to_the_nanosecond() {
    let b = backend();
    b.initialize().await.unwrap();
    let times = [
        "1969-12-31T23:59:59.999999999Z",
        "2024-02-29T12:00:00.000000499Z",
        CUTOFF,
        "2000-01-01T00:00:00Z",
    ];
    for (version, created) in times.iter().enumerate() {
        let data = storage_core::Bytes::from(format!("v{version}"));
        let mut metadata = storage_core::Metadata::new();
        metadata.insert("created_at".into(), json!("2999-01-01T00:00:00Z"));
        let meta = ArtifactMeta {
            scope: "run".into(),
            name: "a".into(),
            version: version as u64,
            content_type: "text/plain".into(),
            size: data.len() as u64,
            sha256: storage_core::artifact::sha256_hex(&data),
            metadata,
            created_at: at(created),
        };
        assert!(b.import_artifact(Artifact { meta, data }).await.unwrap());
    }
    assert_eq!(b.retain_artifact_versions(before(CUTOFF)).await.unwrap(), 2);
    let kept: Vec<u64> = b
        .list_artifact_versions("run", "a")
        .await
        .unwrap()
        .iter()
        .map(|meta| meta.version)
        .collect();
    assert_eq!(kept, vec![2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_summary_drops_what_its_nested_summaries_kept() {
    let b = backend();
    b.initialize().await.unwrap();
    let numbered = (1..=5).map(|i| NewMessage::new("user", json!(i))).collect();
    b.append_messages("s", numbered).await.unwrap();
    let summary = || NewMessage::new("system", "sum");
    b.compact_conversation("s", 2, summary(), true)
        .await
        .unwrap();
    b.compact_conversation("s", 5, summary(), true)
        .await
        .unwrap();
    b.append_message("s", NewMessage::new("user", "six"))
        .await
        .unwrap();
    // The series is the summary at 5 and 6; keeping 2 keeps what both summaries kept.
    let keep = |n| Retention {
        created_before: None,
        keep_last: Some(n),
    };
    assert_eq!(b.retain_messages(keep(2)).await.unwrap(), 0);
    assert_eq!(b.get_replaced_messages("s", 2).await.unwrap().len(), 2);
    assert_eq!(b.retain_messages(keep(1)).await.unwrap(), 1);
    assert_eq!(sequences(&b, "s").await, vec![6]);
    for summary_at in [2, 5] {
        assert!(b
            .get_replaced_messages("s", summary_at)
            .await
            .unwrap()
            .is_empty());
    }
    let messages = b.messages_key("s");
    let base = messages.strip_suffix(":msgs").unwrap();
    let kept: i64 = b
        .raw_query(
            redis::cmd("EXISTS")
                .arg(format!("{base}:kept"))
                .arg(format!("{base}:kidx")),
        )
        .await
        .unwrap();
    assert_eq!(kept, 0);
}
