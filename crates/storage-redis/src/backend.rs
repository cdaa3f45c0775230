//! [`RedisBackend`]: every store trait on Redis.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};
use storage_core::carried::admit;

use async_trait::async_trait;
use deadpool_redis::redis::{self, Value};
use serde_json::Value as Json;
use storage_core::artifact::{check_artifact_size, sha256_hex, validate_artifact_address};
use storage_core::checkpoint::{indexed_writes, validate_get_checkpoint, validate_put_writes};
use storage_core::conversation::validate_append;
use storage_core::session::{end_session_record, validate_new_sessions, SessionCursor};
use storage_core::validate::{validate_id, validate_limit};
use storage_core::{
    time, wire, Artifact, ArtifactMeta, ArtifactStore, BackendMetrics, BatchCreate, Bytes,
    ChannelValue, ChannelVersions, Checkpoint, CheckpointKey, CheckpointQuery, CheckpointStore,
    CheckpointTuple, ConversationStore, HealthStatus, Message, MessageRange, Metadata, NewArtifact,
    NewMessage, NewSession, Page, PendingWrite, Result, Session, SessionMetrics, SessionQuery,
    SessionStatus, SessionStore, SessionUpdate, StorageBackend, StorageError,
};

use crate::config::RedisConfig;
use crate::error::{unexpected_reply, BACKEND};
use crate::keys::{decode_id, encode_id, write_field, Keys, ThreadKeys};
use crate::memory::{self, NodeMemory};
use crate::pool::{eval_cmd, from_value, Client, Pool};
use crate::scripts::Scripts;

/// A hash read whole: field to raw value.
type FieldMap = HashMap<String, Vec<u8>>;

mod checkpoint_puts;
mod checkpoint_reads;
mod compaction;
mod import;
mod prune;
mod retention;
mod session_index;
mod task_context;

/// How many index entries one listing or cleanup step reads.
const INDEX_BATCH: usize = 256;

/// The Redis backend, standalone or on Redis Cluster. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct RedisBackend {
    config: RedisConfig,
    keys: Keys,
    client: Client,
    scripts: Scripts,
}

impl RedisBackend {
    /// Refuses a server that may evict this backend's keys (see [`crate::memory`]) unless
    /// `redis.allow_eviction` accepts it, then with a warning. A user the server does not
    /// let run `INFO` is let through with a warning: the policy cannot be read.
    async fn check_eviction(&self) -> Result<()> {
        let info: Value = match self.client.query(redis::cmd("INFO").arg("memory")).await {
            Ok(info) => info,
            // Not allowed to this user (`NOPERM`), or renamed away (`unknown command`).
            Err(err)
                if err.kind() == storage_core::ErrorKind::Config
                    || err.to_string().contains("unknown command") =>
            {
                tracing::warn!(
                    server = self.client.pool.endpoint(),
                    error = %err,
                    "redis: cannot read maxmemory-policy; make sure it is noeviction, or \
                     keys may be evicted"
                );
                return Ok(());
            }
            Err(err) => return Err(err),
        };
        let nodes = NodeMemory::of_texts(&memory::info_texts(&info, self.client.pool.endpoint()));
        if nodes.is_empty() {
            tracing::warn!(
                server = self.client.pool.endpoint(),
                "redis: INFO memory shows no maxmemory-policy; make sure it is noeviction, or \
                 keys may be evicted"
            );
        }
        match memory::evicting(&nodes, &self.config) {
            None => Ok(()),
            Some(node) if self.config.allow_eviction => {
                tracing::warn!(
                    "{}; redis.allow_eviction accepts that acknowledged writes may be lost",
                    node.describe()
                );
                Ok(())
            }
            Some(node) => Err(memory::refusal(node)),
        }
    }

    /// A connection or credentials error that does not name the server yet, naming it
    /// (a missing password shows only on the first command, not when connecting).
    fn name_server(&self, err: StorageError) -> StorageError {
        let endpoint = self.client.pool.endpoint();
        let connection_problem = matches!(
            err.kind(),
            storage_core::ErrorKind::Config | storage_core::ErrorKind::Connection
        );
        if !connection_problem || err.message().contains(endpoint) {
            return err;
        }
        // The driver's message, which `Display` appends after ours.
        let described = err.to_string();
        let cause = described
            .split_once(&format!(": {}", err.message()))
            .map(|(_, rest)| rest.trim_start_matches(": "))
            .unwrap_or_default();
        let mut message = format!("redis at {endpoint}: {}", err.message());
        if !cause.is_empty() {
            message.push_str(": ");
            message.push_str(cause);
        }
        StorageError::new(err.kind(), message)
            .with_temporary(err.is_temporary())
            .with_backend(crate::error::BACKEND)
    }
}

/// Names the operation on an error.
fn op(name: &'static str) -> impl Fn(StorageError) -> StorageError {
    move |err| err.with_backend(BACKEND).with_operation(name)
}

fn ttl_ms(secs: Option<u64>) -> String {
    secs.map_or(0, |secs| secs.saturating_mul(1000)).to_string()
}

/// A `u64` counter increment for the update script, which adds it exactly and saturates
/// at `u64::MAX`.
fn increment(value: u64) -> String {
    value.to_string()
}

fn parse_u64(fields: &HashMap<String, String>, name: &str) -> Result<u64> {
    fields
        .get(name)
        .map_or(Ok(0), |value| value.parse())
        .map_err(|_| corrupt(&format!("session field {name}")))
}

fn parse_micros(value: &str, what: &str) -> Result<time::Timestamp> {
    value
        .parse::<i64>()
        .map(time::from_micros)
        .map_err(|_| corrupt(what))
}

fn corrupt(what: &str) -> StorageError {
    StorageError::serialization(format!("stored {what} is malformed")).with_backend(BACKEND)
}

/// The fields of a new session's hash.
fn session_fields(session: &Session) -> Result<Vec<(String, String)>> {
    let micros = |at| time::to_micros(at).to_string();
    let mut fields = vec![
        ("v".to_owned(), wire::FORMAT_VERSION.to_string()),
        ("id".to_owned(), session.id.clone()),
        ("user".to_owned(), session.user_id.clone()),
        ("status".to_owned(), session.status.as_str().to_owned()),
        ("created".to_owned(), micros(session.created_at)),
        ("activity".to_owned(), micros(session.last_activity)),
        (
            "requests".to_owned(),
            session.metrics.request_count.to_string(),
        ),
        (
            "processing_ms".to_owned(),
            session.metrics.total_processing_ms.to_string(),
        ),
        ("errors".to_owned(), session.metrics.error_count.to_string()),
    ];
    if let Some(ended) = session.ended_at {
        fields.push(("ended".to_owned(), micros(ended)));
    }
    if let Some(error) = &session.metrics.last_error {
        fields.push(("last_error".to_owned(), error.clone()));
    }
    for (key, value) in &session.metadata {
        fields.push((format!("m:{key}"), serde_json::to_string(value)?));
    }
    Ok(fields)
}

