//! The input policy (`storage_core::policy`): every limit is the same on every backend;
//! what it accepts reads back identically, what it refuses is `InvalidInput` naming the
//! rule and its limit, before any I/O, leaving stored data as it was.

use std::time::Duration;
use storage_core::ext::TaskContextStoreExt;

use futures::StreamExt;
use serde_json::{json, Value};
use storage_core::policy::{
    MAX_CHANNEL_VERSION_BYTES, MAX_CURSOR_BYTES, MAX_JSON_DEPTH, MAX_METADATA_BYTES,
    MAX_METADATA_KEYS, MAX_METADATA_KEY_BYTES,
};
use storage_core::{
    ByteStream, Bytes, CheckpointKey, CheckpointQuery, ErrorKind, ExpectedVersion, Metadata,
    NewArtifact, NewMessage, NewSession, Result, Session, SessionQuery, SessionUpdate,
    StorageBackend,
};

use crate::data::{checkpoint, versions};
use crate::TestContext;

/// A value `levels` deep (arrays and objects alternating around a number), built without
/// recursion.
pub fn nested(levels: usize) -> Value {
    let mut value = json!(7);
    for n in 0..levels {
        value = if n % 2 == 0 {
            Value::Array(vec![value])
        } else {
            let mut map = serde_json::Map::new();
            map.insert("k".into(), value);
            Value::Object(map)
        };
    }
    value
}

/// Metadata whose one key holds a value `levels - 1` deep, so the object is `levels` deep.
pub fn nested_metadata(levels: usize) -> Metadata {
    let mut meta = Metadata::new();
    meta.insert("deep".into(), nested(levels - 1));
    meta
}

/// Asserts `InvalidInput` whose message contains every one of `words`, without ever
/// formatting a successful result (a hostile value would make that recurse).
#[track_caller]
pub fn refused<T>(result: Result<T>, words: &[&str]) {
    match result {
        Ok(_) => panic!("expected an invalid_input error naming {words:?}, got Ok"),
        Err(err) => {
            assert_eq!(
                err.kind(),
                ErrorKind::InvalidInput,
                "expected invalid_input, got: {err}"
            );
            for word in words {
                assert!(
                    err.message().contains(word),
                    "error does not name {word:?}: {err}"
                );
            }
        }
    }
}

fn one_chunk(data: &'static [u8]) -> ByteStream {
    futures::stream::once(async move { Ok(Bytes::from_static(data)) }).boxed()
}

