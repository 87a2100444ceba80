//! Retiring ids: rotation (the same session under a new id and token, at log-in: Aquarium's
//! anti-fixation) and revocation (log-out), each leaving a tombstone. A tombstone forwards a
//! client that still holds the rotated id and token to the successor for a short window (its
//! response with the new cookie was lost), then refuses the id as [`Error::Revoked`], distinct
//! from an id never issued, until the old session would have been removed anyway.

use std::time::Duration;

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::handle::Store;
use super::op::{WriteOp, text};
use super::record::{
    Filing, SessionsTable, Tombstone, get_session, get_tombstone, missing, put_session,
    put_tombstone, remove_session,
};
use super::session::unused_id_from;
use super::shared::Core;
use crate::engine::{Created, Named};
use crate::error::{Error, Result};
use crate::format::schema::{self, RECORD, WriteTables};
use crate::id::{SecureToken, SessionId, constant_time_eq, fingerprint_hash};

impl Store {
    /// Moves a session to a new id with a new secure token (call it at log-in, against session
    /// fixation), keeping its data, states, version and deadlines. Returns the new id and token.
    ///
    /// For `forward_for` afterwards, a request with the old id and old token gets
    /// [`Error::Rotated`] carrying the new ones, so a client whose response was lost can be
    /// sent its new cookie again; the new token travels sealed with the old one, so only the
    /// old token's holder can read it. Then, until the old session would have been removed,
    /// the old id is [`Error::Revoked`]. `Duration::ZERO` forwards nothing.
    ///
    /// # Errors
    /// As [`Store::store_state`] for the session's checks; [`Error::GenerateId`].
    pub fn regenerate(
        &self,
        id: &SessionId,
        token: &SecureToken,
        forward_for: Duration,
    ) -> Result<Created> {
        self.core.rw()?;
        let new_token = SecureToken::generate()?;
        let op = Regenerate {
            sid: id.as_bytes().to_vec(),
            old_token: token.clone(),
            sealed: token.seal(&new_token),
            new_hash: new_token.hash(),
            forward_ms: u64::try_from(forward_for.as_millis()).unwrap_or(u64::MAX),
        };
        let Rotated { id, state_id, version } = self.core.submit(op)?;
        Ok(Created { id, token: new_token, state_id, version })
    }

    /// Ends a session on purpose (log-out): deletes it and its states, and leaves a tombstone
    /// so that later uses of the id are [`Error::Revoked`] rather than [`Error::NotFound`],
    /// until the session would have been removed anyway. Needs no token, like
    /// [`Store::delete`]: for admin pages; a log-out with the client's cookie should use
    /// [`Store::revoke_with_token`].
    ///
    /// Revoking an id that was rotated ([`Store::regenerate`]) revokes the session it was
    /// rotated into, and so on along the chain, in the same write transaction: a log-out that
    /// races a log-in never leaves the logged-in session alive. A rotation's tombstone keeps
    /// its successor until the tombstone is swept, whatever the forwarding window. Returns
    /// whether a live session was revoked (the id's own or one it was rotated into).
    ///
    /// # Errors
    /// [`Error::Storage`] from redb, [`Error::InvalidInput`] on a read-only store.
    pub fn revoke(&self, id: &SessionId) -> Result<bool> {
        self.core.submit(Revoke { sid: id.as_bytes().to_vec() })
    }

    /// As [`Store::revoke`] (the id and the chain it was rotated into, in one transaction),
    /// for the holder of the id's token: the log-out of a client that sends its cookie. The
    /// token is checked against the live session or, for a retired id, against its tombstone,
    /// so a cookie that reads as [`Error::Revoked`] or [`Error::Rotated`] (another request
    /// logged in meanwhile) still ends the session it was rotated into — for a minute after
    /// the rotation (after its forwarding window, if it had one), which covers any race
    /// between a log-out and a log-in; later, a retired id's token ends nothing, so whoever
    /// kept a pre-log-in cookie (planted it) cannot log the user out for the tombstone's
    /// week. Returns whether a live session was revoked; `Ok(false)` for an id that is
    /// unknown, already swept, or retired before that minute.
    ///
    /// # Errors
    /// [`Error::Security`] for a wrong token (nothing is revoked), [`Error::Storage`] from
    /// redb, [`Error::InvalidInput`] on a read-only store.
    pub fn revoke_with_token(&self, id: &SessionId, token: &SecureToken) -> Result<bool> {
        self.revoke_as(vec![(id.clone(), token.clone(), None)]).map(|revoked| revoked > 0)
    }