/// A session from its hash; `None` for an empty (absent) hash.
fn session_from_fields(fields: HashMap<String, String>) -> Result<Option<Session>> {
    session_from_fields_with(fields, false)
}

/// A session from its hash, as [`session_from_fields`], but when `lenient`, a metadata
/// value that cannot be decoded (written by an older release against today's input
/// policy) is left out with a warning instead of failing: for reporting a write that has
/// already taken effect.
fn session_from_fields_with(
    fields: HashMap<String, String>,
    lenient: bool,
) -> Result<Option<Session>> {
    if fields.is_empty() {
        return Ok(None);
    }
    let text = |name: &str| {
        fields
            .get(name)
            .cloned()
            .ok_or_else(|| corrupt(&format!("session without field {name}")))
    };
    let status = SessionStatus::parse(&text("status")?).map_err(|_| corrupt("session status"))?;
    let mut metadata = Metadata::new();
    for (field, value) in &fields {
        if let Some(key) = field.strip_prefix("m:") {
            match serde_json::from_str(value) {
                Ok(value) => {
                    metadata.insert(key.to_owned(), value);
                }
                Err(err) if lenient => tracing::warn!(
                    backend = BACKEND,
                    session_id = fields.get("id").map_or("", String::as_str),
                    key,
                    error = %err,
                    "leaving out a session metadata value that cannot be decoded"
                ),
                Err(err) => return Err(err.into()),
            }
        }
    }
    Ok(Some(Session {
        id: text("id")?,
        user_id: text("user")?,
        status,
        metadata,
        metrics: SessionMetrics {
            request_count: parse_u64(&fields, "requests")?,
            total_processing_ms: parse_u64(&fields, "processing_ms")?,
            error_count: parse_u64(&fields, "errors")?,
            last_error: fields.get("last_error").cloned(),
        },
        created_at: parse_micros(&text("created")?, "session creation time")?,
        last_activity: parse_micros(&text("activity")?, "session activity")?,
        ended_at: fields
            .get("ended")
            .map(|value| parse_micros(value, "session end time"))
            .transpose()?,
    }))
}

fn decode_messages(members: Vec<Vec<u8>>) -> Result<Vec<Message>> {
    members.iter().map(|member| wire::decode(member)).collect()
}

/// A score bound for a sequence: the float Redis compares, or infinity.
fn sequence_bound(sequence: u64) -> String {
    if sequence == u64::MAX {
        "+inf".to_owned()
    } else {
        sequence.to_string()
    }
}

impl RedisBackend {
    /// A backend for `config`. Connects lazily; call [`StorageBackend::initialize`] to check
    /// the server and load the scripts.
    pub fn new(config: RedisConfig) -> Result<Self> {
        config.validate().map_err(op("new"))?;
        let pool = Pool::new(&config).map_err(op("new"))?;
        Ok(RedisBackend {
            keys: Keys::new(&config.key_prefix, &config.namespace),
            client: Client {
                pool,
                command_timeout: config.command_timeout(),
            },
            scripts: Scripts::new(),
            config,
        })
    }

