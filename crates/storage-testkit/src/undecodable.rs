//! Retention over records a backend cannot decode, which the shared checks (where every
//! record decodes) cannot produce. A backend's test plants the bytes through raw access to
//! its store (a [`Plant`]) and calls these; each panics on a violation.

use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::json;
use storage_core::{MessageRange, NewMessage, Retention, StorageBackend};

/// Overwrites the stored record of message `sequence` of `session` with `bytes`, as raw
/// access to the backend's store does.
pub type Plant<'a> = &'a (dyn Fn(&'static str, u64, Vec<u8>) -> BoxFuture<'static, ()> + Sync);

const DAY: Duration = Duration::from_secs(24 * 3600);

fn before_tomorrow() -> Retention {
    Retention {
        created_before: Some(storage_core::time::now() + DAY),
        keep_last: None,
    }
}

/// A sweep decodes only the expired prefix and the record that ends it: messages 6 to 10
/// of `s1` are undecodable and message 5 is young, so `keep_last` (which decodes nothing)
/// and an age limit (which stops at 5) both succeed.
pub async fn a_sweep_never_decodes_the_records_it_keeps(b: &dyn StorageBackend, plant: Plant<'_>) {
    for i in 0..10 {
        b.append_message("s1", NewMessage::new("user", json!(i)))
            .await
            .unwrap();
    }
    let mut fifth = b
        .get_messages("s1", MessageRange::after(4, 1))
        .await
        .unwrap()
        .remove(0);
    fifth.created_at = storage_core::time::now() + 2 * DAY;
    plant("s1", 5, storage_core::wire::encode(&fifth).unwrap()).await;
    for sequence in 6..=10 {
        plant("s1", sequence, vec![0]).await;
    }
    let read = b.get_messages("s1", MessageRange::after(5, 10)).await;
    assert!(read.is_err(), "the planted records do not decode");

    // keep_last decodes nothing: 1 and 2 go.
    let keep_8 = Retention {
        created_before: None,
        keep_last: Some(8),
    };
    assert_eq!(b.retain_messages(keep_8).await.unwrap(), 2);
    // An age limit walks from the oldest: 3 and 4 expire, 5 ends the prefix, and 6 to 10
    // are never decoded.
    assert_eq!(b.retain_messages(before_tomorrow()).await.unwrap(), 2);
    assert_eq!(b.retain_messages(before_tomorrow()).await.unwrap(), 0);
    let first = b
        .get_messages("s1", MessageRange::after(0, 1))
        .await
        .unwrap();
    assert_eq!(first[0].sequence, 5);
}

/// A record whose age cannot be read counts as young: it and everything after it stay,
/// and the sweep goes on with the other series instead of failing. `s1`'s oldest message
/// and `s2`'s third are undecodable; `s3` is whole.
pub async fn an_undecodable_record_ends_its_series_prefix(
    b: &dyn StorageBackend,
    plant: Plant<'_>,
) {
    for session in ["s1", "s2", "s3"] {
        for i in 0..5 {
            b.append_message(session, NewMessage::new("user", json!(i)))
                .await
                .unwrap();
        }
    }
    plant("s1", 1, vec![0]).await;
    plant("s2", 3, vec![0]).await;
    // Every message is older than tomorrow: s1 keeps all five, s2 loses 1 and 2, s3 all
    // but its newest.
    assert_eq!(b.retain_messages(before_tomorrow()).await.unwrap(), 6);
    assert_eq!(b.retain_messages(before_tomorrow()).await.unwrap(), 0);
    let sequences = |messages: Vec<storage_core::Message>| -> Vec<u64> {
        messages.iter().map(|message| message.sequence).collect()
    };
    let s1_first = b.get_messages("s1", MessageRange::after(0, 1)).await;
    assert!(s1_first.is_err(), "s1 keeps its undecodable first message");
    let s1_rest = b.get_messages("s1", MessageRange::after(1, 10)).await;
    assert_eq!(sequences(s1_rest.unwrap()), vec![2, 3, 4, 5]);
    let s2_before = b.get_messages("s2", MessageRange::before(3, 10)).await;
    assert_eq!(sequences(s2_before.unwrap()), Vec::<u64>::new());
    let s2_after = b.get_messages("s2", MessageRange::after(3, 10)).await;
    assert_eq!(sequences(s2_after.unwrap()), vec![4, 5]);
    let s3 = b.get_messages("s3", MessageRange::after(0, 10)).await;
    assert_eq!(sequences(s3.unwrap()), vec![5]);
}
