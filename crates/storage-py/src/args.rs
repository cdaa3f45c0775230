//! Arguments of the native methods that pyo3 would refuse with a bare Python error where
//! the API promises the caller's `InvalidInputError`: a `str` UTF-8 cannot encode (a lone
//! surrogate; the same character inside a JSON value is refused so already) and a negative
//! or oversized count (pyo3's `OverflowError`). Each is named in a method's signature with
//! `#[pyo3(from_py_with = ...)]`; pyo3 adds the argument's name to the error as a note.
//! A value of the wrong type is still pyo3's `TypeError`, as Python's own functions raise.

use pyo3::exceptions::{PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PySequence, PyString};

use crate::errors::invalid_input;

/// A `str` argument.
pub(crate) fn text(value: &Bound<'_, PyAny>) -> PyResult<String> {
    let text = value.cast::<PyString>()?;
    match text.to_cow() {
        Ok(text) => Ok(text.into_owned()),
        Err(_) => {
            let shown: String = text.repr()?.to_cow()?.chars().take(80).collect();
            Err(invalid_input(
                value.py(),
                format!(
                    "{shown} holds a lone surrogate, which UTF-8 (and so storage) cannot encode"
                ),
            ))
        }
    }
}

/// A `str` argument that may be `None`.
pub(crate) fn optional_text(value: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    unless_none(value, text)
}

/// A list (a sequence, but not a `str`) of `str` arguments.
pub(crate) fn texts(value: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if value.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "expected a list of str, not a single str",
        ));
    }
    let sequence = value
        .cast::<PySequence>()
        .map_err(|_| PyTypeError::new_err("expected a list of str"))?;
    sequence.try_iter()?.map(|item| text(&item?)).collect()
}

/// [`texts`] that may be `None`.
pub(crate) fn optional_texts(value: &Bound<'_, PyAny>) -> PyResult<Option<Vec<String>>> {
    unless_none(value, texts)
}

/// A count, a limit or a version: an `int` (or an object with `__index__`) of 0 or more
/// that fits `T`.
pub(crate) fn count<T: TryFrom<u64>>(value: &Bound<'_, PyAny>) -> PyResult<T> {
    let shown = || {
        value
            .repr()
            .map_or_else(|_| "the number".into(), |repr| repr.to_string())
    };
    let too_large = || invalid_input(value.py(), format!("{} is too large", shown()));
    match value.extract::<u64>() {
        Ok(number) => T::try_from(number).map_err(|_| too_large()),
        Err(err) if err.is_instance_of::<PyOverflowError>(value.py()) => {
            let index = value
                .py()
                .import("operator")?
                .getattr("index")?
                .call1((value,))?;
            if index.lt(0)? {
                Err(invalid_input(
                    value.py(),
                    format!("expected 0 or more, got {}", shown()),
                ))
            } else {
                Err(too_large())
            }
        }
        Err(err) => Err(err),
    }
}

/// [`count`] that may be `None`.
pub(crate) fn optional_count<T: TryFrom<u64>>(value: &Bound<'_, PyAny>) -> PyResult<Option<T>> {
    unless_none(value, count)
}

/// `None` for `None`, else what `read` makes of the value: the optional form of each
/// reader above (pyo3 hands `from_py_with` an explicit `None` too).
fn unless_none<'a, 'py, T>(
    value: &'a Bound<'py, PyAny>,
    read: fn(&'a Bound<'py, PyAny>) -> PyResult<T>,
) -> PyResult<Option<T>> {
    if value.is_none() {
        return Ok(None);
    }
    read(value).map(Some)
}
