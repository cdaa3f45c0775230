//! The scripts that add or remove checkpoints, and the use counts they keep.
//!
//! A channel value is stored once per (channel, version) in the namespace's `blobs` hash
//! and any number of checkpoints may name it (a fork names an older checkpoint's version
//! without sending the value again). So that removing checkpoints costs what it removes,
//! not a read of every survivor, each namespace keeps a `refs` hash: field
//! `<hex channel>:<hex version>` → how many of its checkpoints name that version, and
//! field `~` → how many checkpoints were counted. Every script here that adds or removes a
//! checkpoint changes the counts in the same atomic step, and a removal deletes a value
//! exactly when its count reaches 0.
//!
//! The counts are complete exactly when `~` equals the namespace's size (`counted`). A
//! namespace a previous release wrote has no counts, so a put there leaves them absent and
//! a prune falls back to reading every survivor (building the counts in the same script,
//! so the next one is proportional); a put into a namespace with no checkpoints starts
//! them. A previous release still writing during a rolling upgrade changes the size without
//! the counts, which the comparison catches for every put of a new id and every removal.

/// What the checkpoint scripts share. The scripts see `PRELUDE` (for `hex`, `int`,
/// `touch`, `changed`, `hset_from`) before this.
pub(super) const CHECKPOINT_PRELUDE: &str = r#"
-- Whether the use counts `refs` are complete for the namespace whose ids zset is `ids`.
local function counted(refs, ids)
  return redis.call('HGET', refs, '~') == int(redis.call('ZCARD', ids))
