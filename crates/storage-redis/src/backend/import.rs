//! Exact imports and enumeration for moving data between backends (`storectl migrate`).
//!
//! Each import is one script on the record's slot: a message or artifact version already
//! stored is kept, and counters are only raised (task contexts are imported in
//! `task_context.rs`). Enumeration walks the keyspace with `SCAN` (never `KEYS`); on a cluster,
//! on every master.

use std::collections::BTreeSet;

use deadpool_redis::redis;
use storage_core::validate::validate_limit;
use storage_core::{time, wire, Artifact, Message, Result, Session};

use super::{op, session_fields, ttl_ms, RedisBackend};

/// Keys asked for per `SCAN` round trip.
const SCAN_COUNT: usize = 1_000;

impl RedisBackend {
    pub(super) async fn import_session_op(&self, session: Session) -> Result<()> {
        async {
            storage_core::session::validate_import(&session)?;
            let key = self.keys.session(&session.id).session;
            let ttl = ttl_ms(self.config.session_ttl_secs);
            let fields = session_fields(&session)?;
            let mut args: Vec<&[u8]> = vec![ttl.as_bytes()];
            for (field, value) in &fields {
                args.push(field.as_bytes());
                args.push(value.as_bytes());
            }
            self.index_new(std::slice::from_ref(&session)).await?;
            let previous_user: Option<String> = self
                .client
                .eval(&self.scripts.import_session, &[&key], &args)
                .await?;
            let micros = time::to_micros(session.last_activity);
            // The imported activity replaces the old one, even when it is older.
            let mut pipe = redis::pipe();
            if let Some(previous) = previous_user.filter(|user| *user != session.user_id) {
                pipe.cmd("ZREM")
                    .arg(self.keys.user_activity(&previous))
                    .arg(&session.id)
                    .ignore();
            }
            for index in [
                self.keys.activity(),
                self.keys.user_activity(&session.user_id),
            ] {
                pipe.cmd("ZADD")
                    .arg(index)
                    .arg(micros)
                    .arg(&session.id)
                    .ignore();
            }
            self.client.pipeline::<()>(&pipe).await
        }
        .await
        .map_err(op("import_session"))
    }

    pub(super) async fn import_messages_op(
        &self,
        session_id: &str,
        mut messages: Vec<Message>,
    ) -> Result<u64> {
        async {
            storage_core::conversation::validate_import(session_id, &messages)?;
            messages.sort_by_key(|message| message.sequence);
            if messages.is_empty() {
                return Ok(0);
            }
            let keys = self.keys.session(session_id);
            let ttl = ttl_ms(self.config.conversation_ttl_secs);
            let count = messages.len().to_string();
            let mut encoded = Vec::with_capacity(messages.len());
            for message in &messages {
                encoded.push((
                    message.sequence.to_string(),
                    message.client_id.clone().unwrap_or_default(),
                    wire::encode(message)?,
                ));
            }
            let mut args: Vec<&[u8]> = vec![ttl.as_bytes(), count.as_bytes()];
            for (sequence, client_id, bytes) in &encoded {
                args.push(sequence.as_bytes());
                args.push(client_id.as_bytes());
                args.push(bytes);
            }
            let stored: u64 = self
                .client
                .eval(&self.scripts.import_messages, &keys.append(), &args)
                .await?;
            Ok(stored)
        }
        .await
        .map_err(op("import_messages"))
    }

    pub(super) async fn import_artifact_op(&self, artifact: Artifact) -> Result<bool> {
        async {
            storage_core::artifact::validate_import(&artifact)?;
            storage_core::artifact::check_artifact_size(
                artifact.meta.size,
                self.config.max_artifact_bytes,
            )?;
            let meta = &artifact.meta;
            let keys = self.keys.scope(&meta.scope);
            let ttl = ttl_ms(self.config.artifact_ttl_secs);
            let version = meta.version.to_string();
            let encoded = wire::encode(meta)?;
            let stored: i64 = self
                .client
                .eval(
                    &self.scripts.import_artifact,
                    &[
                        &keys.names(),
                        &keys.next_versions(),
                        &keys.versions(&meta.name),
                        &keys.metas(&meta.name),
                        &keys.contents(&meta.name),
                    ],
                    &[
                        ttl.as_bytes(),
                        meta.name.as_bytes(),
                        version.as_bytes(),
                        &encoded,
                        &artifact.data,
                    ],
                )
                .await?;
            Ok(stored == 1)
        }
        .await
        .map_err(op("import_artifact"))
    }

    /// Ids of every record of `kind` whose `suffix` key exists, sorted, after `after`.
    /// `SCAN` returns keys in no order, so each page walks the whole keyspace: meant for
    /// migrations, not for request paths.
    pub(super) async fn scan_ids(
        &self,
        kind: &str,
        suffix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        validate_limit("id listing limit", limit)?;
        let pattern = self.keys.scan_pattern(kind, suffix);
        let mut ids = BTreeSet::new();
        for key in self.client.scan_keys(&pattern, SCAN_COUNT).await? {
            if let Some(id) = self.keys.id_in_key(kind, &key) {
                if after.is_none_or(|after| id.as_str() > after) {
                    ids.insert(id);
                    if ids.len() > limit {
                        ids.pop_last();
                    }
                }
            }
        }
        Ok(ids.into_iter().collect())
    }
}
