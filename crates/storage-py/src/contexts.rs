//! Task contexts by scope with their kept versions, as Python methods of
//! [`NativeStorage`]. A scope crosses as its key: `"app"`, `"session:<id>"` or
//! `"user:<id>"`.

use pyo3::prelude::*;
use serde_json::{json, Value};
use storage_core::prelude::*;
use storage_core::task_context::DEFAULT_KEEP_VERSIONS;
use storage_core::TaskContext;

use crate::args;
use crate::calls::finish;
use crate::errors::to_py_err;
use crate::native::NativeStorage;
use crate::values::from_python;

/// A context as Python sees it: the scope as its key.
fn context(context: &TaskContext) -> Value {
    json!({
        "scope": context.scope.key(),
        "value": context.value,
        "version": context.version,
        "updated_at": context.updated_at.to_rfc3339(),
    })
}

fn scope(py: Python<'_>, key: &str) -> PyResult<ContextScope> {
    ContextScope::from_key(key).map_err(|err| to_py_err(py, &err))
}

/// `None` overwrites, `0` requires no context yet, `n` requires version `n`.
fn expectation(expected_version: Option<u64>) -> ExpectedVersion {
    match expected_version {
        None => ExpectedVersion::Any,
        Some(0) => ExpectedVersion::Absent,
        Some(version) => ExpectedVersion::Exactly(version),
    }
}

#[pymethods]
impl NativeStorage {
    /// The session's own context (`scope`, `value`, `version`, `updated_at`) or `None`.
    fn get_task_context<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] session_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let storage = self.storage()?;
        finish(py, false, async move {
            Ok(storage
                .get_task_context(&session_id)
                .await?
                .as_ref()
                .map(context))
        })
    }

    /// Stores the session's own context (keeping 100 versions); `expected_version` `None`
    /// overwrites, `0` requires no context yet, `n` requires version `n` (else
    /// `ConflictError`).
    #[pyo3(signature = (session_id, value, expected_version=None))]
    fn store_task_context<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] session_id: String,
        value: &Bound<'py, PyAny>,
        #[pyo3(from_py_with = args::optional_count)] expected_version: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.store_context(
            py,
            ContextScope::session(session_id).key(),
            value,
            expected_version,
            DEFAULT_KEEP_VERSIONS,
        )
    }

    /// The scope's current context, or its kept `version`; `None` if there is none.
    #[pyo3(signature = (scope, version=None))]
    fn get_context<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] scope: String,
        #[pyo3(from_py_with = args::optional_count)] version: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (storage, scope) = (self.storage()?, self::scope(py, &scope)?);
        finish(py, false, async move {
            Ok(storage
                .get_context(scope, version)
                .await?
                .as_ref()
                .map(context))
        })
    }

    /// The scope's kept versions below `before`, newest first, at most `limit`.
    #[pyo3(signature = (scope, before=None, limit=10))]
    fn list_context_versions<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] scope: String,
        #[pyo3(from_py_with = args::optional_count)] before: Option<u64>,
        #[pyo3(from_py_with = args::count)] limit: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (storage, scope) = (self.storage()?, self::scope(py, &scope)?);
        finish(py, false, async move {
            let versions = storage.list_context_versions(scope, before, limit).await?;
            Ok(versions.iter().map(context).collect::<Vec<_>>())
        })
    }

    /// Stores the scope's next version if `expected_version` holds (see
    /// `store_task_context`), keeping the `keep_versions` newest.
    #[pyo3(signature = (scope, value, expected_version=None, keep_versions=DEFAULT_KEEP_VERSIONS))]
    fn store_context<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] scope: String,
        value: &Bound<'py, PyAny>,
        #[pyo3(from_py_with = args::optional_count)] expected_version: Option<u64>,
        #[pyo3(from_py_with = args::count)] keep_versions: u32,
    ) -> PyResult<Bound<'py, PyAny>> {
        let value: Value = from_python("task context", value)?;
        let (storage, scope) = (self.storage()?, self::scope(py, &scope)?);
        finish(py, false, async move {
            let stored = storage
                .store_context(scope, value, expectation(expected_version), keep_versions)
                .await?;
            Ok(context(&stored))
        })
    }

    /// Removes the scope's context with every version; whether there was one.
    fn delete_context<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] scope: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (storage, scope) = (self.storage()?, self::scope(py, &scope)?);
        finish(
            py,
            false,
            async move { storage.delete_context(scope).await },
        )
    }

    /// Keys of the scopes with a context after `after`, in key order, at most `limit`.
    #[pyo3(signature = (after=None, limit=100))]
    fn list_context_scopes<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::optional_text)] after: Option<String>,
        #[pyo3(from_py_with = args::count)] limit: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let after = after.as_deref().map(|key| scope(py, key)).transpose()?;
        let storage = self.storage()?;
        finish(py, false, async move {
            let scopes = storage.list_context_scopes(after, limit).await?;
            Ok(scopes.iter().map(ContextScope::key).collect::<Vec<_>>())
        })
    }

    /// The session's view: the application's context, the user's, then the session's own,
    /// merged (the more specific wins per top-level key); `None` when there is none.
    #[pyo3(signature = (session_id, user_id=None))]
    fn get_merged_context<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::text)] session_id: String,
        #[pyo3(from_py_with = args::optional_text)] user_id: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let storage = self.storage()?;
        finish(py, false, async move {
            let merged = storage
                .get_merged_context(&session_id, user_id.as_deref())
                .await?;
            Ok(merged.map(|merged| {
                json!({
                    "value": merged.value,
                    "sources": merged.sources.iter().map(context).collect::<Vec<_>>(),
                })
            }))
        })
    }
}
