//! Read-only administration of the sessions on a Redis server or Cluster, for admin tools
//! (`examples/dump/`): which keys the prefix holds (`SCAN` on the server, or on every master
//! of a Cluster), one session in full, and the counts. These are the engine's own calls, not
//! the [`Engine`](crate::Engine) trait's (docs/engines.md says why). They need no tokens:
//! whoever can read the server can read the sessions.

use std::collections::BTreeSet;

use super::engine::RedisEngine;
use super::record::{decode_record, decode_state, decode_tombstone};
use crate::engine::records::{Retired, SessionRecord};
use crate::error::{Error, Result};
use crate::id::SessionId;
use crate::store::{Contents, SessionInfo, StateInfo};

/// What a prefix holds on the server, counted by [`RedisEngine::info`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisInfo {
    /// Session keys (`P:{sid}`), whatever their status: expired ones stay until their TTL.
    pub sessions: u64,
    /// Tombstones of rotated and revoked ids (`P:{sid}:t`).
    pub tombstones: u64,
    /// Session locks held (`P:{sid}:lock`).
    pub locks: u64,
    /// Users with an index (`P:u:{user}`).
    pub users: u64,
    /// Entries in the users' indexes.
    pub user_entries: u64,
    /// Entries in the cap index (`P:x`); `None` when there is none (no cap in use, or empty).
    pub cap_entries: Option<u64>,
    /// Keys under the prefix that the engine does not write: those of another prefix that
    /// starts with this one and `:`, or foreign ones. Not a problem for `verify`.
    pub other_keys: u64,
}

/// A retired id's tombstone, as an admin sees it ([`RedisEngine::retired`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetiredInfo {
    /// `"rotated"` (regenerated) or `"revoked"` (ended on purpose).
    pub reason: &'static str,
    /// The id it was rotated to.
    pub successor: Option<String>,
    /// Until when a client holding the old token is forwarded, ms since the epoch.
    pub forward_until: u64,
    /// When the tombstone goes, ms since the epoch (`u64::MAX`: after its week).
    pub remove_at: u64,
}

/// The keys under a prefix, by kind (session ids as stored, users as bytes).
#[derive(Debug, Default)]
pub(super) struct Layout {
    pub(super) sessions: BTreeSet<String>,
    pub(super) tombstones: BTreeSet<String>,
    pub(super) locks: u64,
    /// Each user index: the user's bytes (`None`: the key's hex does not decode) and its key.
    pub(super) users: BTreeSet<(Option<Vec<u8>>, String)>,
    pub(super) cap: bool,
    pub(super) other: BTreeSet<String>,
}

/// A session key's fields: record, generation, latest state id, and the state fields.
pub(super) struct Fields {
    pub(super) r: Option<Vec<u8>>,
    pub(super) g: Option<Vec<u8>>,
    pub(super) l: Option<Vec<u8>>,
    /// `s:<n>` fields: the text after `s:`, and the bytes.
    pub(super) states: Vec<(String, Vec<u8>)>,
    /// Fields the engine does not write.
    pub(super) other: Vec<String>,
}

/// `bytes` as hex text decoded, or `None`.
fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

