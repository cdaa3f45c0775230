//! The value of a checkpoint channel or a pending write: JSON, or typed bytes.
//!
//! LangGraph's serializer turns a value into a type tag and a byte string (`("msgpack",
//! b"...")` by default). Stored as JSON, such bytes would need base64 (a third more bytes)
//! or lose their type; [`ChannelValue::Typed`] keeps them as they are, and every backend
//! stores them as raw bytes (see `docs/formats.md`).

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::error::{Result, StorageError};

/// The longest type tag, in bytes.
pub const MAX_TYPE_TAG_BYTES: usize = 64;

/// The key of the one-key object that stands for typed bytes where a value must be shown
/// as JSON (`storectl`'s output, exports): `{"$typed_bytes": {"type": .., "base64": ..}}`.
/// Stored records never use it: backends keep the bytes raw.
pub const TYPED_BYTES_JSON_KEY: &str = "$typed_bytes";

/// A channel value or a pending write's value.
///
/// Both forms share their contents: a JSON value sits behind an [`Arc`] and typed bytes are
/// [`Bytes`], so cloning a value (a read handing out what a store holds, a retry keeping
/// its copy of a put, a cache) costs a reference count, not a copy of the value.
/// [`Arc::make_mut`] gives a mutable value (copying it only while it is shared).
///
/// ```
/// use storage_core::{ChannelValue, TypedBytes};
/// use serde_json::json;
///
/// let json: ChannelValue = json!({"messages": []}).into();
/// assert_eq!(json.as_json(), Some(&json!({"messages": []})));
///
/// let typed = ChannelValue::typed("msgpack", &b"\x92\x01\x02"[..]);
/// assert_eq!(typed.as_typed().unwrap().bytes.as_ref(), b"\x92\x01\x02");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelValue {
    /// A JSON value, shared.
    Json(Arc<Value>),
    /// Bytes with the type tag of the serializer that produced them.
    Typed(TypedBytes),
}

/// A serializer's output: its type tag and the bytes, kept exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedBytes {
    /// The serializer's name for the type (LangGraph: `msgpack`, `json`, `bytes`, `null`, ...):
    /// 1 to [`MAX_TYPE_TAG_BYTES`] bytes, no control characters.
    pub type_tag: String,
    /// The serialized value.
    pub bytes: Bytes,
}

impl ChannelValue {
    /// A JSON value.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use storage_core::ChannelValue;
    /// use serde_json::json;
    ///
    /// let value = ChannelValue::json(json!({"messages": ["hi"]}));
    /// let copy = value.clone(); // a reference count, not a copy of the JSON
    /// let (ChannelValue::Json(a), ChannelValue::Json(b)) = (&value, &copy) else { unreachable!() };
    /// assert!(Arc::ptr_eq(a, b));
    ///
    /// let mut changed = copy;
    /// if let ChannelValue::Json(json) = &mut changed {
    ///     Arc::make_mut(json)["messages"] = json!([]); // copies: `value` still shares it
    /// }
    /// assert_eq!(value.as_json(), Some(&json!({"messages": ["hi"]})));
    /// ```
    pub fn json(value: Value) -> Self {
        ChannelValue::Json(Arc::new(value))
    }

    /// Typed bytes.
    pub fn typed(type_tag: impl Into<String>, bytes: impl Into<Bytes>) -> Self {
        ChannelValue::Typed(TypedBytes {
            type_tag: type_tag.into(),
            bytes: bytes.into(),
        })
    }

    /// The JSON value, if this is one.
    pub fn as_json(&self) -> Option<&Value> {
        match self {
            ChannelValue::Json(value) => Some(value),
            ChannelValue::Typed(_) => None,
        }
    }

    /// The typed bytes, if these are.
    pub fn as_typed(&self) -> Option<&TypedBytes> {
        match self {
            ChannelValue::Json(_) => None,
            ChannelValue::Typed(typed) => Some(typed),
        }
    }

    /// Checks the value before any I/O: JSON within the depth and key rules, a type tag
    /// within [`MAX_TYPE_TAG_BYTES`] and free of control characters.
    pub fn check(&self, what: &str) -> Result<()> {
        match self {
            ChannelValue::Json(value) => crate::policy::check_json(what, value),
            ChannelValue::Typed(typed) => check_type_tag(what, &typed.type_tag),
        }
    }

    /// The value as JSON, typed bytes as the one-key object named by
    /// [`TYPED_BYTES_JSON_KEY`]: for output that must be JSON, never for storage.
    pub fn to_display_json(&self) -> Value {
        match self {
            ChannelValue::Json(value) => Value::clone(value),
            ChannelValue::Typed(typed) => typed.display_json(),
        }
    }
}

