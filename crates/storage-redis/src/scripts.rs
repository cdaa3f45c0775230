//! The Lua scripts behind every compound write: each runs atomically on the one slot its
//! keys share, so no write is a read-modify-write from the client.
//!
//! Numbers cross into Lua as strings and are written back as strings formatted with `%d`,
//! because Lua numbers are doubles and Redis would print big ones in exponent notation.

use deadpool_redis::redis::Script;

mod checkpoint_index;
mod checkpoint_reads;
mod conversation;
mod retention;

use checkpoint_index::{INDEX_USERS, PRUNE_NAMESPACE, PUT_CHECKPOINT};
use checkpoint_reads::{CHANNEL_HISTORY, GET_CHECKPOINT, LIST_CHECKPOINTS, READ_PRELUDE};
use conversation::{
    CLEAR_MESSAGES, COMPACT, KEPT_PRELUDE, POP_MESSAGE, READ_PREFIX, REPLACED_MESSAGES, REWIND,
};
use retention::{RETAIN_ARTIFACT, RETAIN_CONTEXT, RETAIN_MESSAGES, RETENTION_PRELUDE};

const PRELUDE: &str = r#"
local function touch(key, ttl)
  if ttl ~= '0' then redis.call('PEXPIRE', key, ttl) end
end
local function int(n) return string.format('%d', n) end
local function splice(encoded, field, value)
  local marker = '"' .. field .. '":0,'
  local s, e = string.find(encoded, marker, 1, true)
  if not s then return redis.error_reply('record without placeholder for ' .. field) end
  return string.sub(encoded, 1, s - 1) .. '"' .. field .. '":' .. value .. ',' .. string.sub(encoded, e + 1)
end
local function hex(s)
  return (string.gsub(s, '.', function(c) return string.format('%02x', string.byte(c)) end))