    /// [`Store::revoke_with_token`] for each of `named`, in one write transaction: a pair with
    /// a wrong token is skipped, as is one with a client fingerprint (the web layer's
    /// cross-checks) whose chain ends in a live session created with another one. Returns how
    /// many live sessions were revoked; [`Error::Security`] (nothing written) if every pair was
    /// skipped so.
    pub(crate) fn revoke_as(&self, named: Vec<Named>) -> Result<u64> {
        let named = named
            .into_iter()
            .map(|(id, token, fp)| NamedKey {
                sid: id.as_bytes().to_vec(),
                token,
                fingerprint: fp.as_deref().map(fingerprint_hash),
            })
            .collect();
        self.core.submit(RevokeAs { named })
    }
}

impl Store {
    /// Whether `id` was rotated into another session ([`Store::regenerate`], a log-in) less than
    /// [`MOVE_RACE_WINDOW`](crate::engine::records::MOVE_RACE_WINDOW) ago (after its forwarding window), `token` is its token, and the
    /// session it was rotated into still lives: a request that still carries it raced that
    /// log-in (another tab, a parallel request of the page), and must not start a fresh session
    /// whose cookie would replace the logged-in one.
    pub(crate) fn moved_recently(&self, id: &SessionId, token: &SecureToken) -> Result<bool> {
        let now = self.core.now();
        self.core.reading(|| {
            let txn = self.core.read()?;
            let tombstones = schema::read_tombstones(&txn)?;
            let Some(stone) = get_tombstone(&tombstones, id.as_bytes())? else { return Ok(false) };
            let Some(next) = stone.moved_to(token, now) else { return Ok(false) };
            // The chain's end: a log-out since has left no logged-in cookie to protect.
            let sessions = schema::read_sessions(&txn)?;
            Ok(chain_end(&sessions, &tombstones, next.as_bytes())?.is_some())
        })
    }
}

/// A rotation ([`Store::regenerate`]): the session moved to a new id drawn inside the
/// transaction, with the new token's hash, and a tombstone under the old id forwarding to it
/// for `forward_ms` (the new token `sealed` with the old one).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Regenerate {
    sid: Vec<u8>,
    #[serde(with = "text")]
    old_token: SecureToken,
    sealed: Vec<u8>,
    new_hash: [u8; 32],
    forward_ms: u64,
}

/// Where a [`Regenerate`] moved the session.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Rotated {
    #[serde(with = "text")]
    id: SessionId,
    state_id: u64,
    version: u64,
}

impl WriteOp for Regenerate {
    type Output = Rotated;
    const KIND: Option<&'static str> = Some("regenerate");

    fn apply(&mut self, c: &Core, t: &mut WriteTables<'_>) -> Result<Result<Rotated>> {
        let Self { sid, old_token, sealed, new_hash, forward_ms } = self;
        let (new_hash, forward_ms) = (*new_hash, *forward_ms);
        let now = c.now();
        let Some(mut rec) = get_session(&t.sessions, sid)? else {
            return Ok(Err(missing(&t.tombstones, sid, old_token, now)?));
        };
        refuse_unless!(c.admit(&rec, old_token, now));
        let new_id = unused_id_from(t, || c.cfg.id_spec.generate())?;
        let moved_to = new_id.as_bytes();
        // Copy the states under the new id; `remove_session` then drops the old ones with the
        // old record's index entries.
        let mut states = Vec::new();
        for entry in t.sessions.range((sid.as_slice(), 0)..=(sid.as_slice(), RECORD - 1))? {
            let (k, v) = entry?;
            states.push((k.value().1, v.value().to_vec()));
        }
        remove_session(t, sid, Some(&rec))?;
        for (state_id, bytes) in states {
            t.sessions.insert((moved_to, state_id), bytes.as_slice())?;
        }
        let stone = Tombstone::rotated(&rec, &new_id, sealed, now, forward_ms);
        rec.token_hash = new_hash;
        put_session(t, moved_to, Filing::New, &mut rec)?;
        if let Some(user) = &rec.user {
            t.users.insert((user.as_slice(), moved_to), ())?;
        }
        put_tombstone(t, sid, &stone)?;
        Ok(Ok(Rotated { id: new_id, state_id: rec.latest_state, version: rec.version }))
    }
}

