//! The checkpoint reads, each one script call: get (latest or by id), list (one namespace
//! or every namespace of the thread) and the delta channel history walk. Each returns the
//! records with the channel values they name and their pending writes, so a read costs one
//! round trip whatever the history length.
//!
//! A record is the wire envelope (JSON); the scripts read its `channel_versions` (and for a
//! list filter its `metadata`, for the walk its `parent_id`) with Redis' built-in `cjson`,
//! get and list decoding only the `channel_versions` object unless a filter needs more.
//! When a record does not read that way (an older or damaged record), the script says so
//! and the client reads that checkpoint's values itself, as the previous release did.
//!
//! Every script takes KEYS[1] = the thread's base key and builds the thread's other keys from
//! it: they share its hash tag, so one slot (the namespaces of a list are only known inside
//! the script).
//!
//! Get and list return {values, checkpoints}: values {hex ns, blob field, value or false,
//! ...} names each value once however many of the checkpoints name it, and each checkpoint
//! is {hex ns, id, record, readable (1|0), {blob field, ...}, {pending write, ...}}. The
//! blob fields are the ones the script derived from the record, so the client can check
//! they are exactly the ones it derives.

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
-- hex(), by a table of the bytes met (a script's locals last one call, so building all
-- 256 entries would cost every call) and remembered: a list meets the same channel
-- versions record after record.
local HEX = setmetatable({}, {__index = function(t, c)
  local h = string.format('%02x', string.byte(c))
  t[c] = h
  return h
end})
local hexed = {}
local function hex_of(s)
  local h = hexed[s]
  if not h then
    h = (string.gsub(s, '.', HEX))
    hexed[s] = h
  end
  return h
