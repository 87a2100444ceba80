//! The seam between the web layer and a session engine: [`Engine`] is every operation a
//! request needs, so that [`SessionManager`](crate::web::SessionManager), the tower-sessions
//! adapter and the examples run on any engine. [`Store`](crate::Store), the redb engine, is the
//! embedded default; an engine for a shared server (Redis) implements the same trait.
//!
//! What is on the trait and what is not (`docs/engines.md`): the trait holds what a request
//! does to a session (create, read a state, store a state with the version read, touch, rotate,
//! revoke, a user's sessions, the session lock) and the clean-up that adapters call. The
//! administration calls (`verify`, `sessions`, `inspect`, `info`, `count`) stay on each engine:
//! what they report is the engine's own (pages and records of a file, keys of a server), and
//! no request path calls them.
//!
//! Every engine must behave as the conformance suite says (`tests/conformance/`): expiry and
//! grace, the states history, versions and [`Error::Conflict`](crate::Error::Conflict),
//! rotation and tombstones, revocation chains, the users index, caps and wrong tokens.

use std::fmt::Debug;
use std::time::Duration;

use super::values::{CleanupReport, Created, Fetched, NewSession, Save, Stored};
use crate::error::Result;
use crate::id::{SecureToken, SessionId};

/// A session a log-out names: its id, its token, and the request's client fingerprint (the
/// web layer's cross-checks), if any ([`Engine::revoke_named`]).
pub type Named = (SessionId, SecureToken, Option<Vec<u8>>);

/// A session engine: what a web request needs from the place sessions live. `Send + Sync`:
/// one per process, shared by its threads.
///
/// The methods' contracts are those of [`Store`](crate::Store)'s methods of the same names,
/// which the redb engine implements them with; the errors are [`Error`](crate::Error)'s, and
/// [`Error::is_refusal`](crate::Error::is_refusal) tells a refused session from a failure.
pub trait Engine: Send + Sync + Debug {
    /// A held session lock ([`Engine::lock`]), released when dropped.
    type Lock<'a>
    where
        Self: 'a;

    /// Creates a session with a new id and token (and state 0).
    ///
    /// # Errors
    /// As [`Store::create_with`](crate::Store::create_with).
    fn create_with(&self, new: NewSession<'_>) -> Result<Created>;

    /// Creates a session under an id and token the caller chose (the tower-sessions adapter),
    /// with a removal deadline in ms since the epoch, or the engine's idle timeout.
    ///
    /// # Errors
    /// As [`Store::create_under`](crate::Store::create_under).
    fn create_under(
        &self,
        id: &SessionId,
        token: &SecureToken,
        session_data: &[u8],
        deadline: Option<u64>,
    ) -> Result<Created>;

    /// Reads state `state` of a session (its latest state for `None`), recording the access.
    ///
    /// # Errors
    /// As [`Store::fetch_state`](crate::Store::fetch_state).
    fn fetch_state(
        &self,
        id: &SessionId,
        token: &SecureToken,
        state: Option<u64>,
    ) -> Result<Fetched>;

    /// Reads the latest state of a session: [`Engine::fetch_state`] with `None`.
    ///
    /// # Errors
    /// As [`Engine::fetch_state`].
    fn load(&self, id: &SessionId, token: &SecureToken) -> Result<Fetched> {
        self.fetch_state(id, token, None)
    }

    /// Stores a new state (or the session data alone), if the session is still at the version
    /// `save` read; otherwise [`Error::Conflict`](crate::Error::Conflict) and nothing changes.
    ///
    /// # Errors
    /// As [`Store::store_state`](crate::Store::store_state).
    fn store_state(&self, id: &SessionId, token: &SecureToken, save: Save<'_>) -> Result<Stored>;

    /// Replaces the session data of a session created with [`Engine::create_under`], whatever
    /// its version, with a new removal deadline (the tower-sessions adapter).
    ///
    /// # Errors
    /// As [`Store::put`](crate::Store::put).
    fn put(
        &self,
        id: &SessionId,
        token: &SecureToken,
        session_data: &[u8],
        deadline: Option<u64>,
    ) -> Result<Stored>;

    /// Records an access without reading or writing data.
    ///
    /// # Errors
    /// As [`Store::touch`](crate::Store::touch).
    fn touch(&self, id: &SessionId, token: &SecureToken) -> Result<()>;

    /// Moves a session to a new id and token (a log-in), the old id forwarding to it for
    /// `forward_for`.
    ///
    /// # Errors
    /// As [`Store::regenerate`](crate::Store::regenerate).
    fn regenerate(
        &self,
        id: &SessionId,
        token: &SecureToken,
        forward_for: Duration,
    ) -> Result<Created>;

    /// Revokes a session (administration: no token needed). Whether it was there.
    ///
    /// # Errors
    /// As [`Store::revoke`](crate::Store::revoke).
    fn revoke(&self, id: &SessionId) -> Result<bool>;

    /// Revokes a session and, through its rotations, the session it became (a log-out).
    ///
    /// # Errors
    /// As [`Store::revoke_with_token`](crate::Store::revoke_with_token).
    fn revoke_with_token(&self, id: &SessionId, token: &SecureToken) -> Result<bool> {
        self.revoke_named(vec![(id.clone(), token.clone(), None)]).map(|revoked| revoked > 0)
    }

    /// [`Engine::revoke_with_token`] for each of `named`, at once: a pair with a wrong token is
    /// skipped, as is one whose fingerprint does not match the live end of its chain. How many
    /// live sessions were revoked; [`Error::Security`](crate::Error::Security), nothing
    /// written, if every pair was skipped so.
    ///
    /// # Errors
    /// As [`Store::revoke_with_token`](crate::Store::revoke_with_token).
    fn revoke_named(&self, named: Vec<Named>) -> Result<u64>;

    /// Revokes every session of `user` ("log out everywhere"); how many there were.
    ///
    /// # Errors
    /// As [`Store::revoke_user`](crate::Store::revoke_user).
    fn revoke_user(&self, user: &[u8]) -> Result<u64>;

    /// The live sessions of `user`.
    ///
    /// # Errors
    /// As [`Store::user_sessions`](crate::Store::user_sessions).
    fn user_sessions(&self, user: &[u8]) -> Result<Vec<SessionId>>;

    /// Whether `id` (with `token`) was rotated into a live session a moment ago: a request
    /// that carries it raced a log-in, and must not start a fresh session.
    ///
    /// # Errors
    /// Storage errors.
    fn moved_recently(&self, id: &SessionId, token: &SecureToken) -> Result<bool>;

    /// Locks session `id` against every other thread and process that locks it, waiting at
    /// most `max_wait`.
    ///
    /// # Errors
    /// As [`Store::lock`](crate::Store::lock).
    fn lock(&self, id: &SessionId, max_wait: Duration) -> Result<Self::Lock<'_>>;

    /// Whether `a` and `b` share one lock: whoever holds the lock of `a` must not take that of
    /// `b` again.
    fn shares_lock(&self, a: &SessionId, b: &SessionId) -> bool;

    /// Removes what expired (the tower-sessions adapter's `delete_expired`).
    ///
    /// # Errors
    /// As [`Store::cleanup`](crate::Store::cleanup).
    fn cleanup(&self) -> Result<CleanupReport>;

    /// One small clean-up step if one is due, for a process that lives for one request.
    ///
    /// # Errors
    /// As [`Store::cleanup_if_due`](crate::Store::cleanup_if_due).
    fn cleanup_if_due(&self) -> Result<Option<CleanupReport>>;
}