/// Tries every write that takes caller JSON with the value `levels` deep in that place,
/// expecting `InvalidInput` naming the depth limit, and that nothing was stored.
async fn every_json_write_refuses(b: &dyn StorageBackend, levels: usize) {
    let limit = MAX_JSON_DEPTH.to_string();
    let words = ["depth limit", limit.as_str()];
    let words = &words[..];
    let session = format!("deep-{levels}");
    refused(
        b.create_session(NewSession::new(&session, "u").with_metadata(nested_metadata(levels)))
            .await,
        words,
    );
    refused(
        b.create_sessions(vec![
            NewSession::new(format!("{session}-ok"), "u"),
            NewSession::new(&session, "u").with_metadata(nested_metadata(levels)),
        ])
        .await,
        words,
    );
    assert_eq!(b.get_session(&session).await.unwrap(), None);
    assert_eq!(b.get_session(&format!("{session}-ok")).await.unwrap(), None);

    b.create_session(NewSession::new(&session, "u"))
        .await
        .unwrap();
    let before = b.get_session(&session).await.unwrap().unwrap();
    let mut patch = SessionUpdate::default().request(5);
    patch.metadata_patch = nested_metadata(levels);
    refused(b.update_session(&session, patch).await, words);
    assert_eq!(b.get_session(&session).await.unwrap(), Some(before));

    refused(
        b.append_message(&session, NewMessage::new("user", nested(levels)))
            .await,
        words,
    );
    refused(
        b.append_message(
            &session,
            NewMessage::new("user", "x").with_metadata(nested_metadata(levels)),
        )
        .await,
        words,
    );
    refused(
        b.append_messages(
            &session,
            vec![
                NewMessage::new("user", "fine"),
                NewMessage::new("user", nested(levels)).with_client_id("c1"),
            ],
        )
        .await,
        words,
    );
    assert!(
        b.get_conversation_history(&session, 10)
            .await
            .unwrap()
            .is_empty(),
        "a refused append stored nothing"
    );

    refused(
        b.store_task_context(&session, nested(levels), ExpectedVersion::Any)
            .await,
        words,
    );
    assert_eq!(b.get_task_context(&session).await.unwrap(), None);

    let thread = format!("thread-{levels}");
    let cp = checkpoint(&thread, "", "cp-1", &[("ch", "1", nested(levels))]);
    let new = cp.all_versions();
    refused(b.put_checkpoint(cp, new).await, words);
    let mut cp = checkpoint(&thread, "", "cp-1", &[("ch", "1", json!(1))]);
    cp.metadata = nested_metadata(levels);
    let new = cp.all_versions();
    refused(b.put_checkpoint(cp, new).await, words);
    let cp = checkpoint(&thread, "", "cp-2", &[("ch", "1", nested(levels))]);
    let new = cp.all_versions();
    refused(b.put_checkpoints(vec![(cp, new)]).await, words);
    assert_eq!(b.get_checkpoint(&thread, "", None).await.unwrap(), None);
    refused(
        b.put_writes(
            CheckpointKey::new(&thread, "cp-1"),
            "task",
            "",
            vec![
                ("ch".into(), json!(1).into()),
                ("ch2".into(), nested(levels).into()),
            ],
        )
        .await,
        words,
    );
    assert!(b
        .get_writes(CheckpointKey::new(&thread, "cp-1"))
        .await
        .unwrap()
        .is_empty());
    let query = CheckpointQuery {
        filter: nested_metadata(levels),
        ..CheckpointQuery::thread(&thread)
    };
    refused(b.list_checkpoints(query).await, words);

    refused(
        b.save_artifact(
            &session,
            "a",
            NewArtifact::new("text/plain", "x").with_metadata(nested_metadata(levels)),
        )
        .await,
        words,
    );
    refused(
        b.save_artifact_stream(
            &session,
            "a",
            "text/plain",
            nested_metadata(levels),
            one_chunk(b"x"),
            None,
        )
        .await,
        words,
    );
    assert!(!b.artifact_exists(&session, "a", None).await.unwrap());
}

