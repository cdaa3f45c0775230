//! Stored wire formats: how persistent backends encode records.
//!
//! Every record is JSON inside a small envelope, `{"v": 1, "kind": "session", "data": {...}}`,
//! so a newer release can read what an older one wrote and `storectl migrate` can move data
//! between backends. A channel value or pending write holding typed bytes is *framed*: a NUL
//! byte (which no JSON text starts with), the length of a JSON envelope, the envelope, then
//! the bytes exactly as given, never base64. The formats are documented in `docs/formats.md`.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::channel_value::{ChannelValue, TypedBytes};
use crate::checkpoint::PendingWrite;
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
impl WireRecord for crate::TaskContext {
    const KIND: &'static str = "task_context";
}
impl WireRecord for crate::ArtifactMeta {
    const KIND: &'static str = "artifact_meta";
}

#[derive(Serialize)]
struct EnvelopeOut<'a, T> {
    v: u32,
    kind: &'static str,
    data: &'a T,
}

/// An unframed record as read: the kind borrowed from the input (it is only compared), the
/// data read straight into its type. Other keys are ignored, as docs/formats.md promises.
#[derive(Deserialize)]
struct EnvelopeIn<'a, T> {
    v: u32,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    data: T,
}

/// A framed record's header as read: an envelope with the value's type tag.
#[derive(Deserialize)]
struct FrameHeaderIn<'a, T> {
    v: u32,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    data: T,
    #[serde(rename = "type")]
    type_tag: String,
}

/// What [`read_envelope`] checks of an envelope it read.
trait Checked {
    fn kind(&self) -> &str;
    fn version(&self) -> u32;
}

impl<T> Checked for EnvelopeIn<'_, T> {
    fn kind(&self) -> &str {
        &self.kind
    }
    fn version(&self) -> u32 {
        self.v
    }
}

impl<T> Checked for FrameHeaderIn<'_, T> {
    fn kind(&self) -> &str {
        &self.kind
    }
    fn version(&self) -> u32 {
        self.v
    }
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
    encode_envelope(T::KIND, record)
}

/// Decodes a record, refusing a different kind or a newer format version.
pub fn decode<T: WireRecord>(bytes: &[u8]) -> Result<T> {
    decode_envelope(T::KIND, bytes)
}

/// The kind of a stored channel value (one per channel and version).
const CHANNEL_VALUE: &str = "channel_value";
/// The kind of a stored pending write.
const PENDING_WRITE: &str = "pending_write";

/// The first byte of a framed record.
const FRAMED: u8 = 0;

/// A framed record's envelope: the record without its value, and the value's type tag.
#[derive(Serialize)]
struct FrameHeaderOut<'a, T> {
    v: u32,
    kind: &'static str,
    data: &'a T,
    #[serde(rename = "type")]
    type_tag: &'a str,
}

/// A pending write without its value: the `data` of a framed write.
#[derive(Serialize, Deserialize)]
struct WriteHeader<S> {
    task_id: S,
    task_path: S,
    index: i64,
    channel: S,
}

/// A pending write with a JSON value, as every release writes it: field for field
/// [`PendingWrite`]'s, so the bytes are those of the release before typed bytes.
#[derive(Serialize, Deserialize)]
struct JsonWrite<S, V> {
    task_id: S,
    task_path: S,
    index: i64,
    channel: S,
    value: V,
}

fn frame<T: Serialize>(kind: &'static str, data: &T, typed: &TypedBytes) -> Result<Vec<u8>> {
    let header = FrameHeaderOut {
        v: FORMAT_VERSION,
        kind,
        data,
        type_tag: &typed.type_tag,
    };
    let header = serde_json::to_vec(&header).map_err(|err| {
        StorageError::serialization(format!("cannot encode {kind} record: {err}")).with_source(err)
    })?;
    let length = u32::try_from(header.len())
        .map_err(|_| StorageError::serialization(format!("{kind} record header exceeds 4 GiB")))?;
    let mut out = Vec::with_capacity(5 + header.len() + typed.bytes.len());
    out.push(FRAMED);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&typed.bytes);
    Ok(out)
}

