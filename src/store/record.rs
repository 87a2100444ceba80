//! What the `sessions` table holds (each session's record and its states), and how the store
//! reads and writes them and keeps the `expiry` index in step.

use redb::ReadableTable;

pub(crate) use crate::engine::records::{SessionRecord, StateRecord, Tombstone};
use crate::engine::records::{decode_session_bytes, encode_record, encode_session};
use crate::error::{Error, Result};
use crate::format::codec;
use crate::format::schema::{
    ExpiryKey, RECORD, SESSIONS_NAME, STATES_NAME, TOMBSTONES_NAME, WriteTables,
};
use crate::id::SecureToken;

impl SessionRecord {
    /// This record's key in the `expiry` table: where its entry is filed.
    pub(crate) fn expiry_key<'a>(&self, sid: &'a [u8]) -> ExpiryKey<'a> {
        (self.indexed, sid)
    }
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
    match get_tombstone(tombstones, sid)? {
        Some(stone) => stone.refusal(token, now),
        None => Ok(Error::NotFound),
    }
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
    let bytes = encode_record(stone)?;
    t.tombstones.insert(sid, bytes.as_slice())?;
    Ok(())
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
    decode_session_bytes(bytes).ok_or_else(|| corrupted_session(sid))
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

/// Writes a state.
pub(crate) fn put_state(
    t: &mut WriteTables<'_>,
    sid: &[u8],
    state_id: u64,
    data: &[u8],
) -> Result<()> {
    let bytes = encode_record(&StateRecord { data: data.to_vec() })?;
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
    let bytes = encode_session(rec)?;
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
