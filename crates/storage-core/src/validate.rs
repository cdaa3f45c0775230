//! Input rules shared by every backend, checked before any I/O.
//!
//! Ids are data, never syntax: every backend must store `*`, `:`, `{`, `'`, `%` or `..` in an
//! id verbatim, and such an id must never reach another record. What these functions reject is
//! only what no backend could store faithfully or show in a terminal.

use crate::error::{Result, StorageError};

/// The longest id accepted, in bytes of UTF-8.
pub const MAX_ID_BYTES: usize = 256;

/// The longest namespace accepted, in bytes.
///
/// Short enough to fit a PostgreSQL schema name (63 bytes) with a prefix of our own.
pub const MAX_NAMESPACE_BYTES: usize = 48;

/// Checks that `value`, the `what` of a record (`"session id"`, `"thread id"`, ...), is a
/// valid id: 1 to 256 bytes of UTF-8 without control characters.
///
/// ```
/// use storage_core::validate::validate_id;
///
/// assert!(validate_id("session id", "user:42/{a}*'%..").is_ok());
/// assert!(validate_id("session id", "").is_err());
/// assert!(validate_id("session id", "tab\there").is_err());
/// ```
pub fn validate_id(what: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(StorageError::invalid_input(format!(
            "{what} must not be empty"
        )));
    }
    if value.len() > MAX_ID_BYTES {
        return Err(StorageError::invalid_input(format!(
            "{what} is {} bytes long; the limit is {MAX_ID_BYTES}",
            value.len()
        )));
    }
    if let Some((index, c)) = first_control_character(value) {
        return Err(StorageError::invalid_input(format!(
            "{what} contains the control character U+{:04X} at byte {index}",
            c as u32
        )));
    }
    Ok(())
}

/// The first control character of `text`, with its byte offset.
///
/// Every put checks each id and channel version it carries, and such text is nearly always
/// printable ASCII: that is passed over a byte at a time, without decoding characters.
pub(crate) fn first_control_character(text: &str) -> Option<(usize, char)> {
    // A fold, not `all`: without an early exit the compiler checks many bytes per step.
    let printable_ascii = text.bytes().fold(true, |printable, byte| {
        printable & matches!(byte, 0x20..=0x7e)
    });
    if printable_ascii {
        return None;
    }
    text.char_indices().find(|(_, c)| c.is_control())
}

/// Checks every id in `values` with [`validate_id`].
pub fn validate_ids<'a>(what: &str, values: impl IntoIterator<Item = &'a str>) -> Result<()> {
    values
        .into_iter()
        .try_for_each(|value| validate_id(what, value))
}

/// Checks that `value` is a valid namespace: 1 to 48 bytes of ASCII lowercase letters,
/// digits and `_`, starting with a letter.
///
/// The same namespace becomes a Redis key prefix, a PostgreSQL schema and an object path
/// prefix, so it is restricted to what all three accept without quoting.
///
/// ```
/// use storage_core::validate::validate_namespace;
///
/// assert!(validate_namespace("agents_prod").is_ok());
/// assert!(validate_namespace("Prod").is_err());
/// assert!(validate_namespace("a-b").is_err());
/// ```
pub fn validate_namespace(value: &str) -> Result<()> {
    let well_formed = !value.is_empty()
        && value.len() <= MAX_NAMESPACE_BYTES
        && value.as_bytes()[0].is_ascii_lowercase()
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if well_formed {
        Ok(())
    } else {
        Err(StorageError::invalid_input(format!(
            "namespace {value:?} is invalid: use 1 to {MAX_NAMESPACE_BYTES} ASCII lowercase \
             letters, digits or '_', starting with a letter"
        )))
    }
}

/// Checks that a caller-given limit is at least 1.
pub fn validate_limit(what: &str, limit: usize) -> Result<()> {
    if limit == 0 {
        Err(StorageError::invalid_input(format!(
            "{what} must be at least 1"
        )))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The ASCII pass never hides a control character the full scan finds: the same
        /// answer for any text, mostly printable ASCII with controls (C0, DEL, C1) and
        /// multi-byte characters mixed in.
        #[test]
        fn the_first_control_character_is_the_one_a_char_scan_finds(
            text in "([ -~]{0,40}|[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}é€😀]){0,6}"
        ) {
            prop_assert_eq!(
                first_control_character(&text),
                text.char_indices().find(|(_, c)| c.is_control())
            );
        }
    }

    #[test]
    fn id_length_limits_are_bytes() {
        assert!(validate_id("id", &"a".repeat(256)).is_ok());
        assert!(validate_id("id", &"a".repeat(257)).is_err());
        // 128 two-byte characters are 256 bytes; one more is over.
        assert!(validate_id("id", &"é".repeat(128)).is_ok());
        assert!(validate_id("id", &format!("{}a", "é".repeat(128))).is_err());
    }

    #[test]
    fn control_characters_are_rejected_with_their_position() {
        let err = validate_id("session id", "ab\u{0}c").unwrap_err();
        assert!(err.message().contains("U+0000 at byte 2"), "{err}");
        assert!(validate_id("id", "a\u{7f}").is_err());
        assert!(validate_id("id", "a\u{85}").is_err());
        assert!(validate_id("id", "spaces are fine").is_ok());
    }

    #[test]
    fn namespaces_fit_every_backend() {
        assert!(validate_namespace("t1_abc").is_ok());
        assert!(validate_namespace(&"a".repeat(48)).is_ok());
        assert!(validate_namespace(&"a".repeat(49)).is_err());
        for bad in ["", "1abc", "_a", "a.b", "a:b", "a b", "ä"] {
            assert!(validate_namespace(bad).is_err(), "{bad:?}");
        }
    }
}
