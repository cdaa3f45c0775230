//! The checkpoint reads, each one script call: get (latest or by id), list (one namespace
//! or every namespace of the thread) and the delta channel history walk. Each returns the
//! records with the channel values they name and their pending writes, so a read costs one
//! round trip whatever the history length.
//!
//! A record is the wire envelope (JSON); the scripts read its `channel_versions` (and for a
//! list filter its `metadata`, for the walk its `parent_id`) with Redis' built-in `cjson`.
//! When a record does not read that way (an older or damaged record), the script says so
//! and the client reads that checkpoint's values itself, as the previous release did.
//!
//! Every script takes KEYS[1] = the thread's base key and builds the thread's other keys from
//! it: they share its hash tag, so one slot (the namespaces of a list are only known inside
//! the script).
//!
//! A checkpoint comes back as {hex ns, id, record, readable (1|0), {blob field, value or
//! false, ...}, {pending write, ...}}; the blob fields are the ones the script derived from
//! the record, so the client can check they are exactly the ones it derives.

/// What the checkpoint read scripts share. The scripts see `PRELUDE` (for `hex`) first.
pub(super) const READ_PRELUDE: &str = r#"
local B = KEYS[1]
-- a < b bytewise: Lua's `<` on strings follows the server's collation locale.
local function lt(a, b)
  if a == b then return false end
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
-- The record's data, or nil when it is not a current checkpoint envelope cjson reads.
local function data_of(record)
  local ok, r = pcall(cjson.decode, record)
  if ok and type(r) == 'table' and r.v == 1 and r.kind == 'checkpoint' and type(r.data) == 'table' then
    return r.data
  end
  return nil