    /// The configuration this backend was built from.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// Sends one raw command through this backend's pool, with its deadline and error
    /// classification (benchmarks compare against this; tools use it for diagnostics).
    pub async fn raw_query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        self.client.query(cmd).await
    }

    /// The key of a session's record hash (for diagnostics and benchmarks).
    pub fn session_key(&self, session_id: &str) -> String {
        self.keys.session(session_id).session
    }

    /// The key of a session's message sorted set (for diagnostics and benchmarks).
    pub fn messages_key(&self, session_id: &str) -> String {
        self.keys.session(session_id).messages
    }

    /// The exact command [`ConversationStore::append_message`] sends for one message
    /// already encoded with sequence 0 (benchmarks issue it raw to measure our overhead).
    #[doc(hidden)]
    pub fn raw_append_command(
        &self,
        session_id: &str,
        client_id: &str,
        encoded: &[u8],
    ) -> redis::Cmd {
        let keys = self.keys.session(session_id);
        let ttl = ttl_ms(self.config.conversation_ttl_secs);
        let mut cmd = redis::cmd("EVALSHA");
        let script_keys = keys.append();
        cmd.arg(self.scripts.append_messages.script.get_hash())
            .arg(script_keys.len())
            .arg(&script_keys[..])
            .arg(ttl)
            .arg(1)
            .arg(client_id)
            .arg(encoded);
        cmd
    }

    // ---- sessions -------------------------------------------------------------------

    async fn fetch_sessions(&self, ids: &[String]) -> Result<Vec<Option<Session>>> {
        let cmds = ids
            .iter()
            .map(|id| {
                let mut cmd = redis::cmd("HGETALL");
                cmd.arg(self.keys.session(id).session);
                cmd
            })
            .collect();
        let replies = self.client.query_many(cmds).await?;
        replies
            .into_iter()
            .map(|reply| session_from_fields(from_value(reply, "session hash")?))
            .collect()
    }

    /// Like [`fetch_sessions`](Self::fetch_sessions) for listing: a record that cannot be
    /// decoded (one an older release wrote against today's input policy) is skipped with a
    /// warning naming its id, so it never breaks listing for anyone else;
    /// `delete_session` still removes it.
    async fn fetch_sessions_skipping_bad(&self, ids: &[String]) -> Result<Vec<Session>> {
        let cmds = ids
            .iter()
            .map(|id| {
                let mut cmd = redis::cmd("HGETALL");
                cmd.arg(self.keys.session(id).session);
                cmd
            })
            .collect();
        let replies = self.client.query_many(cmds).await?;
        let mut sessions = Vec::with_capacity(ids.len());
        for (id, reply) in ids.iter().zip(replies) {
            let fields: HashMap<String, String> = match from_value(reply, "session hash") {
                Ok(fields) => fields,
                Err(err) => {
                    tracing::warn!(backend = BACKEND, session_id = %id, error = %err,
                        "skipping a session record that cannot be read");
                    continue;
                }
            };
            match session_from_fields(fields) {
                Ok(session) => sessions.extend(session),
                Err(err) => tracing::warn!(
                    backend = BACKEND,
                    session_id = %id,
                    error = %err,
                    "skipping a session record that cannot be decoded"
                ),
            }
        }
        Ok(sessions)
    }

    async fn session_script(
        &self,
        script: &crate::scripts::Lua,
        id: &str,
        args: &[&[u8]],
    ) -> Result<Session> {
        let key = self.keys.session(id).session;
        let fields: Option<HashMap<String, String>> =
            self.client.eval(script, &[&key], args).await?;
        // The write has taken effect: report it even if an old metadata value of the
        // record cannot be decoded.
        let session = fields
            .map(|fields| session_from_fields_with(fields, true))
            .transpose()?
            .flatten()
            .ok_or_else(|| StorageError::not_found(format!("session {id:?} does not exist")))?;
        self.index_activity(&[(
            &session.id,
            &session.user_id,
            time::to_micros(session.last_activity),
        )])
        .await?;
        Ok(session)
    }

    async fn create_many(&self, sessions: Vec<NewSession>) -> Result<BatchCreate> {
        validate_new_sessions(&sessions)?;
        let now = time::now();
        let ttl = ttl_ms(self.config.session_ttl_secs);
        let records: Vec<Session> = sessions.into_iter().map(|s| s.into_session(now)).collect();
        let mut cmds = Vec::with_capacity(records.len());
        for record in &records {
            let key = self.keys.session(&record.id).session;
            let fields = session_fields(record)?;
            let mut args: Vec<&[u8]> = vec![ttl.as_bytes()];
            for (field, value) in &fields {
                args.push(field.as_bytes());
                args.push(value.as_bytes());
            }
            cmds.push(eval_cmd(&self.scripts.create_session, &[&key], &args));
        }
        // Indexed before the records are stored (see `index_new`). On one server, in the
        // same transaction: one round trip, and no delete can come in between. A cluster
        // keeps the indexes in another slot than the records: first the indexes, then the
        // records, then the indexes again for what was created (an entry a concurrent delete
        // removed in between is back).
        let (replies, fresh) = if self.client.pool.is_cluster() {
            self.index_new(&records).await?;
            (self.client.query_many(cmds).await?, HashSet::new())
        } else {
            // MULTI and EXEC as plain commands of the pipeline, not the driver's atomic
            // pipeline: a server that refuses EXEC itself (memory full, demoted meanwhile)
            // answers one EXECABORT error, which the driver's atomic parsing would turn
            // into an unreadable reply and lose the cause.
            let mut pipe = redis::pipe();
            pipe.cmd("MULTI").ignore();
            for (record, cmd) in records.iter().zip(cmds) {
                self.push_index_new(&mut pipe, record);
                pipe.add_command(cmd).ignore();
            }
            pipe.cmd("EXEC");
            let (replies,): (Vec<Value>,) = self.client.pipeline(&pipe).await?;
            if replies.len() != 3 * records.len() {
                return Err(unexpected_reply("create transaction"));
            }
            if let Some(Value::ServerError(err)) = replies
                .iter()
                .find(|reply| matches!(reply, Value::ServerError(_)))
            {
                return Err(crate::error::classify(err.clone().into()));
            }
            let mut fresh = HashSet::new();
            let mut created = Vec::with_capacity(records.len());
            for (record, replies) in records.iter().zip(replies.chunks(3)) {
                let [activity, user, reply] = replies else {
                    return Err(unexpected_reply("create transaction"));
                };
                if [activity, user]
                    .iter()
                    .all(|added| matches!(added, Value::Int(1)))
                {
                    fresh.insert(record.id.clone());
                }
                created.push(reply.clone());
            }
            (created, fresh)
        };
        let mut outcome = BatchCreate::default();
        for (record, reply) in records.into_iter().zip(replies) {
            if from_value::<i64>(reply, "create result")? == 1 {
                outcome.created.push(record);
            } else {
                outcome.already_existed.push(record.id);
            }
        }
        // What was created is indexed at its activity, unless its entries were new: an
        // entry left by an earlier session of that id moves up.
        let entries: Vec<(&str, &str, i64)> = outcome
            .created
            .iter()
            .filter(|s| !fresh.contains(&s.id))
            .map(|s| {
                (
                    s.id.as_str(),
                    s.user_id.as_str(),
                    time::to_micros(s.last_activity),
                )
            })
            .collect();
        self.index_activity(&entries).await?;
        Ok(outcome)
    }

    /// Removes sessions with their conversation and task context; `cutoff` (µs) removes
    /// only those idle since then. Returns the ids removed.
    async fn remove_sessions(&self, ids: &[String], cutoff: Option<i64>) -> Result<Vec<String>> {
        let cutoff_arg = cutoff.map(|c| c.to_string()).unwrap_or_default();
        let cmds = ids
            .iter()
            .map(|id| {
                let keys = self.keys.session(id);
                eval_cmd(
                    &self.scripts.delete_session,
                    &keys.all(),
                    &[cutoff_arg.as_bytes()],
                )
            })
            .collect();
        let replies = self.client.query_many(cmds).await?;
        let mut removed = Vec::new();
        let mut stale = Vec::new();
        let mut still_active = Vec::new();
        for (id, reply) in ids.iter().zip(replies) {
            let reply: Vec<String> = from_value(reply, "delete result")?;
            match reply.first().map(String::as_str) {
                Some("1") => {
                    removed.push(id.clone());
                    stale.push((id.clone(), reply.get(1).cloned()));
                }
                Some("0") => {
                    let micros: i64 = reply.get(2).and_then(|m| m.parse().ok()).unwrap_or(0);
                    still_active.push((
                        id.clone(),
                        reply.get(1).cloned().unwrap_or_default(),
                        micros,
                    ));
                }
                _ => stale.push((id.clone(), None)),
            }
        }
        self.unindex(&stale).await?;
        // A create or import of one of these ids racing the removal may have stored its
        // record before the entries went; its own index write came before them too (it
        // follows its script), so the entries are put back from the record, with those of
        // the sessions still active. Any writer whose record is not there yet indexes after
        // this.
        let survivors = self.survivors(&stale).await?;
        let entries: Vec<(&str, &str, i64)> = still_active
            .iter()
            .chain(&survivors)
            .map(|(id, user, micros)| (id.as_str(), user.as_str(), *micros))
            .collect();
        self.index_activity(&entries).await?;
        Ok(removed)
    }

    async fn list(&self, query: SessionQuery) -> Result<Page<Session>> {
        let cursor = query.validate()?;
        let index = match &query.user_id {
            Some(user) => self.keys.user_activity(user),
            None => self.keys.activity(),
        };
        let max = cursor
            .as_ref()
            .map_or_else(|| "+inf".to_owned(), |c| c.last_activity_micros.to_string());
        let mut found: Vec<Session> = Vec::new();
        let mut offset = 0;
        let mut exhausted = false;
        loop {
            let entries: Vec<(String, f64)> = self
                .client
                .query(
                    redis::cmd("ZRANGE")
                        .arg(&index)
                        .arg(&max)
                        .arg("-inf")
                        .arg("BYSCORE")
                        .arg("REV")
                        .arg("LIMIT")
                        .arg(offset)
                        .arg(INDEX_BATCH)
                        .arg("WITHSCORES"),
                )
                .await?;
            offset += entries.len();
            let lowest_score = entries.last().map(|(_, score)| *score);
            let ids: Vec<String> = entries.into_iter().map(|(id, _)| id).collect();
            for session in self.fetch_sessions_skipping_bad(&ids).await? {
                let wanted = cursor.as_ref().is_none_or(|c| c.precedes(&session))
                    && query.user_id.as_ref().is_none_or(|u| *u == session.user_id)
                    && query.status.is_none_or(|s| s == session.status);
                if wanted {
                    found.push(session);
                }
            }
            found.sort_by(|a, b| {
                b.last_activity
                    .cmp(&a.last_activity)
                    .then_with(|| a.id.cmp(&b.id))
            });
            if ids.len() < INDEX_BATCH {
                exhausted = true;
                break;
            }
            // Entries not read yet score at most `lowest_score`; once the page's last
            // session is strictly newer, nothing unread can sort into the page.
            if let (Some(lowest), Some(last)) = (lowest_score, found.get(query.limit - 1)) {
                if (time::to_micros(last.last_activity) as f64) > lowest {
                    break;
                }
            }
        }
        let more = found.len() > query.limit || !exhausted;
        found.truncate(query.limit);
        let next_cursor = match found.last() {
            Some(last) if more => Some(SessionCursor::after(last).encode()),
            _ => None,
        };
        Ok(Page {
            items: found,
            next_cursor,
        })
    }

    async fn cleanup(&self, max_idle: Duration) -> Result<u64> {
        let idle_micros = i64::try_from(max_idle.as_micros()).unwrap_or(i64::MAX);
        let cutoff = time::to_micros(time::now()).saturating_sub(idle_micros);
        let mut removed = 0u64;
        loop {
            let ids: Vec<String> = self
                .client
                .query(
                    redis::cmd("ZRANGE")
                        .arg(self.keys.activity())
                        .arg("-inf")
                        .arg(cutoff)
                        .arg("BYSCORE")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(INDEX_BATCH),
                )
                .await?;
            if ids.is_empty() {
                return Ok(removed);
            }
            removed += self.remove_sessions(&ids, Some(cutoff)).await?.len() as u64;
            if ids.len() < INDEX_BATCH {
                return Ok(removed);
            }
        }
    }

    // ---- conversation ----------------------------------------------------------------

    async fn append(&self, session_id: &str, messages: Vec<NewMessage>) -> Result<Vec<Message>> {
        validate_append(session_id, &messages)?;
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.keys.session(session_id);
        let now = time::now();
        let ttl = ttl_ms(self.config.conversation_ttl_secs);
        let count = messages.len().to_string();
        let mixed_possible = messages.len() > 1 && messages.iter().any(|m| m.client_id.is_some());
        let mut records = Vec::with_capacity(messages.len());
        let mut encoded = Vec::with_capacity(messages.len());
        for message in messages {
            let client_id = message.client_id.clone().unwrap_or_default();
            let record = message.into_message(session_id, 0, now);
            // The script puts the allocated sequence in place of the 0.
            encoded.push((client_id, wire::encode(&record)?));
            records.push(record);
        }
        let script_keys = keys.append();
        // The reply says where each new message went (a number) and what each stored
        // client id holds (a member). New messages come back as built here, never decoded
        // from the reply, so a write that took effect is never reported as failed. Only
        // stored members are decoded: a batch that mixes new messages with stored client
        // ids first probes those members (storing nothing), so one that cannot be decoded
        // fails the call before anything is written.
        let mut probe = mixed_possible;
        loop {
            let mut args: Vec<&[u8]> = vec![ttl.as_bytes(), count.as_bytes()];
            for (client_id, bytes) in &encoded {
                args.push(client_id.as_bytes());
                args.push(bytes);
            }
            args.push(if probe { b"0" } else { b"1" });
            let mut reply: Vec<Value> = self
                .client
                .eval(&self.scripts.append_messages, &script_keys, &args)
                .await?;
            if reply.is_empty() {
                return Err(unexpected_reply("empty append reply"));
            }
            let written = from_value::<i64>(reply.remove(0), "append status")? == 1;
            if !written {
                if !probe {
                    return Err(unexpected_reply("append stored nothing without a probe"));
                }
                for member in reply {
                    let member: Vec<u8> = from_value(member, "stored message")?;
                    wire::decode::<Message>(&member)?;
                }
                probe = false;
                continue;
            }
            if reply.len() != records.len() {
                return Err(unexpected_reply("append reply of the wrong length"));
            }
            let mut out = Vec::with_capacity(records.len());
            for (mut record, entry) in records.into_iter().zip(reply) {
                match entry {
                    Value::Int(sequence) => {
                        record.sequence = u64::try_from(sequence)
                            .map_err(|_| unexpected_reply("negative sequence"))?;
                        out.push(record);
                    }
                    member => {
                        let member: Vec<u8> = from_value(member, "stored message")?;
                        out.push(wire::decode(&member)?);
                    }
                }
            }
            return Ok(out);
        }
    }

    async fn window(&self, session_id: &str, range: MessageRange) -> Result<Vec<Message>> {
        validate_id("session id", session_id)?;
        range.validate()?;
        let Some((low, high)) = range.bounds() else {
            return Ok(Vec::new());
        };
        let key = self.keys.session(session_id).messages;
        let mut cmd = redis::cmd("ZRANGE");
        if range.is_forward() {
            cmd.arg(&key)
                .arg(low)
                .arg(sequence_bound(high))
                .arg("BYSCORE");
        } else {
            cmd.arg(&key)
                .arg(sequence_bound(high))
                .arg(low)
                .arg("BYSCORE")
                .arg("REV");
        }
        cmd.arg("LIMIT").arg(0).arg(range.limit);
        let mut members: Vec<Vec<u8>> = self.client.query(&cmd).await?;
        if !range.is_forward() {
            members.reverse();
        }
        decode_messages(members)
    }

    // ---- checkpoints ----------------------------------------------------------------

    async fn namespaces_of(&self, thread: &ThreadKeys) -> Result<Vec<String>> {
        self.client
            .query(redis::cmd("SMEMBERS").arg(thread.namespaces()))
            .await
    }

    async fn remove_for_run(&self, run_id: &str) -> Result<u64> {
        let index = self.keys.run_index(run_id);
        let entries: Vec<String> = self
            .client
            .query(redis::cmd("SMEMBERS").arg(&index))
            .await?;
        let mut removed = 0;
        for entry in entries {
            let mut parts = entry.split(':');
            let address = (|| {
                let thread = decode_id(parts.next()?)?;
                let hex_ns = parts.next()?.to_owned();
                let id = decode_id(parts.next()?)?;
                Some((thread, hex_ns, id))
            })();
            if let Some((thread_id, hex_ns, id)) = address {
                let thread = self.keys.thread(&thread_id);
                let record: Option<Vec<u8>> = self
                    .client
                    .query(redis::cmd("HGET").arg(thread.records(&hex_ns)).arg(&id))
                    .await?;
                if let Some(record) = record {
                    let checkpoint: Checkpoint = wire::decode(&record)?;
                    if checkpoint.metadata.get("run_id").and_then(Json::as_str) == Some(run_id) {
                        let deleted: i64 = self
                            .client
                            .eval(
                                &self.scripts.delete_checkpoint_if,
                                &[
                                    &thread.ids(&hex_ns),
                                    &thread.records(&hex_ns),
                                    &thread.write_ids(&hex_ns),
                                    &thread.writes(&hex_ns, &id),
                                    &thread.changes(&hex_ns),
                                ],
                                &[id.as_bytes(), &record],
                            )
                            .await?;
                        removed += deleted as u64;
                    }
                }
            }
            self.client
                .query::<()>(redis::cmd("SREM").arg(&index).arg(&entry))
                .await?;
        }
        Ok(removed)
    }

    async fn index_runs<'a>(
        &self,
        checkpoints: impl IntoIterator<Item = &'a Checkpoint>,
    ) -> Result<()> {
        let mut pipe = redis::pipe();
        let mut any = false;
        for checkpoint in checkpoints {
            if let Some(run_id) = checkpoint.metadata.get("run_id").and_then(Json::as_str) {
                let member = format!(
                    "{}:{}:{}",
                    encode_id(&checkpoint.thread_id),
                    encode_id(&checkpoint.namespace),
                    encode_id(&checkpoint.id)
                );
                pipe.cmd("SADD")
                    .arg(self.keys.run_index(run_id))
                    .arg(member)
                    .ignore();
                any = true;
            }
        }
        if any {
            // Every run index shares the namespace's tag, so this is one slot.
            self.client.pipeline::<()>(&pipe).await?;
        }
        Ok(())
    }

    async fn copy(&self, source_id: &str, target_id: &str) -> Result<u64> {
        validate_id("thread id", source_id)?;
        validate_id("thread id", target_id)?;
        let source = self.keys.thread(source_id);
        let target = self.keys.thread(target_id);
        let mut args: Vec<Vec<u8>> = vec![ttl_ms(self.config.checkpoint_ttl_secs).into_bytes()];
        let mut copied = Vec::new();
        for hex_ns in self.namespaces_of(&source).await? {
            let mut pipe = redis::pipe();
            pipe.cmd("HGETALL").arg(source.records(&hex_ns));
            pipe.cmd("HGETALL").arg(source.blobs(&hex_ns));
            pipe.cmd("SMEMBERS").arg(source.write_ids(&hex_ns));
            let (records, blobs, write_ids): (FieldMap, FieldMap, Vec<String>) =
                self.client.pipeline(&pipe).await?;
            // A namespace holding only pending writes is copied like any other.
            if records.is_empty() && write_ids.is_empty() {
                continue;
            }
            args.push(b"ns".to_vec());
            args.push(hex_ns.clone().into_bytes());
            for (id, record) in records {
                let mut checkpoint: Checkpoint = wire::decode(&record)?;
                checkpoint.thread_id = target_id.to_owned();
                args.extend([b"cp".to_vec(), id.into_bytes(), wire::encode(&checkpoint)?]);
                copied.push(checkpoint);
            }
            for (field, value) in blobs {
                args.extend([b"blob".to_vec(), field.into_bytes(), value]);
            }
            for hex_id in write_ids {
                let writes: HashMap<String, Vec<u8>> = self
                    .client
                    .query(
                        redis::cmd("HGETALL").arg(format!("{}:w:{hex_ns}:{hex_id}", source.base)),
                    )
                    .await?;
                for (field, value) in writes {
                    args.extend([
                        b"w".to_vec(),
                        hex_id.clone().into_bytes(),
                        field.into_bytes(),
                        value,
                    ]);
                }
            }
        }
        if copied.is_empty() {
            return Err(StorageError::not_found(format!(
                "thread {source_id:?} has no checkpoints"
            )));
        }
        let arg_refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let done: i64 = self
            .client
            .eval(&self.scripts.copy_into_thread, &[&target.base], &arg_refs)
            .await?;
        if done == 0 {
            return Err(StorageError::already_exists(format!(
                "thread {target_id:?} already has checkpoints"
            )));
        }
        self.index_runs(&copied).await?;
        Ok(copied.len() as u64)
    }

    // ---- artifacts ----------------------------------------------------------------

    async fn artifact(
        &self,
        scope: &str,
        name: &str,
        version: Option<u64>,
        with_content: bool,
    ) -> Result<Option<(ArtifactMeta, Option<Bytes>)>> {
        validate_artifact_address(scope, name)?;
        let keys = self.keys.scope(scope);
        let version_arg = version.map(|v| v.to_string()).unwrap_or_default();
        let flag: &[u8] = if with_content { b"1" } else { b"0" };
        let reply: Option<Vec<Vec<u8>>> = self
            .client
            .eval(
                &self.scripts.get_artifact,
                &[
                    &keys.versions(name),
                    &keys.metas(name),
                    &keys.contents(name),
                ],
                &[version_arg.as_bytes(), flag],
            )
            .await?;
        let Some(mut parts) = reply else {
            return Ok(None);
        };
        if parts.is_empty() {
            return Err(unexpected_reply("artifact without metadata"));
        }
        let content = if parts.len() > 1 {
            parts.pop().map(Bytes::from)
        } else {
            None
        };
        let meta: ArtifactMeta = wire::decode(&parts[0])?;
        Ok(Some((meta, content)))
    }
}