/// Splits a framed record into its header and its bytes, checking kind and version.
fn unframe<T: DeserializeOwned>(kind: &str, bytes: &[u8]) -> Result<(T, TypedBytes)> {
    let malformed =
        || StorageError::serialization(format!("cannot decode {kind} record: truncated frame"));
    let length: [u8; 4] = bytes
        .get(1..5)
        .and_then(|slice| slice.try_into().ok())
        .ok_or_else(malformed)?;
    let end = 5usize
        .checked_add(u32::from_be_bytes(length) as usize)
        .filter(|end| *end <= bytes.len())
        .ok_or_else(malformed)?;
    let header: FrameHeaderIn<'_, T> = read_envelope(kind, &bytes[5..end])?;
    let typed = TypedBytes {
        type_tag: header.type_tag,
        bytes: bytes::Bytes::copy_from_slice(&bytes[end..]),
    };
    Ok((header.data, typed))
}

fn check_envelope(expected: &str, kind: &str, version: u32) -> Result<()> {
    if kind != expected {
        return Err(StorageError::serialization(format!(
            "expected a {expected} record, found a {kind} record"
        )));
    }
    if version > FORMAT_VERSION {
        return Err(StorageError::serialization(format!(
            "{expected} record has format version {version}; this release reads up to \
             {FORMAT_VERSION}"
        )));
    }
    Ok(())
}

fn encode_envelope<T: Serialize>(kind: &'static str, data: &T) -> Result<Vec<u8>> {
    let envelope = EnvelopeOut {
        v: FORMAT_VERSION,
        kind,
        data,
    };
    serde_json::to_vec(&envelope).map_err(|err| {
        StorageError::serialization(format!("cannot encode {kind} record: {err}")).with_source(err)
    })
}

fn decode_envelope<T: DeserializeOwned>(kind: &str, bytes: &[u8]) -> Result<T> {
    let envelope: EnvelopeIn<'_, T> = read_envelope(kind, bytes)?;
    Ok(envelope.data)
}

/// Reads an envelope (a framed record's header, or a whole unframed record) and checks its
/// kind and version.
///
/// It is read once, straight into the data's type: a read of a checkpoint decodes a record
/// per pending write, and a detour through `serde_json::Value` was a third of decoding one.
/// Only when that fails is it read again, loosely, so that a record of another kind or a
/// newer version is refused as such rather than for its data's shape.
fn read_envelope<'a, E>(kind: &str, text: &'a [u8]) -> Result<E>
where
    E: Deserialize<'a> + Checked,
{
    fn undecodable<E>(kind: &str, err: E) -> StorageError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        StorageError::serialization(format!("cannot decode {kind} record: {err}")).with_source(err)
    }
    // Validated as UTF-8 once, whole: read from bytes, serde_json validates every string
    // on its own, a call per key and value.
    let text = std::str::from_utf8(text).map_err(|err| undecodable(kind, err))?;
    match serde_json::from_str::<E>(text) {
        Ok(envelope) => {
            check_envelope(kind, envelope.kind(), envelope.version())?;
            Ok(envelope)
        }
        Err(err) => {
            let loose: EnvelopeIn<'_, serde::de::IgnoredAny> =
                serde_json::from_str(text).map_err(|err| undecodable(kind, err))?;
            check_envelope(kind, &loose.kind, loose.v)?;
            Err(undecodable(kind, err))
        }
    }
}

/// Encodes a channel value: JSON in an envelope, typed bytes framed.
///
/// ```
/// use storage_core::{wire, ChannelValue};
///
/// let typed = ChannelValue::typed("msgpack", &b"\x92\x01\x02"[..]);
/// let stored = wire::encode_value(&typed).unwrap();
/// assert!(stored.ends_with(b"\x92\x01\x02")); // the bytes as given, not base64
/// assert_eq!(wire::decode_value(&stored).unwrap(), typed);
/// ```
pub fn encode_value(value: &ChannelValue) -> Result<Vec<u8>> {
    match value {
        ChannelValue::Json(json) => encode_envelope(CHANNEL_VALUE, json.as_ref()),
        ChannelValue::Typed(typed) => frame(CHANNEL_VALUE, &(), typed),
    }
}

