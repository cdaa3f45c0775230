//! The scripts that add and remove checkpoints while keeping the namespace's lazy index of
//! channel value users (see `backend/prune.rs` for how a prune reads and trusts it).
//!
//! Per checkpoint namespace, beside the change counter `chg`: `users` (blob field → how
//! many indexed checkpoints name it), `unidx` (ids put since `users` was last brought up
//! to date) and `idx` (the `chg` value at which the two described every checkpoint). A put
//! keeps the index current only when it was current before (`idx == chg`): it adds its id
//! to `unidx` and moves `idx` along with the counter, which costs a few µs, unlike a
//! count per value. Every other script that changes the namespace (a replacing put, a
//! conditional delete, a copy, and every script of the previous release) bumps `chg`
//! without `idx`, so the index is distrusted until the next prune rebuilds it. A counter
//! recreated after a delete or an expiry starts at the server's clock (`changed` in the
//! prelude), so an `idx` left from an earlier life never matches it.

/// KEYS: namespaces, ids, records, blobs, changes, users, unindexed, indexed at. ARGV:
/// ttl, hex ns, id, record, then blob field/value pairs (kept if present).
pub(super) const PUT_CHECKPOINT: &str = r#"
-- Past this many ids waiting, a put stops tracking (the next prune rebuilds): memory stays
-- bounded when no prune runs.
local UNINDEXED_CAP = 10000
-- Whether the index describes the namespace before this put: an empty namespace starts a
-- fresh one, unless values outlived its checkpoints (a conditional delete of its last
-- checkpoint keeps them): the index would not know them, and only a rebuild removes values
-- no checkpoint names, so it stays stale until the next prune rebuilds it. Else it must
-- have been current at the counter's present value.
local current
if redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[6], KEYS[7])
  current = redis.call('EXISTS', KEYS[4]) == 0
else
  local at = redis.call('GET', KEYS[5])
  current = at ~= false and at == redis.call('GET', KEYS[8])
end
redis.call('SADD', KEYS[1], ARGV[2])
-- A put again under a stored id may name other values than the record it replaces, which
-- the index counted: the index goes stale.
local added = redis.call('ZADD', KEYS[2], 0, ARGV[3]) == 1
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
for i = 5, #ARGV, 2 do redis.call('HSETNX', KEYS[4], ARGV[i], ARGV[i + 1]) end
changed(KEYS[5])
if current and added then
  if redis.call('SCARD', KEYS[7]) < UNINDEXED_CAP then
    redis.call('SADD', KEYS[7], ARGV[3])
    redis.call('SET', KEYS[8], redis.call('GET', KEYS[5]))
  else
    redis.call('DEL', KEYS[7])
  end
end
for k = 1, 8 do touch(KEYS[k], ARGV[1]) end
"#;

/// KEYS: ids, records, write ids, blobs, changes, users, unindexed, indexed at. ARGV: ttl,
/// expected number of ids, expected change counter ('' for none), mode ('delta' or
/// 'rebuild'), '1' if the counts here complete the index, number of victims n, the prefix
/// of the victims' write keys, n victim ids, number of counts u, u (blob field, count)
/// pairs, then blob fields no checkpoint names any more.
///
/// Removes nothing and returns {-1, ''} if the namespace changed since the caller read the
/// counter (the fields were chosen from what was stored then), or in 'delta' mode if the
/// index was not current then; else removes the victims with their writes and the unused
/// blobs, and returns {victims removed, the new counter}. 'delta' sets the given counts
/// (the caller added `unidx`'s checkpoints and took the victims off); 'rebuild' replaces
/// `users` with them (counted from every survivor). Either way `unidx` is absorbed, and
/// when the counts are complete `idx` is set to the new counter. The size check also holds
/// against a release that did not count changes.
pub(super) const PRUNE_NAMESPACE: &str = r#"
if redis.call('ZCARD', KEYS[1]) ~= tonumber(ARGV[2])
  or (redis.call('GET', KEYS[5]) or '') ~= ARGV[3] then
  return {-1, ''}
end
local rebuild = ARGV[4] == 'rebuild'
if not rebuild and redis.call('GET', KEYS[8]) ~= ARGV[3] then return {-1, ''} end
local n = tonumber(ARGV[6])
for i = 8, 7 + n do
  local id = ARGV[i]
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('SREM', KEYS[3], hex(id))
  redis.call('DEL', ARGV[7] .. hex(id))
end
if rebuild then redis.call('DEL', KEYS[6]) end
redis.call('DEL', KEYS[7])
local pairs_end = 8 + n + 2 * tonumber(ARGV[8 + n])
local i = 9 + n
while i <= pairs_end do
  local last = math.min(i + 999, pairs_end)
  redis.call('HSET', KEYS[6], unpack(ARGV, i, last))
  i = last + 1
end
i = pairs_end + 1
while i <= #ARGV do
  local last = math.min(i + 999, #ARGV)
  redis.call('HDEL', KEYS[4], unpack(ARGV, i, last))
  redis.call('HDEL', KEYS[6], unpack(ARGV, i, last))
  i = last + 1
end
if n > 0 then changed(KEYS[5]) end
local now = redis.call('GET', KEYS[5])
if ARGV[5] == '1' then redis.call('SET', KEYS[8], now) end
for k = 6, 8 do touch(KEYS[k], ARGV[1]) end
return {n, now}
"#;

/// KEYS: users, changes, indexed at. ARGV: ttl, expected change counter, '1' if this is
/// the last part, then (blob field, count) pairs. The rest of a rebuilt index, in parts so
/// no script runs long: adds the counts, and with the last part marks the index current,
/// unless the namespace changed since the rebuild's prune (then the index stays stale and
/// the next prune rebuilds it). Returns 1 if it wrote, 0 if not.
pub(super) const INDEX_USERS: &str = r#"
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
hset_from(KEYS[1], 4)
if ARGV[3] == '1' then redis.call('SET', KEYS[3], ARGV[2]) end
touch(KEYS[1], ARGV[1]); touch(KEYS[3], ARGV[1])
return 1
"#;