#[async_trait]
impl SessionStore for RedisBackend {
    async fn create_session(&self, session: NewSession) -> Result<Session> {
        let session = admit("create_session", session)?;
        let id = session.id.clone();
        let mut outcome = self
            .create_many(vec![session])
            .await
            .map_err(op("create_session"))?;
        outcome.created.pop().ok_or_else(|| {
            StorageError::already_exists(format!("session {id:?} already exists"))
                .with_backend(BACKEND)
                .with_operation("create_session")
        })
    }

    async fn create_sessions(&self, sessions: Vec<NewSession>) -> Result<BatchCreate> {
        let sessions = admit("create_sessions", sessions)?;
        self.create_many(sessions)
            .await
            .map_err(op("create_sessions"))
    }

    async fn get_session(&self, id: &str) -> Result<Option<Session>> {
        async {
            validate_id("session id", id)?;
            let fields: HashMap<String, String> = self
                .client
                .query(redis::cmd("HGETALL").arg(self.keys.session(id).session))
                .await?;
            session_from_fields(fields)
        }
        .await
        .map_err(op("get_session"))
    }

    async fn get_sessions(&self, ids: &[String]) -> Result<Vec<Option<Session>>> {
        async {
            storage_core::validate::validate_ids("session id", ids.iter().map(String::as_str))?;
            self.fetch_sessions(ids).await
        }
        .await
        .map_err(op("get_sessions"))
    }