/// Decodes what [`encode_value`] wrote, and the JSON channel values of every earlier release.
pub fn decode_value(bytes: &[u8]) -> Result<ChannelValue> {
    if bytes.first() == Some(&FRAMED) {
        let ((), typed) = unframe(CHANNEL_VALUE, bytes)?;
        Ok(ChannelValue::Typed(typed))
    } else {
        decode_envelope::<serde_json::Value>(CHANNEL_VALUE, bytes).map(ChannelValue::json)
    }
}

/// Encodes a pending write: with a JSON value in an envelope, with typed bytes framed.
pub fn encode_write(write: &PendingWrite) -> Result<Vec<u8>> {
    match &write.value {
        ChannelValue::Json(json) => encode_envelope(
            PENDING_WRITE,
            &JsonWrite {
                task_id: &write.task_id,
                task_path: &write.task_path,
                index: write.index,
                channel: &write.channel,
                value: json.as_ref(),
            },
        ),
        ChannelValue::Typed(typed) => frame(
            PENDING_WRITE,
            &WriteHeader {
                task_id: &write.task_id,
                task_path: &write.task_path,
                index: write.index,
                channel: &write.channel,
            },
            typed,
        ),
    }
}

/// Decodes stored pending writes and puts them in the order they are returned in
/// ([`crate::checkpoint::sort_writes`]), whatever order the store gave them in.
pub fn decode_writes<R: AsRef<[u8]>>(
    records: impl IntoIterator<Item = R>,
) -> Result<Vec<PendingWrite>> {
    let mut writes = records
        .into_iter()
        .map(|record| decode_write(record.as_ref()))
        .collect::<Result<Vec<_>>>()?;
    crate::checkpoint::sort_writes(&mut writes);
    Ok(writes)
}

