//! The scripts that remove messages, and with them what summaries kept: pop, clear,
//! compaction and rewind, plus the read of a summary's kept messages.
//!
//! Every one takes KEYS: messages (zset), client ids (hash), kept (hash), kept index (zset),
//! all in the session's slot. The kept hash holds `n:<s>` → how many messages the summary
//! at sequence `s` kept and `<s>:<i>` → the `i`-th of them (oldest first, wire-encoded as
//! it was stored); the kept index lists those summary sequences, each scored by itself, so
//! removing the kept messages of a range of summary sequences costs what it removes.

/// What the removal scripts share. The scripts see `PRELUDE` (for `int`) before this.
pub(super) const KEPT_PRELUDE: &str = r#"
local MSGS, CIDS, KEPT, KIDX = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
-- Drops the kept messages of every summary sequence in min..max (score bounds).
local function drop_kept(min, max)
  for _, s in ipairs(redis.call('ZRANGE', KIDX, min, max, 'BYSCORE')) do
    local fields = {'n:' .. s}
    for i = 1, tonumber(redis.call('HGET', KEPT, 'n:' .. s) or '0') do
      fields[#fields + 1] = s .. ':' .. i
      if #fields == 1000 then
        redis.call('HDEL', KEPT, unpack(fields))
        fields = {}
      end
    end
    if #fields > 0 then redis.call('HDEL', KEPT, unpack(fields)) end
  end
  redis.call('ZREMRANGEBYSCORE', KIDX, min, max)
end
-- Frees the client id of the message stored at sequence s (a score as Redis prints it).
local function release(s)
  s = int(tonumber(s))
  local cid = redis.call('HGET', CIDS, 's:' .. s)
  if cid then redis.call('HDEL', CIDS, 's:' .. s, 'c:' .. cid) end
end
-- A removed message that is a summary drops what the summaries in its range kept (the
-- nesting rule of storage_core::compaction). Only a record this release reads counts:
-- pop puts back a message the client cannot decode, and must not have dropped anything.
local function forget_kept(member)
  if not string.find(member, '"compacted":', 1, true) then return end
  local ok, record = pcall(cjson.decode, member)
  if not ok or type(record) ~= 'table' or record.v ~= 1 or type(record.data) ~= 'table' then
    return
  end
  local c = record.data.compacted
  if type(c) == 'table' and type(c.from) == 'number' and type(c.to) == 'number' then
    drop_kept(int(c.from), int(c.to))
  end
end
"#;

/// Returns {removed member, its sequence, its client id or ''}, or false.
pub(super) const POP_MESSAGE: &str = r#"
local popped = redis.call('ZPOPMAX', MSGS)
if #popped == 0 then return false end
local seq = popped[2]
local cid = redis.call('HGET', CIDS, 's:' .. seq)
if cid then redis.call('HDEL', CIDS, 's:' .. seq, 'c:' .. cid) end
forget_kept(popped[1])
return {popped[1], seq, cid or ''}
"#;

/// Removes every message and everything kept; returns how many messages were removed.
pub(super) const CLEAR_MESSAGES: &str = r#"
local count = redis.call('ZCARD', MSGS)
redis.call('DEL', MSGS, CIDS, KEPT, KIDX)
return count
"#;

/// KEYS: messages, client ids. ARGV: up_to, the summary's client id or ''. Returns
/// {0, stored member} when the client id is stored for a live message, else
/// {1, members up to up_to...} oldest first: what the caller builds the summary from.
pub(super) const READ_PREFIX: &str = r#"
if ARGV[2] ~= '' then
  local s = redis.call('HGET', KEYS[2], 'c:' .. ARGV[2])
  local stored = s and redis.call('ZRANGE', KEYS[1], s, s, 'BYSCORE')[1]
  if stored then return {0, stored} end
end
local out = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE')
table.insert(out, 1, 1)
return out
"#;

/// ARGV: ttl, up_to, how many messages the caller read up to up_to, the first and last of
/// them, the summary (encoded at sequence up_to), its client id or '', '1' to keep the
/// replaced messages. Returns {1} when compacted, {0, stored member} when the client id is
/// stored, {-1} (changing nothing) when the prefix is not what the caller read.
///
/// The prefix only shrinks or has its own prefix replaced (numbers are never reused, and
/// appends and imports land above every number handed out), so the same count, first and
/// last member mean the same messages: a pop or rewind changes the count or the last, a
/// compaction of k > 1 of them the count, of one the first (a summary never equals the
/// message it replaced, which is no summary).
pub(super) const COMPACT: &str = r#"
local up_to, cid = ARGV[2], ARGV[7]
if cid ~= '' then
  local s = redis.call('HGET', CIDS, 'c:' .. cid)
  local stored = s and redis.call('ZRANGE', MSGS, s, s, 'BYSCORE')[1]
  if stored then return {0, stored} end
end
local replaced = redis.call('ZRANGE', MSGS, '-inf', up_to, 'BYSCORE', 'WITHSCORES')
local n = #replaced / 2
if n ~= tonumber(ARGV[3]) or replaced[1] ~= ARGV[4] or replaced[#replaced - 1] ~= ARGV[5] then
  return {-1}
end
for i = 2, #replaced, 2 do release(replaced[i]) end
if ARGV[8] == '1' then
  -- Earlier summaries among the replaced keep what they kept: it stays readable.
  drop_kept(up_to, up_to)
  local fields = {'n:' .. up_to, int(n)}
  for i = 1, n do
    fields[#fields + 1] = up_to .. ':' .. i
    fields[#fields + 1] = replaced[2 * i - 1]
    if #fields >= 1000 then
      redis.call('HSET', KEPT, unpack(fields))
      fields = {}
    end
  end
  if #fields > 0 then redis.call('HSET', KEPT, unpack(fields)) end
  redis.call('ZADD', KIDX, up_to, up_to)
else
  drop_kept('-inf', up_to)
end
redis.call('ZREMRANGEBYSCORE', MSGS, '-inf', up_to)
redis.call('ZADD', MSGS, up_to, ARGV[6])
if cid ~= '' then redis.call('HSET', CIDS, 'c:' .. cid, up_to, 's:' .. up_to, cid) end
for k = 1, 5 do touch(KEYS[k], ARGV[1]) end
return {1}
"#;

/// ARGV: sequence. Removes every message above it, with client ids and what removed
/// summaries kept; returns how many messages it removed.
pub(super) const REWIND: &str = r#"
local bound = '(' .. ARGV[1]
local removed = redis.call('ZRANGE', MSGS, bound, '+inf', 'BYSCORE', 'WITHSCORES')
for i = 1, #removed, 2 do
  release(removed[i + 1])
  forget_kept(removed[i])
end
redis.call('ZREMRANGEBYSCORE', MSGS, bound, '+inf')
return #removed / 2
"#;

/// KEYS: kept. ARGV: summary sequence. Returns what the summary there kept, oldest first.
pub(super) const REPLACED_MESSAGES: &str = r#"
local s = ARGV[1]
local n = tonumber(redis.call('HGET', KEYS[1], 'n:' .. s) or '0')
local out = {}
local i = 1
while i <= n do
  local fields = {}
  for j = i, math.min(i + 999, n) do fields[#fields + 1] = s .. ':' .. j end
  for _, member in ipairs(redis.call('HMGET', KEYS[1], unpack(fields))) do
    if member then out[#out + 1] = member end
  end
  i = i + 1000
end
return out
"#;
