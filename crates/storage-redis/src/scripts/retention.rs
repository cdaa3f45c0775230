//! The retention scripts: each trims one series (a conversation, a context scope's versions,
//! an artifact's versions) in one atomic step on the series' slot, deciding and removing
//! together, so a write racing a sweep is either counted among the newest or lands after
//! the trim, and the newest record is never removed.
//!
//! Every one takes ARGV: `keep_last` or '', then the cutoff as whole seconds and
//! nanoseconds since the Unix epoch, or '' and ''. A script reads only the oldest records
//! of its series until the first survivor (ranks in a sorted set, so `keep_last` costs no
//! reads at all; context versions count by number, a `ZCOUNT` below `newest - keep + 1`)
//! and removes what it found: its cost is what it removes. Checkpoints are
//! trimmed by the prune path in Rust (see `backend/retention.rs`).

/// What the retention scripts share. The scripts see `PRELUDE` (for `int`) before this.
pub(super) const RETENTION_PRELUDE: &str = r#"
local KEEP, CUT_S, CUT_NS = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
-- Whether seconds and nanoseconds since the epoch are before the cutoff.
local function older(s, ns)
  if not CUT_S then return false end
  return s < CUT_S or (s == CUT_S and ns < CUT_NS)
end
-- Seconds and nanoseconds since the epoch of an RFC 3339 time as chrono writes it
-- ('Z' or a +hh:mm offset), or nil.
local function epoch(at)
  local y, mo, d, h, mi, se, frac, zone = string.match(at,
    '^([+-]?%d+)-(%d%d)-(%d%d)T(%d%d):(%d%d):(%d%d)(%.?%d*)(.*)$')
  if not y then return nil end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if mo <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((mo + 9) % 12) + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  local s = (era * 146097 + doe - 719468) * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(se)
  if zone ~= 'Z' then
    local sign, zh, zm = string.match(zone, '^([+-])(%d%d):(%d%d)$')
    if not sign then return nil end
    local offset = tonumber(zh) * 3600 + tonumber(zm) * 60
    if sign == '+' then s = s - offset else s = s + offset end
  end
  local ns = 0
  if #frac > 1 then ns = tonumber(string.sub(frac .. '000000000', 2, 10)) end
  return s, ns
end
-- Whether a stored wire record (a JSON envelope) was created before the cutoff; a record
-- this release cannot read is not (a sweep never removes what it cannot judge).
local function record_older(encoded)
  if not CUT_S or not encoded then return false end
  local ok, record = pcall(cjson.decode, encoded)
  if not ok or type(record) ~= 'table' or record.v ~= 1 or type(record.data) ~= 'table' then
    return false
  end
  local at = record.data.created_at
  if type(at) ~= 'string' then return false end
  local s, ns = epoch(at)
  if not s then return false end
  return older(s, ns)
end
-- How many members of a sorted set of `card` members lie beyond the newest KEEP.
local function beyond_count(card)
  if KEEP == '' then return 0 end
  return math.max(0, card - tonumber(KEEP))
end
-- How many of the oldest members of a sorted set of `card` members have expired: the
-- first `n` (counted out by KEEP), then each one `is_old` says is old, up to the first that
-- is not; never the newest. Reads members from the first counted out, a few at first.
local function expired_prefix(zset, card, is_old, n)
  if n > card - 1 then n = card - 1 end
  if not CUT_S then return n end
  local step = 1
  while n < card - 1 do
    local last = math.min(n + step, card - 1) - 1
    for _, member in ipairs(redis.call('ZRANGE', zset, n, last)) do
      if not is_old(member) then return n end
      n = n + 1
    end
    step = math.min(step * 2, 256)
  end
  return n
end
"#;

/// KEYS: messages, client ids, kept, kept index (the removal keys; `KEPT_PRELUDE` names
/// them). Removes the expired prefix of the conversation with its client ids and what
/// removed summaries kept (every summary sequence up to the last removed one: a kept
/// message's summary is the removed summary or nested in one); returns how many messages.
pub(super) const RETAIN_MESSAGES: &str = r#"
local card = redis.call('ZCARD', MSGS)
if card < 2 then return 0 end
local n = expired_prefix(MSGS, card, record_older, beyond_count(card))
if n == 0 then return 0 end
local last
local i = 0
while i < n do
  local gone = redis.call('ZRANGE', MSGS, i, math.min(i + 999, n - 1), 'WITHSCORES')
  for j = 2, #gone, 2 do release(gone[j]) end
  last = gone[#gone]
  i = i + 1000
end
drop_kept('-inf', last)
redis.call('ZREMRANGEBYRANK', MSGS, 0, n - 1)
return n
"#;

/// KEYS: as every context script (`CONTEXT_PRELUDE`). Removes the expired prefix of the
/// scope's versions with the store's trim; returns how many versions.
pub(super) const RETAIN_CONTEXT: &str = r#"
local card = redis.call('ZCARD', VERSIONS)
if card < 2 then return 0 end
-- Versions count by number, as a store's keep_versions does: those numbered below
-- newest - KEEP + 1 are counted out, wherever an import left gaps.
local below = 0
if KEEP ~= '' then
  local newest = tonumber(redis.call('ZRANGE', VERSIONS, -1, -1)[1])
  below = redis.call('ZCOUNT', VERSIONS, '-inf', '(' .. int(newest - tonumber(KEEP) + 1))
end
local n = expired_prefix(VERSIONS, card, function(version)
  local micros = tonumber(redis.call('HGET', RECORDS, 'u:' .. version) or '')
  if not micros then return false end
  local s = math.floor(micros / 1000000)
  return older(s, (micros - s * 1000000) * 1000)
end, below)
if n == 0 then return 0 end
local last = redis.call('ZRANGE', VERSIONS, n - 1, n - 1)[1]
trim(int(tonumber(last) + 1), 1)
return n
"#;

/// KEYS: versions, metas, contents of one artifact. Removes the expired prefix of its
/// versions with their metadata and content; returns how many versions.
pub(super) const RETAIN_ARTIFACT: &str = r#"
local card = redis.call('ZCARD', KEYS[1])
if card < 2 then return 0 end
local n = expired_prefix(KEYS[1], card, function(version)
  return record_older(redis.call('HGET', KEYS[2], version))
end, beyond_count(card))
if n == 0 then return 0 end
local i = 0
while i < n do
  local gone = redis.call('ZRANGE', KEYS[1], i, math.min(i + 999, n - 1))
  redis.call('HDEL', KEYS[2], unpack(gone))
  redis.call('HDEL', KEYS[3], unpack(gone))
  i = i + 1000
end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - 1)
return n
"#;
