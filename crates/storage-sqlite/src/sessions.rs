//! Sessions: one row per session, the wire-encoded record plus the columns the listing and
//! cleanup indexes need.

use std::time::Duration;

use rusqlite::types::Value as SqlValue;
use rusqlite::OptionalExtension;
use storage_core::session::{end_session_record, validate_new_sessions, SessionCursor};
use storage_core::validate::{validate_id, validate_ids};
use storage_core::{
    time, wire, BatchCreate, ContextScope, NewSession, Page, Session, SessionQuery, SessionStatus,
    SessionUpdate, StorageError,
};

use crate::backend::{to_i64, SqliteBackend};
use crate::engine::Db;
use crate::error::SqlResult;

const INSERT: &str =
    "INSERT INTO \"{ns}.sessions\" (id, user_id, status, last_activity_us, record) \
     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING";

/// Looks up one session by its primary key.
const SELECT_ONE: &str = "SELECT record FROM \"{ns}.sessions\" WHERE id = ?1";

const UPDATE: &str =
    "UPDATE \"{ns}.sessions\" SET status = ?2, last_activity_us = ?3, record = ?4 \
     WHERE id = ?1";

const DELETE_SESSION: &str = "DELETE FROM \"{ns}.sessions\" WHERE id = ?1";
const DELETE_MESSAGES: &str = "DELETE FROM \"{ns}.messages\" WHERE session_id = ?1";
const DELETE_KEPT: &str = "DELETE FROM \"{ns}.replaced_messages\" WHERE session_id = ?1";
const DELETE_COUNTER: &str = "DELETE FROM \"{ns}.message_counters\" WHERE session_id = ?1";

/// Idle sessions, oldest first, through the activity index: cleanup reads what it removes.
const IDLE: &str = "SELECT id FROM \"{ns}.sessions\" WHERE last_activity_us < ?1";

fn insert(db: &Db<'_>, session: &Session) -> SqlResult<bool> {
    let record = wire::encode(session)?;
    let inserted = db.prepare(INSERT)?.execute((
        &session.id,
        &session.user_id,
        session.status.as_str(),
        time::to_micros(session.last_activity),
        record,
    ))?;
    Ok(inserted > 0)
}

pub(crate) fn select_one(db: &Db<'_>, id: &str) -> SqlResult<Option<Session>> {
    let record: Option<Vec<u8>> = db
        .prepare(SELECT_ONE)?
        .query_row([id], |row| row.get(0))
        .optional()?;
    Ok(record.map(|record| wire::decode(&record)).transpose()?)
}

/// Removes a session and everything kept per session; whether the session existed.
fn remove(db: &Db<'_>, id: &str) -> SqlResult<bool> {
    let removed = db.prepare(DELETE_SESSION)?.execute([id])?;
    db.prepare(DELETE_MESSAGES)?.execute([id])?;
    db.prepare(DELETE_KEPT)?.execute([id])?;
    db.prepare(DELETE_COUNTER)?.execute([id])?;
    // The session's own context only: user and application contexts outlive sessions.
    crate::task_context::delete_scope(db, &ContextScope::session(id).key())?;
    Ok(removed > 0)
}

impl SqliteBackend {
    pub(crate) async fn create_session_op(&self, new: NewSession) -> SqlResult<Session> {
        new.validate()?;
        let session = new.into_session(time::now());
        self.engine
            .write(move |db| {
                if !insert(db, &session)? {
                    return Err(StorageError::already_exists(format!(
                        "session {:?} already exists",
                        session.id
                    ))
                    .into());
                }
                Ok(session)
            })
            .await
    }

    pub(crate) async fn create_sessions_op(
        &self,
        sessions: Vec<NewSession>,
    ) -> SqlResult<BatchCreate> {
        validate_new_sessions(&sessions)?;
        if sessions.is_empty() {
            return Ok(BatchCreate::default());
        }
        let now = time::now();
        let sessions: Vec<Session> = sessions.into_iter().map(|s| s.into_session(now)).collect();
        self.engine
            .write(move |db| {
                let mut outcome = BatchCreate::default();
                for session in sessions {
                    if insert(db, &session)? {
                        outcome.created.push(session);
                    } else {
                        outcome.already_existed.push(session.id);
                    }
                }
                Ok(outcome)
            })
            .await
    }

    pub(crate) async fn get_session_op(&self, id: &str) -> SqlResult<Option<Session>> {
        validate_id("session id", id)?;
        let id = id.to_owned();
        self.engine.read(move |db| select_one(db, &id)).await
    }

    pub(crate) async fn get_sessions_op(&self, ids: &[String]) -> SqlResult<Vec<Option<Session>>> {
        validate_ids("session id", ids.iter().map(String::as_str))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = ids.to_vec();
        self.engine
            .read(move |db| db.snapshot(|db| ids.iter().map(|id| select_one(db, id)).collect()))
            .await
    }

    pub(crate) async fn update_session_op(
        &self,
        id: &str,
        update: SessionUpdate,
    ) -> SqlResult<Session> {
        validate_id("session id", id)?;
        update.validate()?;
        self.modify_session(id, move |session, now| update.apply_to(session, now))
            .await
    }

