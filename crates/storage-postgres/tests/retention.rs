//! A retention sweep decodes only the expired prefix and the record that ends it: kept
//! records made undecodable with raw SQL never fail a sweep, which the shared checks
//! (where every record decodes) cannot tell apart from a sweep that reads everything.
//! And an undecodable record that would end an expired prefix counts as young.

use std::time::Duration;

use storage_core::{ConversationStore, MessageRange, NewMessage, Retention, StorageBackend};
use storage_postgres::{PostgresBackend, PostgresConfig};

const DAY: Duration = Duration::from_secs(24 * 3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_never_decodes_the_records_it_keeps() {
    let url = storage_testkit::servers::postgres::postgres_url();
    let b = PostgresBackend::new(PostgresConfig::from_url(url.clone()).with_namespace("t_retain"))
        .unwrap();
    b.initialize().await.unwrap();
    for i in 0..10 {
        b.append_message("s1", NewMessage::new("user", serde_json::json!(i)))
            .await
            .unwrap();
    }
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let schema = b.schema().to_owned();
    // Message 5 becomes young (created tomorrow + 1), 6 to 10 undecodable.
    let mut fifth = b
        .get_messages("s1", MessageRange::after(4, 1))
        .await
        .unwrap()
        .remove(0);
    fifth.created_at = storage_core::time::now() + 2 * DAY;
    let record = storage_core::wire::encode(&fifth).unwrap();
    let update = format!(
        "UPDATE {schema}.messages SET record = $1 WHERE session_id = 's1' AND sequence = 5"
    );
    assert_eq!(client.execute(&update, &[&record]).await.unwrap(), 1);
    let garbage: &[u8] = &[0];
    let update = format!(
        "UPDATE {schema}.messages SET record = $1 WHERE session_id = 's1' AND sequence > 5"
    );
    assert_eq!(client.execute(&update, &[&garbage]).await.unwrap(), 5);
    let read = b.get_messages("s1", MessageRange::after(5, 10)).await;
    assert!(read.is_err(), "the planted records do not decode");

    // keep_last decodes nothing: 1 and 2 go.
    let keep_8 = Retention {
        created_before: None,
        keep_last: Some(8),
    };
    assert_eq!(b.retain_messages(keep_8).await.unwrap(), 2);
    // An age limit (every readable message but 5 is older than tomorrow) walks from the
    // oldest: 3 and 4 expire, 5 ends the prefix, and 6 to 10 are never decoded.
    let before_tomorrow = Retention {
        created_before: Some(storage_core::time::now() + DAY),
        keep_last: None,
    };
    assert_eq!(b.retain_messages(before_tomorrow).await.unwrap(), 2);
    assert_eq!(b.retain_messages(before_tomorrow).await.unwrap(), 0);
    let first = b
        .get_messages("s1", MessageRange::after(0, 1))
        .await
        .unwrap();
    assert_eq!(first[0].sequence, 5);
}

/// A record whose age cannot be read counts as young: it and everything after it stay,
/// and the sweep goes on with the other series instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_record_ends_its_series_prefix_and_the_sweep_goes_on() {
    let url = storage_testkit::servers::postgres::postgres_url();
    let b = PostgresBackend::new(
        PostgresConfig::from_url(url.clone()).with_namespace("t_retain_undecodable"),
    )
    .unwrap();
    b.initialize().await.unwrap();
    for session in ["s1", "s2", "s3"] {
        for i in 0..5 {
            b.append_message(session, NewMessage::new("user", serde_json::json!(i)))
                .await
                .unwrap();
        }
    }
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let schema = b.schema().to_owned();
    // s1's oldest message and s2's third cannot be decoded.
    let garbage: &[u8] = &[0];
    let update = format!(
        "UPDATE {schema}.messages SET record = $1 \
         WHERE (session_id = 's1' AND sequence = 1) OR (session_id = 's2' AND sequence = 3)"
    );
    assert_eq!(client.execute(&update, &[&garbage]).await.unwrap(), 2);

    // Every message is older than tomorrow: s1 keeps all five, s2 loses 1 and 2, s3 all
    // but its newest.
    let before_tomorrow = Retention {
        created_before: Some(storage_core::time::now() + DAY),
        keep_last: None,
    };
    assert_eq!(b.retain_messages(before_tomorrow).await.unwrap(), 6);
    assert_eq!(b.retain_messages(before_tomorrow).await.unwrap(), 0);
    let left = format!(
        "SELECT session_id, min(sequence), count(*) FROM {schema}.messages \
         GROUP BY session_id ORDER BY session_id"
    );
    let left: Vec<(String, i64, i64)> = client
        .query(&left, &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(
        left,
        [
            ("s1".to_owned(), 1, 5),
            ("s2".to_owned(), 3, 3),
            ("s3".to_owned(), 5, 1)
        ]
    );
}
