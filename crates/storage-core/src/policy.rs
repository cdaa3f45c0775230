//! The input policy: the limits every backend applies the same way, before any I/O.
//!
//! Everything this policy accepts, every backend stores and reads back identically;
//! everything it refuses is `InvalidInput` naming the rule and its limit, returned before a
//! backend touches its store, so stored data is left as it was.
//!
//! | rule | limit | applies to |
//! | --- | --- | --- |
//! | JSON nesting depth | [`MAX_JSON_DEPTH`] (64) | message content and metadata, session metadata and patches, task-context values, checkpoint channel values and metadata, pending-write values, artifact metadata, checkpoint list filters |
//! | metadata top-level keys | [`MAX_METADATA_KEYS`] (1,000) | every metadata object and session metadata patch a caller gives |
//! | metadata key length | [`MAX_METADATA_KEY_BYTES`] (256 bytes) | every top-level metadata key |
//! | metadata encoded size | [`MAX_METADATA_BYTES`] (1 MiB of JSON) | every metadata object and patch |
//! | channel versions | 1 to [`MAX_CHANNEL_VERSION_BYTES`] (256) bytes, no control characters | `channel_versions`, `new_versions`, `versions_seen` |
//! | list cursors | at most [`MAX_CURSOR_BYTES`] (1,024) bytes, and must decode to a valid position | session list cursors, `after` of thread and scope listings |
//! | counters | saturate at `u64::MAX` | session request, processing-time and error counters |
//! | imported numbers | at most [`MAX_IMPORTED_NUMBER`] (2^53 - 1) | sequences, task-context versions and artifact versions given to the import calls |
//!
//! Depth counts containers: a scalar has depth 0, `[]` and `{}` depth 1, `[[1]]` depth 2;
//! a metadata object counts as one level itself. 64 is far below what every backend and
//! `serde_json` (which refuses more than 128 levels on read) can decode, with room for the
//! few levels the stored envelope adds. The depth is measured with an explicit stack, never
//! by recursion, so a hostile value of any depth cannot overflow the caller's stack.
//!
//! A [`serde_json::Value`] is dropped recursively by `serde_json` itself: a value some tens
//! of thousands of levels deep overflows a 2 MiB thread stack when it is dropped, whoever
//! drops it. [`dismantle`] takes such a value apart iteratively; callers who build values
//! from untrusted structures should bound them before they reach this crate.

use serde_json::Value;

use crate::error::{Result, StorageError};
use crate::json::Metadata;

/// The deepest JSON accepted anywhere a caller gives a value: 64 levels of arrays and
/// objects.
pub const MAX_JSON_DEPTH: usize = 64;

/// The most top-level keys accepted in one metadata object or session metadata patch.
///
/// Well below what every backend can store in one atomic write (Redis scripts unpack at
/// most about 8,000 arguments).
pub const MAX_METADATA_KEYS: usize = 1_000;

/// The longest top-level metadata key accepted, in bytes of UTF-8.
pub const MAX_METADATA_KEY_BYTES: usize = 256;

/// The largest metadata object accepted, in bytes of compact JSON.
pub const MAX_METADATA_BYTES: usize = 1 << 20;

/// The longest channel version accepted, in bytes of UTF-8.
///
/// A version becomes part of an object path on object storage and a `text` value on
/// PostgreSQL; 256 bytes fits both (4,096-byte paths on a local file system).
pub const MAX_CHANNEL_VERSION_BYTES: usize = 256;

/// The longest list cursor accepted, in bytes. A session cursor this release hands out
/// is at most 533 bytes (a timestamp and a hex-encoded id).
pub const MAX_CURSOR_BYTES: usize = 1_024;

/// The largest message sequence, task-context version or artifact version the import
/// calls accept: 2^53 - 1, the largest integer every backend holds exactly (Redis keeps
/// sequences as sorted-set scores and computes in Lua, both doubles; PostgreSQL in
/// `bigint`).
pub const MAX_IMPORTED_NUMBER: u64 = (1 << 53) - 1;

/// Checks a sequence or version given to an import call against [`MAX_IMPORTED_NUMBER`].
pub fn check_imported_number(what: &str, value: u64) -> Result<()> {
    if value > MAX_IMPORTED_NUMBER {
        return Err(StorageError::invalid_input(format!(
            "{what} {value} is above the imported number limit of {MAX_IMPORTED_NUMBER}"
        )));
    }
    Ok(())
}

/// The value a session counter stays at once it would pass `u64::MAX`: counters saturate,
/// on every backend, and an update that would overflow one still succeeds.
pub const COUNTER_CEILING: u64 = u64::MAX;

