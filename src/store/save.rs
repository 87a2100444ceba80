//! Saving: a new state (or the latest overwritten) and the session data, at a stated version.

use serde::{Deserialize, Serialize};

use super::handle::Store;
use super::op::{WriteOp, text};
use super::record::{Filing, get_session, missing, put_session, put_state, remove_states};
use super::shared::Core;
use crate::engine::{Save, Stored, UserChange};
use crate::error::{Error, Result};
use crate::format::schema::WriteTables;
use crate::id::{SecureToken, SessionId};

impl Store {
    /// Stores the session data and a state (Nagare's `store_state`), if the session is still at
    /// the version the save was computed from.
    ///
    /// A new state gets id latest + 1 and evicts the oldest beyond `max_states`; with
    /// [`Save::same_state`], or when `states_history` is off, the latest state is overwritten.
    /// The version check and the write happen in one write transaction. Like a load, a save
    /// records the access time only when it moved by at least the touch resolution.
    ///
    /// # Errors
    /// [`Error::Conflict`] if another save came first (reload and redo the change, or use
    /// [`Store::store_state_merging`]), [`Error::InvalidInput`] for oversize data, and the
    /// errors of [`Store::fetch_state`]. Nothing is written on error.
    pub fn store_state(
        &self,
        id: &SessionId,
        token: &SecureToken,
        save: Save<'_>,
    ) -> Result<Stored> {
        let c = &self.core;
        c.check_size("session data", save.session_data)?;
        c.check_size("state data", save.state_data.unwrap_or_default())?;
        let user = match save.user {
            UserChange::Keep => NewUser::Keep,
            UserChange::Set(user) => {
                Core::check_user_key(user)?;
                NewUser::Set(user.map(<[u8]>::to_vec))
            }
        };
        c.submit(StoreState {
            sid: id.as_bytes().to_vec(),
            token: token.clone(),
            version: save.version,
            session_data: save.session_data.to_vec(),
            state_data: save.state_data.map(<[u8]>::to_vec),
            use_same_state: save.use_same_state,
            user,
        })
    }

    /// Like [`Store::store_state`], but a conflict goes through `merge` instead of failing:
    /// `merge(ours, theirs)` gets the session data this save wanted to write and the session
    /// data now stored, and returns the session data to write instead, at the version now
    /// stored. Tried at most `max_merge_attempts` times (see the builder) before the conflict
    /// is returned. The state data is saved as given.
    ///
    /// `merge` runs outside any transaction, so a slow merge holds up no other writer.
    ///
    /// # Errors
    /// As [`Store::store_state`]; [`Error::Conflict`] only when every attempt met a newer save.
    pub fn store_state_merging(
        &self,
        id: &SessionId,
        token: &SecureToken,
        save: Save<'_>,
        mut merge: impl FnMut(&[u8], &[u8]) -> Vec<u8>,
    ) -> Result<Stored> {
        let attempts = self.core.cfg.commit.max_merge_attempts;
        let mut res = self.store_state(id, token, save);
        for _ in 0..attempts {
            if !matches!(res, Err(Error::Conflict { .. })) {
                break;
            }
            let theirs = self.core.admitted(id, token)?;
            let merged = merge(save.session_data, &theirs.data);
            let retry = Save { version: theirs.version, session_data: &merged, ..save };
            res = self.store_state(id, token, retry);
        }
        res
    }
}

/// A save ([`Store::store_state`]): the session data and a state, if the session is still at
/// `version`.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StoreState {
    sid: Vec<u8>,
    #[serde(with = "text")]
    token: SecureToken,
    version: u64,
    session_data: Vec<u8>,
    /// `None`: the states are left as they are.
    state_data: Option<Vec<u8>>,
    use_same_state: bool,
    user: NewUser,
}

/// What a [`StoreState`] does to the session's user key ([`UserChange`], owned).
#[derive(Debug, Serialize, Deserialize)]
enum NewUser {
    /// Leaves it as it is.
    Keep,
    /// Sets it (`None`: no user).
    Set(Option<Vec<u8>>),
}

impl WriteOp for StoreState {
    type Output = Stored;
    const KIND: Option<&'static str> = Some("save");

    fn apply(&mut self, c: &Core, t: &mut WriteTables<'_>) -> Result<Result<Stored>> {
        let Self { sid, token, version, session_data, state_data, use_same_state, user } = self;
        let (version, use_same_state) = (*version, *use_same_state);
        let now = c.now();
        let Some(mut rec) = get_session(&t.sessions, sid)? else {
            return Ok(Err(missing(&t.tombstones, sid, token, now)?));
        };
        refuse_unless!(c.admit(&rec, token, now));
        if version != rec.version {
            return Ok(Err(Error::Conflict { expected: version, found: rec.version }));
        }
        let overwrite = use_same_state || !c.cfg.states_history;
        let limits = (c.cfg.max_states(), c.cfg.touch_resolution());
        let (state_id, evicted) =
            c.cfg.rules().save_into(&mut rec, session_data, state_data.as_ref().map(|_| overwrite), limits, now);
        if let Some(state_data) = state_data {
            put_state(t, sid, state_id, state_data)?;
        }
        if let Some(evicted) = evicted {
            remove_states(t, sid, evicted)?;
        }
        if let NewUser::Set(new_user) = user
            && rec.user != *new_user
        {
            if let Some(old) = &rec.user {
                t.users.remove((old.as_slice(), sid.as_slice()))?;
            }
            if let Some(new) = new_user {
                t.users.insert((new.as_slice(), sid.as_slice()), ())?;
            }
            rec.user.clone_from(new_user);
        }
        // A later deadline leaves the `expiry` entry where it is (lazy filing).
        put_session(t, sid, Filing::Lazy, &mut rec)?;
        Ok(Ok(Stored { state_id, version: rec.version }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::op::through_bytes;

    #[test]
    fn a_save_that_travelled_as_bytes_commits_as_the_original_would() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path().join("save.redb"))?;
        let created = store.create(b"s0", b"t0")?;
        let op = StoreState {
            sid: created.id.as_bytes().to_vec(),
            token: created.token.clone(),
            version: created.version,
            session_data: b"s1".to_vec(),
            state_data: Some(b"t1".to_vec()),
            use_same_state: false,
            user: NewUser::Set(Some(b"alice".to_vec())),
        };
        let stored = store.core.submit(through_bytes(&op))?;
        assert_eq!(stored, Stored { state_id: 1, version: 2 });
        assert_eq!(through_bytes(&stored), stored);
        let fetched = store.load(&created.id, &created.token)?;
        assert_eq!((&fetched.session_data[..], &fetched.state_data[..]), (&b"s1"[..], &b"t1"[..]));
        assert_eq!(store.user_sessions(b"alice")?, vec![created.id.clone()]);
        // The same operation again: the version it states is no longer the session's.
        let again = store.core.submit(through_bytes(&op));
        assert!(matches!(again, Err(Error::Conflict { expected: 1, found: 2 })), "{again:?}");
        Ok(())
    }
}
