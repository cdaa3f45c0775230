//! Task context: versioned values addressed by scope, updated with compare-and-set, with
//! their earlier versions kept.
//!
//! A context belongs to a [`ContextScope`]: one session's own, a user's (shared by that
//! user's sessions) or the application's (shared by every session of the namespace), in
//! the spirit of ADK's `user:` and `app:` state prefixes. Every store creates the next
//! version (from 1) and keeps the previous ones, up to the `keep_versions` the store names:
//! after a store that creates version `v` with `keep_versions = k`, exactly the versions
//! above `v - k` that were stored remain readable, and no reader sees it otherwise (the
//! trimming is part of the store). Deleting a session deletes its own context, never a
//! shared one. A session's view over all three is [`merge_contexts`].

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Result, StorageError};
use crate::time::Timestamp;
use crate::validate::{validate_id, validate_limit};

/// How many versions a store keeps when the caller names no other number: this version
/// and the 99 before it.
pub const DEFAULT_KEEP_VERSIONS: u32 = 100;

/// The most versions one store may ask to keep.
pub const MAX_KEEP_VERSIONS: u32 = 1_000_000;

/// Who a task context belongs to.
///
/// Serialized as `{"session": "s1"}`, `{"user": "u1"}` or `"app"`.
///
/// ```
/// use storage_core::ContextScope;
///
/// let scope = ContextScope::user("alice");
/// assert_eq!(scope.key(), "user:alice");
/// assert_eq!(ContextScope::from_key("user:alice").unwrap(), scope);
/// assert_eq!(ContextScope::App.key(), "app");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextScope {
    /// Shared by every session of the namespace; never deleted with a session.
    App,
    /// One session's own context, deleted with the session.
    Session(String),
    /// Shared by the sessions of one user; never deleted with a session.
    User(String),
}

impl ContextScope {
    /// A session's own scope.
    pub fn session(id: impl Into<String>) -> Self {
        ContextScope::Session(id.into())
    }

    /// A user's shared scope.
    pub fn user(id: impl Into<String>) -> Self {
        ContextScope::User(id.into())
    }

    /// The session id of a session scope.
    pub fn session_id(&self) -> Option<&str> {
        match self {
            ContextScope::Session(id) => Some(id),
            _ => None,
        }
    }

    /// `app`, `session` or `user`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            ContextScope::App => "app",
            ContextScope::Session(_) => "session",
            ContextScope::User(_) => "user",
        }
    }

    /// The id within the kind; empty for the application scope.
    pub fn id(&self) -> &str {
        match self {
            ContextScope::App => "",
            ContextScope::Session(id) | ContextScope::User(id) => id,
        }
    }

    /// One string naming the scope, `app`, `session:<id>` or `user:<id>`: how backends
    /// address a scope in one key, and the order [`TaskContextStore::list_context_scopes`]
    /// lists in. Distinct scopes have distinct keys.
    pub fn key(&self) -> String {
        match self {
            ContextScope::App => "app".to_owned(),
            scoped => format!("{}:{}", scoped.kind_name(), scoped.id()),
        }
    }

    /// The scope [`key`](Self::key) names; `InvalidInput` for anything else.
    pub fn from_key(key: &str) -> Result<Self> {
        let scope = match key.split_once(':') {
            None if key == "app" => ContextScope::App,
            Some(("session", id)) => ContextScope::session(id),
            Some(("user", id)) => ContextScope::user(id),
            _ => {
                return Err(StorageError::invalid_input(format!(
                    "{key:?} names no context scope; use app, session:<id> or user:<id>"
                )))
            }
        };
        scope.validate()?;
        Ok(scope)
    }

    /// Checks the id, before any I/O.
    pub fn validate(&self) -> Result<()> {
        match self {
            ContextScope::App => Ok(()),
            ContextScope::Session(id) => validate_id("session id", id),
            ContextScope::User(id) => validate_id("user id", id),
        }
    }
}

impl std::fmt::Display for ContextScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContextScope::App => f.write_str("the application scope"),
            scoped => write!(f, "{} {:?}", scoped.kind_name(), scoped.id()),
        }
    }
}

