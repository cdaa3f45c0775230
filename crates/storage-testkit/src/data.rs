//! Small builders and assertions the checks share.

use std::fmt::Debug;

use serde_json::{json, Value};
use storage_core::{ChannelVersions, Checkpoint, ErrorKind, Metadata, Result};

/// A JSON object literal as [`Metadata`]; panics if `value` is not an object.
pub fn obj(value: Value) -> Metadata {
    match value {
        Value::Object(map) => map,
        other => panic!("expected a JSON object, got {other}"),
    }
}

/// Asserts that `result` failed with `kind`, and returns the error message.
#[track_caller]
pub fn assert_kind<T: Debug>(result: Result<T>, kind: ErrorKind) -> String {
    match result {
        Ok(value) => panic!("expected a {kind} error, got Ok({value:?})"),
        Err(err) => {
            assert_eq!(err.kind(), kind, "expected {kind}, got: {err}");
            err.to_string()
        }
    }
}

/// Ids that are syntax somewhere (key patterns, hash tags, SQL, LIKE, paths, shells) and
/// must be plain data everywhere.
pub const HOSTILE_IDS: &[&str] = &[
    "*",
    "a*",
    "?",
    "[a]",
    ":",
    "a:b",
    "{a}",
    "{",
    "}",
    "'",
    "\"",
    "%",
    "a%",
    "_",
    "..",
    "../a",
    "a/b",
    "/",
    "\\",
    "' OR '1'='1",
    "x'); DROP TABLE sessions; --",
    "$1",
    "a b",
    "é😀",
];

/// A checkpoint of `thread_id` in `namespace` whose channels are `(name, version, value)`.
pub fn checkpoint(
    thread_id: &str,
    namespace: &str,
    id: &str,
    channels: &[(&str, &str, Value)],
) -> Checkpoint {
    let mut checkpoint = Checkpoint::new(thread_id, namespace, id);
    for (name, version, value) in channels {
        checkpoint
            .channel_versions
            .insert((*name).into(), (*version).into());
        checkpoint
            .channel_values
            .insert((*name).into(), value.clone());
    }
    checkpoint
}

/// Versions map from `(channel, version)` pairs.
pub fn versions(pairs: &[(&str, &str)]) -> ChannelVersions {
    pairs
        .iter()
        .map(|(c, v)| ((*c).to_owned(), (*v).to_owned()))
        .collect()
}

/// A checkpoint id that sorts after `n - 1` and before `n + 1`: zero-padded.
pub fn cp_id(n: u32) -> String {
    format!("cp-{n:06}")
}

/// A small structured message content.
pub fn content(n: usize) -> Value {
    json!({"text": format!("message {n}"), "n": n})
}

/// A value of `levels` nested arrays, built without recursion.
pub fn nested_arrays(levels: usize) -> Value {
    let mut value = json!(7);
    for _ in 0..levels {
        value = Value::Array(vec![value]);
    }
    value
}

/// Sends a value `levels` deep (nested arrays) through every write that takes caller JSON,
/// each on a tokio worker (2 MiB of stack; run it in a debug build), expecting
/// `InvalidInput` from each and no stack overflow: the input policy measures depth
/// without recursion.
///
/// Backend crates call it with 10,000 levels. Two limits are `serde_json`'s, not the
/// policy's: a refused value is dropped by the backend, and `Value`'s `Drop` recurses (in
/// a debug build on a 2 MiB stack, about 10,000 levels of arrays drop, objects alternating
/// with arrays overflow between 4,000 and 6,000); and the facade clones arguments before
/// the backend validates them (for retries), where `Clone` overflows near 3,000 levels,
/// so the conformance check `policy::hostile_depth_is_refused_without_recursion` uses
/// 1,000.
pub async fn refuses_hostile_depth(
    backend: std::sync::Arc<dyn storage_core::StorageBackend>,
    levels: usize,
) {
    use crate::checks::policy::refused;
    use storage_core::{ExpectedVersion, NewArtifact, NewMessage, NewSession, SessionUpdate};
    let nested = nested_arrays;
    let nested_metadata = |levels: usize| -> Metadata {
        [("deep".to_owned(), nested_arrays(levels - 1))]
            .into_iter()
            .collect()
    };
    tokio::spawn(async move {
        let b = backend.as_ref();
        let words: &[&str] = &["depth limit"];
        refused(
            b.create_session(NewSession::new("s", "u").with_metadata(nested_metadata(levels)))
                .await,
            words,
        );
        b.create_session(NewSession::new("s", "u")).await.unwrap();
        let patch = SessionUpdate {
            metadata_patch: nested_metadata(levels),
            ..SessionUpdate::default()
        };
        refused(b.update_session("s", patch).await, words);
        refused(
            b.append_message("s", NewMessage::new("user", nested(levels)))
                .await,
            words,
        );
        refused(
            b.store_task_context("s", nested(levels), ExpectedVersion::Any)
                .await,
            words,
        );
        // Built in place: `checkpoint` clones its values, and `Clone` recurses.
        let mut cp = checkpoint("t", "", "cp", &[("ch", "1", json!(0))]);
        cp.channel_values.insert("ch".into(), nested(levels));
        let new = cp.all_versions();
        refused(b.put_checkpoint(cp, new).await, words);
        refused(
            b.put_writes(
                storage_core::CheckpointKey::new("t", "cp"),
                "task",
                "",
                vec![("ch".into(), nested(levels))],
            )
            .await,
            words,
        );
        refused(
            b.save_artifact(
                "scope",
                "a",
                NewArtifact::new("text/plain", "x").with_metadata(nested_metadata(levels)),
            )
            .await,
            words,
        );
        assert!(b.get_conversation_history("s", 5).await.unwrap().is_empty());
        assert_eq!(b.get_task_context("s").await.unwrap(), None);
        assert_eq!(b.get_checkpoint("t", "", None).await.unwrap(), None);
    })
    .await
    .expect("refused without overflowing a tokio worker's stack");
}