/// Decodes what [`encode_write`] wrote, and the pending writes of every earlier release.
pub fn decode_write(bytes: &[u8]) -> Result<PendingWrite> {
    if bytes.first() == Some(&FRAMED) {
        let (header, typed): (WriteHeader<String>, _) = unframe(PENDING_WRITE, bytes)?;
        Ok(PendingWrite {
            task_id: header.task_id,
            task_path: header.task_path,
            index: header.index,
            channel: header.channel,
            value: ChannelValue::Typed(typed),
        })
    } else {
        let write: JsonWrite<String, serde_json::Value> = decode_envelope(PENDING_WRITE, bytes)?;
        Ok(PendingWrite {
            task_id: write.task_id,
            task_path: write.task_path,
            index: write.index,
            channel: write.channel,
            value: ChannelValue::json(write.value),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Session;

    #[test]
    fn refuses_other_kinds_and_newer_versions() {
        let value = encode_value(&serde_json::json!({"a": 1}).into()).unwrap();
        // Refused for its kind, not for its data's shape.
        let err = decode::<Session>(&value).unwrap_err();
        assert!(
            err.message().contains("found a channel_value record"),
            "{err}"
        );
        let newer = br#"{"v":2,"kind":"session","data":{"reshaped":true}}"#;
        let err = decode::<Session>(newer).unwrap_err();
        assert!(err.message().contains("format version 2"), "{err}");
        let newer = br#"{"v":2,"kind":"channel_value","data":1}"#;
        let err = decode_value(newer).unwrap_err();
        assert!(err.message().contains("format version 2"), "{err}");
        assert!(decode_value(b"not json").is_err());
        let typed = encode_value(&ChannelValue::typed("msgpack", &b"x"[..])).unwrap();
        assert!(decode_write(&typed)
            .unwrap_err()
            .message()
            .contains("channel_value"));
    }

    /// Records as the release before typed bytes wrote them read unchanged, and a JSON
    /// value is still written byte for byte as that release wrote it.
    #[test]
    fn json_records_of_the_previous_release_read_and_are_written_the_same() {
        let value = br#"{"v":1,"kind":"channel_value","data":{"$typed_bytes":1}}"#;
        let decoded = decode_value(value).unwrap();
        assert_eq!(
            decoded,
            ChannelValue::json(serde_json::json!({"$typed_bytes": 1}))
        );
        assert_eq!(encode_value(&decoded).unwrap(), value);

        let write = br#"{"v":1,"kind":"pending_write","data":{"task_id":"t","task_path":"p","index":-3,"channel":"__interrupt__","value":[1,"a"]}}"#;
        let decoded = decode_write(write).unwrap();
        assert_eq!(decoded.index, -3);
        assert_eq!(
            decoded.value,
            ChannelValue::json(serde_json::json!([1, "a"]))
        );
        assert_eq!(encode_write(&decoded).unwrap(), write);
    }

    fn framed(header: &str, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![FRAMED];
        out.extend_from_slice(&(header.len() as u32).to_be_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// A framed write is read straight into its fields, yet a record of another kind or
    /// of a newer version (whatever its data's shape) is refused as such, and the bytes
    /// written are the documented ones.
    #[test]
    fn a_framed_record_is_checked_for_kind_and_version_and_written_as_documented() {
        let write = PendingWrite {
            task_id: "t".into(),
            task_path: "p".into(),
            index: 2,
            channel: "c".into(),
            value: ChannelValue::typed("msgpack", &b"\x01"[..]),
        };
        let header = r#"{"v":1,"kind":"pending_write","data":{"task_id":"t","task_path":"p","index":2,"channel":"c"},"type":"msgpack"}"#;
        assert_eq!(encode_write(&write).unwrap(), framed(header, b"\x01"));
        // An escaped kind is the same kind.
        let escaped = header.replace("pending_write", "pending\\u005fwrite");
        assert_eq!(decode_write(&framed(&escaped, b"\x01")).unwrap(), write);

        let newer = r#"{"v":2,"kind":"pending_write","data":{"shape":"new"},"type":"msgpack"}"#;
        let err = decode_write(&framed(newer, b"x")).unwrap_err();
        assert!(err.message().contains("format version 2"), "{err}");
        let value = r#"{"v":1,"kind":"channel_value","data":null,"type":"msgpack"}"#;
        let err = decode_write(&framed(value, b"x")).unwrap_err();
        assert!(
            err.message().contains("found a channel_value record"),
            "{err}"
        );
        let untagged = r#"{"v":1,"kind":"pending_write","data":{"task_id":"t","task_path":"p","index":2,"channel":"c"}}"#;
        let err = decode_write(&framed(untagged, b"x")).unwrap_err();
        assert!(err.message().contains("missing field `type`"), "{err}");
        let missing = r#"{"v":1,"kind":"pending_write","data":{"task_id":"t"},"type":"msgpack"}"#;
        let err = decode_write(&framed(missing, b"x")).unwrap_err();
        assert!(err.message().contains("missing field"), "{err}");
    }

    /// An unframed record ignores keys it does not know, a `type` of any shape included
    /// (docs/formats.md: unknown fields are ignored on read).
    #[test]
    fn an_unframed_record_ignores_unknown_keys() {
        for text in [
            &br#"{"v":1,"kind":"channel_value","data":[1],"type":5}"#[..],
            br#"{"v":1,"kind":"channel_value","type":{},"type":null,"data":[1],"later":true}"#,
        ] {
            assert_eq!(
                decode_value(text).unwrap(),
                ChannelValue::json(serde_json::json!([1]))
            );
        }
    }

    #[test]
    fn typed_bytes_are_framed_raw_and_round_trip() {
        let payload: Vec<u8> = (0..=255u8).chain([0, 0, b'{']).collect();
        let value = ChannelValue::typed("msgpack", payload.clone());
        let stored = encode_value(&value).unwrap();
        assert_eq!(stored[0], 0, "framed records start with NUL");
        assert!(stored.ends_with(&payload), "the bytes are stored as given");
        assert!(stored.len() < payload.len() + 80, "{} bytes", stored.len());
        assert_eq!(decode_value(&stored).unwrap(), value);

        let write = PendingWrite {
            task_id: "task".into(),
            task_path: "~path\u{202e}".into(),
            index: 7,
            channel: "messages".into(),
            value: ChannelValue::typed("bytes", Vec::new()),
        };
        let stored = encode_write(&write).unwrap();
        assert_eq!(decode_write(&stored).unwrap(), write);
        // The payload is empty, so every cut falls inside the length or the header.
        for cut in [1, 3, 5, 10, stored.len() - 1] {
            assert!(
                decode_write(&stored[..cut]).is_err(),
                "cut at {cut} decoded"
            );
        }
    }
}
