//! The server-side scripts: every step that must see and change a session's keys at once.
//! They compare and move plain counters and bytes; records are encoded and decoded in Rust
//! (the checksummed codec), never in Lua. Each names only keys of one slot (`{sid}`), or one
//! key, so they run on a Cluster. Run with EVALSHA, loaded again on NOSCRIPT
//! ([`redis::Script::invoke`]).

use std::sync::LazyLock;

use redis::Script;

/// Reads a session: KEYS = hash, tombstone; ARGV[1] = the state wanted: `""` the latest, `"-"`
/// none, `"*"` all of them, else its id. Returns `{"1", r, g, l, state}` (`{"1", r, g, l,
/// field, value, ...}` for all), `{"2", tombstone}`, or `{"0"}`.
pub(super) static FETCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local r = redis.call('HGET', KEYS[1], 'r')
if not r then
  local t = redis.call('GET', KEYS[2])
  if t then return {'2', t} end
  return {'0'}
end
local g = redis.call('HGET', KEYS[1], 'g')
local l = redis.call('HGET', KEYS[1], 'l')
local want = ARGV[1]
if want == '-' then return {'1', r, g or '', l or ''} end
if want == '*' then
  local out = {'1', r, g or '', l or ''}
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) == 's:' then
      out[#out + 1] = string.sub(all[i], 3)
      out[#out + 1] = all[i + 1]
    end
  end
  return out
end
if want == '' then want = l or '' end
local s = redis.call('HGET', KEYS[1], 's:' .. want)
return {'1', r, g or '', l or '', s or false}
",
    )
});

/// Writes a session if its generation is still the one read: KEYS = hash; ARGV = generation,
/// record, TTL in ms (`0`: none), latest state id, n, then n pairs (state id, bytes) to set,
/// then the state ids to delete. Bumps the generation. Returns 1, or 0 (re-read and retry).
pub(super) static COMMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], 'g') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'r', ARGV[2], 'l', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'g', 1)
local i = 6
for _ = 1, tonumber(ARGV[5]) do
  redis.call('HSET', KEYS[1], 's:' .. ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i <= #ARGV do
  redis.call('HDEL', KEYS[1], 's:' .. ARGV[i])
  i = i + 1
end
if ARGV[3] == '0' then redis.call('PERSIST', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
",
    )
});

/// Creates a session unless its id is taken: KEYS = hash, tombstone; ARGV = record, TTL in ms
/// (`0`: none), latest state id, the tombstone this create may replace (`""`: none), then
/// pairs (state id, bytes). Fails if the hash exists or a tombstone other than that one does.
/// Returns 1, or 0 (the id is taken).
pub(super) static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local t = redis.call('GET', KEYS[2])
if t then
  if t ~= ARGV[4] then return 0 end
  redis.call('DEL', KEYS[2])
end
redis.call('HSET', KEYS[1], 'r', ARGV[1], 'g', 1, 'l', ARGV[3])
for i = 5, #ARGV, 2 do
  redis.call('HSET', KEYS[1], 's:' .. ARGV[i], ARGV[i + 1])
end
if ARGV[2] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
",
    )
});

/// Retires a session if its generation is still the one read: KEYS = hash, tombstone; ARGV =
/// generation, tombstone, its TTL in ms (`0`: none). Deletes the hash, writes the tombstone.
/// Returns 1, or 0 (re-read and retry).
pub(super) static RETIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], 'g') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if ARGV[3] == '0' then
  redis.call('SET', KEYS[2], ARGV[2])
else
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
end
return 1
",
    )
});

/// Replaces a tombstone if it is still the one read: KEYS = tombstone; ARGV = old, new. Keeps
/// its TTL. Returns 1, or 0.
pub(super) static RESTONE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1
",
    )
});

/// Deletes a session if its generation is still the one read (`"*"`: whatever it is): KEYS =
/// hash; ARGV = generation. Returns how many states it held, or -1 (re-read and retry).
pub(super) static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local g = redis.call('HGET', KEYS[1], 'g')
if ARGV[1] ~= '*' and g ~= ARGV[1] then return -1 end
local n = 0
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, 2) == 's:' then n = n + 1 end
end
redis.call('DEL', KEYS[1])
return n
",
    )
});

/// Files a session in a user's index and keeps the index until its last entry's removal:
/// KEYS = index; ARGV = score, id, TTL in ms (`0`: none). The TTL only grows.
pub(super) static USER_ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local created = redis.call('EXISTS', KEYS[1]) == 0
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ARGV[3] == '0' then
  redis.call('PERSIST', KEYS[1])
elseif created or (ttl >= 0 and ttl < tonumber(ARGV[3])) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
",
    )
});

/// Releases a session lock if this holder still owns it: KEYS = lock; ARGV = owner.
pub(super) static UNLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
",
    )
});