/// The nesting depth of `value` (a scalar is 0), measured without recursion. Stops
/// counting at `limit + 1`, so the cost of a hostile value is bounded by what is read
/// before the limit is passed.
pub fn json_depth(value: &Value, limit: usize) -> usize {
    if !matches!(value, Value::Array(_) | Value::Object(_)) {
        return 0;
    }
    // Each entry is a container and the depth above it; children are pushed, never
    // recursed into.
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    let mut deepest = 0;
    while let Some((value, depth)) = stack.pop() {
        let depth = depth + 1;
        deepest = deepest.max(depth);
        if deepest > limit {
            return deepest;
        }
        let containers = |child: &&Value| matches!(child, Value::Array(_) | Value::Object(_));
        match value {
            Value::Array(items) => {
                stack.extend(items.iter().filter(containers).map(|child| (child, depth)));
            }
            Value::Object(map) => {
                stack.extend(map.values().filter(containers).map(|child| (child, depth)));
            }
            _ => {}
        }
    }
    deepest
}

/// Checks that `value`, the `what` of a record (`"message content"`, ...), is nested at
/// most [`MAX_JSON_DEPTH`] levels deep.
///
/// ```
/// use serde_json::json;
/// use storage_core::policy::check_json;
///
/// assert!(check_json("message content", &json!({"a": [1, {"b": 2}]})).is_ok());
/// let mut deep = json!(1);
/// for _ in 0..65 {
///     deep = json!([deep]);
/// }
/// let err = check_json("message content", &deep).unwrap_err();
/// assert!(err.message().contains("64"), "{err}");
/// ```
pub fn check_json(what: &str, value: &Value) -> Result<()> {
    check_depth(what, value, 0)
}

fn check_depth(what: &str, value: &Value, above: usize) -> Result<()> {
    let limit = MAX_JSON_DEPTH - above.min(MAX_JSON_DEPTH);
    let depth = json_depth(value, limit);
    if depth > limit {
        return Err(StorageError::invalid_input(format!(
            "{what} is nested more than {MAX_JSON_DEPTH} levels deep; the JSON depth limit \
             is {MAX_JSON_DEPTH}"
        )));
    }
    Ok(())
}

/// Checks a metadata object, the `what` of a record: at most [`MAX_METADATA_KEYS`]
/// top-level keys of at most [`MAX_METADATA_KEY_BYTES`] bytes, nested at most
/// [`MAX_JSON_DEPTH`] levels (the object itself is one), at most [`MAX_METADATA_BYTES`]
/// bytes of JSON.
pub fn check_metadata(what: &str, metadata: &Metadata) -> Result<()> {
    if metadata.len() > MAX_METADATA_KEYS {
        return Err(StorageError::invalid_input(format!(
            "{what} has {} keys; the metadata key limit is {MAX_METADATA_KEYS}",
            metadata.len()
        )));
    }
    if let Some(key) = metadata
        .keys()
        .find(|key| key.len() > MAX_METADATA_KEY_BYTES)
    {
        return Err(StorageError::invalid_input(format!(
            "{what} has a key of {} bytes; the metadata key length limit is \
             {MAX_METADATA_KEY_BYTES} bytes",
            key.len()
        )));
    }
    for value in metadata.values() {
        check_depth(what, value, 1)?;
    }
    let size = encoded_len(metadata);
    if size > MAX_METADATA_BYTES {
        return Err(StorageError::invalid_input(format!(
            "{what} is {size} bytes of JSON; the metadata size limit is {MAX_METADATA_BYTES} \
             bytes"
        )));
    }
    Ok(())
}

/// The length of `metadata` as compact JSON, without building the string. Only called
/// once the depth is known to be bounded, since serializing recurses.
fn encoded_len(metadata: &Metadata) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail, and a map of string keys always serializes.
    let _ = serde_json::to_writer(&mut count, metadata);
    count.0
}

/// Checks a channel version: 1 to [`MAX_CHANNEL_VERSION_BYTES`] bytes without control
/// characters.
///
/// ```
/// use storage_core::policy::check_channel_version;
///
/// assert!(check_channel_version("messages", "00000000000000000000000000000002.0.243").is_ok());
/// assert!(check_channel_version("messages", "").is_err());
/// assert!(check_channel_version("messages", "1\u{0}").is_err());
/// assert!(check_channel_version("messages", &"9".repeat(257)).is_err());
/// ```
pub fn check_channel_version(channel: &str, version: &str) -> Result<()> {
    // Worded only when refusing: every put checks every channel's version.
    let describe = || format!("version of channel {channel:?}");
    if version.is_empty() {
        let what = describe();
        return Err(StorageError::invalid_input(format!(
            "{what} is empty; channel versions are 1 to {MAX_CHANNEL_VERSION_BYTES} bytes"
        )));
    }
    if version.len() > MAX_CHANNEL_VERSION_BYTES {
        let what = describe();
        return Err(StorageError::invalid_input(format!(
            "{what} is {} bytes long; the channel version limit is \
             {MAX_CHANNEL_VERSION_BYTES} bytes",
            version.len()
        )));
    }
    if let Some((index, c)) = crate::validate::first_control_character(version) {
        let what = describe();
        return Err(StorageError::invalid_input(format!(
            "{what} contains the control character U+{:04X} at byte {index}; channel \
             versions may not contain control characters",
            c as u32
        )));
    }
    Ok(())
}

