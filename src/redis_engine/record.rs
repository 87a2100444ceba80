//! Reading and writing one session's keys: the fetch script's answer decoded through the
//! checksummed codec (a value that does not decode is [`Error::Corrupted`]), and the
//! compare-and-set writes on the session's generation. Also the index steps that follow a
//! write in other slots (a user's index, the cap index).

use std::time::Duration;

use super::engine::RedisEngine;
use super::scripts;
use crate::engine::records::{
    SessionRecord, StateRecord, Tombstone, decode_session_bytes, encode_record, encode_session,
};
use crate::error::{Error, Result};
use crate::format::codec;
use crate::id::{SecureToken, SessionId};

/// How many times a write that met another write of its session is read and computed again
/// before it gives up with [`Error::Busy`].
pub(super) const MAX_RETRIES: usize = 16;

/// The error after [`MAX_RETRIES`] writes that each met another.
pub(super) fn contended() -> Error {
    Error::Busy { retry_after: Duration::from_secs(1) }
}

/// Which states a read returns.
#[derive(Debug, Clone, Copy)]
pub(super) enum Want {
    /// The latest.
    Latest,
    /// This one.
    Id(u64),
    /// None.
    Nothing,
    /// Every state, encoded (a rotation copies them).
    All,
}

/// What is stored under an id, as stored.
pub(super) enum Raw {
    /// A session: its record bytes, generation, and the states asked for (id, encoded bytes).
    Live { r: Vec<u8>, g: Vec<u8>, states: Vec<(u64, Vec<u8>)> },
    /// A tombstone's bytes.
    Retired(Vec<u8>),
    /// Nothing.
    Missing,
}

/// A session as read: its record, generation, and the states asked for.
pub(super) struct Live {
    pub(super) rec: SessionRecord,
    pub(super) g: Vec<u8>,
    pub(super) states: Vec<(u64, Vec<u8>)>,
}

/// The TTL of a key whose content may be removed at `remove_at` (`0`: none): relative, so that
/// the server's clock and the engine's need not agree, and a second late, never early.
pub(super) fn ttl_ms(remove_at: u64, now: u64) -> u64 {
    if remove_at == u64::MAX { 0 } else { remove_at.saturating_sub(now).saturating_add(1000) }
}

fn corrupted(table: &'static str, sid: &str) -> Error {
    Error::Corrupted { table, key: sid.to_owned() }
}

/// A state's data from its stored bytes.
pub(super) fn decode_state(sid: &str, state_id: u64, bytes: &[u8]) -> Result<Vec<u8>> {
    codec::decode::<StateRecord>(bytes)
        .map(|s| s.data)
        .map_err(|_| Error::Corrupted { table: "states", key: format!("{sid}/{state_id}") })
}

/// A state's stored bytes.
pub(super) fn encode_state(data: &[u8]) -> Result<Vec<u8>> {
    encode_record(&StateRecord { data: data.to_vec() })
}

/// A tombstone from its stored bytes.
pub(super) fn decode_tombstone(sid: &str, bytes: &[u8]) -> Result<Tombstone> {
    codec::decode(bytes).map_err(|_| corrupted("tombstones", sid))
}

/// A session record from its stored bytes.
pub(super) fn decode_record(sid: &str, bytes: &[u8]) -> Result<SessionRecord> {
    decode_session_bytes(bytes).ok_or_else(|| corrupted("sessions", sid))
}

fn parse_u64(sid: &str, text: &[u8]) -> Result<u64> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| corrupted("sessions", sid))
}

