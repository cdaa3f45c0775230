//! A session row an older release wrote against today's input policy (metadata nested
//! deeper than this release can decode), planted with raw SQL: it never breaks listing or
//! cleanup for anyone else, and can be deleted by id.

use std::time::Duration;

use serde_json::Value;
use storage_core::ext::TaskContextStoreExt;
use storage_core::{
    ConversationStore, ErrorKind, ExpectedVersion, NewMessage, NewSession, SessionQuery,
    SessionStore, StorageBackend,
};
use storage_postgres::{PostgresBackend, PostgresConfig};
use storage_testkit::checks::policy::nested;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_session_breaks_no_listing_or_cleanup_and_can_be_deleted() {
    let url = storage_testkit::servers::postgres::postgres_url();
    let b = PostgresBackend::new(PostgresConfig::from_url(url.clone()).with_namespace("t_planted"))
        .unwrap();
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
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let schema = b.schema().to_owned();
    for id in ["bad", "bad2"] {
        let select = format!("SELECT record FROM {schema}.sessions WHERE id = $1");
        let row = client.query_one(&select, &[&id]).await.unwrap();
        let mut record: Value = serde_json::from_slice(row.get::<_, &[u8]>(0)).unwrap();
        record["data"]["metadata"]["deep"] = nested(200);
        let bytes = serde_json::to_vec(&record).unwrap();
        let update = format!("UPDATE {schema}.sessions SET record = $2 WHERE id = $1");
        assert_eq!(client.execute(&update, &[&id, &bytes]).await.unwrap(), 1);
        let err = b.get_session(id).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Serialization, "{err}");
    }

    // Page by page, with the bad rows on the page boundaries, every good row comes back.
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = b
            .list_sessions(SessionQuery {
                limit: 1,
                cursor: cursor.take(),
                ..SessionQuery::default()
            })
            .await
            .unwrap();
        ids.extend(page.items.into_iter().map(|s| s.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(ids, ["good"], "the bad rows are skipped, not fatal");

    assert!(b.delete_session("bad2").await.unwrap(), "deletes by id");
    assert!(b
        .get_conversation_history("bad2", 5)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(b.get_task_context("bad2").await.unwrap(), None);

    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        b.cleanup_expired_sessions(Duration::from_millis(1))
            .await
            .unwrap(),
        2,
        "cleanup removes both by their columns, never decoding either"
    );
    assert_eq!(b.get_session("good").await.unwrap(), None);
    assert_eq!(b.get_session("bad").await.unwrap(), None);
}
