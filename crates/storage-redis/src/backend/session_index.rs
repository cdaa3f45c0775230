//! The namespace-wide session indexes (`activity`, one per user): another slot than the
//! session records, so written by commands of their own around the records' scripts (see
//! docs/backends/redis.md, "Atomicity"). A new session is indexed before its record; a
//! removal reads the records it unindexed once more.

use deadpool_redis::redis;
use storage_core::{time, Result, Session};

use super::RedisBackend;
use crate::error::unexpected_reply;
use crate::pool::from_value;

impl RedisBackend {
    pub(super) async fn index_activity(&self, entries: &[(&str, &str, i64)]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (id, user, micros) in entries {
            for key in [self.keys.activity(), self.keys.user_activity(user)] {
                pipe.cmd("ZADD")
                    .arg(key)
                    .arg("GT")
                    .arg(*micros)
                    .arg(*id)
                    .ignore();
            }
        }
        self.client.pipeline::<()>(&pipe).await
    }

    /// Indexes sessions about to be created or imported, before their records: the
    /// indexes live in another slot, so no script writes both, and a write that fails after
    /// this leaves an activity entry whose record is missing (readers skip it, cleanup
    /// removes it), never a session that no listing or cleanup finds. `NX` leaves an
    /// existing session's entries as they are; the caller indexes again after its script.
    pub(super) async fn index_new(&self, records: &[Session]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for record in records {
            self.push_index_new(&mut pipe, record);
        }
        self.client.pipeline::<()>(&pipe).await
    }

    /// Adds a session's two `ZADD NX` (activity, then its user's index) to `pipe`, their
    /// answers ignored by the pipeline (inside a transaction, `EXEC` gives them: 1 for an
    /// entry added).
    pub(super) fn push_index_new(&self, pipe: &mut redis::Pipeline, record: &Session) {
        let micros = time::to_micros(record.last_activity);
        for key in [
            self.keys.activity(),
            self.keys.user_activity(&record.user_id),
        ] {
            pipe.cmd("ZADD")
                .arg(key)
                .arg("NX")
                .arg(micros)
                .arg(&record.id)
                .ignore();
        }
    }

    /// Those of `entries` whose session exists now, with its user and activity (µs), read
    /// from the records: what a removal indexes again.
    pub(super) async fn survivors(
        &self,
        entries: &[(String, Option<String>)],
    ) -> Result<Vec<(String, String, i64)>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let cmds = entries
            .iter()
            .map(|(id, _)| {
                let mut cmd = redis::cmd("HMGET");
                cmd.arg(self.keys.session(id).session)
                    .arg("user")
                    .arg("activity");
                cmd
            })
            .collect();
        let replies = self.client.query_many(cmds).await?;
        let mut survivors = Vec::new();
        for ((id, _), reply) in entries.iter().zip(replies) {
            let fields: Vec<Option<String>> = from_value(reply, "session user and activity")?;
            if let [Some(user), Some(activity)] = &fields[..] {
                let micros: i64 = activity
                    .parse()
                    .map_err(|_| unexpected_reply("session activity"))?;
                survivors.push((id.clone(), user.clone(), micros));
            }
        }
        Ok(survivors)
    }

    pub(super) async fn unindex(&self, entries: &[(String, Option<String>)]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (id, user) in entries {
            pipe.cmd("ZREM").arg(self.keys.activity()).arg(id).ignore();
            if let Some(user) = user {
                pipe.cmd("ZREM")
                    .arg(self.keys.user_activity(user))
                    .arg(id)
                    .ignore();
            }
        }
        self.client.pipeline::<()>(&pipe).await
    }
}
