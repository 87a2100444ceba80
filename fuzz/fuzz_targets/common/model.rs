//! The in-memory model of a store, for the `model` target: sessions with their states, users
//! and deadlines, and the tombstones of retired ids with their rotation chains.

#![allow(dead_code)]

use std::collections::BTreeMap;

use sessiondb::{Error, SessionInfo, SessionStatus};

pub const T0: u64 = 1_750_000_000_000;
pub const IDLE: u64 = 10_000;
pub const GRACE: u64 = 5_000;
/// The default: 1% of the idle timeout.
pub const TOUCH: u64 = IDLE / 100;
pub const MAX_STATES: u64 = 4;
pub const WEEK: u64 = 7 * 24 * 3600 * 1000;
/// Header (5) and length prefix (8) of a stored state record.
pub const STATE_OVERHEAD: u64 = 13;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sess {
    pub token: String,
    pub data: Vec<u8>,
    pub states: BTreeMap<u64, Vec<u8>>,
    pub latest: u64,
    pub oldest: u64,
    pub version: u64,
    pub created: u64,
    pub last_access: u64,
    pub user: Option<Vec<u8>>,
}

impl Sess {
    pub fn expires_at(&self) -> u64 {
        self.last_access + IDLE
    }
    pub fn remove_at(&self) -> u64 {
        self.expires_at() + GRACE
    }
    pub fn status(&self, now: u64) -> SessionStatus {
        if now < self.expires_at() {
            SessionStatus::Live
        } else if now < self.remove_at() {
            SessionStatus::Expired
        } else {
            SessionStatus::Gone
        }
    }
}

/// Where a rotation tombstone leads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Succ {
    Known {
        id: String,
        token: String,
    },
    /// A rotation that failed as far as the caller knows, but took effect: the session (or
    /// its tombstone) under an id the caller never learned, by tag ([`Model::anon`]).
    Unknown(u32),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stone {
    /// Still forwarding (a rotation not revoked since).
    pub rotated: bool,
    pub token: String,
    /// Kept after a revocation: revoking again follows the same chain.
    pub successor: Option<Succ>,
    pub forward_until: u64,
    pub remove_at: u64,
}

/// The errors the model predicts: the typed answers of the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpErr {
    NotFound,
    Expired(Vec<u8>),
    StateNotFound {
        requested: u64,
        latest: u64,
    },
    StateEvicted {
        requested: u64,
        oldest: u64,
    },
    Conflict {
        expected: u64,
        found: u64,
    },
    Security,
    /// `None`: the successor is a session whose id the caller never learned.
    Rotated(Option<(String, String)>),
    Revoked,
}

/// The typed answer an error is, or `None` for an I/O-class failure.
pub fn classify(e: &Error) -> Option<ExpErr> {
    Some(match e {
        Error::NotFound => ExpErr::NotFound,
        Error::Expired { data } => ExpErr::Expired(data.clone()),
        Error::StateNotFound { requested, latest } => {
            ExpErr::StateNotFound { requested: *requested, latest: *latest }
        }
        Error::StateEvicted { requested, oldest } => {
            ExpErr::StateEvicted { requested: *requested, oldest: *oldest }
        }
        Error::Conflict { expected, found } => {
            ExpErr::Conflict { expected: *expected, found: *found }
        }
        Error::Security => ExpErr::Security,
        Error::Rotated { successor, token } => {
            ExpErr::Rotated(Some((successor.as_str().to_owned(), token.as_str().to_owned())))
        }
        Error::Revoked => ExpErr::Revoked,
        _ => return None,
    })
}

/// What a fetch returns, as compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedExp {
    pub state_id: u64,
    pub latest: u64,
    pub oldest: u64,
    pub version: u64,
    pub data: Vec<u8>,
    pub state: Vec<u8>,
    pub created: u64,
    pub expires_at: u64,
    pub user: Option<Vec<u8>>,
}

pub fn fetched(f: &sessiondb::Fetched) -> FetchedExp {
    FetchedExp {
        state_id: f.state_id,
        latest: f.latest_state_id,
        oldest: f.oldest_state_id,
        version: f.version,
        data: f.session_data.clone(),
        state: f.state_data.clone(),
        created: f.created,
        expires_at: f.expires_at,
        user: f.user.clone(),
    }
}

/// The fields of a `SessionInfo` that are compared (all but the id).
pub type InfoExp = (u64, u64, u64, u64, u64, u64, u64, u64, SessionStatus);

pub fn info_of(i: &SessionInfo) -> InfoExp {
    (
        i.created,
        i.last_access,
        i.expires_at,
        i.remove_at,
        i.version,
        i.latest_state,
        i.oldest_state,
        i.data_len,
        i.status,
    )
}

pub fn info_exp(s: &Sess, now: u64) -> InfoExp {
    (
        s.created,
        s.last_access,
        s.expires_at(),
        s.remove_at(),
        s.version,
        s.latest,
        s.oldest,
        s.data.len() as u64,
        s.status(now),
    )
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    pub sessions: BTreeMap<String, Sess>,
    /// Sessions under ids the caller never learned (a create or rotation that reported a
    /// failure but took effect), by tag.
    pub anon: BTreeMap<u32, Sess>,
    /// Their tombstones once revoked (by `revoke_user` or along a rotation chain).
    pub anon_stones: BTreeMap<u32, Stone>,
    pub next_tag: u32,
    pub stones: BTreeMap<String, Stone>,
}