/// Checks every version of a channel-version map.
pub fn check_channel_versions(versions: &crate::ChannelVersions) -> Result<()> {
    versions
        .iter()
        .try_for_each(|(channel, version)| check_channel_version(channel, version))
}

/// Checks the length of a list cursor (a session cursor, or the `after` of a thread or
/// scope listing) before it is decoded.
pub fn check_cursor(what: &str, cursor: &str) -> Result<()> {
    if cursor.len() > MAX_CURSOR_BYTES {
        return Err(StorageError::invalid_input(format!(
            "{what} is {} bytes long; the cursor length limit is {MAX_CURSOR_BYTES} bytes",
            cursor.len()
        )));
    }
    Ok(())
}

/// Checks the `after` position of an id listing (`list_thread_ids`,
/// `list_artifact_scopes`): a valid id, since the listing compares it with ids.
pub fn check_after(what: &str, after: Option<&str>) -> Result<()> {
    match after {
        Some(after) => {
            check_cursor(what, after)?;
            crate::validate::validate_id(what, after)
        }
        None => Ok(()),
    }
}

/// Drops `value` without recursion, however deep it is.
///
/// `serde_json`'s own drop recurses once per level; this takes containers apart with an
/// explicit stack, so a hostile value of a million levels is freed on a small stack.
pub fn dismantle(value: Value) {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> Value {
        let mut value = json!(1);
        for n in 0..levels {
            value = if n % 2 == 0 {
                Value::Array(vec![value])
            } else {
                json!({ "k": value })
            };
        }
        value
    }

    #[test]
    fn depth_counts_containers() {
        assert_eq!(json_depth(&json!(1), 64), 0);
        assert_eq!(json_depth(&json!([]), 64), 1);
        assert_eq!(json_depth(&json!({"a": [1, [2]], "b": {}}), 64), 3);
        for levels in [0, 1, 63, 64, 65] {
            assert_eq!(json_depth(&nested(levels), 100), levels);
        }
    }

    #[test]
    fn the_limit_is_inclusive() {
        assert!(check_json("v", &nested(MAX_JSON_DEPTH)).is_ok());
        let err = check_json("message content", &nested(MAX_JSON_DEPTH + 1)).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
        assert!(err.message().contains("message content"), "{err}");
        assert!(err.message().contains("depth limit is 64"), "{err}");
        let mut meta = Metadata::new();
        meta.insert("a".into(), nested(MAX_JSON_DEPTH - 1));
        assert!(check_metadata("m", &meta).is_ok());
        meta.insert("a".into(), nested(MAX_JSON_DEPTH));
        assert!(check_metadata("m", &meta).is_err());
    }

    #[test]
    fn metadata_keys_and_size() {
        let many: Metadata = (0..MAX_METADATA_KEYS)
            .map(|n| (n.to_string(), json!(n)))
            .collect();
        assert!(check_metadata("m", &many).is_ok());
        let mut too_many = many.clone();
        too_many.insert("one more".into(), json!(0));
        let err = check_metadata("session metadata", &too_many).unwrap_err();
        assert!(err.message().contains("key limit is 1000"), "{err}");
        let long_key: Metadata = [("k".repeat(257), json!(1))].into_iter().collect();
        assert!(check_metadata("m", &long_key).is_err());
        let big: Metadata = [("k".into(), json!("x".repeat(MAX_METADATA_BYTES)))]
            .into_iter()
            .collect();
        let err = check_metadata("m", &big).unwrap_err();
        assert!(err.message().contains("size limit"), "{err}");
    }

    #[test]
    fn cursors_and_after() {
        assert!(check_cursor("c", &"a".repeat(MAX_CURSOR_BYTES)).is_ok());
        assert!(check_cursor("c", &"a".repeat(MAX_CURSOR_BYTES + 1)).is_err());
        assert!(check_after("a", None).is_ok());
        assert!(check_after("a", Some("t-1")).is_ok());
        assert!(check_after("a", Some("t\u{0}")).is_err());
        assert!(check_after("a", Some("")).is_err());
    }

    /// A million levels are measured and dismantled on a tokio worker (2 MiB of stack),
    /// in a debug build, without overflowing it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hostile_depth_never_recurses() {
        tokio::spawn(async {
            let mut value = Value::Null;
            for _ in 0..1_000_000 {
                value = Value::Array(vec![value]);
            }
            assert_eq!(json_depth(&value, usize::MAX), 1_000_000);
            assert!(check_json("v", &value).is_err());
            let mut meta = Metadata::new();
            meta.insert("deep".into(), value);
            assert!(check_metadata("m", &meta).is_err());
            dismantle(Value::Object(meta));
        })
        .await
        .unwrap();
    }
}