    async fn update_session(&self, id: &str, update: SessionUpdate) -> Result<Session> {
        let update = admit("update_session", update)?;
        async {
            validate_id("session id", id)?;
            update.validate()?;
            let ttl = ttl_ms(self.config.session_ttl_secs);
            let now = time::to_micros(time::now()).to_string();
            let requests = increment(update.add_requests);
            let processing = increment(update.add_processing_ms);
            let (error_flag, error_message) = match &update.error {
                Some(message) => ("1", message.as_str()),
                None => ("0", ""),
            };
            let mut sets = Vec::new();
            let mut removals = Vec::new();
            for (key, value) in &update.metadata_patch {
                if value.is_null() {
                    removals.push(key.as_str());
                } else {
                    sets.push((key.as_str(), serde_json::to_string(value)?));
                }
            }
            let set_count = sets.len().to_string();
            let mut args: Vec<&[u8]> = vec![
                ttl.as_bytes(),
                now.as_bytes(),
                requests.as_bytes(),
                processing.as_bytes(),
                error_flag.as_bytes(),
                error_message.as_bytes(),
                set_count.as_bytes(),
            ];
            for (key, value) in &sets {
                args.push(key.as_bytes());
                args.push(value.as_bytes());
            }
            args.extend(removals.iter().map(|key| key.as_bytes()));
            self.session_script(&self.scripts.update_session, id, &args)
                .await
        }
        .await
        .map_err(op("update_session"))
    }