end
local ENVELOPE = '{"v":1,"kind":"checkpoint","data":{'
-- The record's channel versions, without decoding the rest of it (its values seen and
-- metadata can be most of it): the flat object after the first `"channel_versions":{`.
-- No JSON string holds that text (a quote inside a string is escaped) and the fields
-- before it are strings and, as put stores it, an empty map of values, so it is the
-- record's own; if an older record's inline values fooled this, the client's check of
-- the derived fields against the decoded record catches it. nil when not found.
local function versions_of(record)
  if string.sub(record, 1, #ENVELOPE) ~= ENVELOPE then return nil end
  local s, e = string.find(record, '"channel_versions":{', 1, true)
  if not s then return nil end
  -- Without a backslash up to the first `}`, no string there holds a quote: the pairs
  -- read by pattern. (A `}` inside a version cuts the object short: the client's check
  -- then finds fields missing.)
  local close = string.find(record, '}', e, true)
  local slash = string.find(record, '\\', e, true)
  if close and (not slash or slash > close) then
    local cv = {}
    for channel, version in string.gmatch(string.sub(record, e, close), '"([^"]*)":"([^"]*)"') do
      cv[channel] = version
    end
    return cv
  end
  local i = e + 1
  while true do
    local p = string.find(record, '[\\"}]', i)
    if not p then return nil end
    local c = string.byte(record, p)
    if c == 125 then
      local ok, cv = pcall(cjson.decode, string.sub(record, e, p))
      if ok and type(cv) == 'table' then return cv end
      return nil
    end
    if c ~= 34 then return nil end
    local j = p + 1
    while true do
      local q = string.find(record, '[\\"]', j)
      if not q then return nil end
      if string.byte(record, q) == 92 then j = q + 2 else j = q + 1; break end
    end
    i = j
  end
end
-- The values the checkpoints returned name, each (namespace, field) once: {hex ns, blob
-- field, value or false, ...}. Consecutive checkpoints share most of their values.
local values, known = {}, {}
-- The blob fields of every channel version in cv, their values added to `values`; nil
-- when cv cannot be read here.
local function fields_of(h, cv)
  if type(cv) ~= 'table' then return nil end
  local fields, wanted = {}, {}
  for channel, version in pairs(cv) do
    if type(channel) ~= 'string' or type(version) ~= 'string' then return nil end
    local field = hex_of(channel) .. ':' .. hex_of(version)
    fields[#fields + 1] = field
    local k = h .. ' ' .. field
    if not known[k] then
      known[k] = true
      wanted[#wanted + 1] = field
    end
  end
  local i = 1
  while i <= #wanted do
    local last = math.min(i + 999, #wanted)
    local got = redis.call('HMGET', B .. ':blobs:' .. h, unpack(wanted, i, last))
    for j = i, last do
      values[#values + 1] = h
      values[#values + 1] = wanted[j]
      values[#values + 1] = got[j - i + 1]
    end
    i = last + 1
  end
  return fields
end
local function writes_of(h, id)
  return redis.call('HVALS', B .. ':w:' .. h .. ':' .. hex_of(id))
end
local function tuple(h, id, record)
  local fields = fields_of(h, versions_of(record))
  local readable = 1
  if not fields then fields, readable = {}, 0 end
  return {h, id, record, readable, fields, writes_of(h, id)}
end
"#;

/// ARGV: hex ns, checkpoint id or '' for the greatest. Returns {values, {the checkpoint}}
/// or false.
pub(super) const GET_CHECKPOINT: &str = r#"
local h, id = ARGV[1], ARGV[2]
if id == '' then
  id = redis.call('ZRANGE', B .. ':ids:' .. h, '+', '-', 'BYLEX', 'REV', 'LIMIT', 0, 1)[1]
  if not id then return false end
end
local record = redis.call('HGET', B .. ':cp:' .. h, id)
if not record then return false end
return {values, {tuple(h, id, record)}}
"#;

/// ARGV: '1' and a hex ns for one namespace, or '0' and '' for every namespace of the
/// thread; the upper id bound ('+' or '(' .. before); the limit ('' for none); the metadata
/// filter as JSON ('' for none). Returns {values, checkpoints, resume}: the checkpoints
/// admitted, newest id first (ties by namespace), merging the namespaces' id indexes so
/// only the records returned (and those a filter skips) are read; resume is false when
/// nothing older is left to examine, else the id below which a next call goes on (every
/// namespace's checkpoints of that id were examined).
///
/// A call stops at the limit, or after examining 512 records (`BUDGET`): one script must
/// not hold the server for a whole long thread (a listing without a limit, or a filter
/// that matches little), so the client calls again from `resume`.
///
/// Each index is paged by its last id (a lexicographic bound), never by offset: an offset
/// walks the index from the top on every page.
///
/// The filter here only skips records that certainly do not match (numbers compare as
/// doubles, `{}` equals `[]`): what it keeps, the client filters exactly, and a record it
/// cannot read is kept.
pub(super) const LIST_CHECKPOINTS: &str = r#"
local BUDGET = 512
local nss
if ARGV[1] == '1' then nss = {ARGV[2]} else nss = redis.call('SMEMBERS', B .. ':nss') end
local max, limit = ARGV[3], tonumber(ARGV[4])
local filter = nil
if ARGV[5] ~= '' then
  local ok, f = pcall(cjson.decode, ARGV[5])
  if ok and type(f) == 'table' then filter = f end
end
if limit and limit <= 0 then return {{}, {}, false} end
local batch = 256
-- Without a filter the first `limit` ids are all the call reads; with one, more may be
-- skipped, and a page of `limit` would take a call per id.
if limit and limit < batch and not filter then batch = limit end
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
  if not data or type(data.metadata) ~= 'table' then return true end
  for k, v in pairs(filter) do
    local actual = data.metadata[k]
    if actual == nil or not same(actual, v) then return false end
  end
  return true
end
local cursors = {}
for _, h in ipairs(nss) do cursors[#cursors + 1] = {h = h, ids = {}, pos = 1, max = max, done = false} end
local function head(c)
  if c.pos > #c.ids then
    if c.done then return nil end
    c.ids = redis.call('ZRANGE', B .. ':ids:' .. c.h, c.max, '-', 'BYLEX', 'REV', 'LIMIT', 0, batch)
    c.pos = 1
    if #c.ids < batch then c.done = true else c.max = '(' .. c.ids[#c.ids] end
  end
  return c.ids[c.pos]
end
local out, examined, last = {}, 0, nil
while true do
  local best, best_id = nil, nil
  for _, c in ipairs(cursors) do
    local id = head(c)
    if id and (not best or lt(best_id, id) or (id == best_id and lt(c.h, best.h))) then
      best, best_id = c, id
    end
  end
  if not best then return {values, out, false} end
  -- Stop only between ids, so that a next call below `last` misses none of its ties.
  if best_id ~= last and ((limit and #out >= limit) or examined >= BUDGET) then
    return {values, out, last}
  end
  last, examined = best_id, examined + 1
  best.pos = best.pos + 1
  local record = redis.call('HGET', B .. ':cp:' .. best.h, best_id)
  if record and (not filter or may_match(data_of(record))) then
    out[#out + 1] = tuple(best.h, best_id, record)
  end
end
"#;

/// ARGV: hex ns, target checkpoint id, then the channels asked for. Walks the target's
/// parent chain (parent first) while a channel has no seed yet, as
/// `storage_core::delta::walk_with_reads` does one read per ancestor. Returns false when the
/// target is not stored, else {target record, complete (1|0), ancestor, ...}, each ancestor
/// {id, record, {channel, blob field, value or false, ...}, {pending write, ...}} naming
/// every still-open channel the ancestor has a version of. complete is 0 when a record
/// could not be read here, or after 512 ancestors: the client then walks by itself.
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
local BUDGET = 512
while n_open > 0 do
  -- A longer walk is the client's, a read per ancestor: one script must not hold the
  -- server for a whole long chain.
  if not data or #out - 2 >= BUDGET then out[2] = 0; break end
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
      local field = hex_of(channel) .. ':' .. hex_of(version)
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