end
-- The blob fields a stored checkpoint record names (its channel_versions), or nil when it
-- cannot be read here: then its uses are never taken away, so a value it named may stay
-- unused, but no value another checkpoint uses goes.
local function uses(record)
  if not record then return nil end
  local ok, decoded = pcall(cjson.decode, record)
  if not ok or type(decoded) ~= 'table' or type(decoded.data) ~= 'table' then return nil end
  local versions = decoded.data.channel_versions
  if type(versions) ~= 'table' then return nil end
  local out = {}
  for channel, version in pairs(versions) do
    if type(channel) ~= 'string' or type(version) ~= 'string' then return nil end
    out[#out + 1] = hex(channel) .. ':' .. hex(version)
  end
  return out
end
-- Adds one use of each of `fields` (distinct). One HMGET and one HSET per 1,000 fields
-- rather than an HINCRBY each: a put pays per channel, and calls are what cost in Lua.
local function add_uses(refs, fields)
  for i = 1, #fields, 1000 do
    local chunk = {unpack(fields, i, math.min(i + 999, #fields))}
    local counts = redis.call('HMGET', refs, unpack(chunk))
    local set = {}
    for j, f in ipairs(chunk) do
      set[#set + 1] = f
      set[#set + 1] = int((tonumber(counts[j]) or 0) + 1)
    end
    redis.call('HSET', refs, unpack(set))
  end
end
-- Takes one use of each of `fields` (distinct) away; a value no checkpoint uses any more
-- goes.
local function release_uses(refs, blobs, fields)
  if not fields then return end
  for i = 1, #fields, 1000 do
    local chunk = {unpack(fields, i, math.min(i + 999, #fields))}
    local counts = redis.call('HMGET', refs, unpack(chunk))
    local set, gone = {}, {}
    for j, f in ipairs(chunk) do
      local left = (tonumber(counts[j]) or 0) - 1
      if left > 0 then
        set[#set + 1] = f
        set[#set + 1] = int(left)
      else
        gone[#gone + 1] = f
      end
    end
    if #set > 0 then redis.call('HSET', refs, unpack(set)) end
    if #gone > 0 then
      redis.call('HDEL', refs, unpack(gone))
      redis.call('HDEL', blobs, unpack(gone))
    end
  end
end
"#;

/// KEYS: namespaces, ids, records, blobs, changes, use counts. ARGV: ttl, hex ns, id,
/// record, k, the k blob fields the checkpoint names (one per channel version), then blob
/// field/value pairs (kept if present). Put again under its id, a checkpoint's old uses
/// are taken away after its new ones are added.
pub(super) const PUT_CHECKPOINT: &str = r#"
local IDS, RECORDS, BLOBS, REFS = KEYS[2], KEYS[3], KEYS[4], KEYS[6]
local k = tonumber(ARGV[5])
local count = counted(REFS, IDS)
if not count and redis.call('ZCARD', IDS) == 0 then
  redis.call('DEL', REFS)
  redis.call('HSET', REFS, '~', '0')
  count = true
end
local old = false
if count then old = redis.call('HGET', RECORDS, ARGV[3]) end
redis.call('SADD', KEYS[1], ARGV[2])
redis.call('ZADD', IDS, 0, ARGV[3])
redis.call('HSET', RECORDS, ARGV[3], ARGV[4])
for i = 6 + k, #ARGV, 2 do redis.call('HSETNX', BLOBS, ARGV[i], ARGV[i + 1]) end
if count then
  local fields = {}
  for i = 6, 5 + k do fields[#fields + 1] = ARGV[i] end
  add_uses(REFS, fields)
  if old then
    release_uses(REFS, BLOBS, uses(old))
  else
    redis.call('HINCRBY', REFS, '~', 1)
  end
end
changed(KEYS[5])
for key = 1, 6 do touch(KEYS[key], ARGV[1]) end
"#;

/// KEYS: thread base. Removes every key of the thread; returns how many checkpoints.
pub(super) const DELETE_THREAD: &str = r#"
local b = KEYS[1]
local count = 0
for _, h in ipairs(redis.call('SMEMBERS', b .. ':nss')) do
  count = count + redis.call('ZCARD', b .. ':ids:' .. h)
  for _, w in ipairs(redis.call('SMEMBERS', b .. ':wids:' .. h)) do
    redis.call('DEL', b .. ':w:' .. h .. ':' .. w)
  end
  redis.call('DEL', b .. ':ids:' .. h, b .. ':cp:' .. h, b .. ':blobs:' .. h, b .. ':wids:' .. h,
    b .. ':chg:' .. h, b .. ':refs:' .. h)
end
redis.call('DEL', b .. ':nss')
return count
"#;

/// KEYS: ids, records, write ids, blobs, changes, use counts. ARGV: expected number of
/// ids, expected change counter ('' for none), the prefix of the checkpoints' write keys,
/// n. Removes the n oldest checkpoints, with their writes and every value whose count
/// reaches 0, when the namespace is as the caller read it (size, change counter) and its
/// counts are complete; else removes nothing and returns -1. Costs what it removes.
pub(super) const PRUNE_COUNTED: &str = r#"
local IDS, RECORDS, WIDS, BLOBS, REFS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[6]
if redis.call('ZCARD', IDS) ~= tonumber(ARGV[1])
  or (redis.call('GET', KEYS[5]) or '') ~= ARGV[2] or not counted(REFS, IDS) then
  return -1
end
local n = tonumber(ARGV[4])
if n == 0 then return 0 end
for _, id in ipairs(redis.call('ZRANGE', IDS, 0, n - 1)) do
  release_uses(REFS, BLOBS, uses(redis.call('HGET', RECORDS, id)))
  redis.call('HDEL', RECORDS, id)
  redis.call('SREM', WIDS, hex(id))
  redis.call('DEL', ARGV[3] .. hex(id))
end
redis.call('ZREMRANGEBYRANK', IDS, 0, n - 1)
redis.call('HINCRBY', REFS, '~', -n)
changed(KEYS[5])
return n
"#;

/// The fallback for a namespace without complete counts (a previous release wrote it).
/// KEYS: ids, records, write ids, blobs, changes, use counts. ARGV: expected number of ids,
/// expected change counter ('' for none), number of victims n, the prefix of the victims'
/// write keys, number of blob fields to remove m, n victim ids, m blob fields, then
/// field/count pairs: the survivors' uses, which become the namespace's counts. Removes
/// nothing and returns -1 if the namespace changed since the caller read the counter (any
/// checkpoint added, replaced or removed since: the blob fields and counts were made from
/// what was stored then); else how many checkpoints were removed. The size check also
/// holds against a release that did not count changes.
pub(super) const PRUNE_NAMESPACE: &str = r#"
local IDS, REFS = KEYS[1], KEYS[6]
if redis.call('ZCARD', IDS) ~= tonumber(ARGV[1])
  or (redis.call('GET', KEYS[5]) or '') ~= ARGV[2] then
  return -1
end
local n, m = tonumber(ARGV[3]), tonumber(ARGV[5])
for i = 6, 5 + n do
  local id = ARGV[i]
  redis.call('ZREM', IDS, id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('SREM', KEYS[3], hex(id))
  redis.call('DEL', ARGV[4] .. hex(id))
end
for i = 6 + n, 5 + n + m do redis.call('HDEL', KEYS[4], ARGV[i]) end
redis.call('DEL', REFS)
local left = tonumber(ARGV[1]) - n
if left > 0 then
  redis.call('HSET', REFS, '~', int(left))
  hset_from(REFS, 6 + n + m)
  -- The counts live as long as the checkpoints they count.
  local ttl = redis.call('PTTL', IDS)
  if ttl > 0 then redis.call('PEXPIRE', REFS, ttl) end
end
if n > 0 then changed(KEYS[5]) end
return n
"#;

/// KEYS: ids, records, write ids, writes, changes, use counts, blobs. ARGV: checkpoint id,
/// expected record. Removes the checkpoint and its writes if its record is still the
/// expected one, with every value whose count reaches 0 when the counts are complete (a
/// namespace without them keeps its values, which its next prune sorts out).
pub(super) const DELETE_CHECKPOINT_IF: &str = r#"
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
if counted(KEYS[6], KEYS[1]) then
  release_uses(KEYS[6], KEYS[7], uses(ARGV[2]))
  redis.call('HINCRBY', KEYS[6], '~', -1)
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], hex(ARGV[1]))
redis.call('DEL', KEYS[4])
changed(KEYS[5])
return 1
"#;

/// KEYS: target thread base. ARGV: ttl, then sections: 'ns' hex ns, then 'cp' id record,
/// 'blob' field value, 'ref' field count (the namespace's use counts, made from the
/// records copied), 'w' hex cp id field value. Returns 0 (and writes nothing) if the
/// target has checkpoints, else 1. Each namespace copied counts a change.
pub(super) const COPY_INTO_THREAD: &str = r#"
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
    redis.call('DEL', b .. ':refs:' .. h)
    redis.call('HSET', b .. ':refs:' .. h, '~', '0'); touch(b .. ':refs:' .. h, ttl)
    i = i + 2
  elseif tag == 'cp' then
    redis.call('ZADD', b .. ':ids:' .. h, 0, ARGV[i + 1])
    redis.call('HSET', b .. ':cp:' .. h, ARGV[i + 1], ARGV[i + 2])
    redis.call('HINCRBY', b .. ':refs:' .. h, '~', 1)
    touch(b .. ':ids:' .. h, ttl); touch(b .. ':cp:' .. h, ttl)
    i = i + 3
  elseif tag == 'blob' then
    redis.call('HSET', b .. ':blobs:' .. h, ARGV[i + 1], ARGV[i + 2]); touch(b .. ':blobs:' .. h, ttl)
    i = i + 3
  elseif tag == 'ref' then
    redis.call('HSET', b .. ':refs:' .. h, ARGV[i + 1], ARGV[i + 2])
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