    async fn end_session(&self, id: &str, status: SessionStatus) -> Result<Session> {
        async {
            validate_id("session id", id)?;
            let ttl = ttl_ms(self.config.session_ttl_secs);
            let now = time::now();
            let micros = time::to_micros(now).to_string();
            let session = self
                .session_script(
                    &self.scripts.end_session,
                    id,
                    &[
                        ttl.as_bytes(),
                        micros.as_bytes(),
                        status.as_str().as_bytes(),
                    ],
                )
                .await?;
            // The script applied exactly this rule; checked here so the two cannot drift.
            let mut expected = session.clone();
            end_session_record(&mut expected, status, now);
            debug_assert_eq!(expected.status, session.status);
            Ok(session)
        }
        .await
        .map_err(op("end_session"))
    }

    async fn delete_session(&self, id: &str) -> Result<bool> {
        async {
            validate_id("session id", id)?;
            let removed = self.remove_sessions(&[id.to_owned()], None).await?;
            Ok(!removed.is_empty())
        }
        .await
        .map_err(op("delete_session"))
    }

    async fn import_session(&self, session: Session) -> Result<()> {
        let session = admit("import_session", session)?;
        self.import_session_op(session).await
    }

    async fn list_sessions(&self, query: SessionQuery) -> Result<Page<Session>> {
        self.list(query).await.map_err(op("list_sessions"))
    }
}

#[async_trait]
impl ConversationStore for RedisBackend {
    async fn append_message(&self, session_id: &str, message: NewMessage) -> Result<Message> {
        let message = admit("append_message", message)?;
        async {
            self.append(session_id, vec![message])
                .await?
                .pop()
                .ok_or_else(|| unexpected_reply("append returned no message"))
        }
        .await
        .map_err(op("append_message"))
    }

    async fn append_messages(
        &self,
        session_id: &str,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Message>> {
        let messages = admit("append_messages", messages)?;
        self.append(session_id, messages)
            .await
            .map_err(op("append_messages"))
    }

    async fn get_conversation_history(
        &self,
        session_id: &str,
        limit: usize,
    ) -> Result<Vec<Message>> {
        async {
            validate_id("session id", session_id)?;
            validate_limit("message limit", limit)?;
            let start = -(i64::try_from(limit).unwrap_or(i64::MAX));
            let members: Vec<Vec<u8>> = self
                .client
                .query(
                    redis::cmd("ZRANGE")
                        .arg(self.keys.session(session_id).messages)
                        .arg(start)
                        .arg(-1),
                )
                .await?;
            decode_messages(members)
        }
        .await
        .map_err(op("get_conversation_history"))
    }

    async fn get_messages(&self, session_id: &str, range: MessageRange) -> Result<Vec<Message>> {
        self.window(session_id, range)
            .await
            .map_err(op("get_messages"))
    }

    async fn pop_last_message(&self, session_id: &str) -> Result<Option<Message>> {
        async {
            validate_id("session id", session_id)?;
            let keys = self.keys.session(session_id);
            let popped: Option<(Vec<u8>, String, String)> = self
                .client
                .eval(&self.scripts.pop_message, &keys.removal(), &[])
                .await?;
            let Some((member, sequence, client_id)) = popped else {
                return Ok(None);
            };
            match wire::decode(&member) {
                Ok(message) => Ok(Some(message)),
                Err(err) => {
                    // Reporting failure for a pop that took effect would lose the message:
                    // put it back first, so the failed pop has changed nothing.
                    let ttl = ttl_ms(self.config.conversation_ttl_secs);
                    self.client
                        .eval::<i64>(
                            &self.scripts.restore_message,
                            &[&keys.messages, &keys.client_ids],
                            &[
                                ttl.as_bytes(),
                                sequence.as_bytes(),
                                &member,
                                client_id.as_bytes(),
                            ],
                        )
                        .await?;
                    Err(err)
                }
            }
        }
        .await
        .map_err(op("pop_last_message"))
    }

    async fn compact_conversation(
        &self,
        session_id: &str,
        up_to: u64,
        summary: NewMessage,
        keep_replaced: bool,
    ) -> Result<Message> {
        let summary = admit("compact_conversation", summary)?;
        self.compact(session_id, up_to, summary, keep_replaced)
            .await
            .map_err(op("compact_conversation"))
    }

    async fn get_replaced_messages(
        &self,
        session_id: &str,
        summary_sequence: u64,
    ) -> Result<Vec<Message>> {
        self.replaced(session_id, summary_sequence)
            .await
            .map_err(op("get_replaced_messages"))
    }

    async fn rewind_conversation(&self, session_id: &str, sequence: u64) -> Result<u64> {
        self.rewind(session_id, sequence)
            .await
            .map_err(op("rewind_conversation"))
    }

    async fn retain_messages(&self, retention: storage_core::Retention) -> Result<u64> {
        self.retain_messages_op(retention).await
    }

    async fn import_messages(&self, session_id: &str, messages: Vec<Message>) -> Result<u64> {
        let messages = admit("import_messages", messages)?;
        self.import_messages_op(session_id, messages).await
    }

    async fn clear_conversation(&self, session_id: &str) -> Result<u64> {
        async {
            validate_id("session id", session_id)?;
            let keys = self.keys.session(session_id);
            self.client
                .eval(&self.scripts.clear_messages, &keys.removal(), &[])
                .await
        }
        .await
        .map_err(op("clear_conversation"))
    }

    async fn list_conversation_ids(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        // Redis removes a sorted set with its last member: a `msgs` key holds messages.
        self.scan_ids("s", "msgs", after, limit)
            .await
            .map_err(op("list_conversation_ids"))
    }
}

#[async_trait]
impl CheckpointStore for RedisBackend {
    async fn put_checkpoint(
        &self,
        checkpoint: Checkpoint,
        new_versions: ChannelVersions,
    ) -> Result<()> {
        let checkpoint = admit("put_checkpoint", checkpoint)?;
        self.put_one(checkpoint, new_versions)
            .await
            .map_err(op("put_checkpoint"))
    }

    async fn put_checkpoints(&self, puts: Vec<(Checkpoint, ChannelVersions)>) -> Result<()> {
        let puts = admit("put_checkpoints", puts)?;
        self.put_many(puts).await.map_err(op("put_checkpoints"))
    }

