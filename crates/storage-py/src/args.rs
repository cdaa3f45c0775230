//! Arguments of the native methods that pyo3 would refuse with a bare Python error where
//! the API promises the caller's `InvalidInputError`: a `str` UTF-8 cannot encode (a lone
//! surrogate; the same character inside a JSON value is refused so already) and a negative
//! or oversized count (pyo3's `OverflowError`). Each is named in a method's signature with
//! `#[pyo3(from_py_with = ...)]`; pyo3 adds the argument's name to the error as a note.
//! A value of the wrong type is still pyo3's `TypeError`, as Python's own functions raise.

use pyo3::exceptions::{PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PySequence, PyString};
use storage_core::StorageError;

use crate::errors::to_py_err;

fn invalid(value: &Bound<'_, PyAny>, message: String) -> PyErr {
    to_py_err(value.py(), &StorageError::invalid_input(message))
}

/// A `str` argument.
pub(crate) fn text(value: &Bound<'_, PyAny>) -> PyResult<String> {
    let text = value.cast::<PyString>()?;
    match text.to_cow() {
        Ok(text) => Ok(text.into_owned()),
        Err(_) => {
            let shown: String = text.repr()?.to_cow()?.chars().take(80).collect();
            Err(invalid(
                value,
                format!(
                    "{shown} holds a lone surrogate, which UTF-8 (and so storage) cannot encode"
                ),
            ))
        }
    }
}

/// A `str` argument that may be `None`.
pub(crate) fn optional_text(value: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    if value.is_none() {
        return Ok(None);
    }
    text(value).map(Some)
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
    if value.is_none() {
        return Ok(None);
    }
    texts(value).map(Some)
}

/// A count, a limit or a version: an `int` (or an object with `__index__`) of 0 or more
/// that fits `T`.
pub(crate) fn count<T: TryFrom<u64>>(value: &Bound<'_, PyAny>) -> PyResult<T> {
    let shown = || {
        value
            .repr()
            .map_or_else(|_| "the number".into(), |repr| repr.to_string())
    };
    let too_large = || invalid(value, format!("{} is too large", shown()));
    match value.extract::<u64>() {
        Ok(number) => T::try_from(number).map_err(|_| too_large()),
        Err(err) if err.is_instance_of::<PyOverflowError>(value.py()) => {
            let index = value
                .py()
                .import("operator")?
                .getattr("index")?
                .call1((value,))?;
            if index.lt(0)? {
                Err(invalid(
                    value,
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
    if value.is_none() {
        return Ok(None);
    }
    count(value).map(Some)
}
