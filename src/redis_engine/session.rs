//! One session's life on Redis: create (with a drawn id or the caller's), fetch a state (a
//! touch when due), save at the version read, put, touch. Each write is read → compute in
//! Rust → one compare-and-set script on the session's generation, retried when another write
//! came between (docs/redis.md, "Writes").

use super::engine::RedisEngine;
use super::record::{Live, MAX_RETRIES, Raw, Want, contended, decode_record, decode_state};
use super::record::{decode_tombstone, encode_state};
use crate::engine::records::SessionRecord;
use crate::engine::rules::{Rules, check_size, check_user_key};
use crate::engine::{Created, Fetched, NewSession, Save, Stored, UserChange};
use crate::engine::SessionStatus;
use crate::error::{Error, Result};
use crate::id::{SecureToken, SessionId, fingerprint_hash};

/// How many random ids a create draws before it gives up (as the redb engine).
const ID_ATTEMPTS: usize = 8;

impl RedisEngine {
    /// Refuses data over the size limit.
    fn check_size(&self, what: &str, data: &[u8]) -> Result<()> {
        check_size(what, data, self.cfg.max_data_size)
    }

    /// Creates `rec` (with state 0 holding `state0`) under a new random id; files it in the
    /// user's and the cap index. The new id.
    fn create_drawn(&self, rec: &SessionRecord, state0: &[u8], now: u64) -> Result<SessionId> {
        let states = [(0, encode_state(state0)?)];
        for _ in 0..ID_ATTEMPTS {
            let id = self.cfg.id_spec.generate()?;
            if self.create_raw(id.as_str(), rec, &states, b"", now)? {
                self.filed(id.as_str(), rec, now)?;
                return Ok(id);
            }
        }
        Err(Error::GenerateId {
            reason: format!("{ID_ATTEMPTS} random ids were all in use: use longer ids"),
        })
    }

    /// Files a new session in the indexes of other slots.
    pub(super) fn filed(&self, sid: &str, rec: &SessionRecord, now: u64) -> Result<()> {
        if let Some(user) = &rec.user {
            self.file_user(user, sid, rec.remove_at, now)?;
        }
        self.file_cap(sid, rec.remove_at)
    }

    /// As [`Store::create_with`](crate::Store::create_with).
    pub(super) fn create_with(&self, new: NewSession<'_>) -> Result<Created> {
        let NewSession { session_data, state_data, fingerprint, user } = new;
        check_user_key(user)?;
        self.check_size("session data", session_data)?;
        self.check_size("state data", state_data)?;
        let token = SecureToken::generate()?;
        let now = self.now();
        self.make_room(now)?;
        let rec = self.cfg.rules.with_deadlines(SessionRecord {
            fingerprint: fingerprint.map(fingerprint_hash),
            user: user.map(<[u8]>::to_vec),
            ..SessionRecord::fresh(now, token.hash(), session_data.to_vec())
        });
        let id = self.create_drawn(&rec, state_data, now)?;
        Ok(Created { id, token, state_id: 0, version: 1 })
    }

    /// A new session record under the caller's token and deadline, at `now`.
    fn adopted(&self, token: &SecureToken, data: &[u8], deadline: Option<u64>, now: u64) -> SessionRecord {
        self.cfg.rules.with_deadlines(SessionRecord {
            deadline,
            ..SessionRecord::fresh(now, token.hash(), data.to_vec())
        })
    }

    /// As [`Store::create_under`](crate::Store::create_under).
    pub(super) fn create_under(
        &self,
        id: &SessionId,
        token: &SecureToken,
        session_data: &[u8],
        deadline: Option<u64>,
    ) -> Result<Created> {
        self.check_size("session data", session_data)?;
        let now = self.now();
        self.make_room(now)?;
        let rec = self.adopted(token, session_data, deadline, now);
        if !self.create_raw(id.as_str(), &rec, &[(0, encode_state(b"")?)], b"", now)? {
            return Err(Error::IdTaken);
        }
        self.filed(id.as_str(), &rec, now)?;
        Ok(Created { id: id.clone(), token: token.clone(), state_id: 0, version: 1 })
    }