impl RedisEngine {
    /// Reads what is stored under `sid` in one round trip (the fetch script).
    pub(super) fn read_raw(&self, sid: &str, want: Want) -> Result<Raw> {
        let arg = match want {
            Want::Latest => String::new(),
            Want::Id(n) => n.to_string(),
            Want::Nothing => "-".to_owned(),
            Want::All => "*".to_owned(),
        };
        let (hash, tomb) = (self.keys.session(sid), self.keys.tombstone(sid));
        let reply: Vec<Option<Vec<u8>>> =
            self.pool.run(|c| scripts::FETCH.key(&hash).key(&tomb).arg(&arg).invoke(c))?;
        let mut it = reply.into_iter();
        let kind = it.next().flatten().unwrap_or_default();
        match kind.as_slice() {
            b"0" => Ok(Raw::Missing),
            b"2" => Ok(Raw::Retired(it.next().flatten().unwrap_or_default())),
            b"1" => {
                let r = it.next().flatten().unwrap_or_default();
                let g = it.next().flatten().unwrap_or_default();
                let l = it.next().flatten().unwrap_or_default();
                let rest: Vec<Option<Vec<u8>>> = it.collect();
                let states = match want {
                    Want::Nothing => Vec::new(),
                    Want::Latest | Want::Id(_) => {
                        let id = match want {
                            Want::Id(n) => n,
                            _ => parse_u64(sid, &l)?,
                        };
                        rest.into_iter().flatten().map(|bytes| (id, bytes)).take(1).collect()
                    }
                    Want::All => {
                        let mut out = Vec::new();
                        let mut pairs = rest.into_iter().map(Option::unwrap_or_default);
                        while let (Some(id), Some(bytes)) = (pairs.next(), pairs.next()) {
                            out.push((parse_u64(sid, &id)?, bytes));
                        }
                        out
                    }
                };
                Ok(Raw::Live { r, g, states })
            }
            _ => Err(Error::Server {
                kind: crate::error::ServerErrorKind::Other,
                message: "unexpected answer of the fetch script".into(),
            }),
        }
    }

    /// Reads the session under `sid` for the holder of `token` at `now`: refused as the redb
    /// engine refuses (unknown, retired, wrong token, expired); a record or tombstone that does
    /// not decode is [`Error::Corrupted`].
    pub(super) fn read_admitted(
        &self,
        sid: &SessionId,
        token: &SecureToken,
        want: Want,
        now: u64,
    ) -> Result<Live> {
        let id = sid.as_str();
        match self.read_raw(id, want)? {
            Raw::Missing => Err(Error::NotFound),
            Raw::Retired(bytes) => Err(decode_tombstone(id, &bytes)?.refusal(token, now)?),
            Raw::Live { r, g, states } => {
                if g.is_empty() {
                    return Err(corrupted("sessions", id)); // no generation: no write can succeed
                }
                let rec = decode_record(id, &r)?;
                self.cfg.rules.admit(&rec, token, now)?;
                Ok(Live { rec, g, states })
            }
        }
    }

    /// Writes `rec` and the states `set` (id, data), and removes the states `delete`, if the
    /// session's generation is still `g`. `false`: another write came first; read again.
    pub(super) fn commit(
        &self,
        sid: &str,
        g: &[u8],
        rec: &SessionRecord,
        set: &[(u64, &[u8])],
        delete: impl Iterator<Item = u64>,
        now: u64,
    ) -> Result<bool> {
        let bytes = encode_session(rec)?;
        let hash = self.keys.session(sid);
        let mut inv = scripts::COMMIT.key(&hash);
        inv.arg(g).arg(bytes).arg(ttl_ms(rec.remove_at, now)).arg(rec.latest_state).arg(set.len());
        for (id, data) in set {
            inv.arg(*id).arg(encode_state(data)?);
        }
        for id in delete {
            inv.arg(id);
        }
        let done: i64 = self.pool.run(|c| inv.invoke(c))?;
        Ok(done == 1)
    }

    /// Creates the session `rec` under `sid` with its `states` (id, stored bytes), unless the
    /// id is taken: by a session, or by a tombstone other than `replaces`. `false`: taken.
    pub(super) fn create_raw(
        &self,
        sid: &str,
        rec: &SessionRecord,
        states: &[(u64, Vec<u8>)],
        replaces: &[u8],
        now: u64,
    ) -> Result<bool> {
        let bytes = encode_session(rec)?;
        let (hash, tomb) = (self.keys.session(sid), self.keys.tombstone(sid));
        let mut inv = scripts::CREATE.key(&hash);
        inv.key(&tomb);
        inv.arg(bytes).arg(ttl_ms(rec.remove_at, now)).arg(rec.latest_state).arg(replaces);
        inv.arg(first_generation()?);
        for (id, data) in states {
            inv.arg(*id).arg(data.as_slice());
        }
        let done: i64 = self.pool.run(|c| inv.invoke(c))?;
        Ok(done == 1)
    }

    /// Replaces the session under `sid` by `stone` if its generation is still `g`. `false`:
    /// another write came first.
    pub(super) fn retire(&self, sid: &str, g: &[u8], stone: &Tombstone, now: u64) -> Result<bool> {
        self.recent.forget(sid);
        let bytes = encode_record(stone)?;
        let (hash, tomb) = (self.keys.session(sid), self.keys.tombstone(sid));
        let mut inv = scripts::RETIRE.key(&hash);
        inv.key(&tomb).arg(g).arg(bytes).arg(ttl_ms(stone.remove_at, now));
        let done: i64 = self.pool.run(|c| inv.invoke(c))?;
        Ok(done == 1)
    }

