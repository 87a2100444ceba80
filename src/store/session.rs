//! Per-session operations: create, fetch a state, store a state, touch, delete.

use serde::{Deserialize, Serialize};

use super::admin::SessionStatus;
use super::handle::Store;
use super::op::{WriteOp, text};
use super::record::{
    Filing, SessionRecord, get_session, get_state, id_in_use, missing, put_session, put_state,
    remove_session,
};
use super::shared::Core;
use crate::engine::rules::Rules;
use crate::engine::{Created, Fetched, NewSession};
use crate::error::{Error, Result};
use crate::format::schema::{self, WriteTables};
use crate::id::{SecureToken, SessionId, fingerprint_hash};

impl Core {
    /// Refuses a session that is gone, a wrong token, and an expired session, in that order.
    pub(crate) fn admit(&self, rec: &SessionRecord, token: &SecureToken, now: u64) -> Result<()> {
        self.cfg.rules().admit(rec, token, now)
    }

    /// The admitted record of a session, read without recording access.
    pub(crate) fn admitted(&self, id: &SessionId, token: &SecureToken) -> Result<SessionRecord> {
        self.reading(|| {
            let txn = self.read()?;
            let now = self.now();
            let Some(rec) = get_session(&schema::read_sessions(&txn)?, id.as_bytes())? else {
                return Err(missing(&schema::read_tombstones(&txn)?, id.as_bytes(), token, now)?);
            };
            self.admit(&rec, token, now)?;
            Ok(rec)
        })
    }

    /// Moves the last-access time of a live session to now; returns its new expiry, or `None`
    /// if the session is no longer live (a concurrent delete or expiry: not an error here).
    fn persist_touch(&self, id: &SessionId, now: u64) -> Result<Option<u64>> {
        self.submit(TouchIfDue { sid: id.as_bytes().to_vec(), now })
    }
}

/// The write of a load whose access time moved by the touch resolution: the access time, to
/// `now`. Returns the session's new expiry, or `None` if it is no longer live or another load
/// touched it first.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct TouchIfDue {
    sid: Vec<u8>,
    now: u64,
}

impl WriteOp for TouchIfDue {
    type Output = Option<u64>;
    const KIND: Option<&'static str> = Some("touch-if-due");

    fn apply(&mut self, c: &Core, t: &mut WriteTables<'_>) -> Result<Result<Option<u64>>> {
        let Self { sid, now } = self;
        let now = *now;
        let Some(rec) = get_session(&t.sessions, sid)? else {
            return Ok(Ok(None));
        };
        // Re-checked here: concurrent loads that all read the old time need one touch.
        let due = Rules::touch_due(&rec, now, c.cfg.touch_resolution());
        // Live when it runs, too: a touch handed over to another process (or delayed) runs
        // after its load, and must not bring back a session that expired since.
        let live = c.status(&rec, now.max(c.now())) == SessionStatus::Live;
        if !live || !due || now <= rec.last_access {
            return Ok(Ok(None));
        }
        let mut rec = c.with_deadlines(SessionRecord { last_access: now, ..rec });
        put_session(t, sid, Filing::Lazy, &mut rec)?;
        Ok(Ok(Some(rec.expires_at)))
    }
}

/// A new session under an id drawn inside the transaction: state 0 and the session record, and
/// the user index entry. Returns the new id.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Create {
    token_hash: [u8; 32],
    session_data: Vec<u8>,
    state_data: Vec<u8>,
    fingerprint: Option<[u8; 32]>,
    user: Option<Vec<u8>>,
}

/// The id a [`Create`] drew.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct NewId(#[serde(with = "text")] SessionId);

impl WriteOp for Create {
    type Output = NewId;
    const KIND: Option<&'static str> = Some("create");

    fn apply(&mut self, c: &Core, t: &mut WriteTables<'_>) -> Result<Result<NewId>> {
        let now = c.now();
        // Sweeping dead sessions to make room stands on its own: it may commit even when
        // the cap then refuses this session.
        if let Some(max) = c.make_room(t, now)? {
            return Ok(Err(Error::MaxSessionsExceeded { max }));
        }
        let id = unused_id_from(t, || c.cfg.id_spec.generate())?;
        let mut rec = c.with_deadlines(SessionRecord {
            fingerprint: self.fingerprint,
            user: self.user.clone(),
            ..SessionRecord::fresh(now, self.token_hash, self.session_data.clone())
        });
        put_state(t, id.as_bytes(), 0, &self.state_data)?;
        put_session(t, id.as_bytes(), Filing::New, &mut rec)?;
        if let Some(user) = &self.user {
            t.users.insert((user.as_slice(), id.as_bytes()), ())?;
        }
        Ok(Ok(NewId(id)))
    }
}