/// One version of a task context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ContextRecord")]
pub struct TaskContext {
    /// Whose context it is.
    pub scope: ContextScope,
    /// The value.
    pub value: Value,
    /// Starts at 1 and increases by one on every store.
    pub version: u64,
    /// When this version was stored.
    pub updated_at: Timestamp,
}

impl TaskContext {
    /// The session id, for a session's own context.
    pub fn session_id(&self) -> Option<&str> {
        self.scope.session_id()
    }
}

/// A context as serialized by this release (`scope`) or by releases before scopes
/// (`session_id`), which exports and stored records of that time carry.
#[derive(Deserialize)]
struct ContextRecord {
    #[serde(default)]
    scope: Option<ContextScope>,
    #[serde(default)]
    session_id: Option<String>,
    value: Value,
    version: u64,
    updated_at: Timestamp,
}

impl TryFrom<ContextRecord> for TaskContext {
    type Error = String;

    fn try_from(record: ContextRecord) -> std::result::Result<Self, String> {
        let scope = match (record.scope, record.session_id) {
            (Some(scope), _) => scope,
            (None, Some(session_id)) => ContextScope::Session(session_id),
            (None, None) => return Err("a task context names neither scope nor session_id".into()),
        };
        Ok(TaskContext {
            scope,
            value: record.value,
            version: record.version,
            updated_at: record.updated_at,
        })
    }
}

/// What a store expects the current version to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Store whatever is there (last writer wins).
    Any,
    /// Store only if there is no context yet.
    Absent,
    /// Store only if the current version is exactly this one.
    Exactly(u64),
}

impl ExpectedVersion {
    /// Checks `current` (the stored version, `None` if absent) against the expectation and
    /// returns the version the store creates, or `Conflict`.
    pub fn next_version(self, scope: &ContextScope, current: Option<u64>) -> Result<u64> {
        let matches = match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::Absent => current.is_none(),
            ExpectedVersion::Exactly(expected) => current == Some(expected),
        };
        if matches {
            Ok(current.unwrap_or(0) + 1)
        } else {
            Err(StorageError::conflict(format!(
                "task context of {scope} is at version {}; expected {}",
                current.map_or_else(|| "none".to_owned(), |v| v.to_string()),
                self.describe()
            )))
        }
    }

    fn describe(self) -> String {
        match self {
            ExpectedVersion::Any => "any".into(),
            ExpectedVersion::Absent => "none".into(),
            ExpectedVersion::Exactly(version) => version.to_string(),
        }
    }
}

/// The lowest version still readable after a store created `version` keeping
/// `keep_versions` of them.
///
/// ```
/// use storage_core::task_context::oldest_kept;
///
/// assert_eq!(oldest_kept(7, 3), 5);
/// assert_eq!(oldest_kept(2, 100), 1);
/// ```
pub fn oldest_kept(version: u64, keep_versions: u32) -> u64 {
    version
        .saturating_sub(u64::from(keep_versions))
        .saturating_add(1)
        .max(1)
}

/// Task-context storage.
#[async_trait]
pub trait TaskContextStore: Send + Sync {
    /// The scope's context at `version`, or its current one when `version` is `None`;
    /// `None` if there is none (never stored, deleted, or that version trimmed).
    async fn get_context(
        &self,
        scope: ContextScope,
        version: Option<u64>,
    ) -> Result<Option<TaskContext>>;