/// JSON nested 64 levels deep is stored and read back exactly, in every place a caller
/// gives JSON, and listing and cleanup still work; 65 levels, 128 (serde_json's own read
/// limit) and 1,000 are `InvalidInput` naming the depth limit, and store nothing.
pub async fn json_depth_limit_is_64(ctx: TestContext) {
    let b = ctx.backend.as_ref();
    for levels in [MAX_JSON_DEPTH + 1, 128, 200, 1_000] {
        every_json_write_refuses(b, levels).await;
    }

    let deepest = nested(MAX_JSON_DEPTH);
    let meta = nested_metadata(MAX_JSON_DEPTH);
    let created = b
        .create_session(NewSession::new("s", "u").with_metadata(meta.clone()))
        .await
        .unwrap();
    let mut patch = SessionUpdate::default();
    patch.metadata_patch.insert("other".into(), nested(63));
    let updated = b.update_session("s", patch).await.unwrap();
    assert_eq!(updated.metadata["deep"], created.metadata["deep"]);
    let read = b.get_session("s").await.unwrap().unwrap();
    assert_eq!(read, updated, "64 levels of session metadata read back");
    let message = NewMessage::new("user", deepest.clone()).with_metadata(meta.clone());
    b.append_message("s", message).await.unwrap();
    let history = b.get_conversation_history("s", 5).await.unwrap();
    assert_eq!(history[0].content, deepest);
    assert_eq!(history[0].metadata, meta);
    b.store_task_context("s", deepest.clone(), ExpectedVersion::Any)
        .await
        .unwrap();
    assert_eq!(
        b.get_task_context("s").await.unwrap().unwrap().value,
        deepest
    );
    let mut cp = checkpoint("t", "", "cp-1", &[("ch", "1", deepest.clone())]);
    cp.metadata = meta.clone();
    let new = cp.all_versions();
    b.put_checkpoint(cp, new).await.unwrap();
    b.put_writes(
        CheckpointKey::new("t", "cp-1"),
        "task",
        "",
        vec![("ch".into(), deepest.clone().into())],
    )
    .await
    .unwrap();
    let tuple = b.get_checkpoint("t", "", None).await.unwrap().unwrap();
    assert_eq!(
        tuple.checkpoint.channel_values["ch"],
        deepest.clone().into()
    );
    assert_eq!(tuple.checkpoint.metadata, meta);
    assert_eq!(tuple.pending_writes[0].value, deepest.into());
    let filter = CheckpointQuery {
        filter: meta.clone(),
        ..CheckpointQuery::thread("t")
    };
    assert_eq!(b.list_checkpoints(filter).await.unwrap().len(), 1);
    b.save_artifact(
        "scope",
        "a",
        NewArtifact::new("text/plain", "x").with_metadata(meta.clone()),
    )
    .await
    .unwrap();
    let artifact = b.get_artifact("scope", "a", None).await.unwrap().unwrap();
    assert_eq!(artifact.meta.metadata, meta);

    // Listing and cleanup read every session, the deepest accepted included.
    let all = SessionQuery {
        limit: 1000,
        ..SessionQuery::default()
    };
    let listed = b.list_sessions(all).await.unwrap();
    assert!(listed.items.iter().any(|s| s.id == "s"));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        b.cleanup_expired_sessions(Duration::from_millis(1))
            .await
            .unwrap()
            >= 1
    );
    assert_eq!(b.get_session("s").await.unwrap(), None);
}

/// Levels of the hostile values [`hostile_depth_is_refused_without_recursion`] sends: in a
/// debug build on a 2 MiB tokio worker, a recursive clone or drop of objects alternating
/// with arrays overflows between 3,000 and 6,000 levels.
pub const HOSTILE_DEPTH: usize = 10_000;

