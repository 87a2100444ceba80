//! What the `sessions` table holds (each session's record and its states), and how the store
//! reads and writes them and keeps the `expiry` index in step.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::codec;
use crate::format::schema::{
    ExpiryKey, RECORD, SESSIONS_NAME, STATES_NAME, TOMBSTONES_NAME, WriteTables,
};
use crate::id::{SecureToken, SessionId};

/// One session: everything but its states.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub(crate) struct SessionRecord {
    /// Creation time, ms.
    pub(crate) created: u64,
    /// Last access time persisted, ms. Never moves backwards (except through `adjust_time`).
    pub(crate) last_access: u64,
    /// When the session stops being live, ms (`u64::MAX`: never).
    pub(crate) expires_at: u64,
    /// When the grace window ends and the sweep may remove the session, ms (`u64::MAX`: never).
    /// Stored, so that what one process may destroy does not depend on another's settings.
    pub(crate) remove_at: u64,
    /// The removal time the session's `expiry` entry is filed under: at most `remove_at` (the
    /// index is lazy, early and never late; `docs/format.md`). Written by [`put_session`].
    pub(crate) indexed: u64,
    /// Incremented by every save of data or state.
    pub(crate) version: u64,
    /// The newest state id.
    pub(crate) latest_state: u64,
    /// The oldest state id still kept; states `oldest_state..=latest_state` all exist.
    pub(crate) oldest_state: u64,
    /// SHA-256 of the secure token.
    pub(crate) token_hash: [u8; 32],
    /// Hash of the client fingerprint (web layer), if any.
    pub(crate) fingerprint: Option<[u8; 32]>,
    /// The user this session belongs to (web layer), if any.
    pub(crate) user: Option<Vec<u8>>,
    /// The session data.
    #[serde(with = "codec::bytes")]
    pub(crate) data: Vec<u8>,
    /// A deadline the caller chose (`Store::create_under`, `Store::put`), ms: the session
    /// expires then, whatever the idle timeout and absolute lifetime. Not part of the record's
    /// own encoding: `put_session` appends it after the record, only when set (docs/format.md).
    #[serde(skip)]
    pub(crate) deadline: Option<u64>,
}

impl SessionRecord {
    /// A session created at `now`: version 1, state 0 only, no fingerprint, user or deadline.
    /// Its deadlines are set by `Core::with_deadlines`.
    pub(crate) fn fresh(now: u64, token_hash: [u8; 32], data: Vec<u8>) -> Self {
        SessionRecord {
            created: now,
            last_access: now,
            expires_at: 0,
            remove_at: 0,
            indexed: 0,
            version: 1,
            latest_state: 0,
            oldest_state: 0,
            token_hash,
            fingerprint: None,
            user: None,
            data,
            deadline: None,
        }
    }

    /// This record's key in the `expiry` table: where its entry is filed.
    pub(crate) fn expiry_key<'a>(&self, sid: &'a [u8]) -> ExpiryKey<'a> {
        (self.indexed, sid)
    }

    /// How many states the session keeps.
    pub(crate) fn state_count(&self) -> u64 {
        self.latest_state - self.oldest_state + 1
    }
}

/// Why a session id was retired.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retired {
    /// Moved to a new id (`regenerate`).
    Rotated,
    /// Ended on purpose (`revoke`: a log-out).
    Revoked,
}

/// What remains of a retired session id: enough to forward a client that missed the rotation,
/// and to tell it apart from an id never issued.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub(crate) struct Tombstone {
    pub(crate) reason: Retired,
    /// SHA-256 of the retired id's secure token.
    pub(crate) token_hash: [u8; 32],
    /// The new id, for a rotation.
    pub(crate) successor: Option<String>,
    /// The new token, sealed with the old one (see `rotate.rs`); empty unless rotated.
    #[serde(with = "codec::bytes")]
    pub(crate) sealed_token: Vec<u8>,
    /// Until when a client holding the old token is forwarded to the successor, ms.
    pub(crate) forward_until: u64,
    /// When the sweep removes the tombstone, ms: the retired session's own removal time.
    pub(crate) remove_at: u64,
}

/// Reads and decodes a tombstone; `Corrupted` if it does not decode.
pub(crate) fn get_tombstone(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    sid: &[u8],
) -> Result<Option<Tombstone>> {
    let Some(guard) = table.get(sid)? else {
        return Ok(None);
    };
    codec::decode(guard.value())
        .map(Some)
        .map_err(|_| Error::Corrupted { table: TOMBSTONES_NAME, key: printable(sid) })
}