    async fn get_checkpoint(
        &self,
        thread_id: &str,
        namespace: &str,
        checkpoint_id: Option<&str>,
    ) -> Result<Option<CheckpointTuple>> {
        async {
            validate_get_checkpoint(thread_id, namespace, checkpoint_id)?;
            let thread = self.keys.thread(thread_id);
            self.read_checkpoint(&thread, &encode_id(namespace), checkpoint_id)
                .await
        }
        .await
        .map_err(op("get_checkpoint"))
    }

    async fn list_checkpoints(&self, query: CheckpointQuery) -> Result<Vec<CheckpointTuple>> {
        let query = admit("list_checkpoints", query)?;
        async {
            query.validate()?;
            self.read_list(&query).await
        }
        .await
        .map_err(op("list_checkpoints"))
    }

    async fn put_writes(
        &self,
        key: CheckpointKey,
        task_id: &str,
        task_path: &str,
        writes: Vec<(String, ChannelValue)>,
    ) -> Result<()> {
        let writes = admit("put_writes", writes)?;
        async {
            validate_put_writes(&key, task_id, &writes)?;
            if writes.is_empty() {
                return Ok(());
            }
            let thread = self.keys.thread(&key.thread_id);
            let hex_ns = encode_id(&key.namespace);
            let ttl = ttl_ms(self.config.checkpoint_ttl_secs);
            let hex_id = encode_id(&key.checkpoint_id);
            let mut encoded = Vec::with_capacity(writes.len());
            for (write, replace) in indexed_writes(task_id, task_path, writes) {
                let flag: &[u8] = if replace { b"1" } else { b"0" };
                encoded.push((
                    write_field(task_id, write.index),
                    wire::encode_write(&write)?,
                    flag,
                ));
            }
            let mut args: Vec<&[u8]> = vec![ttl.as_bytes(), hex_id.as_bytes(), hex_ns.as_bytes()];
            for (field, value, flag) in &encoded {
                args.extend([field.as_bytes(), value.as_slice(), flag]);
            }
            self.client
                .eval::<()>(
                    &self.scripts.put_writes,
                    &[
                        &thread.write_ids(&hex_ns),
                        &thread.writes(&hex_ns, &key.checkpoint_id),
                        &thread.namespaces(),
                    ],
                    &args,
                )
                .await
        }
        .await
        .map_err(op("put_writes"))
    }

    async fn get_writes(&self, key: CheckpointKey) -> Result<Vec<PendingWrite>> {
        async {
            key.validate()?;
            let thread = self.keys.thread(&key.thread_id);
            let values: Vec<Vec<u8>> = self
                .client
                .query(
                    redis::cmd("HVALS")
                        .arg(thread.writes(&encode_id(&key.namespace), &key.checkpoint_id)),
                )
                .await?;
            wire::decode_writes(&values)
        }
        .await
        .map_err(op("get_writes"))
    }

    async fn delta_channel_history(
        &self,
        key: CheckpointKey,
        channels: Vec<String>,
    ) -> Result<Option<BTreeMap<String, storage_core::ChannelHistory>>> {
        self.channel_history(key, channels)
            .await
            .map_err(op("delta_channel_history"))
    }

    async fn delete_thread(&self, thread_id: &str) -> Result<u64> {
        async {
            validate_id("thread id", thread_id)?;
            let thread = self.keys.thread(thread_id);
            self.client
                .eval(&self.scripts.delete_thread, &[&thread.base], &[])
                .await
        }
        .await
        .map_err(op("delete_thread"))
    }

    async fn prune_checkpoints(&self, thread_id: &str, keep_last: usize) -> Result<u64> {
        async {
            validate_id("thread id", thread_id)?;
            validate_limit("checkpoints to keep", keep_last)?;
            let thread = self.keys.thread(thread_id);
            let mut removed = 0;
            for hex_ns in self.namespaces_of(&thread).await? {
                removed += self
                    .prune_namespace(&thread, &hex_ns, prune::Keep::Newest(keep_last))
                    .await?;
            }
            Ok(removed)
        }
        .await
        .map_err(op("prune_checkpoints"))
    }

    async fn retain_checkpoints(&self, retention: storage_core::Retention) -> Result<u64> {
        self.retain_checkpoints_op(retention).await
    }

    async fn copy_thread(&self, source_thread_id: &str, target_thread_id: &str) -> Result<u64> {
        self.copy(source_thread_id, target_thread_id)
            .await
            .map_err(op("copy_thread"))
    }

    async fn list_thread_ids(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        async {
            storage_core::policy::check_after("thread listing cursor", after)?;
            // A namespace's id index exists while it holds a checkpoint; the namespace set
            // also names namespaces that hold only pending writes.
            self.scan_ids("t", "ids:*", after, limit).await
        }
        .await
        .map_err(op("list_thread_ids"))
    }

    async fn delete_for_runs(&self, run_ids: &[String]) -> Result<u64> {
        async {
            storage_core::validate::validate_ids("run id", run_ids.iter().map(String::as_str))?;
            let mut removed = 0;
            for run_id in run_ids.iter().collect::<BTreeSet<_>>() {
                removed += self.remove_for_run(run_id).await?;
            }
            Ok(removed)
        }
        .await
        .map_err(op("delete_for_runs"))
    }
}

#[async_trait]
impl ArtifactStore for RedisBackend {
    async fn save_artifact(
        &self,
        scope: &str,
        name: &str,
        artifact: NewArtifact,
    ) -> Result<ArtifactMeta> {
        let artifact = admit("save_artifact", artifact)?;
        async {
            storage_core::artifact::validate_save(scope, name, &artifact.metadata)?;
            check_artifact_size(artifact.data.len() as u64, self.config.max_artifact_bytes)?;
            let keys = self.keys.scope(scope);
            let meta = ArtifactMeta {
                scope: scope.to_owned(),
                name: name.to_owned(),
                version: 0,
                content_type: artifact.content_type,
                size: artifact.data.len() as u64,
                sha256: sha256_hex(&artifact.data),
                metadata: artifact.metadata,
                created_at: time::now(),
            };
            // The script puts the allocated version in place of the 0.
            let encoded = wire::encode(&meta)?;
            let ttl = ttl_ms(self.config.artifact_ttl_secs);
            // The reply is the version; the metadata is the one built here, so nothing
            // stored has to be decoded to report the save.
            let version: u64 = self
                .client
                .eval(
                    &self.scripts.save_artifact,
                    &[
                        &keys.names(),
                        &keys.next_versions(),
                        &keys.versions(name),
                        &keys.metas(name),
                        &keys.contents(name),
                    ],
                    &[ttl.as_bytes(), name.as_bytes(), &encoded, &artifact.data],
                )
                .await?;
            Ok(ArtifactMeta { version, ..meta })
        }
        .await
        .map_err(op("save_artifact"))
    }

    async fn get_artifact(
        &self,
        scope: &str,
        name: &str,
        version: Option<u64>,
    ) -> Result<Option<Artifact>> {
        async {
            Ok(self
                .artifact(scope, name, version, true)
                .await?
                .map(|(meta, data)| Artifact {
                    meta,
                    data: data.unwrap_or_default(),
                }))
        }
        .await
        .map_err(op("get_artifact"))
    }

