//! Sessions: one row per session, the wire-encoded record plus the columns the listing and
//! cleanup indexes need.

use std::time::Duration;

use storage_core::session::{end_session_record, validate_new_sessions, SessionCursor};
use storage_core::validate::{validate_id, validate_ids};
use storage_core::{
    time, wire, BatchCreate, NewSession, Page, Session, SessionQuery, SessionStatus, SessionUpdate,
    StorageError,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::backend::{to_i64, PostgresBackend};
use crate::error::PgResult;
use crate::sql::Sql;

const INSERT: &str = "INSERT INTO sessions (id, user_id, status, last_activity_us, record) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING";

const INSERT_MANY: &str = "INSERT INTO sessions (id, user_id, status, last_activity_us, record) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bytea[]) \
     ON CONFLICT (id) DO NOTHING RETURNING id";

pub const SELECT_ONE: &str = "SELECT record FROM sessions WHERE id = $1";

const SELECT_MANY: &str = "SELECT id, record FROM sessions WHERE id = ANY($1::text[])";

const SELECT_FOR_UPDATE: &str = "SELECT record FROM sessions WHERE id = $1 FOR UPDATE";

const UPDATE: &str =
    "UPDATE sessions SET status = $2, last_activity_us = $3, record = $4 WHERE id = $1";

/// Removes sessions and everything kept per session, for the ids the `doomed` CTE returns,
/// except the versions of their task contexts: it deletes (and so locks) the context heads
/// and returns how many sessions it removed and the scope keys of the heads it deleted, whose
/// versions `remove_sessions` deletes in a second statement (see `task_context.rs` for why
/// a statement of its own). Only the sessions' own scopes: user and application contexts
/// outlive sessions. `= ANY(ARRAY(...))` makes each delete an index lookup per removed id.
macro_rules! delete_sessions_where {
    ($condition:literal) => {
        concat!(
            "WITH doomed AS (DELETE FROM sessions WHERE ",
            $condition,
            " RETURNING id), \
             ids AS (SELECT ARRAY(SELECT id FROM doomed) AS ids), \
             m AS (DELETE FROM messages WHERE session_id = ANY((SELECT ids FROM ids)::text[])), \
             r AS (DELETE FROM replaced_messages \
                 WHERE session_id = ANY((SELECT ids FROM ids)::text[])), \
             c AS (DELETE FROM message_counters WHERE session_id = ANY((SELECT ids FROM ids)::text[])), \
             h AS (DELETE FROM context_heads \
                 WHERE scope = ANY(ARRAY(SELECT 'session:' || id FROM doomed)) RETURNING scope) \
             SELECT (SELECT count(*) FROM doomed), ARRAY(SELECT scope FROM h)"
        )
    };
}

const DELETE_ONE: &str = delete_sessions_where!("id = $1");
const DELETE_IDLE: &str = delete_sessions_where!("last_activity_us < $1");

/// Takes the conversation lock (see `compaction.rs`) of the sessions a removal will
/// remove, in a statement before it: the removal's snapshot is then taken after every
/// compaction, rewind, pop or append of those sessions it waited for has committed, so it
/// removes what they wrote (a summary committed after the removal's snapshot would outlive
/// its session). In key order, so concurrent removals do not deadlock on each other.
macro_rules! lock_sessions_where {
    ($condition:literal) => {
        concat!(
            "SELECT 1 FROM message_counters WHERE session_id = ANY(ARRAY(\
             SELECT id FROM sessions WHERE ",
            $condition,
            ")) ORDER BY session_id FOR UPDATE"
        )
    };
}

const LOCK_ONE: &str = lock_sessions_where!("id = $1");
const LOCK_IDLE: &str = lock_sessions_where!("last_activity_us < $1");

fn decode(row: &Row, column: usize) -> PgResult<Session> {
    Ok(wire::decode(row.get::<_, &[u8]>(column))?)
}

impl PostgresBackend {
    pub(crate) async fn create_session_op(&self, new: NewSession) -> PgResult<Session> {
        new.validate()?;
        let session = new.into_session(time::now());
        let record = wire::encode(&session)?;
        let client = self.client().await?;
        let inserted = client
            .exec(
                INSERT,
                &[
                    &session.id,
                    &session.user_id,
                    &session.status.as_str(),
                    &time::to_micros(session.last_activity),
                    &record,
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StorageError::already_exists(format!(
                "session {:?} already exists",
                session.id
            ))
            .into());
        }
        Ok(session)
    }

    pub(crate) async fn create_sessions_op(
        &self,
        sessions: Vec<NewSession>,
    ) -> PgResult<BatchCreate> {
        validate_new_sessions(&sessions)?;
        if sessions.is_empty() {
            return Ok(BatchCreate::default());
        }
        let now = time::now();
        let sessions: Vec<Session> = sessions.into_iter().map(|s| s.into_session(now)).collect();
        let ids: Vec<&str> = sessions.iter().map(|s| s.id.as_str()).collect();
        let users: Vec<&str> = sessions.iter().map(|s| s.user_id.as_str()).collect();
        let statuses: Vec<&str> = sessions.iter().map(|s| s.status.as_str()).collect();
        let activity: Vec<i64> = sessions
            .iter()
            .map(|s| time::to_micros(s.last_activity))
            .collect();
        let records = sessions
            .iter()
            .map(wire::encode)
            .collect::<storage_core::Result<Vec<_>>>()?;
        let client = self.client().await?;
        let rows = client
            .rows(INSERT_MANY, &[&ids, &users, &statuses, &activity, &records])
            .await?;
        let created_ids: std::collections::HashSet<String> =
            rows.iter().map(|row| row.get::<_, String>(0)).collect();
        let mut outcome = BatchCreate::default();
        for session in sessions {
            if created_ids.contains(&session.id) {
                outcome.created.push(session);
            } else {
                outcome.already_existed.push(session.id);
            }
        }
        Ok(outcome)
    }

    pub(crate) async fn get_session_op(&self, id: &str) -> PgResult<Option<Session>> {
        validate_id("session id", id)?;
        let client = self.client().await?;
        let row = client.opt(SELECT_ONE, &[&id]).await?;
        row.map(|row| decode(&row, 0)).transpose()
    }

    pub(crate) async fn get_sessions_op(&self, ids: &[String]) -> PgResult<Vec<Option<Session>>> {
        validate_ids("session id", ids.iter().map(String::as_str))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let rows = client.rows(SELECT_MANY, &[&ids]).await?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            found.insert(row.get::<_, String>(0), decode(row, 1)?);
        }
        Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
    }

    pub(crate) async fn update_session_op(
        &self,
        id: &str,
        update: SessionUpdate,
    ) -> PgResult<Session> {
        validate_id("session id", id)?;
        update.validate()?;
        self.modify_session(id, |session, now| update.apply_to(session, now))
            .await
    }

    pub(crate) async fn end_session_op(
        &self,
        id: &str,
        status: SessionStatus,
    ) -> PgResult<Session> {
        self.modify_session(id, |session, now| end_session_record(session, status, now))
            .await
    }

    /// Read-modify-write of one session under its row lock, so concurrent changes from any
    /// number of connections apply one after another and none is lost.
    async fn modify_session(
        &self,
        id: &str,
        change: impl FnOnce(&mut Session, time::Timestamp),
    ) -> PgResult<Session> {
        validate_id("session id", id)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let Some(row) = tx.opt(SELECT_FOR_UPDATE, &[&id]).await? else {
            return Err(StorageError::not_found(format!("session {id:?} does not exist")).into());
        };
        let mut session = decode(&row, 0)?;
        change(&mut session, time::now());
        let record = wire::encode(&session)?;
        tx.exec(
            UPDATE,
            &[
                &id,
                &session.status.as_str(),
                &time::to_micros(session.last_activity),
                &record,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(session)
    }

    pub(crate) async fn delete_session_op(&self, id: &str) -> PgResult<bool> {
        validate_id("session id", id)?;
        Ok(self.remove_sessions(LOCK_ONE, DELETE_ONE, &id).await? > 0)
    }

    pub(crate) async fn list_sessions_op(&self, query: SessionQuery) -> PgResult<Page<Session>> {
        let cursor = query.validate()?;
        let status = query.status.map(SessionStatus::as_str);
        let fetch = to_i64(query.limit as u64).saturating_add(1);
        // One statement text per combination of filters, so each is planned for its index.
        let mut sql = String::from("SELECT record, id, last_activity_us FROM sessions WHERE true");
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
        if let Some(user_id) = &query.user_id {
            params.push(user_id);
            sql.push_str(&format!(" AND user_id = ${}", params.len()));
        }
        if let Some(status) = &status {
            params.push(status);
            sql.push_str(&format!(" AND status = ${}", params.len()));
        }
        if let Some(cursor) = &cursor {
            params.push(&cursor.last_activity_micros);
            params.push(&cursor.id);
            let (micros, id) = (params.len() - 1, params.len());
            // The first bound is redundant but sargable: the index scan starts at the
            // cursor instead of filtering every earlier row.
            sql.push_str(&format!(
                " AND last_activity_us <= ${micros} AND (last_activity_us < ${micros} \
                 OR (last_activity_us = ${micros} AND id > ${id}))"
            ));
        }
        params.push(&fetch);
        sql.push_str(&format!(
            " ORDER BY last_activity_us DESC, id LIMIT ${}",
            params.len()
        ));
        let client = self.client().await?;
        let mut rows = client.rows(&sql, &params).await?;
        let more = rows.len() > query.limit;
        rows.truncate(query.limit);
        // The cursor comes from the columns, so a skipped last row still moves it on.
        let next_cursor = rows.last().filter(|_| more).map(|row| {
            SessionCursor {
                last_activity_micros: row.get(2),
                id: row.get(1),
            }
            .encode()
        });
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            // A record that cannot be decoded (one an older release wrote against today's
            // input policy) is skipped, never failing the listing for everyone else;
            // `delete_session` still removes it.
            match wire::decode::<Session>(row.get::<_, &[u8]>(0)) {
                Ok(session) => items.push(session),
                Err(err) => tracing::warn!(
                    backend = "postgres",
                    session_id = row.get::<_, &str>(1),
                    error = %err,
                    "skipping a session record that cannot be decoded"
                ),
            }
        }
        Ok(Page { items, next_cursor })
    }

    pub(crate) async fn cleanup_expired_sessions_op(&self, max_idle: Duration) -> PgResult<u64> {
        let idle = i64::try_from(max_idle.as_micros()).unwrap_or(i64::MAX);
        let cutoff = time::to_micros(time::now()).saturating_sub(idle);
        self.remove_sessions(LOCK_IDLE, DELETE_IDLE, &cutoff).await
    }

    /// Runs one of the `delete_sessions_where!` statements, then deletes the versions of
    /// the contexts it removed, in one transaction; how many sessions it removed.
    async fn remove_sessions(
        &self,
        lock: &str,
        sql: &str,
        param: &(dyn ToSql + Sync),
    ) -> PgResult<u64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.rows(lock, &[param]).await?;
        let row = tx.one(sql, &[param]).await?;
        let scopes: Vec<String> = row.get(1);
        if !scopes.is_empty() {
            tx.exec(crate::task_context::DELETE_VERSIONS, &[&scopes])
                .await?;
        }
        tx.commit().await?;
        Ok(crate::backend::to_u64(row.get(0)))
    }
}