/// Why there is no session under `sid`: forwarded ([`Error::Rotated`]), retired
/// ([`Error::Revoked`]), a wrong token for a retired id ([`Error::Security`]) or never issued
/// / expired ([`Error::NotFound`]).
pub(crate) fn missing(
    tombstones: &impl ReadableTable<&'static [u8], &'static [u8]>,
    sid: &[u8],
    token: &SecureToken,
    now: u64,
) -> Result<Error> {
    let Some(stone) = get_tombstone(tombstones, sid)? else {
        return Ok(Error::NotFound);
    };
    if now >= stone.remove_at {
        return Ok(Error::NotFound); // as the session itself would read now; awaiting the sweep
    }
    if !token.matches(&stone.token_hash) {
        return Ok(Error::Security);
    }
    // A rotation without forwarding keeps no sealed token: its old id forwards nobody, even a
    // process whose clock reads a little behind the rotating one's (`now < forward_until`).
    if let (Retired::Rotated, Some(successor)) = (stone.reason, &stone.successor)
        && now < stone.forward_until
        && !stone.sealed_token.is_empty()
    {
        let successor = SessionId::parse(successor)?;
        let token = token.unseal(&stone.sealed_token)?;
        return Ok(Error::Rotated { successor, token });
    }
    Ok(Error::Revoked)
}

/// Whether the stored tombstone `bytes` may be swept at `now`: past its `remove_at`, or
/// undecodable (it can then only mislead).
pub(crate) fn tombstone_due(bytes: &[u8], now: u64) -> bool {
    codec::decode::<Tombstone>(bytes).map_or(true, |stone| stone.remove_at <= now)
}

/// The stored tombstone `bytes` with its times passed through `shift` (for `adjust_time`);
/// `None` if it does not decode (the sweep removes those).
pub(crate) fn shifted_tombstone(bytes: &[u8], shift: impl Fn(u64) -> u64) -> Option<Vec<u8>> {
    let mut stone: Tombstone = codec::decode(bytes).ok()?;
    stone.forward_until = shift(stone.forward_until);
    stone.remove_at = shift(stone.remove_at);
    codec::encode(&stone).ok()
}

/// Writes a tombstone.
pub(crate) fn put_tombstone(t: &mut WriteTables<'_>, sid: &[u8], stone: &Tombstone) -> Result<()> {
    let bytes = codec::encode(stone).map_err(|e| encode_err(&e))?;
    t.tombstones.insert(sid, bytes.as_slice())?;
    Ok(())
}

/// One state snapshot.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct StateRecord {
    #[serde(with = "codec::bytes")]
    pub(crate) data: Vec<u8>,
}

