//! Sessions: one small record per agent session, with lifecycle and metrics.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::json::Metadata;
use crate::page::Page;
use crate::time::{self, Timestamp};

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Open; the default for a new session.
    Active,
    /// Ended normally.
    Completed,
    /// Ended by an error.
    Failed,
    /// Ended on the caller's request.
    Cancelled,
    /// Ended for being idle too long.
    Expired,
}

impl SessionStatus {
    /// Every status, in declaration order.
    pub const ALL: [SessionStatus; 5] = [
        SessionStatus::Active,
        SessionStatus::Completed,
        SessionStatus::Failed,
        SessionStatus::Cancelled,
        SessionStatus::Expired,
    ];

    /// The status's stable snake_case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Active => "active",
            SessionStatus::Completed => "completed",
            SessionStatus::Failed => "failed",
            SessionStatus::Cancelled => "cancelled",
            SessionStatus::Expired => "expired",
        }
    }

    /// Parses a name produced by [`SessionStatus::as_str`].
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == name)
            .ok_or_else(|| {
                StorageError::invalid_input(format!(
                    "unknown session status {name:?}; expected one of active, completed, \
                     failed, cancelled, expired"
                ))
            })
    }
}

impl std::fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counters kept per session, updated atomically by [`SessionStore::update_session`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionMetrics {
    /// Requests served.
    pub request_count: u64,
    /// Processing time summed over requests, in milliseconds.
    pub total_processing_ms: u64,
    /// Requests that failed.
    pub error_count: u64,
    /// The message of the most recent error, if any.
    pub last_error: Option<String>,
}

/// A session record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// The caller's id for the session.
    pub id: String,
    /// The user (or tenant) the session belongs to.
    pub user_id: String,
    /// Lifecycle status.
    pub status: SessionStatus,
    /// Free-form metadata, patched by top-level merge.
    pub metadata: Metadata,
    /// Request, time and error counters.
    pub metrics: SessionMetrics,
    /// When the session was created.
    pub created_at: Timestamp,
    /// The last create, update or end; what listing orders by and cleanup expires by.
    pub last_activity: Timestamp,
    /// When the session was ended, if it was.
    pub ended_at: Option<Timestamp>,
}

/// What a caller gives to create a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewSession {
    /// The session's id.
    pub id: String,
    /// The owning user.
    pub user_id: String,
    /// Initial metadata.
    #[serde(default)]
    pub metadata: Metadata,
}

impl NewSession {
    /// A new session with empty metadata.
    pub fn new(id: impl Into<String>, user_id: impl Into<String>) -> Self {
        NewSession {
            id: id.into(),
            user_id: user_id.into(),
            metadata: Metadata::new(),
        }
    }

    /// Sets the initial metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Checks the ids and the metadata against the [input policy](crate::policy), before
    /// any I/O.
    pub fn validate(&self) -> Result<()> {
        crate::validate::validate_id("session id", &self.id)?;
        crate::validate::validate_id("user id", &self.user_id)?;
        crate::policy::check_metadata("session metadata", &self.metadata)
    }

    /// The record this creates at `now`: active, zero metrics.
    pub fn into_session(self, now: Timestamp) -> Session {
        Session {
            id: self.id,
            user_id: self.user_id,
            status: SessionStatus::Active,
            metadata: self.metadata,
            metrics: SessionMetrics::default(),
            created_at: now,
            last_activity: now,
            ended_at: None,
        }
    }
}

/// An atomic change to a session: every part is applied together, or none is.
///
/// ```
/// use serde_json::json;
/// use storage_core::SessionUpdate;
///
/// let update = SessionUpdate::default()
///     .patch("step", json!("plan"))
///     .request(120)
///     .error("tool timed out");
/// assert_eq!(update.add_requests, 1);
/// assert_eq!(update.add_processing_ms, 120);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionUpdate {
    /// Top-level merge into the metadata; a `null` value removes its key.
    #[serde(default)]
    pub metadata_patch: Metadata,
    /// Added to `request_count`.
    #[serde(default)]
    pub add_requests: u64,
    /// Added to `total_processing_ms`.
    #[serde(default)]
    pub add_processing_ms: u64,
    /// When set, increments `error_count` and records the message as `last_error`.
    #[serde(default)]
    pub error: Option<String>,
}