/// A value [`HOSTILE_DEPTH`] levels deep through every write that takes caller JSON, on a
/// tokio worker (run it in a debug build): each is refused as `InvalidInput`, nothing is
/// stored, and nothing overflows the stack, neither measuring the value (no recursion),
/// nor copying it (wrappers refuse before they copy), nor dropping it (backends and
/// wrappers take a refused value apart with `storage_core::carried::admit`).
pub async fn hostile_depth_is_refused_without_recursion(ctx: TestContext) {
    let b = ctx.backend.clone();
    tokio::spawn(async move {
        let b = b.as_ref();
        let words: &[&str] = &["depth limit"];
        let deep = || nested(HOSTILE_DEPTH);
        let deep_metadata = || nested_metadata(HOSTILE_DEPTH);
        refused(
            b.create_session(NewSession::new("s", "u").with_metadata(deep_metadata()))
                .await,
            words,
        );
        refused(
            b.create_sessions(vec![
                NewSession::new("s2", "u").with_metadata(deep_metadata())
            ])
            .await,
            words,
        );
        b.create_session(NewSession::new("s", "u")).await.unwrap();
        let patch = SessionUpdate {
            metadata_patch: deep_metadata(),
            ..SessionUpdate::default()
        };
        refused(b.update_session("s", patch).await, words);
        let imported = NewSession::new("s3", "u")
            .with_metadata(deep_metadata())
            .into_session(storage_core::time::now());
        refused(b.import_session(imported).await, words);
        for _ in 0..2 {
            refused(
                b.append_message("s", NewMessage::new("user", deep())).await,
                words,
            );
        }
        refused(
            b.append_messages("s", vec![NewMessage::new("user", deep())])
                .await,
            words,
        );
        refused(
            b.store_task_context("s", deep(), ExpectedVersion::Any)
                .await,
            words,
        );
        // Built in place: `checkpoint` clones its values, and `Clone` recurses.
        let mut cp = checkpoint("t", "", "cp", &[("ch", "1", json!(0))]);
        cp.channel_values.insert("ch".into(), deep().into());
        let new = cp.all_versions();
        refused(b.put_checkpoint(cp, new).await, words);
        let mut cp = checkpoint("t", "", "cp", &[("ch", "1", json!(0))]);
        cp.metadata = deep_metadata();
        let new = cp.all_versions();
        refused(b.put_checkpoints(vec![(cp, new)]).await, words);
        refused(
            b.put_writes(
                CheckpointKey::new("t", "cp"),
                "task",
                "",
                vec![("ch".into(), deep().into())],
            )
            .await,
            words,
        );
        let mut query = CheckpointQuery::thread("t");
        query.filter = deep_metadata();
        refused(b.list_checkpoints(query).await, words);
        refused(
            b.save_artifact(
                "scope",
                "a",
                NewArtifact::new("text/plain", "x").with_metadata(deep_metadata()),
            )
            .await,
            words,
        );
        let chunks: ByteStream = futures::stream::iter([Ok(Bytes::from_static(b"x"))]).boxed();
        refused(
            b.save_artifact_stream("scope", "a", "text/plain", deep_metadata(), chunks, None)
                .await,
            words,
        );
        assert!(b.get_conversation_history("s", 5).await.unwrap().is_empty());
        assert_eq!(b.get_task_context("s").await.unwrap(), None);
        assert_eq!(b.get_checkpoint("t", "", None).await.unwrap(), None);
        assert_eq!(b.get_session("s2").await.unwrap(), None);
        assert_eq!(b.get_session("s3").await.unwrap(), None);
        assert!(b.list_artifacts("scope").await.unwrap().is_empty());
    })
    .await
    .expect("refused without overflowing a tokio worker's stack");
}

fn keys(count: usize) -> Metadata {
    (0..count).map(|n| (format!("k{n}"), json!(n))).collect()
}