/// A key as text for error messages: itself if printable ASCII, else hex.
pub(crate) fn printable(key: &[u8]) -> String {
    if !key.is_empty() && key.iter().all(u8::is_ascii_graphic) {
        String::from_utf8_lossy(key).into_owned()
    } else {
        key.iter().fold(String::new(), |mut s, b| {
            use std::fmt::Write;
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

fn corrupted_session(sid: &[u8]) -> Error {
    Error::Corrupted { table: SESSIONS_NAME, key: printable(sid) }
}

/// Decodes and sanity-checks a session record: besides the codec's checks, the counters must
/// leave room to grow, so that no later arithmetic on them can overflow.
pub(crate) fn decode_session(sid: &[u8], bytes: &[u8]) -> Result<SessionRecord> {
    let rec = match codec::decode::<SessionRecord>(bytes) {
        Ok(rec) => rec,
        // A record with a deadline is the record followed by the deadline (`put_session`).
        Err(codec::CodecError::TrailingBytes) => {
            let (rec, deadline): (SessionRecord, u64) =
                codec::decode(bytes).map_err(|_| corrupted_session(sid))?;
            SessionRecord { deadline: Some(deadline), ..rec }
        }
        Err(_) => return Err(corrupted_session(sid)),
    };
    if rec.oldest_state > rec.latest_state
        || rec.latest_state == u64::MAX
        || rec.version == u64::MAX
    {
        return Err(corrupted_session(sid));
    }
    Ok(rec)
}

/// The `sessions` table, read or written: records and states.
pub(crate) trait SessionsTable: ReadableTable<(&'static [u8], u64), &'static [u8]> {}
impl<T: ReadableTable<(&'static [u8], u64), &'static [u8]>> SessionsTable for T {}

/// Reads a session record, `None` if there is none.
pub(crate) fn get_session(table: &impl SessionsTable, sid: &[u8]) -> Result<Option<SessionRecord>> {
    match table.get((sid, RECORD))? {
        Some(guard) => decode_session(sid, guard.value()).map(Some),
        None => Ok(None),
    }
}

/// Whether `sid` is taken: by a record or a state in `sessions`, or by a tombstone.
pub(crate) fn id_in_use(t: &WriteTables<'_>, sid: &[u8]) -> Result<bool> {
    Ok(t.sessions.range((sid, 0)..=(sid, RECORD))?.next().is_some()
        || t.tombstones.get(sid)?.is_some())
}

/// Reads a state's data; a missing state inside the session's range is corruption.
pub(crate) fn get_state(table: &impl SessionsTable, sid: &[u8], state_id: u64) -> Result<Vec<u8>> {
    let corrupted =
        || Error::Corrupted { table: STATES_NAME, key: format!("{}/{state_id}", printable(sid)) };
    let guard = table.get((sid, state_id))?.ok_or_else(corrupted)?;
    let rec: StateRecord = codec::decode(guard.value()).map_err(|_| corrupted())?;
    Ok(rec.data)
}

fn encode_err(e: &codec::CodecError) -> Error {
    Error::InvalidInput(format!("record does not encode: {e:?}"))
}

/// Writes a state.
pub(crate) fn put_state(
    t: &mut WriteTables<'_>,
    sid: &[u8],
    state_id: u64,
    data: &[u8],
) -> Result<()> {
    let bytes = codec::encode(&StateRecord { data: data.to_vec() }).map_err(|e| encode_err(&e))?;
    t.sessions.insert((sid, state_id), bytes.as_slice())?;
    Ok(())
}

/// How [`put_session`] files a session in the `expiry` index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Filing {
    /// A new session: a new entry at its `remove_at`.
    New,
    /// The entry stays where it is unless `remove_at` moved before it (early, never late): a
    /// save or touch that only extends the session dirties no `expiry` page.
    Lazy,
    /// The entry moves to `remove_at` exactly (sweep and eviction re-indexing, `adjust_time`).
    Exact,
}

/// Writes a session record and keeps the `expiry` index in step with it, as `filing` says.
/// `rec.indexed` is where the entry is filed before this write (ignored for [`Filing::New`]);
/// it is updated to where it is filed after.
pub(crate) fn put_session(
    t: &mut WriteTables<'_>,
    sid: &[u8],
    filing: Filing,
    rec: &mut SessionRecord,
) -> Result<()> {
    let refile = match filing {
        Filing::New => true,
        Filing::Lazy => rec.indexed > rec.remove_at,
        Filing::Exact => rec.indexed != rec.remove_at,
    };
    if refile {
        if filing != Filing::New {
            t.expiry.remove((rec.indexed, sid))?;
        }
        rec.indexed = rec.remove_at;
        t.expiry.insert((rec.indexed, sid), ())?;
    }
    let bytes = match rec.deadline {
        None => codec::encode(&*rec),
        Some(deadline) => codec::encode(&(&*rec, deadline)),
    }
    .map_err(|e| encode_err(&e))?;
    t.sessions.insert((sid, RECORD), bytes.as_slice())?;
    Ok(())
}

/// Removes a session, its states and its index entries. `rec` is `None` when the record is
/// unreadable; its states are then found by range and its index entries by a full scan.
/// Returns the states removed.
pub(crate) fn remove_session(
    t: &mut WriteTables<'_>,
    sid: &[u8],
    rec: Option<&SessionRecord>,
) -> Result<u64> {
    t.sessions.remove((sid, RECORD))?;
    if let Some(rec) = rec {
        t.expiry.remove(rec.expiry_key(sid))?;
        if let Some(user) = &rec.user {
            t.users.remove((user.as_slice(), sid))?;
        }
    } else {
        // The index keys are unknown: find them by scanning. Only damaged records come here.
        // Collected, then removed (not `retain`: see `remove_states`).
        let mut expiry = Vec::new();
        for entry in t.expiry.iter()? {
            let (key, _) = entry?;
            let (indexed, s) = key.value();
            if s == sid {
                expiry.push(indexed);
            }
        }
        for indexed in expiry {
            t.expiry.remove((indexed, sid))?;
        }
        let mut users = Vec::new();
        for entry in t.users.iter()? {
            let (key, _) = entry?;
            let (user, s) = key.value();
            if s == sid {
                users.push(user.to_vec());
            }
        }
        for user in users {
            t.users.remove((user.as_slice(), sid))?;
        }
    }
    remove_states(t, sid, 0..=RECORD - 1)
}

/// Removes a session's states with ids in `ids`; returns how many there were. A range read
/// visits only the states that exist, however wide the range.
///
/// The ids are collected first and removed one by one, rather than through redb's
/// `extract_from_if`: on a damaged page redb can panic inside that iterator, and its destructor
/// then panics again while unwinding, which aborts the process
/// (`fuzz/regressions/damaged-writes-abort-remove-session.redb`).
pub(crate) fn remove_states(
    t: &mut WriteTables<'_>,
    sid: &[u8],
    ids: std::ops::RangeInclusive<u64>,
) -> Result<u64> {
    let mut found = Vec::new();
    let ids = *ids.start()..=(*ids.end()).min(RECORD - 1);
    for entry in t.sessions.range((sid, *ids.start())..=(sid, *ids.end()))? {
        found.push(entry?.0.value().1);
    }
    for &state in &found {
        t.sessions.remove((sid, state))?;
    }
    Ok(found.len() as u64)
}

/// Runs each record decoder on `bytes` (for `crate::fuzzing`); how many accepted them.
#[cfg(feature = "testing")]
pub(crate) fn decode_any_record(bytes: &[u8]) -> usize {
    let session = decode_session(b"fuzz", bytes).is_ok();
    let state = codec::decode::<StateRecord>(bytes).is_ok();
    let stone = codec::decode::<Tombstone>(bytes).is_ok();
    let payload = codec::from_payload::<Vec<String>>(bytes).is_ok();
    [session, state, stone, payload].into_iter().filter(|ok| *ok).count()
}