    /// Deletes the session under `sid` if its generation is still `g` (`None`: whatever it
    /// is). How many states it held; `None`: another write came first.
    pub(super) fn delete_session(&self, sid: &str, g: Option<&[u8]>) -> Result<Option<u64>> {
        self.recent.forget(sid);
        let hash = self.keys.session(sid);
        let g = g.unwrap_or(b"*");
        let n: i64 = self.pool.run(|c| scripts::DELETE.key(&hash).arg(g).invoke(c))?;
        Ok(u64::try_from(n).ok())
    }

    /// Files `sid` in `user`'s index (a step of its own: another slot).
    pub(super) fn file_user(&self, user: &[u8], sid: &str, remove_at: u64, now: u64) -> Result<()> {
        let key = self.keys.user(user);
        let mut inv = scripts::USER_ADD.key(&key);
        inv.arg(score(remove_at)).arg(sid).arg(ttl_ms(remove_at, now));
        self.pool.run(|c| inv.invoke::<i64>(c)).map(drop)
    }

    /// Removes `sid` from `user`'s index.
    pub(super) fn unfile_user(&self, user: &[u8], sid: &str) -> Result<()> {
        let key = self.keys.user(user);
        self.pool.run(|c| redis::cmd("ZREM").arg(&key).arg(sid).query::<i64>(c)).map(drop)
    }

    /// Files `sid` in the cap index at `remove_at` (with a cap only).
    pub(super) fn file_cap(&self, sid: &str, remove_at: u64) -> Result<()> {
        if self.cfg.max_sessions.is_none() {
            return Ok(());
        }
        self.zadd(&self.keys.cap(), &[], remove_at, sid)
    }

    /// `ZADD key [flags] score(remove_at) sid`: files `sid` in a sorted-set index (the cap
    /// index or a user's) at `remove_at`; `XX` only moves an entry that is there, `LT` only
    /// lowers it.
    pub(super) fn zadd(&self, key: &str, flags: &[&str], remove_at: u64, sid: &str) -> Result<()> {
        self.pool
            .run(|c| {
                redis::cmd("ZADD")
                    .arg(key)
                    .arg(flags)
                    .arg(score(remove_at))
                    .arg(sid)
                    .query::<i64>(c)
            })
            .map(drop)
    }

    /// Moves `sid`'s cap entry to `remove_at` if that is earlier (early, never late).
    pub(super) fn lower_cap(&self, sid: &str, remove_at: u64) -> Result<()> {
        if self.cfg.max_sessions.is_none() {
            return Ok(());
        }
        self.zadd(&self.keys.cap(), &["XX", "LT"], remove_at, sid)
    }

    /// Removes `sid` from the cap index.
    pub(super) fn unfile_cap(&self, sid: &str) -> Result<()> {
        if self.cfg.max_sessions.is_none() {
            return Ok(());
        }
        let key = self.keys.cap();
        self.pool.run(|c| redis::cmd("ZREM").arg(&key).arg(sid).query::<i64>(c)).map(drop)
    }

    /// Removes a session that is gone from the indexes it may be in.
    pub(super) fn unfile(&self, sid: &str, user: Option<&[u8]>) -> Result<()> {
        if let Some(user) = user {
            self.unfile_user(user, sid)?;
        }
        self.unfile_cap(sid)
    }
}

/// A new session's first generation, drawn from the OS random source below 2^62 (the script's
/// increments stay far from `i64::MAX`). Not 1: an id used again (a `put` or `create_under`
/// after its tombstone's removal, a session evicted and created again) would start where its
/// predecessor started, and a save on what an engine remembered of the predecessor
/// (`recent.rs`) would pass the compare-and-set and write the old holder's record into the new
/// session (`tests/redis_hostile.rs`).
pub(super) fn first_generation() -> Result<u64> {
    use rand::TryRngCore;
    let n = rand::rngs::OsRng
        .try_next_u64()
        .map_err(|e| Error::GenerateId { reason: format!("OS random source failed: {e}") })?;
    Ok((n >> 2).max(1))
}

/// A removal time as a sorted-set score: `+inf` for never.
pub(super) fn score(remove_at: u64) -> String {
    if remove_at == u64::MAX { "+inf".to_owned() } else { remove_at.to_string() }
}