    /// The scope's kept versions below `before` (all when `None`), newest first, at most
    /// `limit` (1 or more), at a cost independent of how many versions there are.
    async fn list_context_versions(
        &self,
        scope: ContextScope,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<TaskContext>>;

    /// Stores `value` as the scope's next version if `expected` holds, keeps the
    /// `keep_versions` newest versions (1 to [`MAX_KEEP_VERSIONS`]) and trims the rest in
    /// the same step; returns the stored version. `Conflict` (changing nothing) if
    /// `expected` does not hold.
    async fn store_context(
        &self,
        scope: ContextScope,
        value: Value,
        expected: ExpectedVersion,
        keep_versions: u32,
    ) -> Result<TaskContext>;

    /// Removes the scope's context with every version; returns whether there was one. A
    /// later store starts again at version 1.
    async fn delete_context(&self, scope: ContextScope) -> Result<bool>;

    /// Applies `retention` to every context scope (the series is a scope's versions;
    /// retention moves the oldest version kept, as a store's `keep_versions` does): see
    /// [`crate::retention`] for the rule (an oldest-first prefix of expired records, never
    /// the newest, one atomic step per series) and the cost. Returns how many versions it
    /// removed. `keep_last` of 0 is `InvalidInput`; a retention without limits removes
    /// nothing.
    async fn retain_context_versions(&self, retention: crate::Retention) -> Result<u64>;

    /// Stores `context` exactly as given (scope, value, version and time), for moving data
    /// between backends, unless the scope's current version is that one or a newer one;
    /// it trims nothing (the next store trims as it asks). Importing a scope's versions
    /// oldest first reproduces its history; importing twice has the effect of importing
    /// once. Returns whether it was stored. A version of 0 is `InvalidInput`. Backends
    /// that cannot answer `Unsupported`.
    async fn import_task_context(&self, context: TaskContext) -> Result<bool> {
        let _ = context;
        Err(StorageError::unsupported(
            "this backend cannot import task context",
        ))
    }

    /// Scopes with a stored context, whether or not a session has a record, ordered by
    /// [`ContextScope::key`], after `after`, at most `limit` (1 or more) of them: how
    /// `storectl migrate` finds every context. Backends that cannot enumerate answer
    /// `Unsupported`.
    async fn list_context_scopes(
        &self,
        after: Option<ContextScope>,
        limit: usize,
    ) -> Result<Vec<ContextScope>> {
        let _ = (after, limit);
        Err(StorageError::unsupported(
            "this backend cannot list task context scopes",
        ))
    }
}

/// Checks a [`TaskContextStore::get_context`] call, before any I/O.
pub fn validate_get(scope: &ContextScope, version: Option<u64>) -> Result<()> {
    scope.validate()?;
    if version == Some(0) {
        return Err(StorageError::invalid_input(
            "task context version 0 does not exist; versions start at 1",
        ));
    }
    Ok(())
}

/// Checks a [`TaskContextStore::list_context_versions`] call, before any I/O.
pub fn validate_list(scope: &ContextScope, limit: usize) -> Result<()> {
    scope.validate()?;
    validate_limit("task context version limit", limit)
}

/// Checks a [`TaskContextStore::store_context`] call, before any I/O: the scope, the value
/// against the [input policy](crate::policy) and the number of versions to keep.
pub fn validate_store(scope: &ContextScope, value: &Value, keep_versions: u32) -> Result<()> {
    scope.validate()?;
    if keep_versions == 0 || keep_versions > MAX_KEEP_VERSIONS {
        return Err(StorageError::invalid_input(format!(
            "keep_versions is {keep_versions}; keep 1 to {MAX_KEEP_VERSIONS} versions"
        )));
    }
    crate::policy::check_json("task context value", value)
}

/// Checks a context for [`TaskContextStore::import_task_context`], before any I/O.
pub fn validate_import(context: &TaskContext) -> Result<()> {
    validate_store(&context.scope, &context.value, DEFAULT_KEEP_VERSIONS)?;
    if context.version == 0 {
        return Err(StorageError::invalid_input(
            "imported task context has version 0; versions start at 1",
        ));
    }
    crate::policy::check_imported_number("imported task context version", context.version)?;
    Ok(())
}

/// A session's view of its context over the shared ones: see [`merge_contexts`].
#[derive(Debug, Clone, PartialEq)]
pub struct MergedContext {
    /// The merged value.
    pub value: Value,
    /// The contexts it was made of, least specific first (application, user, session),
    /// each with its version.
    pub sources: Vec<TaskContext>,
}

/// Merges contexts given least specific first (application, then user, then session): a
/// more specific context's top-level keys replace the same keys of the less specific
/// ones when both are JSON objects, and a more specific value that is not an object
/// replaces everything below it. `None` when there is no context at all.
///
/// ```
/// use serde_json::json;
/// use storage_core::task_context::merge_contexts;
/// use storage_core::{ContextScope, TaskContext};
///
/// let at = |scope, value| TaskContext { scope, value, version: 1, updated_at: storage_core::time::now() };
/// let merged = merge_contexts(vec![
///     at(ContextScope::App, json!({"tone": "formal", "locale": "en"})),
///     at(ContextScope::user("alice"), json!({"locale": "fr"})),
///     at(ContextScope::session("s1"), json!({"goal": "refund"})),
/// ])
/// .unwrap();
/// assert_eq!(merged.value, json!({"tone": "formal", "locale": "fr", "goal": "refund"}));
/// ```
pub fn merge_contexts(sources: Vec<TaskContext>) -> Option<MergedContext> {
    let mut merged: Option<Value> = None;
    for source in &sources {
        merged = Some(match (merged, &source.value) {
            (Some(Value::Object(mut below)), Value::Object(above)) => {
                below.extend(above.iter().map(|(k, v)| (k.clone(), v.clone())));
                Value::Object(below)
            }
            (_, above) => above.clone(),
        });
    }
    merged.map(|value| MergedContext { value, sources })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations() {
        let s = ContextScope::session("s");
        assert_eq!(ExpectedVersion::Any.next_version(&s, None).unwrap(), 1);
        assert_eq!(ExpectedVersion::Any.next_version(&s, Some(4)).unwrap(), 5);
        assert_eq!(ExpectedVersion::Absent.next_version(&s, None).unwrap(), 1);
        assert!(ExpectedVersion::Absent.next_version(&s, Some(1)).is_err());
        assert_eq!(
            ExpectedVersion::Exactly(2)
                .next_version(&s, Some(2))
                .unwrap(),
            3
        );
        let err = ExpectedVersion::Exactly(1)
            .next_version(&s, Some(2))
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Conflict);
        assert!(err.message().contains("session \"s\""), "{err}");
        assert!(ExpectedVersion::Exactly(1).next_version(&s, None).is_err());
    }

