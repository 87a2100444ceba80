//! The values the [`Engine`](super::Engine) trait speaks: what a request creates
//! ([`NewSession`]), saves ([`Save`]) and gets back ([`Created`], [`Fetched`], [`Stored`],
//! [`CleanupReport`]). Every engine takes and returns these; none of them knows the engine.

use serde::{Deserialize, Serialize};

use crate::id::{SecureToken, SessionId, constant_time_eq, fingerprint_hash};

/// What [`Store::create`](crate::Store::create) returns: the new id and its secure token (shown only this once).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Created {
    /// The new session id.
    pub id: SessionId,
    /// The session's secure token. Only its hash is stored: keep it (in a cookie).
    pub token: SecureToken,
    /// The id of the first state: 0.
    pub state_id: u64,
    /// The session's version: 1.
    pub version: u64,
}

/// One state of a session, with the session's data, as read by [`Store::fetch_state`](crate::Store::fetch_state).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Fetched {
    /// The id of the state returned.
    pub state_id: u64,
    /// The newest state id of the session.
    pub latest_state_id: u64,
    /// The oldest state id still kept.
    pub oldest_state_id: u64,
    /// The session's version: pass it to [`Save::new`](Save::new) so that a concurrent save is detected.
    pub version: u64,
    /// The session data.
    pub session_data: Vec<u8>,
    /// The state data.
    pub state_data: Vec<u8>,
    /// Creation time, ms since the epoch.
    pub created: u64,
    /// When the session stops being live unless used again, by the stricter of the stored
    /// deadline and this handle's settings; ms since the epoch (`u64::MAX`: never).
    pub expires_at: u64,
    /// The user key the session belongs to, if one was set ([`NewSession::user`],
    /// [`Save::user`](Save::user)).
    pub user: Option<Vec<u8>>,
    /// The hash of the client fingerprint stored at creation, if any.
    pub(crate) fingerprint: Option<[u8; 32]>,
}

impl Fetched {
    /// Whether `fingerprint` is the one the session was created with (compared as hashes, in
    /// constant time); `None` if the session was created without one.
    #[must_use]
    pub fn fingerprint_matches(&self, fingerprint: &[u8]) -> Option<bool> {
        self.fingerprint.map(|stored| constant_time_eq(&fingerprint_hash(fingerprint), &stored))
    }
}

/// A session to create: its data, and optionally a client fingerprint and a user key.
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct NewSession<'a> {
    pub(crate) session_data: &'a [u8],
    pub(crate) state_data: &'a [u8],
    pub(crate) fingerprint: Option<&'a [u8]>,
    pub(crate) user: Option<&'a [u8]>,
}

impl<'a> NewSession<'a> {
    /// A session holding `session_data`, with state 0 holding `state_data`.
    pub fn new(session_data: &'a [u8], state_data: &'a [u8]) -> Self {
        Self { session_data, state_data, fingerprint: None, user: None }
    }

    /// Binds the session to a client fingerprint (pyweblib's cross-check variables, e.g. the
    /// user agent). Only its SHA-256 is stored; check it with [`Fetched::fingerprint_matches`].
    pub fn fingerprint(mut self, fingerprint: &'a [u8]) -> Self {
        self.fingerprint = Some(fingerprint);
        self
    }

    /// Files the session under a user key, for [`Store::user_sessions`](crate::Store::user_sessions) and
    /// [`Store::revoke_user`](crate::Store::revoke_user) ("log out everywhere").
    pub fn user(mut self, user: &'a [u8]) -> Self {
        self.user = Some(user);
        self
    }
}

/// What [`Store::store_state`](crate::Store::store_state) writes: the data, and the version it was computed from.
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct Save<'a> {
    pub(crate) version: u64,
    pub(crate) session_data: &'a [u8],
    /// `None`: the states are left as they are.
    pub(crate) state_data: Option<&'a [u8]>,
    pub(crate) use_same_state: bool,
    /// Whether this save files the session under a user.
    pub(crate) user: UserChange<'a>,
}