    async fn get_artifact_meta(
        &self,
        scope: &str,
        name: &str,
        version: Option<u64>,
    ) -> Result<Option<ArtifactMeta>> {
        async {
            Ok(self
                .artifact(scope, name, version, false)
                .await?
                .map(|(meta, _)| meta))
        }
        .await
        .map_err(op("get_artifact_meta"))
    }

    async fn list_artifacts(&self, scope: &str) -> Result<Vec<String>> {
        async {
            validate_id("artifact scope", scope)?;
            self.client
                .query(
                    redis::cmd("ZRANGE")
                        .arg(self.keys.scope(scope).names())
                        .arg(0)
                        .arg(-1),
                )
                .await
        }
        .await
        .map_err(op("list_artifacts"))
    }

    async fn list_artifact_versions(&self, scope: &str, name: &str) -> Result<Vec<ArtifactMeta>> {
        async {
            validate_artifact_address(scope, name)?;
            let values: Vec<Vec<u8>> = self
                .client
                .query(redis::cmd("HVALS").arg(self.keys.scope(scope).metas(name)))
                .await?;
            let mut metas = values
                .iter()
                .map(|bytes| wire::decode::<ArtifactMeta>(bytes))
                .collect::<Result<Vec<_>>>()?;
            metas.sort_by_key(|meta| meta.version);
            Ok(metas)
        }
        .await
        .map_err(op("list_artifact_versions"))
    }

    async fn delete_artifact(&self, scope: &str, name: &str, version: Option<u64>) -> Result<u64> {
        async {
            validate_artifact_address(scope, name)?;
            let keys = self.keys.scope(scope);
            let version_arg = version.map(|v| v.to_string()).unwrap_or_default();
            self.client
                .eval(
                    &self.scripts.delete_artifact,
                    &[
                        &keys.names(),
                        &keys.next_versions(),
                        &keys.versions(name),
                        &keys.metas(name),
                        &keys.contents(name),
                    ],
                    &[name.as_bytes(), version_arg.as_bytes()],
                )
                .await
        }
        .await
        .map_err(op("delete_artifact"))
    }

    async fn retain_artifact_versions(&self, retention: storage_core::Retention) -> Result<u64> {
        self.retain_artifact_versions_op(retention).await
    }

    async fn list_artifact_scopes(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        async {
            storage_core::policy::check_after("artifact scope listing cursor", after)?;
            self.scan_ids("a", "names", after, limit).await
        }
        .await
        .map_err(op("list_artifact_scopes"))
    }

    async fn import_artifact(&self, artifact: Artifact) -> Result<bool> {
        let artifact = admit("import_artifact", artifact)?;
        self.import_artifact_op(artifact).await
    }

    async fn clear_artifacts(&self, scope: &str) -> Result<u64> {
        async {
            validate_id("artifact scope", scope)?;
            let keys = self.keys.scope(scope);
            self.client
                .eval(&self.scripts.clear_artifacts, &[&keys.base], &[])
                .await
        }
        .await
        .map_err(op("clear_artifacts"))
    }
}

#[async_trait]
impl StorageBackend for RedisBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    async fn initialize(&self) -> Result<()> {
        async {
            self.client.query::<String>(&redis::cmd("PING")).await?;
            self.check_eviction().await?;
            let mut conn = self.client.pool.get().await?;
            for script in self.scripts.all() {
                crate::pool::within(
                    self.client.command_timeout,
                    script.script.load_async(&mut conn),
                )
                .await?;
            }
            Ok(())
        }
        .await
        .map_err(|err| self.name_server(err))
        .map_err(op("initialize"))
    }

    async fn close(&self) -> Result<()> {
        self.client.pool.close();
        Ok(())
    }

    async fn health_check(&self) -> Result<HealthStatus> {
        async {
            let started = Instant::now();
            let pong: String = self.client.query(&redis::cmd("PING")).await?;
            let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
            // The default sections hold both the version and the memory settings (one
            // section per call before Redis 7).
            let info: Value = self.client.query(&redis::cmd("INFO")).await?;
            let endpoint = self.client.pool.endpoint();
            let texts = memory::info_texts(&info, endpoint);
            let mut details = BTreeMap::new();
            if let Some(version) = texts
                .iter()
                .find_map(|(_, text)| memory::info_field(text, "redis_version"))
            {
                details.insert("server_version".to_owned(), version.to_owned());
            }
            // The node that may evict this backend's keys, else the first: a policy changed
            // at runtime shows here as a detail. The check stays healthy, since the server
            // serves; one `CONFIG SET` turning a whole fleet unready would be worse.
            let nodes = NodeMemory::of_texts(&texts);
            let evicting = memory::evicting(&nodes, &self.config);
            if let Some(node) = evicting.or(nodes.first()) {
                details.insert("maxmemory".to_owned(), node.maxmemory.to_string());
                details.insert("maxmemory_policy".to_owned(), node.policy.clone());
            }
            if let Some(node) = evicting {
                details.insert("eviction".to_owned(), node.describe());
            }
            let status = self.client.pool.status();
            details.insert(
                "mode".to_owned(),
                if self.client.pool.is_cluster() {
                    "cluster"
                } else {
                    "standalone"
                }
                .to_owned(),
            );
            details.insert("pool_max_size".to_owned(), status.max_size.to_string());
            details.insert("pool_size".to_owned(), status.size.to_string());
            details.insert("pool_available".to_owned(), status.available.to_string());
            details.insert("pool_waiting".to_owned(), status.waiting.to_string());
            details.insert("namespace".to_owned(), self.config.namespace.clone());
            Ok(HealthStatus {
                backend: BACKEND.to_owned(),
                healthy: pong == "PONG",
                latency_ms,
                details,
            })
        }
        .await
        .map_err(|err| self.name_server(err))
        .map_err(op("health_check"))
    }

    async fn get_metrics(&self) -> Result<BackendMetrics> {
        let status = self.client.pool.status();
        let mut metrics = BackendMetrics {
            backend: BACKEND.to_owned(),
            ..BackendMetrics::default()
        };
        metrics
            .gauges
            .insert("pool_max_size".to_owned(), status.max_size as f64);
        metrics
            .gauges
            .insert("pool_size".to_owned(), status.size as f64);
        metrics
            .gauges
            .insert("pool_available".to_owned(), status.available as f64);
        metrics
            .gauges
            .insert("pool_waiting".to_owned(), status.waiting as f64);
        let sessions: u64 = self
            .client
            .query(redis::cmd("ZCARD").arg(self.keys.activity()))
            .await
            .map_err(op("get_metrics"))?;
        metrics
            .counters
            .insert("sessions_indexed".to_owned(), sessions);
        Ok(metrics)
    }

    async fn cleanup_expired_sessions(&self, max_idle: Duration) -> Result<u64> {
        self.cleanup(max_idle)
            .await
            .map_err(op("cleanup_expired_sessions"))
    }
}