/// A revocation without a token ([`Store::revoke`]). Returns whether a live session was revoked.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Revoke {
    sid: Vec<u8>,
}

impl WriteOp for Revoke {
    type Output = bool;
    const KIND: Option<&'static str> = Some("revoke");

    fn apply(&mut self, c: &Core, t: &mut WriteTables<'_>) -> Result<Result<bool>> {
        Ok(Ok(revoke_in(t, &self.sid, c.now())?))
    }
}

/// One session of a [`RevokeAs`]: its id, the client's token and the hash of its fingerprint.
#[derive(Debug, Serialize, Deserialize)]
struct NamedKey {
    sid: Vec<u8>,
    #[serde(with = "text")]
    token: SecureToken,
    fingerprint: Option<[u8; 32]>,
}

/// Log-outs with the clients' cookies ([`Store::revoke_as`]). Returns how many live sessions
/// were revoked; refused with [`Error::Security`] if every one named was refused.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct RevokeAs {
    named: Vec<NamedKey>,
}

impl WriteOp for RevokeAs {
    type Output = u64;
    const KIND: Option<&'static str> = Some("revoke-as");

    fn apply(&mut self, c: &Core, t: &mut WriteTables<'_>) -> Result<Result<u64>> {
        let now = c.now();
        let (mut revoked, mut refused) = (0, 0);
        for NamedKey { sid, token, fingerprint } in &self.named {
            match holds(t, sid, token, fingerprint.as_ref(), now)? {
                Hold::Refused => refused += 1,
                Hold::Settled => {}
                Hold::Revoke => revoked += u64::from(revoke_in(t, sid, now)?),
            }
        }
        if refused > 0 && refused == self.named.len() {
            return Ok(Err(Error::Security)); // nothing was written
        }
        Ok(Ok(revoked))
    }
}

/// What a log-out with a client's cookie does to one id ([`holds`]).
enum Hold {
    /// A wrong token, a session bound to another client, or a damaged record: nothing.
    Refused,
    /// Revoke the id and the chain it was rotated into.
    Revoke,
    /// Nothing to do: an id unknown here, or one retired before [`LOGOUT_RACE_WINDOW`](crate::engine::records::LOGOUT_RACE_WINDOW).
    Settled,
}

/// Whether `token` opens `sid` (its live session or, retired, its tombstone), and whether the
/// live session its rotation chain ends in, if any, was created with `fingerprint` (or with
/// none). An id unknown here, or retired longer ago than [`LOGOUT_RACE_WINDOW`](crate::engine::records::LOGOUT_RACE_WINDOW) at `now`, is
/// [`Hold::Settled`]. A damaged record cannot be checked: [`Hold::Refused`].
fn holds(
    t: &WriteTables<'_>,
    sid: &[u8],
    token: &SecureToken,
    fingerprint: Option<&[u8; 32]>,
    now: u64,
) -> Result<Hold> {
    let (hash, retired_until) = match get_session(&t.sessions, sid) {
        Ok(Some(rec)) => (rec.token_hash, None),
        Ok(None) => match get_tombstone(&t.tombstones, sid) {
            Ok(Some(stone)) => (stone.token_hash, Some(stone.logout_reaches(now))),
            Ok(None) => return Ok(Hold::Settled),
            Err(Error::Corrupted { .. }) => return Ok(Hold::Refused),
            Err(e) => return Err(e),
        },
        Err(Error::Corrupted { .. }) => return Ok(Hold::Refused),
        Err(e) => return Err(e),
    };
    if !token.matches(&hash) {
        return Ok(Hold::Refused);
    }
    // `forward_until` is the rotation's time plus its forwarding window.
    if retired_until.is_some_and(|reaches| !reaches) {
        return Ok(Hold::Settled);
    }
    let Some(wanted) = fingerprint else { return Ok(Hold::Revoke) };
    let Some(end) = chain_end(&t.sessions, &t.tombstones, sid)? else { return Ok(Hold::Revoke) };
    match get_session(&t.sessions, &end) {
        Ok(Some(rec)) if rec.fingerprint.is_none_or(|stored| constant_time_eq(wanted, &stored)) => {
            Ok(Hold::Revoke)
        }
        Ok(Some(_)) | Err(Error::Corrupted { .. }) => Ok(Hold::Refused),
        Ok(None) => Ok(Hold::Revoke),
        Err(e) => Err(e),
    }
}