impl SessionUpdate {
    /// Adds one metadata key to the patch (`null` removes the key).
    pub fn patch(mut self, key: impl Into<String>, value: serde_json::Value) -> Self {
        self.metadata_patch.insert(key.into(), value);
        self
    }
    /// Counts one request that took `processing_ms`.
    pub fn request(mut self, processing_ms: u64) -> Self {
        self.add_requests += 1;
        self.add_processing_ms += processing_ms;
        self
    }
    /// Marks an error.
    pub fn error(mut self, message: impl Into<String>) -> Self {
        self.error = Some(message.into());
        self
    }

    /// Checks the metadata patch against the [input policy](crate::policy), before any
    /// I/O. Counters need no check: they saturate at `u64::MAX` on every backend.
    pub fn validate(&self) -> Result<()> {
        crate::policy::check_metadata("session metadata patch", &self.metadata_patch)
    }

    /// Applies the update to `session` at `now`. The one definition every backend that
    /// updates a decoded record uses; backends that update in place must match it.
    pub fn apply_to(&self, session: &mut Session, now: Timestamp) {
        crate::json::merge_metadata(&mut session.metadata, &self.metadata_patch);
        let metrics = &mut session.metrics;
        metrics.request_count = metrics.request_count.saturating_add(self.add_requests);
        metrics.total_processing_ms = metrics
            .total_processing_ms
            .saturating_add(self.add_processing_ms);
        if let Some(error) = &self.error {
            metrics.error_count = metrics.error_count.saturating_add(1);
            metrics.last_error = Some(error.clone());
        }
        session.last_activity = now.max(session.last_activity);
    }
}

/// Ends `session` with `status` at `now`: the one definition of what ending does.
pub fn end_session_record(session: &mut Session, status: SessionStatus, now: Timestamp) {
    session.status = status;
    session.ended_at = Some(now);
    session.last_activity = now.max(session.last_activity);
}

/// Filters and paging for [`SessionStore::list_sessions`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionQuery {
    /// Only this user's sessions.
    pub user_id: Option<String>,
    /// Only sessions in this status.
    pub status: Option<SessionStatus>,
    /// At most this many per page (1 or more).
    pub limit: usize,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl Default for SessionQuery {
    fn default() -> Self {
        SessionQuery {
            user_id: None,
            status: None,
            limit: 100,
            cursor: None,
        }
    }
}

impl SessionQuery {
    /// Checks the filters and decodes the cursor, before any I/O.
    pub fn validate(&self) -> Result<Option<SessionCursor>> {
        if let Some(user_id) = &self.user_id {
            crate::validate::validate_id("user id", user_id)?;
        }
        crate::validate::validate_limit("session list limit", self.limit)?;
        self.cursor
            .as_deref()
            .map(SessionCursor::decode)
            .transpose()
    }
}

/// Checks a whole session record for [`SessionStore::import_session`], before any I/O:
/// its ids and its metadata.
pub fn validate_import(session: &Session) -> Result<()> {
    crate::validate::validate_id("session id", &session.id)?;
    crate::validate::validate_id("user id", &session.user_id)?;
    crate::policy::check_metadata("session metadata", &session.metadata)
}

/// Position in the listing order: most recent activity first, then id ascending.
///
/// Encoded into an opaque string for callers; every backend uses this one codec so a
/// cursor means the same everywhere.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SessionCursor {
    /// `last_activity` of the last session on the previous page, in microseconds.
    pub last_activity_micros: i64,
    /// Its id.
    pub id: String,
}

impl SessionCursor {
    /// The cursor just after `session`.
    pub fn after(session: &Session) -> Self {
        SessionCursor {
            last_activity_micros: time::to_micros(session.last_activity),
            id: session.id.clone(),
        }
    }

    /// Whether `session` sorts after this cursor in the listing order.
    pub fn precedes(&self, session: &Session) -> bool {
        let micros = time::to_micros(session.last_activity);
        micros < self.last_activity_micros
            || (micros == self.last_activity_micros && session.id > self.id)
    }

