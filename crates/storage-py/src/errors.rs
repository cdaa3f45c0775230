//! `storage_core::StorageError` to Python exceptions.
//!
//! The exception classes are defined in Python (`agent_storage/errors.py`), where users read
//! and subclass them; this module only asks that file for the instance matching an error's
//! kind and operation, so the mapping table lives in one place.

use pyo3::prelude::*;
use storage_core::StorageError;

/// The Python exception for `err`, carrying its kind, `temporary`, backend and operation.
pub(crate) fn to_py_err(py: Python<'_>, err: &StorageError) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let instance = py
            .import("agent_storage.errors")?
            .getattr("_from_native")?
            .call1((
                err.kind().as_str(),
                err.is_temporary(),
                err.backend_name(),
                err.operation(),
                err.to_string(),
            ))?;
        Ok(PyErr::from_value(instance))
    };
    // Without the Python package (a bare `_native` import) the kinds still reach the caller.
    // Anything else that fails while the exception is built is raised as it is: a signal
    // handler runs there too, and its exception (Ctrl-C's `KeyboardInterrupt`) must reach
    // the caller, not hide as the cause of a bare `RuntimeError`.
    build().unwrap_or_else(|failed| {
        if !failed.is_instance_of::<pyo3::exceptions::PyImportError>(py) {
            return failed;
        }
        let err = pyo3::exceptions::PyRuntimeError::new_err(err.to_string());
        err.set_cause(py, Some(failed));
        err
    })
}

/// The caller's `InvalidInputError` saying `message`: what every refusal of a value the
/// caller gave raises.
pub(crate) fn invalid_input(py: Python<'_>, message: impl Into<String>) -> PyErr {
    to_py_err(py, &StorageError::invalid_input(message))
}