/// What a save does to the session's user key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum UserChange<'a> {
    /// Leaves it as it is.
    Keep,
    /// Sets it (`None`: no user).
    Set(Option<&'a [u8]>),
}

impl<'a> Save<'a> {
    /// Saves `session_data` and `state_data` as a new state (latest + 1), if the session's
    /// version is still `version`, the one read ([`Fetched::version`](Fetched::version), [`Created::version`](Created::version) or
    /// [`Stored::version`]). Otherwise the save fails with [`Error::Conflict`](crate::Error::Conflict) and writes
    /// nothing: there is no way to save blindly over another process's save.
    pub fn new(version: u64, session_data: &'a [u8], state_data: &'a [u8]) -> Self {
        Self {
            version,
            session_data,
            state_data: Some(state_data),
            use_same_state: false,
            user: UserChange::Keep,
        }
    }

    /// Saves only `session_data`, leaving the states as they are (a request that changed the
    /// session but produced no page state), if the version is still `version`.
    pub fn session_only(version: u64, session_data: &'a [u8]) -> Self {
        Self { state_data: None, ..Self::new(version, session_data, &[]) }
    }

    /// Files the session under `user` with this save (at log-in), or under no user with `None`
    /// (at log-out of a session that lives on), for [`Store::user_sessions`](crate::Store::user_sessions) and
    /// [`Store::revoke_user`](crate::Store::revoke_user). Without this call the session's user is unchanged.
    pub fn user(mut self, user: Option<&'a [u8]>) -> Self {
        self.user = UserChange::Set(user);
        self
    }

    /// With `true`, overwrites the latest state instead of adding one (Nagare's
    /// `use_same_state`).
    pub fn same_state(mut self, yes: bool) -> Self {
        self.use_same_state = yes;
        self
    }
}

/// What [`Store::store_state`](crate::Store::store_state) returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stored {
    /// The id the state was stored under.
    pub state_id: u64,
    /// The session's new version.
    pub version: u64,
}

/// What a clean-up removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CleanupReport {
    /// Sessions removed.
    pub sessions: u64,
    /// States removed with them.
    pub states: u64,
    /// Damaged session records removed (their deadline had passed).
    pub corrupted: u64,
    /// Index entries removed that pointed at no session.
    pub stale_entries: u64,
    /// Index entries met early and moved to their session's real removal time: the session was
    /// used since it was indexed, and is not due yet (the `expiry` index is lazy; see
    /// `docs/format.md`).
    pub reindexed: u64,
    /// Tombstones of rotated or revoked ids removed (their session would have been removed by
    /// now), including undecodable ones.
    pub tombstones: u64,
    /// Write transactions used.
    pub batches: u64,
    /// Whether the sweep was skipped because another thread or process held the clean-up lock
    /// (it is sweeping, so there is nothing to add).
    pub skipped: bool,
    /// Whether the sweep reached the end: its last batch found nothing more due, and recorded
    /// the sweep as done in the file (the shared schedule, see [`Store::cleanup_if_due`](crate::Store::cleanup_if_due)).
    /// False for a skipped sweep, for a batch of [`Store::cleanup_if_due`](crate::Store::cleanup_if_due) that left a backlog
    /// to the next process, and for a sweep of the clean-up thread stopped by a drop.
    pub complete: bool,
}

impl CleanupReport {
    /// Adds `other`, a later batch or sweep, to this report.
    pub(crate) fn add(&mut self, other: CleanupReport) {
        self.sessions += other.sessions;
        self.states += other.states;
        self.corrupted += other.corrupted;
        self.stale_entries += other.stale_entries;
        self.reindexed += other.reindexed;
        self.tombstones += other.tombstones;
        self.batches += other.batches;
        self.skipped |= other.skipped;
        self.complete = other.complete;
    }
}
