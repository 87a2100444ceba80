//! Sessions under ids the caller chose, expiring at deadlines the caller chose: what a session
//! layer with its own id scheme and expiry model needs (the tower-sessions store, `src/web/tower.rs`).
//!
//! [`Store::create`] draws the id itself and returns a fresh token; [`Store::create_under`]
//! takes both from the caller and refuses an id that is in use or retired with
//! [`Error::IdTaken`], so the caller can draw another. [`Store::put`] is a blind write of the
//! session data (create or overwrite), for callers whose model has no versions. Both may pin
//! the session's expiry to a deadline, which idle timeout and absolute lifetime then leave
//! alone; the grace window still follows it.

use serde::{Deserialize, Serialize};

use super::handle::Store;
use super::op::{WriteOp, text};
use super::record::{
    Filing, SessionRecord, get_session, id_in_use, missing, put_session, put_state,
};
use super::shared::Core;
use crate::engine::Created;
use crate::engine::Stored;
use crate::error::{Error, Result};
use crate::format::schema::WriteTables;
use crate::id::{SecureToken, SessionId};

impl Core {
    /// Writes a new session under `sid` (state 0 empty) after making room under the cap.
    /// `Ok(Err(..))` is a refusal that leaves the transaction to the others of its batch.
    fn insert_new(
        &self,
        t: &mut WriteTables<'_>,
        sid: &[u8],
        token_hash: [u8; 32],
        data: &[u8],
        deadline: Option<u64>,
    ) -> Result<Result<SessionRecord>> {
        let now = self.now();
        if let Some(max) = self.make_room(t, now)? {
            return Ok(Err(Error::MaxSessionsExceeded { max }));
        }
        let mut rec = self.with_deadlines(SessionRecord {
            deadline,
            ..SessionRecord::fresh(now, token_hash, data.to_vec())
        });
        put_state(t, sid, 0, &[])?;
        put_session(t, sid, Filing::New, &mut rec)?;
        Ok(Ok(rec))
    }
}

impl Store {
    /// Creates a session holding `session_data` (and an empty state 0) under the id and token
    /// the caller chose. With `deadline` (ms since the epoch) the session expires then, whatever
    /// the idle timeout and absolute lifetime, and keeps that deadline when it is used or saved;
    /// `None` leaves its expiry to the settings, as for [`Store::create`].
    ///
    /// The caller answers for the id's entropy (at least 128 bits, as
    /// [`MIN_ENTROPY_BITS`](crate::MIN_ENTROPY_BITS) demands of generated ids) and for keeping
    /// the token secret; only its hash is stored. The id is checked unused — neither a session,
    /// even an expired one not yet swept, nor a retired id — inside the creating transaction.
    ///
    /// # Errors
    /// [`Error::IdTaken`] if the id is in use or retired: draw another id and call again.
    /// Otherwise as [`Store::create`].
    pub fn create_under(
        &self,
        id: &SessionId,
        token: &SecureToken,
        session_data: &[u8],
        deadline: Option<u64>,
    ) -> Result<Created> {
        let c = &self.core;
        c.rw()?;
        c.check_size("session data", session_data)?;
        let stored = c.submit(CreateUnder {
            sid: id.as_bytes().to_vec(),
            token_hash: token.hash(),
            data: session_data.to_vec(),
            deadline,
        })?;
        Ok(Created {
            id: id.clone(),
            token: token.clone(),
            state_id: stored.state_id,
            version: stored.version,
        })
    }

    /// Writes `session_data` as the session's data, with `deadline` as its expiry as for
    /// [`Store::create_under`], whatever version is stored: a blind write, for callers whose
    /// session model has no versions (it gives up the [`Error::Conflict`] check of
    /// [`Store::store_state`]). The states are left as they are.
    ///
    /// A live session is overwritten; an expired one (its data would be lost anyway) starts
    /// again, with its creation and last-access times now; either way its version goes up by
    /// one. An unknown id gets a new session under `id` and `token`, as from
    /// [`Store::create_under`]. A retired id is not brought back: that would undo a log-out
    /// or a rotation.
    ///
    /// # Errors
    /// [`Error::Revoked`] or [`Error::Rotated`] for a retired id, [`Error::Security`] if the
    /// token does not match the session (or the retired id), and as [`Store::create`].
    pub fn put(
        &self,
        id: &SessionId,
        token: &SecureToken,
        session_data: &[u8],
        deadline: Option<u64>,
    ) -> Result<Stored> {
        let c = &self.core;
        c.rw()?;
        c.check_size("session data", session_data)?;
        c.submit(Put {
            sid: id.as_bytes().to_vec(),
            token: token.clone(),
            data: session_data.to_vec(),
            deadline,
        })
    }
}