end
-- {field, value or false, ...} of every channel version the record names, or nil when the
-- versions cannot be read here.
local function values_of(h, data)
  if not data then return nil end
  local cv = data.channel_versions
  if type(cv) ~= 'table' then return nil end
  local fields = {}
  for channel, version in pairs(cv) do
    if type(channel) ~= 'string' or type(version) ~= 'string' then return nil end
    fields[#fields + 1] = hex(channel) .. ':' .. hex(version)
  end
  local out, i = {}, 1
  while i <= #fields do
    local last = math.min(i + 999, #fields)
    local values = redis.call('HMGET', B .. ':blobs:' .. h, unpack(fields, i, last))
    for j = i, last do
      out[#out + 1] = fields[j]
      out[#out + 1] = values[j - i + 1]
    end
    i = last + 1
  end
  return out
end
local function writes_of(h, id)
  return redis.call('HVALS', B .. ':w:' .. h .. ':' .. hex(id))
end
local function tuple(h, id, record, data)
  local values = values_of(h, data)
  local readable = 1
  if not values then values, readable = {}, 0 end
  return {h, id, record, readable, values, writes_of(h, id)}
end
"#;

/// ARGV: hex ns, checkpoint id or '' for the greatest. Returns the checkpoint or false.
pub(super) const GET_CHECKPOINT: &str = r#"
local h, id = ARGV[1], ARGV[2]
if id == '' then
  id = redis.call('ZRANGE', B .. ':ids:' .. h, '+', '-', 'BYLEX', 'REV', 'LIMIT', 0, 1)[1]
  if not id then return false end
end
local record = redis.call('HGET', B .. ':cp:' .. h, id)
if not record then return false end
return tuple(h, id, record, data_of(record))
"#;

/// ARGV: '1' and a hex ns for one namespace, or '0' and '' for every namespace of the
/// thread; the upper id bound ('+' or '(' .. before); the limit ('' for none); the metadata
/// filter as JSON ('' for none). Returns the checkpoints admitted, newest id first (ties by
/// namespace), at most the limit, merging the namespaces' id indexes so only the records
/// returned (and those a filter skips) are read.
///
/// The filter here only skips records that certainly do not match (numbers compare as
/// doubles, `{}` equals `[]`): what it keeps, the client filters exactly, and a record it
/// cannot read is kept.
pub(super) const LIST_CHECKPOINTS: &str = r#"
local nss
if ARGV[1] == '1' then nss = {ARGV[2]} else nss = redis.call('SMEMBERS', B .. ':nss') end
local max, limit = ARGV[3], tonumber(ARGV[4])
local filter = nil
if ARGV[5] ~= '' then
  local ok, f = pcall(cjson.decode, ARGV[5])
  if ok and type(f) == 'table' then filter = f end
end
if limit and limit <= 0 then return {} end
local batch = 256
if limit and limit < batch then batch = limit end
-- Whether a and b may be equal JSON: never false where they are.
local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= 'table' then return a == b end
  local n = 0
  for k, v in pairs(a) do
    n = n + 1
    if b[k] == nil or not same(v, b[k]) then return false end
  end
  for _ in pairs(b) do n = n - 1 end
  return n == 0
end
local function may_match(data)
  if not filter then return true end
  if not data or type(data.metadata) ~= 'table' then return true end
  for k, v in pairs(filter) do
    local actual = data.metadata[k]
    if actual == nil or not same(actual, v) then return false end
  end
  return true
end
local cursors = {}
for _, h in ipairs(nss) do cursors[#cursors + 1] = {h = h, ids = {}, pos = 1, offset = 0, done = false} end
local function head(c)
  if c.pos > #c.ids then
    if c.done then return nil end
    c.ids = redis.call('ZRANGE', B .. ':ids:' .. c.h, max, '-', 'BYLEX', 'REV', 'LIMIT', c.offset, batch)
    c.offset, c.pos = c.offset + #c.ids, 1
    if #c.ids < batch then c.done = true end
  end
  return c.ids[c.pos]
end
local out = {}
while not limit or #out < limit do
  local best, best_id = nil, nil
  for _, c in ipairs(cursors) do
    local id = head(c)
    if id and (not best or lt(best_id, id) or (id == best_id and lt(c.h, best.h))) then
      best, best_id = c, id
    end
  end
  if not best then break end
  best.pos = best.pos + 1
  local record = redis.call('HGET', B .. ':cp:' .. best.h, best_id)
  if record then
    local data = data_of(record)
    if may_match(data) then out[#out + 1] = tuple(best.h, best_id, record, data) end
  end
end
return out
"#;

/// ARGV: hex ns, target checkpoint id, then the channels asked for. Walks the target's
/// parent chain (parent first) while a channel has no seed yet, as
/// `storage_core::delta::walk_with_reads` does one read per ancestor. Returns false when the
/// target is not stored, else {target record, complete (1|0), ancestor, ...}, each ancestor
/// {id, record, {channel, blob field, value or false, ...}, {pending write, ...}} naming
/// every still-open channel the ancestor has a version of. complete is 0 when a record
/// could not be read here: the client then walks by itself.
pub(super) const CHANNEL_HISTORY: &str = r#"
local h, target = ARGV[1], ARGV[2]
local record = redis.call('HGET', B .. ':cp:' .. h, target)
if not record then return false end
local open, n_open = {}, 0
for i = 3, #ARGV do
  if not open[ARGV[i]] then open[ARGV[i]] = true; n_open = n_open + 1 end
end
local out = {record, 1}
local seen = {[target] = true}
local data = data_of(record)
while n_open > 0 do
  if not data then out[2] = 0; break end
  local parent = data.parent_id
  if type(parent) ~= 'string' then
    if parent ~= nil and parent ~= cjson.null then out[2] = 0 end
    break
  end
  if seen[parent] then break end
  seen[parent] = true
  local rec = redis.call('HGET', B .. ':cp:' .. h, parent)
  if not rec then break end
  data = data_of(rec)
  if not data or type(data.channel_versions) ~= 'table' then out[2] = 0; break end
  local found, seeded = {}, {}
  for channel in pairs(open) do
    local version = data.channel_versions[channel]
    if version ~= nil then
      if type(version) ~= 'string' then out[2] = 0; return out end
      local field = hex(channel) .. ':' .. hex(version)
      local value = redis.call('HGET', B .. ':blobs:' .. h, field)
      found[#found + 1] = channel
      found[#found + 1] = field
      found[#found + 1] = value
      if value then seeded[#seeded + 1] = channel end
    end
  end
  for _, channel in ipairs(seeded) do open[channel] = nil; n_open = n_open - 1 end
  out[#out + 1] = {parent, rec, found, writes_of(h, parent)}
end
return out
"#;