/// `prefix` with the characters that `SCAN MATCH` reads as a glob escaped.
fn glob_escape(prefix: &str) -> String {
    let mut out = String::new();
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl RedisEngine {
    /// Lists and sorts the keys under the prefix (one `SCAN` walk; per master in a Cluster).
    pub(super) fn layout(&self) -> Result<Layout> {
        let head = format!("{}:", self.keys.prefix());
        let keys = self.pool.scan(&format!("{}*", glob_escape(&head)))?;
        let mut out = Layout::default();
        for key in keys {
            let key = String::from_utf8_lossy(&key).into_owned();
            let rest = key.strip_prefix(&head).unwrap_or_default();
            if rest == "x" {
                out.cap = true;
            } else if let Some(user) =
                rest.strip_prefix("u:{").and_then(|r| r.strip_suffix('}')).and_then(unhex)
            {
                out.users.insert((Some(user), key.clone()));
            } else if let Some(inner) = rest.strip_prefix('{') {
                match inner.split_once('}') {
                    Some((sid, "")) => drop(out.sessions.insert(sid.to_owned())),
                    Some((sid, ":t")) => drop(out.tombstones.insert(sid.to_owned())),
                    Some((_, ":lock")) => out.locks += 1,
                    _ => drop(out.other.insert(key.clone())),
                }
            } else {
                out.other.insert(key.clone());
            }
        }
        Ok(out)
    }

    /// Every field of the session key of `sid` (`None`: no such key).
    pub(super) fn fields(&self, sid: &str) -> Result<Option<Fields>> {
        let key = self.keys.session(sid);
        let all: Vec<(String, Vec<u8>)> =
            self.pool.run(|c| redis::cmd("HGETALL").arg(&key).query(c))?;
        if all.is_empty() {
            return Ok(None);
        }
        let mut f = Fields { r: None, g: None, l: None, states: Vec::new(), other: Vec::new() };
        for (name, value) in all {
            match name.as_str() {
                "r" => f.r = Some(value),
                "g" => f.g = Some(value),
                "l" => f.l = Some(value),
                _ => match name.strip_prefix("s:") {
                    Some(n) => f.states.push((n.to_owned(), value)),
                    None => f.other.push(name),
                },
            }
        }
        Ok(Some(f))
    }

    /// The ids of every session stored under the prefix, in id order, whatever their status
    /// (expired ones stay until their key's TTL). Keys whose id is not a valid session id are
    /// left out ([`RedisEngine::verify`] reports them). Needs no token.
    ///
    /// # Errors
    /// [`Error::Server`] if the server (or a Cluster master) does not answer.
    pub fn session_ids(&self) -> Result<Vec<SessionId>> {
        let layout = self.layout()?;
        Ok(layout.sessions.iter().filter_map(|s| SessionId::parse(s).ok()).collect())
    }

    /// A session's metadata and its stored states (with their stored sizes), read in one
    /// round trip (`HGETALL`), whatever its status; `None` if there is no session key (see
    /// [`RedisEngine::retired`] for a tombstone). Status is judged by this engine's rules and
    /// clock: open with `idle_timeout(None)` to judge by the stored deadlines alone.
    ///
    /// # Errors
    /// [`Error::Corrupted`] for a damaged record, [`Error::Server`] from the server.
    pub fn inspect(&self, id: &SessionId) -> Result<Option<(SessionInfo, Vec<StateInfo>)>> {
        let sid = id.as_str();
        let Some(f) = self.fields(sid)? else { return Ok(None) };
        let rec = record_of(sid, f.r.as_deref())?;
        let mut states: Vec<StateInfo> = f
            .states
            .iter()
            .filter_map(|(n, v)| Some(StateInfo { id: n.parse().ok()?, size: v.len() as u64 }))
            .collect();
        states.sort_by_key(|s| s.id);
        let info = SessionInfo {
            id: id.clone(),
            created: rec.created,
            last_access: rec.last_access,
            expires_at: rec.expires_at,
            remove_at: rec.remove_at,
            indexed_remove_at: rec.remove_at,
            version: rec.version,
            latest_state: rec.latest_state,
            oldest_state: rec.oldest_state,
            data_len: rec.data.len() as u64,
            status: self.cfg.rules.status(&rec, self.now()),
        };
        Ok(Some((info, states)))
    }

    /// Everything a session holds: its data and every kept state, oldest first, whatever its
    /// status; `None` if there is no session key. Needs no token.
    ///
    /// # Errors
    /// [`Error::Corrupted`] for a damaged record or a kept state damaged or missing,
    /// [`Error::Server`] from the server.
    pub fn contents(&self, id: &SessionId) -> Result<Option<Contents>> {
        let sid = id.as_str();
        let Some(f) = self.fields(sid)? else { return Ok(None) };
        let rec = record_of(sid, f.r.as_deref())?;
        let mut states = Vec::new();
        for n in rec.oldest_state..=rec.latest_state {
            let name = n.to_string();
            let bytes = f.states.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_slice());
            let bytes = bytes
                .ok_or_else(|| Error::Corrupted { table: "states", key: format!("{sid}/{n}") })?;
            states.push((n, decode_state(sid, n, bytes)?));
        }
        Ok(Some(Contents { session_data: rec.data, states }))
    }

    /// The tombstone of a retired id, `None` if there is none. Needs no token.
    ///
    /// # Errors
    /// [`Error::Corrupted`] for a damaged tombstone, [`Error::Server`] from the server.
    pub fn retired(&self, id: &SessionId) -> Result<Option<RetiredInfo>> {
        let key = self.keys.tombstone(id.as_str());
        let bytes: Option<Vec<u8>> = self.pool.run(|c| redis::cmd("GET").arg(&key).query(c))?;
        let Some(bytes) = bytes else { return Ok(None) };
        let t = decode_tombstone(id.as_str(), &bytes)?;
        Ok(Some(RetiredInfo {
            reason: match t.reason {
                Retired::Rotated => "rotated",
                Retired::Revoked => "revoked",
            },
            successor: t.successor,
            forward_until: t.forward_until,
            remove_at: t.remove_at,
        }))
    }

    /// What the prefix holds, counted: one `SCAN` walk (every master of a Cluster), then a
    /// `ZCARD` per user index and one for the cap index. Not a snapshot: keys written during
    /// the walk may or may not be counted.
    ///
    /// # Errors
    /// [`Error::Server`] from the server.
    pub fn info(&self) -> Result<RedisInfo> {
        let layout = self.layout()?;
        let mut info = RedisInfo {
            sessions: layout.sessions.len() as u64,
            tombstones: layout.tombstones.len() as u64,
            locks: layout.locks,
            users: layout.users.len() as u64,
            other_keys: layout.other.len() as u64,
            ..RedisInfo::default()
        };
        for (_, key) in &layout.users {
            info.user_entries += self.zcard(key)?;
        }
        if layout.cap {
            info.cap_entries = Some(self.zcard(&self.keys.cap())?);
        }
        Ok(info)
    }

    pub(super) fn zcard(&self, key: &str) -> Result<u64> {
        self.pool.run(|c| redis::cmd("ZCARD").arg(key).query(c))
    }
}

/// The record of a session key's `r` field.
pub(super) fn record_of(sid: &str, r: Option<&[u8]>) -> Result<SessionRecord> {
    decode_record(sid, r.unwrap_or_default())
}