/// Every metadata object (session, patch, message, checkpoint, artifact) takes up to
/// 1,000 top-level keys of up to 256 bytes and 1 MiB of JSON, read back exactly; one key
/// more (or 4,000, past what a Redis script unpacks), a longer key or a bigger object is
/// `InvalidInput` naming the limit, and stores nothing.
pub async fn metadata_limits_are_the_same_everywhere(ctx: TestContext) {
    let b = &ctx.backend;
    let most = keys(MAX_METADATA_KEYS);
    let created = b
        .create_session(NewSession::new("s", "u").with_metadata(most.clone()))
        .await
        .unwrap();
    assert_eq!(created.metadata, most);
    assert_eq!(b.get_session("s").await.unwrap(), Some(created.clone()));
    let mut long_key = Metadata::new();
    long_key.insert("é".repeat(MAX_METADATA_KEY_BYTES / 2), json!(1));
    b.append_message(
        "s",
        NewMessage::new("user", "x").with_metadata(most.clone()),
    )
    .await
    .unwrap();
    b.append_message(
        "s",
        NewMessage::new("user", "y").with_metadata(long_key.clone()),
    )
    .await
    .unwrap();
    let history = b.get_conversation_history("s", 5).await.unwrap();
    assert_eq!(
        (&history[0].metadata, &history[1].metadata),
        (&most, &long_key)
    );
    let mut cp = checkpoint("t", "", "cp-1", &[]);
    cp.metadata = most.clone();
    b.put_checkpoint(cp, Default::default()).await.unwrap();
    let tuple = b.get_checkpoint("t", "", None).await.unwrap().unwrap();
    assert_eq!(tuple.checkpoint.metadata, most);
    b.save_artifact(
        "scope",
        "a",
        NewArtifact::new("text/plain", "x").with_metadata(most.clone()),
    )
    .await
    .unwrap();
    let meta = b.get_artifact_meta("scope", "a", None).await.unwrap();
    assert_eq!(meta.unwrap().metadata, most);

    let key_limit = MAX_METADATA_KEYS.to_string();
    let key_words = ["metadata key limit", key_limit.as_str()];
    let key_length = MAX_METADATA_KEY_BYTES.to_string();
    let length_words = ["metadata key length limit", key_length.as_str()];
    let size = MAX_METADATA_BYTES.to_string();
    let size_words = ["metadata size limit", size.as_str()];
    let mut too_long_key = Metadata::new();
    too_long_key.insert("k".repeat(MAX_METADATA_KEY_BYTES + 1), json!(1));
    let mut too_big = Metadata::new();
    too_big.insert("big".into(), json!("x".repeat(MAX_METADATA_BYTES)));
    let bad: [(Metadata, &[&str]); 4] = [
        (keys(MAX_METADATA_KEYS + 1), &key_words),
        (keys(4_000), &key_words),
        (too_long_key, &length_words),
        (too_big, &size_words),
    ];
    for (meta, words) in bad {
        refused(
            b.create_session(NewSession::new("s2", "u").with_metadata(meta.clone()))
                .await,
            words,
        );
        let patch = SessionUpdate {
            metadata_patch: meta.clone(),
            ..SessionUpdate::default()
        };
        refused(b.update_session("s", patch).await, words);
        refused(
            b.append_message(
                "s",
                NewMessage::new("user", "z").with_metadata(meta.clone()),
            )
            .await,
            words,
        );
        let mut cp = checkpoint("t", "", "cp-2", &[]);
        cp.metadata = meta.clone();
        refused(b.put_checkpoint(cp, Default::default()).await, words);
        refused(
            b.save_artifact(
                "scope",
                "b",
                NewArtifact::new("text/plain", "x").with_metadata(meta.clone()),
            )
            .await,
            words,
        );
        let mut imported = created.clone();
        imported.id = "s3".into();
        imported.metadata = meta;
        refused(b.import_session(imported).await, words);
    }
    assert_eq!(b.get_session("s2").await.unwrap(), None);
    assert_eq!(b.get_session("s3").await.unwrap(), None);
    assert_eq!(b.get_session("s").await.unwrap(), Some(created));
    assert_eq!(b.get_conversation_history("s", 5).await.unwrap().len(), 2);
    assert!(b
        .get_checkpoint("t", "", Some("cp-2"))
        .await
        .unwrap()
        .is_none());
    assert!(!b.artifact_exists("scope", "b", None).await.unwrap());
}

/// Channel versions are 1 to 256 bytes without control characters on every backend: the
/// longest reads back exactly; 257 or 5,000 bytes, an empty version, NUL or a newline are
/// `InvalidInput` naming the rule, in `channel_versions`, `new_versions` and
/// `versions_seen`, and store nothing.
pub async fn channel_version_rules_are_the_same_everywhere(ctx: TestContext) {
    let b = &ctx.backend;
    let longest = "9".repeat(MAX_CHANNEL_VERSION_BYTES);
    let mut cp = checkpoint("t", "", "cp-1", &[("ch", &longest, json!("v"))]);
    cp.versions_seen
        .insert("node".into(), versions(&[("ch", &longest)]));
    let new = cp.all_versions();
    b.put_checkpoint(cp.clone(), new).await.unwrap();
    let tuple = b.get_checkpoint("t", "", None).await.unwrap().unwrap();
    assert_eq!(tuple.checkpoint.channel_versions["ch"], longest);
    assert_eq!(tuple.checkpoint.channel_values["ch"], json!("v").into());
    assert_eq!(tuple.checkpoint.versions_seen, cp.versions_seen);

    let limit = MAX_CHANNEL_VERSION_BYTES.to_string();
    let too_long = "9".repeat(MAX_CHANNEL_VERSION_BYTES + 1);
    let huge = "9".repeat(5_000);
    let cases: [(&str, &[&str]); 5] = [
        (&too_long, &["channel version limit", &limit]),
        (&huge, &["channel version limit", &limit]),
        ("", &["empty", &limit]),
        ("1\u{0}", &["control character U+0000"]),
        ("1\n2", &["control character U+000A"]),
    ];
    for (version, words) in cases {
        let bad = checkpoint("t", "", "cp-2", &[("ch", version, json!("w"))]);
        let new = bad.all_versions();
        refused(b.put_checkpoint(bad.clone(), new).await, words);
        refused(
            b.put_checkpoint(bad.clone(), Default::default()).await,
            words,
        );
        refused(
            b.put_checkpoints(vec![(bad, Default::default())]).await,
            words,
        );
        let mut seen = checkpoint("t", "", "cp-2", &[]);
        seen.versions_seen
            .insert("node".into(), versions(&[("ch", version)]));
        refused(b.put_checkpoint(seen, Default::default()).await, words);
    }
    let all = CheckpointQuery {
        namespace: None,
        ..CheckpointQuery::thread("t")
    };
    let listed = b.list_checkpoints(all).await.unwrap();
    assert_eq!(listed.len(), 1, "only cp-1 is stored");
    assert_eq!(listed[0].checkpoint.id, "cp-1");
}

