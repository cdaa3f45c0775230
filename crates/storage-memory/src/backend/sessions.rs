use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;
use storage_core::carried::admit;

use async_trait::async_trait;
use crossbeam_skiplist::SkipSet;
use dashmap::mapref::entry::Entry;
use storage_core::session::{end_session_record, validate_new_sessions, SessionCursor};
use storage_core::validate::{validate_id, validate_ids};
use storage_core::{
    time, BatchCreate, NewSession, Page, Result, Session, SessionQuery, SessionStatus,
    SessionStore, SessionUpdate, StorageError,
};

use super::MemoryBackend;
use crate::store::{ActivityKey, Namespace};

#[async_trait]
impl SessionStore for MemoryBackend {
    async fn create_session(&self, session: NewSession) -> Result<Session> {
        let session = admit("create_session", session)?;
        self.op("create_session", |data| {
            session.validate()?;
            insert_new(data, session)
                .ok_or_else(|| StorageError::already_exists("a session with this id exists"))
        })
    }

    async fn create_sessions(&self, sessions: Vec<NewSession>) -> Result<BatchCreate> {
        let sessions = admit("create_sessions", sessions)?;
        self.op("create_sessions", |data| {
            validate_new_sessions(&sessions)?;
            let mut outcome = BatchCreate::default();
            for session in sessions {
                let id = session.id.clone();
                match insert_new(data, session) {
                    Some(created) => outcome.created.push(created),
                    None => outcome.already_existed.push(id),
                }
            }
            Ok(outcome)
        })
    }

    async fn get_session(&self, id: &str) -> Result<Option<Session>> {
        self.op("get_session", |data| {
            validate_id("session id", id)?;
            Ok(data.sessions.get(id).map(|session| session.clone()))
        })
    }

    async fn get_sessions(&self, ids: &[String]) -> Result<Vec<Option<Session>>> {
        self.op("get_sessions", |data| {
            validate_ids("session id", ids.iter().map(String::as_str))?;
            Ok(ids
                .iter()
                .map(|id| data.sessions.get(id).map(|s| s.clone()))
                .collect())
        })
    }

    async fn update_session(&self, id: &str, update: SessionUpdate) -> Result<Session> {
        let update = admit("update_session", update)?;
        self.op("update_session", |data| {
            validate_id("session id", id)?;
            update.validate()?;
            modify(data, id, |session| update.apply_to(session, time::now()))
        })
    }

    async fn end_session(&self, id: &str, status: SessionStatus) -> Result<Session> {
        self.op("end_session", |data| {
            validate_id("session id", id)?;
            modify(data, id, |session| {
                end_session_record(session, status, time::now())
            })
        })
    }

    async fn delete_session(&self, id: &str) -> Result<bool> {
        self.op("delete_session", |data| {
            validate_id("session id", id)?;
            Ok(remove_if(data, id, |_| true))
        })
    }

    async fn list_sessions(&self, query: SessionQuery) -> Result<Page<Session>> {
        self.op("list_sessions", |data| {
            let cursor = query.validate()?;
            let page = match &query.user_id {
                None => list_from(data, &data.activity, &query, cursor.as_ref()),
                Some(user) => match data.activity_by_user.get(user).map(|index| index.clone()) {
                    Some(index) => list_from(data, &index, &query, cursor.as_ref()),
                    None => Page::last(Vec::new()),
                },
            };
            Ok(page)
        })
    }

    async fn import_session(&self, session: Session) -> Result<()> {
        let session = admit("import_session", session)?;
        self.op("import_session", |data| {
            storage_core::session::validate_import(&session)?;
            match data.sessions.entry(session.id.clone()) {
                Entry::Occupied(mut stored) => {
                    unindex_key(data, &stored.get().user_id, &ActivityKey::of(stored.get()));
                    index(data, &session);
                    stored.insert(session);
                }
                Entry::Vacant(slot) => {
                    index(data, &session);
                    slot.insert(session);
                }
            }
            Ok(())
        })
    }
}