    /// The opaque form handed to callers.
    pub fn encode(&self) -> String {
        format!(
            "{}.{}",
            self.last_activity_micros,
            hex::encode(self.id.as_bytes())
        )
    }

    /// Parses [`SessionCursor::encode`]'s output; anything else is `InvalidInput`: a
    /// cursor longer than [`MAX_CURSOR_BYTES`](crate::policy::MAX_CURSOR_BYTES), or one
    /// whose id is not a valid session id.
    pub fn decode(cursor: &str) -> Result<Self> {
        crate::policy::check_cursor("session cursor", cursor)?;
        let invalid = || {
            let shown: String = cursor.chars().take(64).collect();
            StorageError::invalid_input(format!("malformed session cursor {shown:?}"))
        };
        let (micros, id) = cursor.split_once('.').ok_or_else(invalid)?;
        let last_activity_micros = micros.parse().map_err(|_| invalid())?;
        let id = hex::decode(id)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(invalid)?;
        crate::validate::validate_id("session id in the session cursor", &id)?;
        Ok(SessionCursor {
            last_activity_micros,
            id,
        })
    }
}

/// The outcome of [`SessionStore::create_sessions`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchCreate {
    /// Sessions created, in input order.
    pub created: Vec<Session>,
    /// Ids that already had a live session and were left untouched, in input order.
    pub already_existed: Vec<String>,
}

/// Session storage.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Creates an active session. A live session with the same id is `AlreadyExists`.
    async fn create_session(&self, session: NewSession) -> Result<Session>;

    /// Creates many sessions in one round trip where the backend can. Ids already present
    /// are reported, not overwritten. Invalid input or an id repeated within the batch fails
    /// the whole call before anything is stored.
    async fn create_sessions(&self, sessions: Vec<NewSession>) -> Result<BatchCreate>;

    /// The session, or `None`.
    async fn get_session(&self, id: &str) -> Result<Option<Session>>;

    /// Many sessions in one round trip where the backend can, in input order.
    async fn get_sessions(&self, ids: &[String]) -> Result<Vec<Option<Session>>>;

    /// Applies `update` atomically and returns the new record; `NotFound` if absent.
    async fn update_session(&self, id: &str, update: SessionUpdate) -> Result<Session>;

    /// Records `status` and the end time; `NotFound` if absent.
    async fn end_session(&self, id: &str, status: SessionStatus) -> Result<Session>;

    /// Removes the session and, in this backend, its conversation and task context.
    /// Returns whether the session existed.
    async fn delete_session(&self, id: &str) -> Result<bool>;

    /// Whole session records matching the query, most recent activity first.
    async fn list_sessions(&self, query: SessionQuery) -> Result<Page<Session>>;

    /// Stores `session` exactly as given (ids, status, metadata, metrics and every
    /// timestamp), replacing a stored record with the same id, and keeps the listing and
    /// cleanup indexes in step. For moving data between backends (`storectl migrate`):
    /// storing the same record twice has the effect of storing it once. Backends that
    /// cannot answer `Unsupported`.
    async fn import_session(&self, session: Session) -> Result<()> {
        let _ = session;
        Err(StorageError::unsupported(
            "this backend cannot import session records",
        ))
    }
}

/// Checks a batch of new sessions, before any I/O: every id valid, none repeated.
pub fn validate_new_sessions(sessions: &[NewSession]) -> Result<()> {
    let mut seen = std::collections::HashSet::with_capacity(sessions.len());
    for session in sessions {
        session.validate()?;
        if !seen.insert(session.id.as_str()) {
            return Err(StorageError::invalid_input(format!(
                "session id {:?} appears twice in one batch",
                session.id
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_hostile_ids() {
        let cursor = SessionCursor {
            last_activity_micros: -5,
            id: "a.b:{c}*'%..".into(),
        };
        assert_eq!(SessionCursor::decode(&cursor.encode()).unwrap(), cursor);
        for bad in ["", "12", "x.61", "1.zz", "1.ff"] {
            assert!(SessionCursor::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_names_round_trip() {
        for status in SessionStatus::ALL {
            assert_eq!(SessionStatus::parse(status.as_str()).unwrap(), status);
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        assert!(SessionStatus::parse("done").is_err());
    }
}
