//! A retention sweep decodes only the expired prefix and the record that ends it: kept
//! records made undecodable with raw SQL never fail a sweep, which the shared checks
//! (where every record decodes) cannot tell apart from a sweep that reads everything.

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
