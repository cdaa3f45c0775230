//! Stored wire formats: how persistent backends encode records.
//!
//! Every record is JSON inside a small envelope, `{"v": 1, "kind": "session", "data": {...}}`,
//! so a newer release can read what an older one wrote and `storectl migrate` can move data
//! between backends. The formats are documented in `docs/formats.md`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};

/// The format version this release writes, and the highest it reads.
pub const FORMAT_VERSION: u32 = 1;

/// A type stored as a record of its own.
pub trait WireRecord: Serialize + DeserializeOwned {
    /// The `kind` field of the envelope.
    const KIND: &'static str;
}

impl WireRecord for crate::Session {
    const KIND: &'static str = "session";
}
impl WireRecord for crate::Message {
    const KIND: &'static str = "message";
}
impl WireRecord for crate::Checkpoint {
    const KIND: &'static str = "checkpoint";
}
impl WireRecord for crate::PendingWrite {
    const KIND: &'static str = "pending_write";
}
impl WireRecord for crate::TaskContext {
    const KIND: &'static str = "task_context";
}
impl WireRecord for crate::ArtifactMeta {
    const KIND: &'static str = "artifact_meta";
}
/// A channel value, stored once per (channel, version).
impl WireRecord for serde_json::Value {
    const KIND: &'static str = "channel_value";
}

#[derive(Serialize)]
struct EnvelopeOut<'a, T> {
    v: u32,
    kind: &'static str,
    data: &'a T,
}

#[derive(Deserialize)]
struct EnvelopeIn<T> {
    v: u32,
    kind: String,
    data: T,
}

/// Encodes a record in the current format.
///
/// ```
/// use storage_core::{wire, NewSession};
///
/// let session = NewSession::new("s1", "u1").into_session(storage_core::time::now());
/// let bytes = wire::encode(&session).unwrap();
/// assert!(bytes.starts_with(br#"{"v":1,"kind":"session","#));
/// assert_eq!(wire::decode::<storage_core::Session>(&bytes).unwrap(), session);
/// ```
pub fn encode<T: WireRecord>(record: &T) -> Result<Vec<u8>> {
    let envelope = EnvelopeOut {
        v: FORMAT_VERSION,
        kind: T::KIND,
        data: record,
    };
    serde_json::to_vec(&envelope).map_err(|err| {
        StorageError::serialization(format!("cannot encode {} record: {err}", T::KIND))
            .with_source(err)
    })
}

/// Decodes a record, refusing a different kind or a newer format version.
pub fn decode<T: WireRecord>(bytes: &[u8]) -> Result<T> {
    let envelope: EnvelopeIn<T> = serde_json::from_slice(bytes).map_err(|err| {
        StorageError::serialization(format!("cannot decode {} record: {err}", T::KIND))
            .with_source(err)
    })?;
    if envelope.kind != T::KIND {
        return Err(StorageError::serialization(format!(
            "expected a {} record, found a {} record",
            T::KIND,
            envelope.kind
        )));
    }
    if envelope.v > FORMAT_VERSION {
        return Err(StorageError::serialization(format!(
            "{} record has format version {}; this release reads up to {FORMAT_VERSION}",
            T::KIND,
            envelope.v
        )));
    }
    Ok(envelope.data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Session;

    #[test]
    fn refuses_other_kinds_and_newer_versions() {
        let value = encode(&serde_json::json!({"a": 1})).unwrap();
        assert!(decode::<Session>(&value).is_err());
        let newer = br#"{"v":2,"kind":"channel_value","data":1}"#;
        let err = decode::<serde_json::Value>(newer).unwrap_err();
        assert!(err.message().contains("format version 2"), "{err}");
        assert!(decode::<serde_json::Value>(b"not json").is_err());
    }
}