/// An access now, whatever the touch resolution, for the holder of the session's token.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Touch {
    sid: Vec<u8>,
    #[serde(with = "text")]
    token: SecureToken,
}

impl WriteOp for Touch {
    type Output = ();
    const KIND: Option<&'static str> = Some("touch");

    fn apply(&mut self, c: &Core, t: &mut WriteTables<'_>) -> Result<Result<()>> {
        let Self { sid, token } = self;
        let now = c.now();
        let Some(rec) = get_session(&t.sessions, sid)? else {
            return Ok(Err(missing(&t.tombstones, sid, token, now)?));
        };
        refuse_unless!(c.admit(&rec, token, now));
        let last_access = rec.last_access.max(now);
        let mut rec = c.with_deadlines(SessionRecord { last_access, ..rec });
        put_session(t, sid, Filing::Lazy, &mut rec)?;
        Ok(Ok(()))
    }
}

/// A session and its states removed, damaged or not. Returns whether it existed.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Delete {
    sid: Vec<u8>,
}

impl WriteOp for Delete {
    type Output = bool;
    const KIND: Option<&'static str> = Some("delete");

    fn apply(&mut self, _: &Core, t: &mut WriteTables<'_>) -> Result<Result<bool>> {
        let sid = &self.sid;
        let rec = match get_session(&t.sessions, sid) {
            Ok(Some(rec)) => Some(rec),
            Ok(None) => return Ok(Ok(false)),
            // A damaged record can still be deleted: its states are found by range.
            Err(Error::Corrupted { .. }) => None,
            Err(e) => return Err(e),
        };
        remove_session(t, sid, rec.as_ref())?;
        Ok(Ok(true))
    }
}

impl Store {
    /// Creates a session holding `session_data`, with state 0 holding `state_data`.
    ///
    /// The id is drawn from the OS random source and checked unused (also against retired ids)
    /// inside the creating transaction.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for oversize data or a read-only store,
    /// [`Error::MaxSessionsExceeded`] at the cap with [`CapPolicy::Reject`](crate::CapPolicy),
    /// [`Error::GenerateId`] if no unused id was found, [`Error::Storage`] from redb.
    pub fn create(&self, session_data: &[u8], state_data: &[u8]) -> Result<Created> {
        self.create_with(NewSession::new(session_data, state_data))
    }

    /// Creates a session as [`Store::create`] does, with the options of [`NewSession`].
    ///
    /// # Errors
    /// As [`Store::create`]; [`Error::InvalidInput`] for a user key over 1 KiB.
    pub fn create_with(&self, new: NewSession<'_>) -> Result<Created> {
        let NewSession { session_data, state_data, fingerprint, user } = new;
        let c = &self.core;
        Core::check_user_key(user)?;
        let fingerprint = fingerprint.map(fingerprint_hash);
        let user = user.map(<[u8]>::to_vec);
        c.rw()?; // refuse a forked child before drawing randomness
        c.check_size("session data", session_data)?;
        c.check_size("state data", state_data)?;
        let token = SecureToken::generate()?;
        let op = Create {
            token_hash: token.hash(),
            session_data: session_data.to_vec(),
            state_data: state_data.to_vec(),
            fingerprint,
            user,
        };
        let NewId(id) = c.submit(op)?;
        Ok(Created { id, token, state_id: 0, version: 1 })
    }

