//! Small builders and assertions the checks share.

use std::fmt::Debug;

use serde_json::{json, Value};
use std::sync::Arc;

use storage_core::{
    ChannelValue, ChannelVersions, Checkpoint, CheckpointQuery, ErrorKind, Metadata, Result,
    Retention, StorageBackend,
};

/// A JSON object literal as [`Metadata`]; panics if `value` is not an object.
pub fn obj(value: Value) -> Metadata {
    match value {
        Value::Object(map) => map,
        other => panic!("expected a JSON object, got {other}"),
    }
}

/// The JSON a channel value holds; panics on typed bytes.
#[track_caller]
pub fn json_of(value: &ChannelValue) -> Value {
    match value {
        ChannelValue::Json(json) => Value::clone(json),
        ChannelValue::Typed(typed) => panic!("expected a JSON value, got {typed:?}"),
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
            .insert((*name).into(), value.clone().into());
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

/// A text of `len` filler bytes after its number, `00000042-xxx…`: writes that fill a
/// disk or a server, each recognisable when read back.
pub fn filler(n: usize, len: usize) -> String {
    format!("{n:08}-{}", "x".repeat(len))
}

/// Checkpoint `cp-<n>` (eight digits) of thread `t`, root namespace: one channel, `state`,
/// at version `n`, holding [`filler`]`(n, 2_000)`.
pub fn filled_checkpoint(n: usize) -> Checkpoint {
    let mut cp = Checkpoint::new("t", "", format!("cp-{n:08}"));
    cp.channel_versions.insert("state".into(), n.to_string());
    cp.channel_values
        .insert("state".into(), json!(filler(n, 2_000)).into());
    cp
}

/// A small structured message content.
pub fn content(n: usize) -> Value {
    json!({"text": format!("message {n}"), "n": n})
}

/// A retention keeping the newest `n` records of each series, without an age limit.
pub fn keep_last(n: u64) -> Retention {
    Retention {
        created_before: None,
        keep_last: Some(n),
    }
}

/// The checkpoint ids of (thread, namespace), oldest first.
pub async fn checkpoint_ids(
    b: &Arc<dyn StorageBackend>,
    thread: &str,
    namespace: &str,
) -> Vec<String> {
    let mut query = CheckpointQuery::thread(thread);
    query.namespace = Some(namespace.to_owned());
    let mut ids: Vec<String> = b
        .list_checkpoints(query)
        .await
        .unwrap()
        .into_iter()
        .map(|tuple| tuple.checkpoint.id)
        .collect();
    ids.reverse();
    ids
}