/// A new session under an id and token the caller chose ([`Store::create_under`]), refused
/// with [`Error::IdTaken`] if the id is in use or retired.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct CreateUnder {
    sid: Vec<u8>,
    token_hash: [u8; 32],
    data: Vec<u8>,
    deadline: Option<u64>,
}

impl WriteOp for CreateUnder {
    type Output = Stored;
    const KIND: Option<&'static str> = Some("create-under");

    fn apply(&mut self, c: &Core, t: &mut WriteTables<'_>) -> Result<Result<Stored>> {
        let Self { sid, token_hash, data, deadline } = self;
        if id_in_use(t, sid)? {
            return Ok(Err(Error::IdTaken));
        }
        let rec = refuse_unless!(c.insert_new(t, sid, *token_hash, data, *deadline)?);
        Ok(Ok(Stored { state_id: 0, version: rec.version }))
    }
}

/// A blind write of the session data ([`Store::put`]): create or overwrite.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Put {
    sid: Vec<u8>,
    #[serde(with = "text")]
    token: SecureToken,
    data: Vec<u8>,
    deadline: Option<u64>,
}

impl WriteOp for Put {
    type Output = Stored;
    const KIND: Option<&'static str> = Some("put");

    fn apply(&mut self, c: &Core, t: &mut WriteTables<'_>) -> Result<Result<Stored>> {
        let Self { sid, token, data, deadline } = self;
        let deadline = *deadline;
        let now = c.now();
        let Some(mut rec) = get_session(&t.sessions, sid)? else {
            // Unknown, or a tombstone due for the sweep (removed here): the id is free.
            refuse_unless!(match missing(&t.tombstones, sid, token, now)? {
                Error::NotFound => Ok(()),
                refused => Err(refused),
            });
            let rec = refuse_unless!(c.insert_new(t, sid, token.hash(), data, deadline)?);
            t.tombstones.remove(sid.as_slice())?;
            return Ok(Ok(Stored { state_id: 0, version: rec.version }));
        };
        if !token.matches(&rec.token_hash) {
            return Ok(Err(Error::Security));
        }
        c.cfg.rules().put_into(&mut rec, data, deadline, now);
        // An earlier deadline moves the `expiry` entry; a later one leaves it (lazy filing).
        put_session(t, sid, Filing::Lazy, &mut rec)?;
        Ok(Ok(Stored { state_id: rec.latest_state, version: rec.version }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_and_retired_ids_are_refused_and_put_never_revives_one() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path().join("adopt.redb"))?;
        let (id, token) = (SessionId::parse("chosen-id")?, SecureToken::parse("chosen-token")?);
        assert_eq!(store.create_under(&id, &token, b"one", None)?.version, 1);
        let res = store.create_under(&id, &token, b"two", None);
        assert!(matches!(res, Err(Error::IdTaken)), "{res:?}");
        assert_eq!(store.load(&id, &token)?.session_data, b"one");

        assert_eq!(store.put(&id, &token, b"three", None)?.version, 2);
        assert_eq!(store.load(&id, &token)?.session_data, b"three");
        let res = store.put(&id, &SecureToken::parse("another-token")?, b"x", None);
        assert!(matches!(res, Err(Error::Security)), "{res:?}");

        store.revoke(&id)?;
        let res = store.put(&id, &token, b"four", None);
        assert!(matches!(res, Err(Error::Revoked)), "{res:?}");
        let res = store.create_under(&id, &token, b"five", None);
        assert!(matches!(res, Err(Error::IdTaken)), "{res:?}");
        Ok(())
    }
}