    pub(crate) async fn end_session_op(
        &self,
        id: &str,
        status: SessionStatus,
    ) -> SqlResult<Session> {
        self.modify_session(id, move |session, now| {
            end_session_record(session, status, now)
        })
        .await
    }

    /// Read-modify-write of one session in the writer's transaction: one writer per file
    /// at a time (this thread, or another process holding SQLite's write lock), so
    /// concurrent changes apply one after another and none is lost.
    async fn modify_session(
        &self,
        id: &str,
        change: impl FnOnce(&mut Session, time::Timestamp) + Send + 'static,
    ) -> SqlResult<Session> {
        validate_id("session id", id)?;
        let id = id.to_owned();
        self.engine
            .write(move |db| {
                let Some(mut session) = select_one(db, &id)? else {
                    return Err(
                        StorageError::not_found(format!("session {id:?} does not exist")).into(),
                    );
                };
                change(&mut session, time::now());
                let record = wire::encode(&session)?;
                db.prepare(UPDATE)?.execute((
                    &id,
                    session.status.as_str(),
                    time::to_micros(session.last_activity),
                    record,
                ))?;
                Ok(session)
            })
            .await
    }

    pub(crate) async fn delete_session_op(&self, id: &str) -> SqlResult<bool> {
        validate_id("session id", id)?;
        let id = id.to_owned();
        self.engine.write(move |db| remove(db, &id)).await
    }

    pub(crate) async fn list_sessions_op(&self, query: SessionQuery) -> SqlResult<Page<Session>> {
        let cursor = query.validate()?;
        // One statement text per combination of filters, so each is planned for its index.
        let mut sql =
            String::from("SELECT record, id, last_activity_us FROM \"{ns}.sessions\" WHERE 1");
        let mut params: Vec<SqlValue> = Vec::new();
        if let Some(user_id) = &query.user_id {
            params.push(SqlValue::Text(user_id.clone()));
            sql.push_str(&format!(" AND user_id = ?{}", params.len()));
        }
        if let Some(status) = query.status {
            params.push(SqlValue::Text(status.as_str().to_owned()));
            sql.push_str(&format!(" AND status = ?{}", params.len()));
        }
        if let Some(cursor) = &cursor {
            params.push(SqlValue::Integer(cursor.last_activity_micros));
            params.push(SqlValue::Text(cursor.id.clone()));
            let (micros, id) = (params.len() - 1, params.len());
            // The first bound is redundant but lets the index scan start at the cursor.
            sql.push_str(&format!(
                " AND last_activity_us <= ?{micros} AND (last_activity_us < ?{micros} \
                 OR (last_activity_us = ?{micros} AND id > ?{id}))"
            ));
        }
        params.push(SqlValue::Integer(
            to_i64(query.limit as u64).saturating_add(1),
        ));
        sql.push_str(&format!(
            " ORDER BY last_activity_us DESC, id LIMIT ?{}",
            params.len()
        ));
        let limit = query.limit;
        self.engine
            .read(move |db| {
                let mut statement = db.prepare(&sql)?;
                let mut rows = statement.query(rusqlite::params_from_iter(params))?;
                let mut items = Vec::new();
                let mut last = None;
                let (mut seen, mut more) = (0, false);
                while let Some(row) = rows.next()? {
                    if seen == limit {
                        more = true;
                        break;
                    }
                    seen += 1;
                    let id: String = row.get(1)?;
                    let activity: i64 = row.get(2)?;
                    let record: Vec<u8> = row.get(0)?;
                    // A record that cannot be decoded (one an older release wrote against
                    // today's input policy) is skipped, never failing the listing for
                    // everyone else; `delete_session` still removes it.
                    match wire::decode::<Session>(&record) {
                        Ok(session) => items.push(session),
                        Err(err) => tracing::warn!(
                            backend = "sqlite",
                            session_id = %id,
                            error = %err,
                            "skipping a session record that cannot be decoded"
                        ),
                    }
                    last = Some((activity, id));
                }
                // The cursor comes from the columns, so a skipped last row still moves it on.
                let next_cursor = last.filter(|_| more).map(|(micros, id)| {
                    SessionCursor {
                        last_activity_micros: micros,
                        id,
                    }
                    .encode()
                });
                Ok(Page { items, next_cursor })
            })
            .await
    }

    pub(crate) async fn cleanup_expired_sessions_op(&self, max_idle: Duration) -> SqlResult<u64> {
        let idle = i64::try_from(max_idle.as_micros()).unwrap_or(i64::MAX);
        let cutoff = time::to_micros(time::now()).saturating_sub(idle);
        self.engine
            .write(move |db| {
                let ids: Vec<String> = db
                    .prepare(IDLE)?
                    .query_map([cutoff], |row| row.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                let mut removed = 0;
                for id in ids {
                    removed += u64::from(remove(db, &id)?);
                }
                Ok(removed)
            })
            .await
    }
}