    #[test]
    fn scope_keys_round_trip_and_refuse_what_names_no_scope() {
        for scope in [
            ContextScope::App,
            ContextScope::session("a:b"),
            ContextScope::user("user:x"),
        ] {
            assert_eq!(ContextScope::from_key(&scope.key()).unwrap(), scope);
        }
        for bad in ["", "apps", "app:", "session:", "team:x", "user"] {
            assert!(ContextScope::from_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn scopes_serialize_readably() {
        let json = serde_json::to_value(ContextScope::user("u")).unwrap();
        assert_eq!(json, serde_json::json!({"user": "u"}));
        assert_eq!(
            serde_json::to_value(ContextScope::App).unwrap(),
            serde_json::json!("app")
        );
    }

    #[test]
    fn a_context_written_before_scopes_reads_as_its_session_scope() {
        let old = serde_json::json!({
            "session_id": "s1",
            "value": {"step": 2},
            "version": 2,
            "updated_at": "2026-11-01T10:00:00Z",
        });
        let context: TaskContext = serde_json::from_value(old).unwrap();
        assert_eq!(context.scope, ContextScope::session("s1"));
        let again: TaskContext =
            serde_json::from_value(serde_json::to_value(&context).unwrap()).unwrap();
        assert_eq!(again, context);
    }

    #[test]
    fn retention_bounds() {
        assert_eq!(oldest_kept(1, 1), 1);
        assert_eq!(oldest_kept(10, 1), 10);
        assert_eq!(oldest_kept(10, 10), 1);
        assert_eq!(oldest_kept(u64::MAX, MAX_KEEP_VERSIONS), u64::MAX - 999_999);
        assert!(validate_store(&ContextScope::App, &Value::Null, 0).is_err());
        assert!(validate_store(&ContextScope::App, &Value::Null, MAX_KEEP_VERSIONS + 1).is_err());
    }

    #[test]
    fn merge_precedence() {
        use serde_json::json;
        let at = |scope, value| TaskContext {
            scope,
            value,
            version: 1,
            updated_at: crate::time::now(),
        };
        assert_eq!(merge_contexts(vec![]), None);
        let merged = merge_contexts(vec![
            at(ContextScope::App, json!({"a": 1, "b": {"x": 1}})),
            at(ContextScope::session("s"), json!({"b": {"y": 2}})),
        ])
        .unwrap();
        assert_eq!(merged.value, json!({"a": 1, "b": {"y": 2}}));
        let replaced = merge_contexts(vec![
            at(ContextScope::App, json!({"a": 1})),
            at(ContextScope::user("u"), json!([1, 2])),
        ])
        .unwrap();
        assert_eq!(replaced.value, json!([1, 2]));
    }
}