impl Model {
    pub fn missing(&self, id: &str, token: &str, now: u64) -> ExpErr {
        let Some(stone) = self.stones.get(id) else {
            return ExpErr::NotFound;
        };
        if now >= stone.remove_at {
            return ExpErr::NotFound;
        }
        if token != stone.token {
            return ExpErr::Security;
        }
        if let (true, Some(succ)) = (stone.rotated, &stone.successor)
            && now < stone.forward_until
        {
            return ExpErr::Rotated(match succ {
                Succ::Known { id, token } => Some((id.clone(), token.clone())),
                Succ::Unknown(_) => None,
            });
        }
        ExpErr::Revoked
    }

    /// The admitted session `id`, or the error a request for it gets.
    pub fn admitted(&self, id: &str, token: &str, now: u64) -> Result<&Sess, ExpErr> {
        let Some(s) = self.sessions.get(id) else {
            return Err(self.missing(id, token, now));
        };
        match s.status(now) {
            SessionStatus::Gone => Err(ExpErr::NotFound),
            _ if token != s.token => Err(ExpErr::Security),
            SessionStatus::Expired => Err(ExpErr::Expired(s.data.clone())),
            _ => Ok(s),
        }
    }

    pub fn fetch(
        &mut self,
        id: &str,
        token: &str,
        state: Option<u64>,
        now: u64,
    ) -> Result<FetchedExp, ExpErr> {
        let s = self.admitted(id, token, now)?;
        let state_id = state.unwrap_or(s.latest);
        if state_id > s.latest {
            return Err(ExpErr::StateNotFound { requested: state_id, latest: s.latest });
        }
        if state_id < s.oldest {
            return Err(ExpErr::StateEvicted { requested: state_id, oldest: s.oldest });
        }
        let s = self.sessions.get_mut(id).unwrap();
        let mut out = FetchedExp {
            state_id,
            latest: s.latest,
            oldest: s.oldest,
            version: s.version,
            data: s.data.clone(),
            state: s.states[&state_id].clone(),
            created: s.created,
            expires_at: s.expires_at(),
            user: s.user.clone(),
        };
        if now.saturating_sub(s.last_access) >= TOUCH {
            s.last_access = now;
            out.expires_at = s.expires_at();
        }
        Ok(out)
    }

    /// A save; `user`: `None` keeps the session's user, `Some(u)` sets it.
    #[allow(clippy::too_many_arguments)]
    #[allow(clippy::option_option, reason = "`user` has the shape of `Save::user`")]
    pub fn save(
        &mut self,
        id: &str,
        token: &str,
        version: u64,
        data: &[u8],
        state: Option<&[u8]>,
        same: bool,
        user: Option<Option<Vec<u8>>>,
        now: u64,
    ) -> Result<(u64, u64), ExpErr> {
        let s = self.admitted(id, token, now)?;
        if version != s.version {
            return Err(ExpErr::Conflict { expected: version, found: s.version });
        }
        let s = self.sessions.get_mut(id).unwrap();
        let state_id = match state {
            None => s.latest,
            Some(state) => {
                let state_id = if same { s.latest } else { s.latest + 1 };
                s.states.insert(state_id, state.to_vec());
                s.latest = state_id;
                if s.latest - s.oldest + 1 > MAX_STATES {
                    let keep_from = s.latest + 1 - MAX_STATES;
                    s.states.retain(|&k, _| k >= keep_from);
                    s.oldest = keep_from;
                }
                state_id
            }
        };
        s.version += 1;
        s.data = data.to_vec();
        // A save moves the access time as a load does: only by at least the touch resolution
        // (`src/store/save.rs`; docs/concurrency.md, "Saves follow the same rule"), so a save
        // soon after the last access keeps it, in memory and on disk. Never backwards.
        if now.saturating_sub(s.last_access) >= TOUCH {
            s.last_access = now;
        }
        if let Some(user) = user {
            s.user = user;
        }
        Ok((state_id, s.version))
    }

    /// Files a session under `new`, or under a new tag when the caller does not know its id.
    fn file(&mut self, new: Option<(String, String)>, mut s: Sess) -> Option<u32> {
        if let Some((id, token)) = new {
            s.token = token;
            self.sessions.insert(id, s);
            None
        } else {
            let tag = self.next_tag;
            self.next_tag += 1;
            self.anon.insert(tag, s);
            Some(tag)
        }
    }

    pub fn create(
        &mut self,
        new: Option<(String, String)>,
        data: &[u8],
        state: &[u8],
        user: Option<Vec<u8>>,
        now: u64,
    ) {
        let s = Sess {
            token: String::new(),
            data: data.to_vec(),
            states: BTreeMap::from([(0, state.to_vec())]),
            latest: 0,
            oldest: 0,
            version: 1,
            created: now,
            last_access: now,
            user,
        };
        self.file(new, s);
    }

