use std::time::Duration;
use storage_core::carried::admit;

use async_trait::async_trait;
use storage_core::session::{end_session_record, validate_new_sessions, SessionCursor};
use storage_core::validate::{validate_id, validate_ids};
use storage_core::{
    time, wire, BatchCreate, ContextScope, ErrorKind, NewSession, Page, Result, Session,
    SessionQuery, SessionStatus, SessionStore, SessionUpdate, StorageError,
};

use super::{in_order, Change, ObjectBackend};
use crate::keys::{parts_after, take_id};

#[async_trait]
impl SessionStore for ObjectBackend {
    async fn create_session(&self, session: NewSession) -> Result<Session> {
        let session = admit("create_session", session)?;
        self.op("create_session", async {
            session.validate()?;
            self.insert_new(session)
                .await?
                .ok_or_else(|| StorageError::already_exists("a session with this id exists"))
        })
        .await
    }

    async fn create_sessions(&self, sessions: Vec<NewSession>) -> Result<BatchCreate> {
        let sessions = admit("create_sessions", sessions)?;
        self.op("create_sessions", async {
            validate_new_sessions(&sessions)?;
            let ids: Vec<String> = sessions.iter().map(|s| s.id.clone()).collect();
            let created = in_order(16, sessions.into_iter().map(|s| self.insert_new(s))).await?;
            let mut outcome = BatchCreate::default();
            for (id, created) in ids.into_iter().zip(created) {
                match created {
                    Some(session) => outcome.created.push(session),
                    None => outcome.already_existed.push(id),
                }
            }
            Ok(outcome)
        })
        .await
    }

    async fn get_session(&self, id: &str) -> Result<Option<Session>> {
        self.op("get_session", async {
            validate_id("session id", id)?;
            self.read_cell(&self.keys().session(id)).await
        })
        .await
    }

    async fn get_sessions(&self, ids: &[String]) -> Result<Vec<Option<Session>>> {
        self.op("get_sessions", async {
            validate_ids("session id", ids.iter().map(String::as_str))?;
            in_order(
                32,
                ids.iter()
                    .map(|id| async move { self.read_cell(&self.keys().session(id)).await }),
            )
            .await
        })
        .await
    }

    async fn update_session(&self, id: &str, update: SessionUpdate) -> Result<Session> {
        let update = admit("update_session", update)?;
        self.op("update_session", async {
            validate_id("session id", id)?;
            update.validate()?;
            self.modify_session(id, |session| update.apply_to(session, time::now()))
                .await
        })
        .await
    }

    async fn end_session(&self, id: &str, status: SessionStatus) -> Result<Session> {
        self.op("end_session", async {
            validate_id("session id", id)?;
            self.modify_session(id, |session| {
                end_session_record(session, status, time::now())
            })
            .await
        })
        .await
    }

    async fn delete_session(&self, id: &str) -> Result<bool> {
        self.op("delete_session", async {
            validate_id("session id", id)?;
            self.remove_session(id).await
        })
        .await
    }

    async fn list_sessions(&self, query: SessionQuery) -> Result<Page<Session>> {
        self.op("list_sessions", async {
            let cursor = query.validate()?;
            let mut sessions: Vec<Session> = self
                .all_sessions()
                .await?
                .into_iter()
                .filter(|s| query.user_id.as_ref().is_none_or(|user| *user == s.user_id))
                .filter(|s| query.status.is_none_or(|status| status == s.status))
                .filter(|s| cursor.as_ref().is_none_or(|c| c.precedes(s)))
                .collect();
            sessions.sort_by(|a, b| {
                b.last_activity
                    .cmp(&a.last_activity)
                    .then_with(|| a.id.cmp(&b.id))
            });
            let more = sessions.len() > query.limit;
            sessions.truncate(query.limit);
            let next_cursor = if more {
                sessions.last().map(|s| SessionCursor::after(s).encode())
            } else {
                None
            };
            Ok(Page {
                items: sessions,
                next_cursor,
            })
        })
        .await
    }