/// The most links of a rotation chain that [`revoke_in`] follows. Ids are never reused, so a
/// chain has no cycle; the bound only guards against a damaged file.
const MAX_CHAIN: usize = 10_000;

/// The id at the end of the rotation chain from `sid`: the live session it was rotated into
/// (`sid` itself if live), or `None` if the chain ends without one.
fn chain_end(
    sessions: &impl SessionsTable,
    tombstones: &impl ReadableTable<&'static [u8], &'static [u8]>,
    sid: &[u8],
) -> Result<Option<Vec<u8>>> {
    let mut cur = sid.to_vec();
    for _ in 0..MAX_CHAIN {
        if sessions.get((cur.as_slice(), RECORD))?.is_some() {
            return Ok(Some(cur));
        }
        match get_tombstone(tombstones, &cur).ok().flatten().and_then(|s| s.successor) {
            Some(next) => cur = next.into_bytes(),
            None => return Ok(None),
        }
    }
    Ok(None)
}

/// Revokes `sid` inside a write transaction, at `now`, and the chain of ids it was rotated
/// into: each rotation tombstone on the way stops forwarding (it keeps its successor, so that
/// revoking again follows the same chain), and the live session at the end is revoked.
/// Returns whether a live session was revoked.
pub(crate) fn revoke_in(t: &mut WriteTables<'_>, sid: &[u8], now: u64) -> Result<bool> {
    let mut cur = sid.to_vec();
    for _ in 0..MAX_CHAIN {
        let rec = match get_session(&t.sessions, &cur) {
            Ok(Some(rec)) => rec,
            Ok(None) => {
                // A retired id: stop its forwarding and follow it to its successor. A damaged
                // tombstone ends the walk (its successor is unknown).
                let Ok(Some(stone)) = get_tombstone(&t.tombstones, &cur) else {
                    return Ok(false);
                };
                let next = stone.successor.clone();
                if let Some(stopped) = stone.stopped() {
                    put_tombstone(t, &cur, &stopped)?;
                }
                match next {
                    Some(next) => cur = next.into_bytes(),
                    None => return Ok(false),
                }
                continue;
            }
            // A damaged record: removed, with no tombstone (its token hash is unknown).
            Err(Error::Corrupted { .. }) => {
                remove_session(t, &cur, None)?;
                return Ok(true);
            }
            Err(e) => return Err(e),
        };
        remove_session(t, &cur, Some(&rec))?;
        put_tombstone(t, &cur, &Tombstone::revoked(&rec, now))?;
        return Ok(true);
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::op::through_bytes;

    #[test]
    fn a_rotation_that_travelled_as_bytes_moves_the_session() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path().join("rotate.redb"))?;
        let old = store.create(b"data", b"state")?;
        let new_token = SecureToken::generate()?;
        let op = Regenerate {
            sid: old.id.as_bytes().to_vec(),
            old_token: old.token.clone(),
            sealed: old.token.seal(&new_token),
            new_hash: new_token.hash(),
            forward_ms: 60_000,
        };
        let rotated = through_bytes(&store.core.submit(through_bytes(&op))?);
        assert_ne!(rotated.id, old.id);
        assert_eq!((rotated.state_id, rotated.version), (0, 1));
        assert_eq!(store.load(&rotated.id, &new_token)?.session_data, b"data");
        let res = store.load(&old.id, &old.token);
        assert!(
            matches!(&res, Err(Error::Rotated { successor, token })
                if *successor == rotated.id && *token == new_token),
            "{res:?}"
        );
        let named = RevokeAs {
            named: vec![NamedKey {
                sid: old.id.as_bytes().to_vec(),
                token: old.token,
                fingerprint: None,
            }],
        };
        assert_eq!(store.core.submit(through_bytes(&named))?, 1);
        let res = store.load(&rotated.id, &new_token);
        assert!(matches!(res, Err(Error::Revoked)), "{res:?}");
        Ok(())
    }
}