end
-- a + b for non-negative decimal strings, saturating at u64::MAX (exact, unlike Lua numbers).
local U64_MAX = '18446744073709551615'
local function add_sat(a, b)
  local out, carry, i, j = {}, 0, #a, #b
  while i > 0 or j > 0 or carry > 0 do
    local d = carry
    if i > 0 then d = d + string.byte(a, i) - 48; i = i - 1 end
    if j > 0 then d = d + string.byte(b, j) - 48; j = j - 1 end
    out[#out + 1] = string.char(48 + d % 10)
    carry = math.floor(d / 10)
  end
  local sum = string.reverse(table.concat(out)):gsub('^0+(%d)', '%1')
  if #sum > #U64_MAX or (#sum == #U64_MAX and sum > U64_MAX) then return U64_MAX end
  return sum
end
-- Adds `by` (a decimal u64) to a counter field; counters saturate at u64::MAX.
local function bump(key, field, by)
  local done = redis.pcall('HINCRBY', key, field, by)
  if type(done) == 'table' and done.err then
    redis.call('HSET', key, field, add_sat(redis.call('HGET', key, field) or '0', by))
  end
end
-- Counts a change to a checkpoint namespace (checkpoints added or removed) on its `chg` key.
-- The counter only grows while the key exists; a key created anew (after a delete or an
-- expiry) starts at the server's clock in µs, beyond any value its earlier life could
-- reach by then (one change per script, each taking more than a µs), so a prune that read
-- the counter never mistakes a rebuilt namespace for the one it read.
local function changed(key)
  if redis.call('INCR', key) == 1 then
    local now = redis.call('TIME')
    redis.call('SET', key, now[1] .. string.format('%06d', tonumber(now[2])))
  end
end
-- HSET of many field/value pairs from ARGV[first..], in chunks: `unpack` fails past
-- about 8,000 values.
local function hset_from(key, first)
  local i = first
  while i <= #ARGV do
    local last = math.min(i + 999, #ARGV)
    redis.call('HSET', key, unpack(ARGV, i, last))
    i = last + 1
  end
end
"#;

/// KEYS: session. ARGV: ttl ms, then field/value pairs. Returns 1 if created, 0 if present.
const CREATE_SESSION: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
hset_from(KEYS[1], 2)
touch(KEYS[1], ARGV[1])
return 1
"#;

/// KEYS: session. ARGV: ttl, now µs, add requests, add ms, error flag, error message,
/// number of metadata sets n, n key/value pairs, then keys to remove. Counters saturate at
/// `u64::MAX`. Returns the updated hash, or false if absent.
const UPDATE_SESSION: &str = r#"
local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then return false end
if ARGV[3] ~= '0' then bump(key, 'requests', ARGV[3]) end
if ARGV[4] ~= '0' then bump(key, 'processing_ms', ARGV[4]) end
if ARGV[5] == '1' then
  bump(key, 'errors', '1')
  redis.call('HSET', key, 'last_error', ARGV[6])
end
local sets = tonumber(ARGV[7])
local i = 8
for _ = 1, sets do
  redis.call('HSET', key, 'm:' .. ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i <= #ARGV do
  redis.call('HDEL', key, 'm:' .. ARGV[i])
  i = i + 1
end
if tonumber(ARGV[2]) > tonumber(redis.call('HGET', key, 'activity')) then
  redis.call('HSET', key, 'activity', ARGV[2])
end
touch(key, ARGV[1])
return redis.call('HGETALL', key)
"#;

/// KEYS: session. ARGV: ttl, now µs, status. Returns the updated hash, or false if absent.
const END_SESSION: &str = r#"
local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then return false end
redis.call('HSET', key, 'status', ARGV[3], 'ended', ARGV[2])
if tonumber(ARGV[2]) > tonumber(redis.call('HGET', key, 'activity')) then
  redis.call('HSET', key, 'activity', ARGV[2])
end
touch(key, ARGV[1])
return redis.call('HGETALL', key)
"#;

/// KEYS: session, messages, sequence, client ids, kept messages, kept index, context
/// versions, context records, the previous release's task context. ARGV: idle cutoff µs, or
/// '' to delete unconditionally. Returns {1, user} when the session was removed,
/// {0, user, activity} when it is still active, {-1} when there is no session record.
const DELETE_SESSION: &str = r#"
local user = redis.call('HGET', KEYS[1], 'user')
if ARGV[1] ~= '' then
  if not user then return {-1} end
  local activity = redis.call('HGET', KEYS[1], 'activity')
  if tonumber(activity) > tonumber(ARGV[1]) then return {0, user, activity} end
end
redis.call('DEL', unpack(KEYS))
if user then return {1, user} end
return {-1}
"#;

/// KEYS: sequence, messages, client ids, kept, kept index (the last two only have their
/// expiry refreshed, so what summaries kept lives as long as the conversation). ARGV: ttl,
/// n, then n (client id or '', message encoded with sequence 0), then optionally '0' to only probe a mixed batch.
/// Returns {1, entries...} in input order, each the sequence number a new message was
/// stored at or the stored member a client id already had. With the probe flag, a batch
/// that has both new messages and stored client ids stores nothing and returns
/// {0, stored members of those client ids...}, so the caller can check they decode
/// before anything is written.
const APPEND_MESSAGES: &str = r#"
local n = tonumber(ARGV[2])
local out, fresh, stored = {}, {}, {}
for i = 1, n do
  local cid = ARGV[1 + 2 * i]
  if cid ~= '' then
    local seq = redis.call('HGET', KEYS[3], 'c:' .. cid)
    if seq then out[i] = redis.call('ZRANGE', KEYS[2], seq, seq, 'BYSCORE')[1] end
  end
  if out[i] then stored[#stored + 1] = out[i] else fresh[#fresh + 1] = i end
end
if ARGV[3 + 2 * n] == '0' and #fresh > 0 and #stored > 0 then
  table.insert(stored, 1, 0)
  return stored
end
if #fresh > 0 then
  local seq = redis.call('INCRBY', KEYS[1], #fresh) - #fresh
  for _, i in ipairs(fresh) do
    seq = seq + 1
    local s = int(seq)
    local member = splice(ARGV[2 + 2 * i], 'sequence', s)
    if type(member) == 'table' then return member end
    redis.call('ZADD', KEYS[2], s, member)
    local cid = ARGV[1 + 2 * i]
    if cid ~= '' then redis.call('HSET', KEYS[3], 'c:' .. cid, s, 's:' .. s, cid) end
    out[i] = seq
  end
  for k = 1, #KEYS do touch(KEYS[k], ARGV[1]) end
end
table.insert(out, 1, 1)
return out
"#;

/// KEYS: session. ARGV: ttl, then field/value pairs. Replaces the hash; returns the user
/// it had, or false.
const IMPORT_SESSION: &str = r#"
local user = redis.call('HGET', KEYS[1], 'user')
redis.call('DEL', KEYS[1])
hset_from(KEYS[1], 2)
touch(KEYS[1], ARGV[1])
return user
"#;

/// KEYS: sequence, messages, client ids, kept, kept index (as for appends). ARGV: ttl, n,
/// then n (sequence, client id or '', encoded message) in ascending sequence order. Stores each message whose sequence is
/// above every number handed out and whose client id is free, raises the counter to the
/// highest sequence; returns how many were stored.
const IMPORT_MESSAGES: &str = r#"
local n = tonumber(ARGV[2])
local start = tonumber(redis.call('GET', KEYS[1]) or '0')
local stored, top = 0, start
for i = 1, n do
  local s, cid, member = ARGV[3 * i], ARGV[3 * i + 1], ARGV[3 * i + 2]
  local taken = tonumber(s) <= top
  if tonumber(s) > top then top = tonumber(s) end
  if not taken and cid ~= '' then taken = redis.call('HEXISTS', KEYS[3], 'c:' .. cid) == 1 end
  if not taken then
    redis.call('ZADD', KEYS[2], s, member)
    if cid ~= '' then redis.call('HSET', KEYS[3], 'c:' .. cid, s, 's:' .. s, cid) end
    stored = stored + 1
  end
end
if top > start then redis.call('SET', KEYS[1], int(top)) end
for k = 1, #KEYS do touch(KEYS[k], ARGV[1]) end
return stored
"#;

/// KEYS: names, next versions, versions, metas, contents. ARGV: ttl, name, version,
/// meta, content. Stores the version unless present; returns 1 if stored.
const IMPORT_ARTIFACT: &str = r#"
if redis.call('HEXISTS', KEYS[4], ARGV[3]) == 1 then return 0 end
local next_version = tonumber(ARGV[3]) + 1
if next_version > tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0') then
  redis.call('HSET', KEYS[2], ARGV[2], int(next_version))
end
redis.call('ZADD', KEYS[1], 0, ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[3])
redis.call('HSET', KEYS[4], ARGV[3], ARGV[4])
redis.call('HSET', KEYS[5], ARGV[3], ARGV[5])
for k = 1, 5 do touch(KEYS[k], ARGV[1]) end
return 1
"#;

/// KEYS: messages, client ids. ARGV: ttl, sequence, member, client id or ''. Puts back a
/// popped message the client could not decode, so the pop has not taken effect; a slot
/// or client id taken meanwhile is left as it is. Returns 1.
const RESTORE_MESSAGE: &str = r#"
redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[3])
if ARGV[4] ~= '' and redis.call('HEXISTS', KEYS[2], 'c:' .. ARGV[4]) == 0 then
  redis.call('HSET', KEYS[2], 'c:' .. ARGV[4], ARGV[2], 's:' .. ARGV[2], ARGV[4])
end
touch(KEYS[1], ARGV[1]); touch(KEYS[2], ARGV[1])
return 1
"#;

/// What every task-context script shares. KEYS: versions (zset of version numbers scored
/// by themselves), records (hash: `u:<v>` updated µs, `d:<v>` value JSON), and for a
/// session scope the hash a release before scopes kept its one version in (`version`,
/// `updated`, `value`). That hash exists only while the new keys do not: the first store
/// or import moves it into them, and reads take it as the current version until then.
const CONTEXT_PRELUDE: &str = r#"
local VERSIONS, RECORDS, LEGACY = KEYS[1], KEYS[2], KEYS[3]
local function legacy_version()
  if not LEGACY then return nil end
  local l = redis.call('HMGET', LEGACY, 'version', 'updated', 'value')
  if l[1] and l[2] and l[3] then return l end
  return nil
end
local function newest()
  return redis.call('ZRANGE', VERSIONS, -1, -1)[1]
end
local function put(version, updated, value)
  redis.call('ZADD', VERSIONS, version, version)
  redis.call('HSET', RECORDS, 'u:' .. version, updated, 'd:' .. version, value)
end
-- Moves the old release's hash into the versioned keys (unless they already hold a newer
-- version) so stores and trims see it as one version among the others.
local function adopt_legacy()
  local l = legacy_version()
  if not l then return end
  local top = newest()
  if not top or tonumber(l[1]) > tonumber(top) then put(l[1], l[2], l[3]) end
  redis.call('DEL', LEGACY)
end
-- Drops the versions below oldest_kept(version, keep): costs what it removes.
local function trim(version, keep)
  local oldest = tonumber(version) - tonumber(keep) + 1
  if oldest <= 1 then return end
  local bound = '(' .. int(oldest)
  local gone = redis.call('ZRANGE', VERSIONS, '-inf', bound, 'BYSCORE')
  local i = 1
  while i <= #gone do
    local fields = {}
    for j = i, math.min(i + 499, #gone) do
      fields[#fields + 1] = 'u:' .. gone[j]
      fields[#fields + 1] = 'd:' .. gone[j]
    end
    redis.call('HDEL', RECORDS, unpack(fields))
    i = i + 500
  end
  redis.call('ZREMRANGEBYSCORE', VERSIONS, '-inf', bound)
end
local function reply(version)
  local r = redis.call('HMGET', RECORDS, 'u:' .. version, 'd:' .. version)
  if r[1] and r[2] then return {version, r[1], r[2]} end
  return nil
end
"#;

/// ARGV: version, or '' for the current one. Returns {version, updated µs, value} or
/// false.
const GET_CONTEXT: &str = r#"
local version = ARGV[1]
if version == '' then version = newest() end
if version then
  local found = reply(version)
  if found then return found end
end
local l = legacy_version()
if l and (ARGV[1] == '' or ARGV[1] == l[1]) and not newest() then return l end
return false
"#;

/// ARGV: before (exclusive) or '' for all, limit. Returns {version, updated µs, value, ...}
/// newest first.
const LIST_CONTEXT_VERSIONS: &str = r#"
local max = '+inf'
if ARGV[1] ~= '' then max = '(' .. ARGV[1] end
local out = {}
for _, version in ipairs(redis.call('ZRANGE', VERSIONS, max, '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, ARGV[2])) do
  local found = reply(version)
  if found then
    for _, part in ipairs(found) do out[#out + 1] = part end
  end
end
if #out == 0 and not newest() then
  local l = legacy_version()
  if l and (ARGV[1] == '' or tonumber(l[1]) < tonumber(ARGV[1])) then return l end
end
return out
"#;

/// ARGV: ttl, mode (any|absent|exact), expected version, updated µs, value, versions to
/// keep. Returns {1, new version}, {0, current version or ''} when the expectation fails,
/// or {2, current version} when the next number is past what Redis holds exactly.
const STORE_CONTEXT: &str = r#"
local current = newest()
local l = legacy_version()
if l and (not current or tonumber(l[1]) > tonumber(current)) then current = l[1] end
if (ARGV[2] == 'absent' and current) or (ARGV[2] == 'exact' and current ~= ARGV[3]) then
  return {0, current or ''}
end
local version = int(tonumber(current or '0') + 1)
-- Past 2^53 a Lua number no longer grows by one: refuse rather than overwrite a version.
if current and version == current then return {2, current} end
adopt_legacy()
put(version, ARGV[4], ARGV[5])
trim(version, ARGV[6])
touch(VERSIONS, ARGV[1]); touch(RECORDS, ARGV[1])
return {1, version}
"#;

/// ARGV: ttl, version, updated µs, value. Stores unless the current version is the same
/// or newer, trimming nothing; returns 1 if stored.
const IMPORT_CONTEXT: &str = r#"
adopt_legacy()
local current = newest()
if current and tonumber(current) >= tonumber(ARGV[2]) then return 0 end
put(ARGV[2], ARGV[3], ARGV[4])
touch(VERSIONS, ARGV[1]); touch(RECORDS, ARGV[1])
return 1
"#;

/// Removes every version (and the old release's hash); returns 1 if there was any.
const DELETE_CONTEXT: &str = r#"
local had = redis.call('EXISTS', VERSIONS) == 1 or legacy_version() ~= nil
redis.call('DEL', unpack(KEYS))
if had then return 1 end
return 0
"#;

/// KEYS: write ids, writes, namespaces. ARGV: ttl, hex checkpoint id, hex ns, then
/// (field, value, replace). The namespace joins the thread's set even when it has no
/// checkpoint yet, so delete, copy and prune find its writes.
const PUT_WRITES: &str = r#"
redis.call('SADD', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
touch(KEYS[3], ARGV[1])
for i = 4, #ARGV, 3 do
  if ARGV[i + 2] == '1' then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  else
    redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1])
  end
end
touch(KEYS[1], ARGV[1]); touch(KEYS[2], ARGV[1])
"#;

/// KEYS: thread base. Removes every key of the thread; returns how many checkpoints.
const DELETE_THREAD: &str = r#"
local b = KEYS[1]
local count = 0
for _, h in ipairs(redis.call('SMEMBERS', b .. ':nss')) do
  count = count + redis.call('ZCARD', b .. ':ids:' .. h)
  for _, w in ipairs(redis.call('SMEMBERS', b .. ':wids:' .. h)) do
    redis.call('DEL', b .. ':w:' .. h .. ':' .. w)
  end
  redis.call('DEL', b .. ':ids:' .. h, b .. ':cp:' .. h, b .. ':blobs:' .. h, b .. ':wids:' .. h,
    b .. ':chg:' .. h, b .. ':users:' .. h, b .. ':unidx:' .. h, b .. ':idx:' .. h)
end
redis.call('DEL', b .. ':nss')
return count
"#;

/// KEYS: ids, records, write ids, writes, changes. ARGV: checkpoint id, expected record.
/// Removes the checkpoint and its writes if its record is still the expected one.
const DELETE_CHECKPOINT_IF: &str = r#"
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], hex(ARGV[1]))
redis.call('DEL', KEYS[4])
changed(KEYS[5])
return 1
"#;

/// KEYS: target thread base. ARGV: ttl, then sections: 'ns' hex ns, then 'cp' id record,
/// 'blob' field value, 'w' hex cp id field value. Returns 0 (and writes nothing) if the
/// target has checkpoints, else 1. Each namespace copied counts a change.
const COPY_INTO_THREAD: &str = r#"
local b = KEYS[1]
for _, h in ipairs(redis.call('SMEMBERS', b .. ':nss')) do
  if redis.call('ZCARD', b .. ':ids:' .. h) > 0 then return 0 end
end
local ttl = ARGV[1]
local h = ''
local i = 2
while i <= #ARGV do
  local tag = ARGV[i]
  if tag == 'ns' then
    h = ARGV[i + 1]
    redis.call('SADD', b .. ':nss', h); touch(b .. ':nss', ttl)
    changed(b .. ':chg:' .. h); touch(b .. ':chg:' .. h, ttl)
    i = i + 2
  elseif tag == 'cp' then
    redis.call('ZADD', b .. ':ids:' .. h, 0, ARGV[i + 1])
    redis.call('HSET', b .. ':cp:' .. h, ARGV[i + 1], ARGV[i + 2])
    touch(b .. ':ids:' .. h, ttl); touch(b .. ':cp:' .. h, ttl)
    i = i + 3
  elseif tag == 'blob' then
    redis.call('HSET', b .. ':blobs:' .. h, ARGV[i + 1], ARGV[i + 2]); touch(b .. ':blobs:' .. h, ttl)
    i = i + 3
  else
    redis.call('SADD', b .. ':wids:' .. h, ARGV[i + 1]); touch(b .. ':wids:' .. h, ttl)
    local wkey = b .. ':w:' .. h .. ':' .. ARGV[i + 1]
    redis.call('HSET', wkey, ARGV[i + 2], ARGV[i + 3]); touch(wkey, ttl)
    i = i + 4
  end
end
return 1
"#;

/// KEYS: names, next versions, versions, metas, contents. ARGV: ttl, name, metadata
/// encoded with version 0, content. Returns the version stored.
const SAVE_ARTIFACT: &str = r#"
local version = int(redis.call('HINCRBY', KEYS[2], ARGV[2], 1) - 1)
local meta = splice(ARGV[3], 'version', version)
if type(meta) == 'table' then return meta end
redis.call('ZADD', KEYS[1], 0, ARGV[2])
redis.call('ZADD', KEYS[3], version, version)
redis.call('HSET', KEYS[4], version, meta)
redis.call('HSET', KEYS[5], version, ARGV[4])
for k = 1, 5 do touch(KEYS[k], ARGV[1]) end
return tonumber(version)
"#;

/// KEYS: versions, metas, contents. ARGV: version or '' for the latest, '1' to include the
/// content. Returns {meta[, content]} or false.
const GET_ARTIFACT: &str = r#"
local version = ARGV[1]
if version == '' then
  version = redis.call('ZRANGE', KEYS[1], -1, -1)[1]
  if not version then return false end
end
local meta = redis.call('HGET', KEYS[2], version)
if not meta then return false end
if ARGV[2] == '1' then return {meta, redis.call('HGET', KEYS[3], version)} end
return {meta}
"#;

/// KEYS: names, next versions, versions, metas, contents. ARGV: name, version or '' for
/// all. Returns how many versions were removed.
const DELETE_ARTIFACT: &str = r#"
local removed
if ARGV[2] == '' then
  removed = redis.call('ZCARD', KEYS[3])
  redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
else
  removed = redis.call('ZREM', KEYS[3], ARGV[2])
  redis.call('HDEL', KEYS[4], ARGV[2])
  redis.call('HDEL', KEYS[5], ARGV[2])
end
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
end
return removed
"#;

/// KEYS: scope base. Removes every artifact of the scope; returns how many versions.
const CLEAR_ARTIFACTS: &str = r#"
local b = KEYS[1]
local count = 0
for _, name in ipairs(redis.call('ZRANGE', b .. ':names', 0, -1)) do
  local h = hex(name)
  count = count + redis.call('ZCARD', b .. ':vers:' .. h)
  redis.call('DEL', b .. ':vers:' .. h, b .. ':meta:' .. h, b .. ':data:' .. h)
end
redis.call('DEL', b .. ':names', b .. ':next')
return count
"#;

/// Every script, compiled once per backend.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) create_session: Lua,
    pub(crate) update_session: Lua,
    pub(crate) end_session: Lua,
    pub(crate) delete_session: Lua,
    pub(crate) append_messages: Lua,
    pub(crate) pop_message: Lua,
    pub(crate) restore_message: Lua,
    pub(crate) clear_messages: Lua,
    pub(crate) read_prefix: Lua,
    pub(crate) compact: Lua,
    pub(crate) rewind: Lua,
    pub(crate) replaced_messages: Lua,
    pub(crate) get_context: Lua,
    pub(crate) list_context_versions: Lua,
    pub(crate) store_context: Lua,
    pub(crate) import_context: Lua,
    pub(crate) delete_context: Lua,
    pub(crate) put_checkpoint: Lua,
    pub(crate) put_writes: Lua,
    pub(crate) get_checkpoint: Lua,
    pub(crate) list_checkpoints: Lua,
    pub(crate) channel_history: Lua,
    pub(crate) delete_thread: Lua,
    pub(crate) prune_namespace: Lua,
    pub(crate) index_users: Lua,
    pub(crate) delete_checkpoint_if: Lua,
    pub(crate) copy_into_thread: Lua,
    pub(crate) save_artifact: Lua,
    pub(crate) get_artifact: Lua,
    pub(crate) delete_artifact: Lua,
    pub(crate) clear_artifacts: Lua,
    pub(crate) import_session: Lua,
    pub(crate) import_messages: Lua,
    pub(crate) import_artifact: Lua,
    pub(crate) retain_messages: Lua,
    pub(crate) retain_context: Lua,
    pub(crate) retain_artifact: Lua,
}

/// A script with its source, which batches send with `EVAL`.
#[derive(Debug)]
pub(crate) struct Lua {
    pub(crate) script: Script,
    pub(crate) source: String,
}

fn script(body: &str) -> Lua {
    let source = format!("{PRELUDE}{body}");
    Lua {
        script: Script::new(&source),
        source,
    }
}

/// A script that removes messages: the kept-message functions before its body.
fn kept_script(body: &str) -> Lua {
    script(&format!("{KEPT_PRELUDE}{body}"))
}

/// A retention script: the shared retention functions (and, for messages and contexts,
/// the kind's own) before its body.
fn retention_script(kind_prelude: &str, body: &str) -> Lua {
    script(&format!("{kind_prelude}{RETENTION_PRELUDE}{body}"))
}

/// A checkpoint read: the shared read functions before its body.
fn read_script(body: &str) -> Lua {
    script(&format!("{READ_PRELUDE}{body}"))
}

/// A task-context script: the shared context functions before its body.
fn context_script(body: &str) -> Lua {
    script(&format!("{CONTEXT_PRELUDE}{body}"))
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            create_session: script(CREATE_SESSION),
            update_session: script(UPDATE_SESSION),
            end_session: script(END_SESSION),
            delete_session: script(DELETE_SESSION),
            append_messages: script(APPEND_MESSAGES),
            pop_message: kept_script(POP_MESSAGE),
            restore_message: script(RESTORE_MESSAGE),
            clear_messages: kept_script(CLEAR_MESSAGES),
            read_prefix: script(READ_PREFIX),
            compact: kept_script(COMPACT),
            rewind: kept_script(REWIND),
            replaced_messages: script(REPLACED_MESSAGES),
            get_context: context_script(GET_CONTEXT),
            list_context_versions: context_script(LIST_CONTEXT_VERSIONS),
            store_context: context_script(STORE_CONTEXT),
            import_context: context_script(IMPORT_CONTEXT),
            delete_context: context_script(DELETE_CONTEXT),
            put_checkpoint: script(PUT_CHECKPOINT),
            put_writes: script(PUT_WRITES),
            get_checkpoint: read_script(GET_CHECKPOINT),
            list_checkpoints: read_script(LIST_CHECKPOINTS),
            channel_history: read_script(CHANNEL_HISTORY),
            delete_thread: script(DELETE_THREAD),
            prune_namespace: script(PRUNE_NAMESPACE),
            index_users: script(INDEX_USERS),
            delete_checkpoint_if: script(DELETE_CHECKPOINT_IF),
            copy_into_thread: script(COPY_INTO_THREAD),
            save_artifact: script(SAVE_ARTIFACT),
            get_artifact: script(GET_ARTIFACT),
            delete_artifact: script(DELETE_ARTIFACT),
            clear_artifacts: script(CLEAR_ARTIFACTS),
            import_session: script(IMPORT_SESSION),
            import_messages: script(IMPORT_MESSAGES),
            import_artifact: script(IMPORT_ARTIFACT),
            retain_messages: retention_script(KEPT_PRELUDE, RETAIN_MESSAGES),
            retain_context: retention_script(CONTEXT_PRELUDE, RETAIN_CONTEXT),
            retain_artifact: retention_script("", RETAIN_ARTIFACT),
        }
    }

    pub(crate) fn all(&self) -> [&Lua; 37] {
        [
            &self.create_session,
            &self.update_session,
            &self.end_session,
            &self.delete_session,
            &self.append_messages,
            &self.pop_message,
            &self.restore_message,
            &self.clear_messages,
            &self.read_prefix,
            &self.compact,
            &self.rewind,
            &self.replaced_messages,
            &self.get_context,
            &self.list_context_versions,
            &self.store_context,
            &self.import_context,
            &self.delete_context,
            &self.put_checkpoint,
            &self.put_writes,
            &self.get_checkpoint,
            &self.list_checkpoints,
            &self.channel_history,
            &self.delete_thread,
            &self.prune_namespace,
            &self.index_users,
            &self.delete_checkpoint_if,
            &self.copy_into_thread,
            &self.save_artifact,
            &self.get_artifact,
            &self.delete_artifact,
            &self.clear_artifacts,
            &self.import_session,
            &self.import_messages,
            &self.import_artifact,
            &self.retain_messages,
            &self.retain_context,
            &self.retain_artifact,
        ]
    }
}