impl TypedBytes {
    fn display_json(&self) -> Value {
        let encoded = base64::engine::general_purpose::STANDARD.encode(&self.bytes);
        let inner: serde_json::Map<String, Value> = [
            ("type".to_owned(), Value::String(self.type_tag.clone())),
            ("base64".to_owned(), Value::String(encoded)),
        ]
        .into_iter()
        .collect();
        let outer = [(TYPED_BYTES_JSON_KEY.to_owned(), Value::Object(inner))];
        Value::Object(outer.into_iter().collect())
    }

    /// The typed bytes a [`TypedBytes::display_json`] object stands for, if `value` is one.
    fn from_display_json(value: &Value) -> Option<TypedBytes> {
        let object = value.as_object().filter(|object| object.len() == 1)?;
        let inner = object.get(TYPED_BYTES_JSON_KEY)?.as_object()?;
        if inner.len() != 2 {
            return None;
        }
        let type_tag = inner.get("type")?.as_str()?.to_owned();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(inner.get("base64")?.as_str()?)
            .ok()?;
        Some(TypedBytes {
            type_tag,
            bytes: bytes.into(),
        })
    }
}

/// Checks a type tag: 1 to [`MAX_TYPE_TAG_BYTES`] bytes, no control characters.
pub fn check_type_tag(what: &str, type_tag: &str) -> Result<()> {
    if type_tag.is_empty() || type_tag.len() > MAX_TYPE_TAG_BYTES {
        return Err(StorageError::invalid_input(format!(
            "type tag of {what} must be 1 to {MAX_TYPE_TAG_BYTES} bytes, got {}",
            type_tag.len()
        )));
    }
    if let Some((_, control)) = crate::validate::first_control_character(type_tag) {
        return Err(StorageError::invalid_input(format!(
            "type tag of {what} contains the control character {control:?}"
        )));
    }
    Ok(())
}

impl From<Value> for ChannelValue {
    fn from(value: Value) -> Self {
        ChannelValue::json(value)
    }
}

impl From<Arc<Value>> for ChannelValue {
    fn from(value: Arc<Value>) -> Self {
        ChannelValue::Json(value)
    }
}

impl From<TypedBytes> for ChannelValue {
    fn from(typed: TypedBytes) -> Self {
        ChannelValue::Typed(typed)
    }
}

impl fmt::Display for ChannelValue {
    /// JSON as compact JSON; typed bytes as `<type: N bytes>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelValue::Json(value) => write!(f, "{value}"),
            ChannelValue::Typed(typed) => {
                write!(f, "<{}: {} bytes>", typed.type_tag, typed.bytes.len())
            }
        }
    }
}

/// JSON as itself, typed bytes as the [`TYPED_BYTES_JSON_KEY`] object: the form of JSON
/// output and exports.
impl Serialize for ChannelValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            ChannelValue::Json(value) => value.serialize(serializer),
            ChannelValue::Typed(typed) => typed.display_json().serialize(serializer),
        }
    }
}

/// The inverse of [`Serialize`]: the [`TYPED_BYTES_JSON_KEY`] object reads as typed bytes,
/// any other JSON as JSON.
impl<'de> Deserialize<'de> for ChannelValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Ok(match TypedBytes::from_display_json(&value) {
            Some(typed) => ChannelValue::Typed(typed),
            None => ChannelValue::json(value),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serde_round_trips_both_forms() {
        for value in [
            ChannelValue::from(json!({"a": [1, "two", null]})),
            ChannelValue::typed("msgpack", vec![0u8, 255, 0x92, 1]),
            ChannelValue::typed("empty", Vec::new()),
        ] {
            let text = serde_json::to_string(&value).unwrap();
            assert_eq!(serde_json::from_str::<ChannelValue>(&text).unwrap(), value);
        }
        let shown = serde_json::to_value(ChannelValue::typed("bytes", &b"hi"[..])).unwrap();
        assert_eq!(
            shown,
            json!({"$typed_bytes": {"type": "bytes", "base64": "aGk="}})
        );
    }

    #[test]
    fn type_tags_are_checked() {
        assert!(ChannelValue::typed("msgpack", Vec::new())
            .check("v")
            .is_ok());
        for bad in ["", "a\nb", &"x".repeat(MAX_TYPE_TAG_BYTES + 1)] {
            let err = ChannelValue::typed(bad, Vec::new()).check("v").unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidInput, "{bad:?}");
        }
    }
}