/// List cursors are checked before any I/O on every backend: a session cursor longer than
/// 1,024 bytes, or one that decodes to an invalid session id (NUL, empty), and an `after`
/// of a thread or scope listing that is not a valid id, are `InvalidInput`.
pub async fn list_cursors_are_validated(ctx: TestContext) {
    let b = &ctx.backend;
    b.create_session(NewSession::new("s1", "u")).await.unwrap();
    b.create_session(NewSession::new("s2", "u")).await.unwrap();
    let page = b
        .list_sessions(SessionQuery {
            limit: 1,
            ..SessionQuery::default()
        })
        .await
        .unwrap();
    let cursor = page.next_cursor.expect("a second page");
    let next = b
        .list_sessions(SessionQuery {
            limit: 1,
            cursor: Some(cursor),
            ..SessionQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(next.items.len(), 1);

    let limit = MAX_CURSOR_BYTES.to_string();
    let long = format!("1.{}", "61".repeat(MAX_CURSOR_BYTES));
    let nul = format!("{}.00", i64::MAX);
    let cases: [(&str, &[&str]); 3] = [
        (&long, &["cursor length limit", &limit]),
        (&nul, &["control character"]),
        ("5.", &["must not be empty"]),
    ];
    for (cursor, words) in cases {
        let query = SessionQuery {
            cursor: Some(cursor.to_owned()),
            ..SessionQuery::default()
        };
        refused(b.list_sessions(query).await, words);
    }
    for after in ["a\u{0}b", "", &"t".repeat(300)] {
        refused(b.list_thread_ids(Some(after), 10).await, &["cursor"]);
        refused(b.list_artifact_scopes(Some(after), 10).await, &["cursor"]);
    }
}

/// Session counters saturate at `u64::MAX` on every backend: an update that would pass it
/// succeeds and leaves the counter at `u64::MAX`.
pub async fn counters_saturate_at_u64_max(ctx: TestContext) {
    let b = &ctx.backend;
    b.create_session(NewSession::new("s", "u")).await.unwrap();
    let update = SessionUpdate {
        add_requests: u64::MAX - 1,
        add_processing_ms: u64::MAX / 2 + 7,
        ..SessionUpdate::default()
    };
    let first = b.update_session("s", update.clone()).await.unwrap();
    assert_eq!(first.metrics.request_count, u64::MAX - 1);
    assert_eq!(first.metrics.total_processing_ms, u64::MAX / 2 + 7);
    let second = b.update_session("s", update).await.unwrap();
    assert_eq!(second.metrics.request_count, u64::MAX);
    assert_eq!(second.metrics.total_processing_ms, u64::MAX);
    let third = b
        .update_session("s", SessionUpdate::default().request(u64::MAX).error("e"))
        .await
        .unwrap();
    assert_eq!(
        (
            third.metrics.request_count,
            third.metrics.total_processing_ms
        ),
        (u64::MAX, u64::MAX)
    );
    assert_eq!(third.metrics.error_count, 1);
    let read = b.get_session("s").await.unwrap().unwrap();
    assert_eq!(read.metrics, third.metrics);

    // A counter already at the ceiling (imported) stays there.
    let mut full: Session = read;
    full.id = "full".into();
    full.metrics.error_count = u64::MAX;
    b.import_session(full).await.unwrap();
    let after = b
        .update_session("full", SessionUpdate::default().request(1).error("again"))
        .await
        .unwrap();
    assert_eq!(after.metrics.error_count, u64::MAX);
    assert_eq!(after.metrics.request_count, u64::MAX);
    assert_eq!(
        b.get_session("full").await.unwrap().unwrap().metrics,
        after.metrics
    );
}

/// The import calls take sequences and versions up to 2^53 - 1, read back exactly on
/// every backend (and a later append, store or save continues after them); anything
/// greater (`u64::MAX` included) is `InvalidInput` naming the limit, and stores nothing.
pub async fn imported_numbers_fit_every_backend(ctx: TestContext) {
    use storage_core::policy::MAX_IMPORTED_NUMBER;
    use storage_core::{Artifact, ArtifactMeta, Message, TaskContext};
    let b = &ctx.backend;
    let now = storage_core::time::now();
    let message = |sequence: u64| Message {
        session_id: "s".into(),
        sequence,
        role: "user".into(),
        content: json!(sequence),
        client_id: None,
        metadata: Metadata::new(),
        created_at: now,
        turn_id: None,
        tool_calls: Vec::new(),
        tool_result_for: None,
        compacted: None,
    };
    let context = |version: u64| TaskContext {
        scope: storage_core::ContextScope::session("s"),
        value: json!(version),
        version,
        updated_at: now,
    };
    let artifact = |version: u64| Artifact {
        meta: ArtifactMeta {
            scope: "scope".into(),
            name: "a".into(),
            version,
            content_type: "text/plain".into(),
            size: 1,
            sha256: storage_core::artifact::sha256_hex(b"x"),
            metadata: Metadata::new(),
            created_at: now,
        },
        data: Bytes::from_static(b"x"),
    };
    let limit = MAX_IMPORTED_NUMBER.to_string();
    let words = ["imported number limit", limit.as_str()];
    b.create_session(NewSession::new("s", "u")).await.unwrap();
    for too_big in [MAX_IMPORTED_NUMBER + 1, i64::MAX as u64, u64::MAX] {
        refused(b.import_messages("s", vec![message(too_big)]).await, &words);
        refused(b.import_task_context(context(too_big)).await, &words);
        refused(b.import_artifact(artifact(too_big)).await, &words);
    }
    assert!(b.get_conversation_history("s", 5).await.unwrap().is_empty());
    assert_eq!(b.get_task_context("s").await.unwrap(), None);
    assert!(!b.artifact_exists("scope", "a", None).await.unwrap());

    let top = MAX_IMPORTED_NUMBER;
    assert_eq!(
        b.import_messages("s", vec![message(top - 1)])
            .await
            .unwrap(),
        1
    );
    let history = b.get_conversation_history("s", 5).await.unwrap();
    assert_eq!(history, [message(top - 1)]);
    let next = b
        .append_message("s", NewMessage::new("user", "next"))
        .await
        .unwrap();
    assert_eq!(next.sequence, top, "an append continues after the import");
    assert!(b.import_task_context(context(top - 1)).await.unwrap());
    assert_eq!(
        b.get_task_context("s").await.unwrap(),
        Some(context(top - 1))
    );
    let stored = b
        .store_task_context("s", json!("next"), ExpectedVersion::Exactly(top - 1))
        .await
        .unwrap();
    assert_eq!(stored.version, top);
    assert!(b.import_artifact(artifact(top - 1)).await.unwrap());
    let meta = b
        .get_artifact_meta("scope", "a", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(meta, artifact(top - 1).meta);
    let saved = b
        .save_artifact("scope", "a", NewArtifact::new("text/plain", "y"))
        .await
        .unwrap();
    assert_eq!(saved.version, top);
}