    /// Reads state `state_id` (`None`: the latest) of a session, with the session data.
    ///
    /// A live session's last-access time is persisted when it moved by at least the touch
    /// resolution; otherwise this is a pure read.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown or removed session, [`Error::Security`] for a wrong
    /// token, [`Error::Expired`] (with the data) inside the grace window,
    /// [`Error::StateNotFound`] / [`Error::StateEvicted`] for a state never stored / no longer
    /// kept, [`Error::Corrupted`] for a damaged record.
    pub fn fetch_state(
        &self,
        id: &SessionId,
        token: &SecureToken,
        state_id: Option<u64>,
    ) -> Result<Fetched> {
        let c = &self.core;
        let sid = id.as_bytes();
        let now = c.now();
        let (rec, state_id, state_data) = c.reading(|| {
            let txn = c.read()?;
            let Some(rec) = get_session(&schema::read_sessions(&txn)?, sid)? else {
                return Err(missing(&schema::read_tombstones(&txn)?, sid, token, now)?);
            };
            c.admit(&rec, token, now)?;
            let state_id = state_id.unwrap_or(rec.latest_state);
            if state_id > rec.latest_state {
                return Err(Error::StateNotFound { requested: state_id, latest: rec.latest_state });
            }
            if state_id < rec.oldest_state {
                return Err(Error::StateEvicted { requested: state_id, oldest: rec.oldest_state });
            }
            let state_data = get_state(&schema::read_sessions(&txn)?, sid, state_id)?;
            Ok((rec, state_id, state_data))
        })?;
        let mut expires_at = c.effective_expiry(&rec);
        if !c.cfg.read_only && Rules::touch_due(&rec, now, c.cfg.touch_resolution()) {
            expires_at = c.persist_touch(id, now)?.unwrap_or(expires_at);
        }
        Ok(Fetched {
            state_id,
            latest_state_id: rec.latest_state,
            oldest_state_id: rec.oldest_state,
            version: rec.version,
            session_data: rec.data,
            state_data,
            created: rec.created,
            expires_at,
            user: rec.user,
            fingerprint: rec.fingerprint,
        })
    }

    /// Reads the latest state: `fetch_state(id, token, None)`.
    ///
    /// # Errors
    /// As [`Store::fetch_state`].
    pub fn load(&self, id: &SessionId, token: &SecureToken) -> Result<Fetched> {
        self.fetch_state(id, token, None)
    }

    /// Records an access now, whatever the touch resolution.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Security`], [`Error::Expired`] as for loads.
    pub fn touch(&self, id: &SessionId, token: &SecureToken) -> Result<()> {
        self.core.submit(Touch { sid: id.as_bytes().to_vec(), token: token.clone() })
    }

    /// Deletes a session and its states. Returns whether it existed.
    ///
    /// # Errors
    /// [`Error::Storage`] from redb, [`Error::InvalidInput`] on a read-only store.
    pub fn delete(&self, id: &SessionId) -> Result<bool> {
        self.core.submit(Delete { sid: id.as_bytes().to_vec() })
    }

    /// Whether a session with this id is live (neither expired nor removed). Needs no token.
    ///
    /// # Errors
    /// [`Error::Corrupted`] for a damaged record, [`Error::Storage`] from redb.
    pub fn exists(&self, id: &SessionId) -> Result<bool> {
        let c = &self.core;
        c.reading(|| {
            let txn = c.read()?;
            Ok(get_session(&schema::read_sessions(&txn)?, id.as_bytes())?
                .is_some_and(|rec| c.status(&rec, c.now()) == SessionStatus::Live))
        })
    }
}

/// Draws ids from `generate` until one is in neither `sessions` (as a record or a state) nor
/// `tombstones`, a bounded number of times.
pub(crate) fn unused_id_from(
    t: &WriteTables<'_>,
    mut generate: impl FnMut() -> Result<SessionId>,
) -> Result<SessionId> {
    const ATTEMPTS: usize = 8;
    for _ in 0..ATTEMPTS {
        let id = generate()?;
        if !id_in_use(t, id.as_bytes())? {
            return Ok(id);
        }
    }
    Err(Error::GenerateId {
        reason: format!("{ATTEMPTS} random ids were all in use: use longer ids"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At 128 bits or more a collision never happens in practice, so the bounded retry is
    /// exercised with a generator that keeps returning ids already taken.
    #[test]
    fn taken_ids_are_retried_a_bounded_number_of_times() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path().join("ids.redb"))?;
        let taken = store.create(b"", b"")?.id;
        let mut calls = 0;
        let res = store.core.write(|t| {
            unused_id_from(t, || {
                calls += 1;
                Ok(taken.clone())
            })
        });
        assert!(matches!(res, Err(Error::GenerateId { .. })), "{res:?}");
        assert_eq!(calls, 8);

        let fresh = SessionId::parse("fresh-id")?;
        let mut ids = [taken.clone(), taken, fresh.clone()].into_iter();
        let got = store.core.write(|t| unused_id_from(t, || Ok(ids.next().unwrap())))?;
        assert_eq!(got, fresh);
        Ok(())
    }
}