/// Inserts a new session unless the id is taken; `None` if it is.
fn insert_new(data: &Namespace, session: NewSession) -> Option<Session> {
    match data.sessions.entry(session.id.clone()) {
        Entry::Occupied(_) => None,
        Entry::Vacant(slot) => {
            let session = session.into_session(time::now());
            index(data, &session);
            slot.insert(session.clone());
            Some(session)
        }
    }
}

/// Changes a session in place under its entry lock, keeping the activity index in step.
fn modify(data: &Namespace, id: &str, change: impl FnOnce(&mut Session)) -> Result<Session> {
    let mut entry = data
        .sessions
        .get_mut(id)
        .ok_or_else(|| StorageError::not_found(format!("session {id:?} does not exist")))?;
    let before = ActivityKey::of(&entry);
    change(&mut entry);
    let after = ActivityKey::of(&entry);
    if before != after {
        unindex_key(data, &entry.user_id, &before);
        index(data, &entry);
    }
    Ok(entry.clone())
}

fn index(data: &Namespace, session: &Session) {
    let key = ActivityKey::of(session);
    data.activity_by_user
        .entry(session.user_id.clone())
        .or_insert_with(|| Arc::new(SkipSet::new()))
        .insert(key.clone());
    data.activity.insert(key);
}

fn unindex_key(data: &Namespace, user_id: &str, key: &ActivityKey) {
    data.activity.remove(key);
    if let Some(user_index) = data.activity_by_user.get(user_id) {
        user_index.remove(key);
    }
}

/// Removes a session if `condition` holds, with its conversation and task context.
fn remove_if(data: &Namespace, id: &str, condition: impl FnOnce(&Session) -> bool) -> bool {
    match data.sessions.remove_if(id, |_, session| condition(session)) {
        Some((_, session)) => {
            unindex_key(data, &session.user_id, &ActivityKey::of(&session));
            data.conversations.remove(id);
            data.contexts
                .remove(&storage_core::ContextScope::session(id));
            true
        }
        None => false,
    }
}

/// Walks the activity index from its oldest end and removes what is idle: the work is
/// proportional to what is removed.
pub(super) fn remove_idle(data: &Namespace, max_idle: Duration) -> u64 {
    let max_idle = chrono::Duration::from_std(max_idle).unwrap_or(chrono::Duration::MAX);
    let cutoff = time::now()
        .checked_sub_signed(max_idle)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    let cutoff_micros = time::to_micros(cutoff);
    let mut removed = 0;
    while let Some(oldest) = data.activity.back() {
        let key = oldest.value().clone();
        if key.newest_first.0 >= cutoff_micros {
            break;
        }
        let was_removed = remove_if(data, &key.id, |session| ActivityKey::of(session) == key);
        if was_removed {
            removed += 1;
        } else {
            // The session moved on (updated or deleted) after the index was read: drop the
            // stale key, the live one is elsewhere in the index.
            data.activity.remove(&key);
        }
    }
    removed
}

/// One page from `index`, after `cursor`, filtered by status.
fn list_from(
    data: &Namespace,
    index: &SkipSet<ActivityKey>,
    query: &SessionQuery,
    cursor: Option<&SessionCursor>,
) -> Page<Session> {
    let start = match cursor {
        Some(c) => Bound::Excluded(ActivityKey {
            newest_first: std::cmp::Reverse(c.last_activity_micros),
            id: c.id.clone(),
        }),
        None => Bound::Unbounded,
    };
    let range = index.range((start, Bound::Unbounded));
    let mut items = Vec::with_capacity(query.limit.min(1024));
    let mut more = false;
    for key in range {
        let Some(session) = data.sessions.get(&key.value().id).map(|s| s.clone()) else {
            continue;
        };
        // Skip index entries left behind by a concurrent update.
        if ActivityKey::of(&session) != *key.value()
            || query.status.is_some_and(|s| s != session.status)
        {
            continue;
        }
        if items.len() == query.limit {
            more = true;
            break;
        }
        items.push(session);
    }
    let next_cursor = if more {
        items.last().map(|s| SessionCursor::after(s).encode())
    } else {
        None
    };
    Page { items, next_cursor }
}