    async fn import_session(&self, session: Session) -> Result<()> {
        let session = admit("import_session", session)?;
        self.op("import_session", async {
            storage_core::session::validate_import(&session)?;
            self.modify_cell(&self.keys().session(&session.id), |_: Option<Session>| {
                Ok(Change::Write(session.clone(), ()))
            })
            .await
        })
        .await
    }
}

impl ObjectBackend {
    /// Creates the session unless the id is taken; `None` if it is.
    async fn insert_new(&self, session: NewSession) -> Result<Option<Session>> {
        let session = session.into_session(time::now());
        let cell = self.keys().session(&session.id);
        let written = self
            .objects()
            .cell_write(&cell, None, wire::encode(&session)?)
            .await?;
        Ok(written.then_some(session))
    }

    async fn modify_session(&self, id: &str, change: impl Fn(&mut Session)) -> Result<Session> {
        self.modify_cell(&self.keys().session(id), |current: Option<Session>| {
            let mut session = current
                .ok_or_else(|| StorageError::not_found(format!("session {id:?} does not exist")))?;
            change(&mut session);
            Ok(Change::Write(session.clone(), session))
        })
        .await
    }

    /// Removes a session with its conversation and task context.
    async fn remove_session(&self, id: &str) -> Result<bool> {
        let existed = self.objects().cell_delete(&self.keys().session(id)).await?;
        self.objects()
            .delete_all(&self.keys().conversation(id))
            .await?;
        // After the head: what compactions stored is then named by nothing.
        self.objects()
            .delete_all(&self.keys().session_compactions(id))
            .await?;
        // The session's own context only: user and application contexts outlive it.
        self.remove_context(&ContextScope::session(id)).await?;
        Ok(existed)
    }

    /// The ids of every stored session.
    async fn session_ids(&self) -> Result<Vec<String>> {
        let prefix = self.keys().sessions();
        let mut ids: Vec<String> = self
            .objects()
            .list(&prefix)
            .await?
            .iter()
            .filter_map(|path| take_id(&parts_after(path, &prefix)).map(|(id, _)| id))
            .collect();
        ids.dedup();
        Ok(ids)
    }

    /// Every stored session that decodes. A record that does not (one an older release
    /// wrote against today's input policy, or a damaged file) is skipped with a warning
    /// naming its id, so one bad record never breaks listing or cleanup for everyone else;
    /// `delete_session` still removes it.
    async fn all_sessions(&self) -> Result<Vec<Session>> {
        let ids = self.session_ids().await?;
        let sessions = in_order(
            32,
            ids.iter().map(|id| async move {
                match self.read_cell::<Session>(&self.keys().session(id)).await {
                    Err(err) if err.kind() == ErrorKind::Serialization => {
                        tracing::warn!(
                            backend = "object",
                            session_id = %id,
                            error = %err,
                            "skipping a session record that cannot be decoded"
                        );
                        Ok(None)
                    }
                    other => other,
                }
            }),
        )
        .await?;
        Ok(sessions.into_iter().flatten().collect())
    }

    /// Removes every session idle longer than `max_idle`; each is read again just before
    /// removal so that one touched meanwhile survives.
    pub(super) async fn remove_idle(&self, max_idle: Duration) -> Result<u64> {
        let idle_micros = i64::try_from(max_idle.as_micros()).unwrap_or(i64::MAX);
        let cutoff = time::to_micros(time::now()).saturating_sub(idle_micros);
        let idle = |session: &Session| time::to_micros(session.last_activity) < cutoff;
        let mut removed = 0;
        for session in self.all_sessions().await? {
            if !idle(&session) {
                continue;
            }
            let current: Option<Session> = self
                .read_cell(&self.keys().session(&session.id))
                .await
                .or_else(|err| match err.kind() {
                    // Rewritten meanwhile with something unreadable: leave it alone.
                    ErrorKind::Serialization => Ok(None),
                    _ => Err(err),
                })?;
            if current.as_ref().is_some_and(idle) && self.remove_session(&session.id).await? {
                removed += 1;
            }
        }
        Ok(removed)
    }
}