    pub fn touch(&mut self, id: &str, token: &str, now: u64) -> Result<(), ExpErr> {
        self.admitted(id, token, now)?;
        let s = self.sessions.get_mut(id).unwrap();
        s.last_access = s.last_access.max(now);
        Ok(())
    }

    fn revoked_stone(s: &Sess, now: u64) -> Stone {
        Stone {
            rotated: false,
            token: s.token.clone(),
            successor: None,
            forward_until: 0,
            remove_at: s.remove_at().min(now + WEEK),
        }
    }

    /// `Store::revoke`: the id, or the chain of ids it was rotated into, whose live end is
    /// revoked; every rotation tombstone on the way stops forwarding and keeps its successor.
    /// Whether a session was revoked.
    pub fn revoke(&mut self, id: &str, now: u64) -> bool {
        let mut cur = Succ::Known { id: id.to_owned(), token: String::new() };
        // Ids are never reused: a chain has no cycle, and is at most as long as the stones.
        for _ in 0..=self.stones.len() + self.anon_stones.len() {
            let next = match &cur {
                Succ::Known { id, .. } => {
                    if let Some(s) = self.sessions.remove(id) {
                        self.stones.insert(id.clone(), Self::revoked_stone(&s, now));
                        return true;
                    }
                    let Some(stone) = self.stones.get_mut(id) else { return false };
                    stone.rotated = false;
                    stone.successor.clone()
                }
                Succ::Unknown(tag) => {
                    if let Some(s) = self.anon.remove(tag) {
                        self.anon_stones.insert(*tag, Self::revoked_stone(&s, now));
                        return true;
                    }
                    let Some(stone) = self.anon_stones.get_mut(tag) else { return false };
                    stone.rotated = false;
                    stone.successor.clone()
                }
            };
            match next {
                Some(next) => cur = next,
                None => return false,
            }
        }
        false
    }

    /// `Store::revoke_user`: every session filed under `user`, known or not. How many.
    pub fn revoke_user(&mut self, user: &[u8], now: u64) -> u64 {
        let mine = |s: &Sess| s.user.as_deref() == Some(user);
        let ids: Vec<String> =
            self.sessions.iter().filter(|(_, s)| mine(s)).map(|(id, _)| id.clone()).collect();
        let tags: Vec<u32> =
            self.anon.iter().filter(|(_, s)| mine(s)).map(|(tag, _)| *tag).collect();
        for id in &ids {
            let s = self.sessions.remove(id).unwrap();
            self.stones.insert(id.clone(), Self::revoked_stone(&s, now));
        }
        for tag in &tags {
            let s = self.anon.remove(tag).unwrap();
            self.anon_stones.insert(*tag, Self::revoked_stone(&s, now));
        }
        (ids.len() + tags.len()) as u64
    }

    /// `Store::user_sessions`: the known ids filed under `user`, and how many unknown ones.
    pub fn user_sessions(&self, user: &[u8]) -> (Vec<String>, usize) {
        let mine = |s: &Sess| s.user.as_deref() == Some(user);
        let known = self.sessions.iter().filter(|(_, s)| mine(s)).map(|(id, _)| id.clone());
        (known.collect(), self.anon.values().filter(|s| mine(s)).count())
    }

    /// Moves the admitted session `id` to `new` (`None`: an id the caller does not know).
    pub fn regenerate(&mut self, id: &str, new: Option<(String, String)>, forward: u64, now: u64) {
        let mut s = self.sessions.remove(id).unwrap();
        let old_token = std::mem::take(&mut s.token);
        let forward_until = now + forward;
        let remove_at = s.remove_at().min(now + WEEK).max(forward_until);
        let known =
            new.as_ref().map(|(id, token)| Succ::Known { id: id.clone(), token: token.clone() });
        let tag = self.file(new, s);
        let successor = known.or(tag.map(Succ::Unknown));
        let stone = Stone { rotated: true, token: old_token, successor, forward_until, remove_at };
        self.stones.insert(id.to_owned(), stone);
    }

    pub fn exists(&self, id: &str, now: u64) -> bool {
        self.sessions.get(id).is_some_and(|s| s.status(now) == SessionStatus::Live)
    }

    pub fn count(&self) -> u64 {
        (self.sessions.len() + self.anon.len()) as u64
    }

    /// (sessions, states, tombstones) removed.
    pub fn cleanup(&mut self, now: u64) -> (u64, u64, u64) {
        let (mut sessions, mut states) = (0, 0);
        let mut sweep = |s: &Sess| {
            let keep = s.remove_at() > now;
            if !keep {
                sessions += 1;
                states += s.states.len() as u64;
            }
            keep
        };
        self.sessions.retain(|_, s| sweep(s));
        self.anon.retain(|_, s| sweep(s));
        let before = self.stones.len() + self.anon_stones.len();
        self.stones.retain(|_, stone| stone.remove_at > now);
        self.anon_stones.retain(|_, stone| stone.remove_at > now);
        (sessions, states, (before - self.stones.len() - self.anon_stones.len()) as u64)
    }
}