    /// As [`Store::fetch_state`](crate::Store::fetch_state): one round trip, and a second when
    /// the access time is due to be written.
    pub(super) fn fetch_state(
        &self,
        id: &SessionId,
        token: &SecureToken,
        state_id: Option<u64>,
    ) -> Result<Fetched> {
        let now = self.now();
        let want = state_id.map_or(Want::Latest, Want::Id);
        let Live { rec, g, states } = self.read_admitted(id, token, want, now)?;
        let state_id = state_id.unwrap_or(rec.latest_state);
        if state_id > rec.latest_state {
            return Err(Error::StateNotFound { requested: state_id, latest: rec.latest_state });
        }
        if state_id < rec.oldest_state {
            return Err(Error::StateEvicted { requested: state_id, oldest: rec.oldest_state });
        }
        let bytes = states.into_iter().find(|(n, _)| *n == state_id).map(|(_, b)| b);
        let bytes = bytes.ok_or_else(|| Error::Corrupted {
            table: "states",
            key: format!("{id}/{state_id}"),
        })?;
        let state_data = decode_state(id.as_str(), state_id, &bytes)?;
        let mut expires_at = self.cfg.rules.effective_expiry(&rec);
        if Rules::touch_due(&rec, now, self.cfg.touch_resolution()) {
            expires_at = self.touch_if_due(id.as_str(), rec.clone(), g, now)?.unwrap_or(expires_at);
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

    /// Moves a live session's access time to `now` if it is due; retried if another write
    /// came first (it may have moved it already). The new expiry, or `None` if nothing was
    /// due or the session is no longer live.
    fn touch_if_due(
        &self,
        sid: &str,
        mut rec: SessionRecord,
        mut g: Vec<u8>,
        now: u64,
    ) -> Result<Option<u64>> {
        for _ in 0..MAX_RETRIES {
            let live = self.cfg.rules.status(&rec, now) == SessionStatus::Live;
            let due = Rules::touch_due(&rec, now, self.cfg.touch_resolution());
            if !live || !due || now <= rec.last_access {
                return Ok(None);
            }
            let touched = self.cfg.rules.with_deadlines(SessionRecord { last_access: now, ..rec });
            if self.commit(sid, &g, &touched, &[], std::iter::empty(), now)? {
                return Ok(Some(touched.expires_at));
            }
            match self.read_raw(sid, Want::Nothing)? {
                Raw::Live { r, g: again, .. } => (rec, g) = (decode_record(sid, &r)?, again),
                _ => return Ok(None),
            }
        }
        Err(contended())
    }

    /// As [`Store::store_state`](crate::Store::store_state).
    pub(super) fn store_state(
        &self,
        id: &SessionId,
        token: &SecureToken,
        save: Save<'_>,
    ) -> Result<Stored> {
        self.check_size("session data", save.session_data)?;
        self.check_size("state data", save.state_data.unwrap_or_default())?;
        if let UserChange::Set(user) = save.user {
            check_user_key(user)?;
        }
        let sid = id.as_str();
        for _ in 0..MAX_RETRIES {
            let now = self.now();
            let Live { mut rec, g, .. } = self.read_admitted(id, token, Want::Nothing, now)?;
            if save.version != rec.version {
                return Err(Error::Conflict { expected: save.version, found: rec.version });
            }
            let before = (rec.remove_at, rec.user.clone());
            let limits = (self.cfg.max_states, self.cfg.touch_resolution());
            let state = save.state_data.map(|_| save.use_same_state);
            let (state_id, evicted) =
                self.cfg.rules.save_into(&mut rec, save.session_data, state, limits, now);
            if let UserChange::Set(user) = save.user {
                rec.user = user.map(<[u8]>::to_vec);
            }
            let set: Vec<(u64, &[u8])> =
                save.state_data.map(|data| (state_id, data)).into_iter().collect();
            if !self.commit(sid, &g, &rec, &set, evicted.into_iter().flatten(), now)? {
                continue;
            }
            self.refiled(sid, &rec, before, now)?;
            return Ok(Stored { state_id, version: rec.version });
        }
        Err(contended())
    }

    /// Keeps the indexes of other slots in step with a write that moved the session from
    /// `before` (its removal time and user) to `rec`.
    fn refiled(
        &self,
        sid: &str,
        rec: &SessionRecord,
        (remove_at, user): (u64, Option<Vec<u8>>),
        now: u64,
    ) -> Result<()> {
        if rec.user != user {
            if let Some(old) = &user {
                self.unfile_user(old, sid)?;
            }
            if let Some(new) = &rec.user {
                self.file_user(new, sid, rec.remove_at, now)?;
            }
        }
        if rec.remove_at < remove_at {
            self.lower_cap(sid, rec.remove_at)?;
        }
        Ok(())
    }

    /// As [`Store::put`](crate::Store::put).
    pub(super) fn put(
        &self,
        id: &SessionId,
        token: &SecureToken,
        session_data: &[u8],
        deadline: Option<u64>,
    ) -> Result<Stored> {
        self.check_size("session data", session_data)?;
        let sid = id.as_str();
        for _ in 0..MAX_RETRIES {
            let now = self.now();
            let (r, g) = match self.read_raw(sid, Want::Nothing)? {
                Raw::Live { r, g, .. } => (r, g),
                Raw::Retired(bytes) => {
                    // A tombstone due for removal leaves the id free (this create removes it).
                    match decode_tombstone(sid, &bytes)?.refusal(token, now)? {
                        Error::NotFound => {}
                        refused => return Err(refused),
                    }
                    if let Some(stored) = self.put_new(sid, token, session_data, deadline, &bytes, now)? {
                        return Ok(stored);
                    }
                    continue;
                }
                Raw::Missing => {
                    if let Some(stored) = self.put_new(sid, token, session_data, deadline, b"", now)? {
                        return Ok(stored);
                    }
                    continue;
                }
            };
            let mut rec = decode_record(sid, &r)?;
            if !token.matches(&rec.token_hash) {
                return Err(Error::Security);
            }
            let before = (rec.remove_at, rec.user.clone());
            if self.cfg.rules.status(&rec, now) != SessionStatus::Live {
                // Expired: it starts again, as a new session would.
                rec.created = now;
                rec.last_access = now;
            }
            rec.version += 1;
            session_data.clone_into(&mut rec.data);
            rec.deadline = deadline;
            rec.last_access = rec.last_access.max(now);
            let rec = self.cfg.rules.with_deadlines(rec);
            if self.commit(sid, &g, &rec, &[], std::iter::empty(), now)? {
                self.refiled(sid, &rec, before, now)?;
                return Ok(Stored { state_id: rec.latest_state, version: rec.version });
            }
        }
        Err(contended())
    }

    /// A put's new session under `sid`, replacing the tombstone `replaces` (or none); `None`
    /// if another write took the id first.
    fn put_new(
        &self,
        sid: &str,
        token: &SecureToken,
        data: &[u8],
        deadline: Option<u64>,
        replaces: &[u8],
        now: u64,
    ) -> Result<Option<Stored>> {
        self.make_room(now)?;
        let rec = self.adopted(token, data, deadline, now);
        if !self.create_raw(sid, &rec, &[(0, encode_state(b"")?)], replaces, now)? {
            return Ok(None);
        }
        self.filed(sid, &rec, now)?;
        Ok(Some(Stored { state_id: 0, version: rec.version }))
    }

    /// As [`Store::touch`](crate::Store::touch).
    pub(super) fn touch(&self, id: &SessionId, token: &SecureToken) -> Result<()> {
        for _ in 0..MAX_RETRIES {
            let now = self.now();
            let Live { rec, g, .. } = self.read_admitted(id, token, Want::Nothing, now)?;
            let last_access = rec.last_access.max(now);
            let rec = self.cfg.rules.with_deadlines(SessionRecord { last_access, ..rec });
            if self.commit(id.as_str(), &g, &rec, &[], std::iter::empty(), now)? {
                return Ok(());
            }
        }
        Err(contended())
    }
}
