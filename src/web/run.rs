//! [`SessionManager::handle`]: runs a request's code itself, again when another request of the
//! same session got in between, so that no application writes a retry loop and no request
//! fails on contention.
//!
//! ```text
//! attempt 1..=lockless_attempts   begin → app → finish, no lock while the app runs; a write in
//!                                 finish holds the session's lock just around itself (none for
//!                                 a read-only request); on a conflict: jittered pause
//! later attempts                  the session's cross-process lock (bounded wait) held around
//!                                 begin → app → finish; on a conflict: again at once, under it
//! out of time (or lock wait)      Error::Busy { retry_after }: answer 503 with Retry-After
//! ```
//!
//! Why the locked attempt cannot conflict: every write of `handle` to a stored session holds
//! that session's lock, so none lands between a lock holder's load and its save. Only writers
//! that bypass `handle` can still get in between (a direct [`Store`](crate::Store) call,
//! [`SessionManager::finish`], the tower adapter), and a lockless save whose lock wait ran out
//! (it saves without the lock rather than fail: the lock only protects others' attempts).
//! The locked attempt then runs again at once under the lock; the overall bound caps that.

use std::time::{Duration, Instant};

use super::client::ClientInfo;
use super::manager::{Request, SessionManager, WriteLocks};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::id::SessionId;

/// What [`SessionManager::handle`] returns: the application's value from the attempt that was
/// stored, and the cookie to send.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Handled<T> {
    /// What the application's closure returned in the attempt whose changes were stored.
    pub value: T,
    /// The `Set-Cookie` header value to send, if any ([`SessionManager::finish`]).
    pub set_cookie: Option<String>,
    /// How many times the closure ran (1 unless another request got in between).
    pub attempts: u32,
    /// Whether the stored attempt held the session's lock from `begin` to `finish` (a
    /// lockless attempt holds it only around its write in `finish`, and counts as `false`).
    pub locked: bool,
    /// How many attempts that held the session's lock were run again because another request
    /// changed the session first. 0 when every writer of the session goes through `handle`;
    /// see `docs/web.md` for the writers that can still get in between.
    pub locked_conflicts: u32,
}

/// Whether `finish` failed because another request changed the session first, having written
/// nothing of this attempt, so that running it again from `begin` is right.
fn worth_retrying(e: &Error) -> bool {
    // Conflict: another request saved first (the save checks the version). Rotated / Revoked:
    // another request logged in or out since `begin`; the next `begin` sees where it went.
    matches!(e, Error::Conflict { .. } | Error::Rotated { .. } | Error::Revoked)
}

impl<S: Engine> SessionManager<S> {
    /// Runs one request: [`begin`](Self::begin), `app`, [`finish`](Self::finish), and again
    /// from `begin` when `finish` reports that another request of the session got in between
    /// ([`Error::Conflict`], [`Error::Rotated`], [`Error::Revoked`]). Nothing of a failed
    /// attempt was stored. After [`RunConfig::lockless_attempts`](super::RunConfig::lockless_attempts) the session's cross-process
    /// lock is held around each attempt; a lockless attempt that writes a stored session holds
    /// the lock just around that write (bounded by [`RunConfig::lock_wait`](super::RunConfig::lock_wait), after which it
    /// writes unlocked), and one that writes nothing takes no lock. So when every writer of
    /// the session goes through `handle`, a locked attempt cannot conflict: a request that
    /// met a conflict is stored by its next attempt. See `docs/web.md`.
    ///
    /// **`app` may run more than once** and must act only through the [`Request`] it is given
    /// (its data, states, user, rotation, log-out): anything else it does (send a mail, write
    /// another file, charge a card) happens once per attempt. Compute the response from what
    /// it returns: the value of the attempt that was stored.
    ///
    /// An error `app` returns ends the request at once: nothing of that attempt is stored, and
    /// the error is returned.
    ///
    /// # Errors
    /// [`Error::Busy`] (converted into `E`) when the request could not be stored within
    /// [`RunConfig::max_time`](super::RunConfig::max_time), or the session's lock was not free within
    /// [`RunConfig::lock_wait`](super::RunConfig::lock_wait): nothing was stored; answer `503 Service Unavailable` with
    /// `Retry-After`. Storage errors of `begin` and `finish`; `app`'s own errors.
    pub fn handle<T, E>(
        &self,
        client: &ClientInfo,
        mut app: impl FnMut(&mut Request) -> Result<T, E>,
    ) -> Result<Handled<T>, E>
    where
        E: From<Error>,
    {
        let run = &self.config.run;
        let start = Instant::now();
        let busy = || Error::Busy { retry_after: run.retry_after };
        // The session to lock once lockless attempts are spent: the one the last attempt used.
        let mut known: Option<SessionId> = None;
        // The lock held, kept across attempts: a locked attempt that meets a newer request's
        // lockless save runs again at once, without queueing behind the other waiters.
        let mut held: Option<(SessionId, S::Lock<'_>)> = None;
        let mut attempts = 0u32;
        let mut locked_conflicts = 0u32;
        // Whether the session locks can be used at all (their lock files can be created).
        let mut lockable = true;
        loop {
            let lock_now = lockable && attempts >= run.lockless_attempts;
            if lock_now
                && let Some(id) = &known
                && held.as_ref().is_none_or(|(locked, _)| locked != id)
            {
                drop(held.take()); // one session lock at a time (they are striped)
                let left = run.max_time.checked_sub(start.elapsed()).ok_or_else(busy)?;
                match self.store().lock(id, run.lock_wait.min(left)) {
                    Ok(guard) => held = Some((id.clone(), guard)),
                    Err(Error::LockTimeout { .. }) => return Err(busy().into()),
                    // The lock file cannot be created (a database directory this process may
                    // not write): go on without session locks, as a write of `finish` does,
                    // until the overall bound.
                    Err(Error::Io(_)) => {
                        lockable = false;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let mut request = self.begin(client)?;
            if request.moved() {
                // Another request moved the cookie's session to a new id a moment ago (a
                // log-in): a fresh session's cookie would replace the logged-in one. The client
                // tries again, with that cookie ([`Request::moved`]).
                return Err(busy().into());
            }
            let id = request.session_id().cloned();
            if lock_now
                && let Some(now) = &id
                && held.as_ref().is_none_or(|(locked, _)| locked != now)
            {
                // Not locked yet (the first attempt is to be locked), or the cookie led
                // elsewhere (the session moved meanwhile): lock this session, then begin again.
                known = id;
                continue;
            }
            attempts = attempts.saturating_add(1);
            let value = app(&mut request)?;
            // A lockless attempt locks what it writes just around the write; a locked one
            // holds its session's lock already (and locks only a successor it saves to).
            let wait = run.lock_wait.min(run.max_time.saturating_sub(start.elapsed()));
            let locks = WriteLocks { held: held.as_ref().map(|(locked, _)| locked), wait };
            match self.finish_with(request, Some(&locks)) {
                Ok(set_cookie) => {
                    let locked = held.is_some();
                    return Ok(Handled { value, set_cookie, attempts, locked, locked_conflicts });
                }
                Err(e) if worth_retrying(&e) => {
                    if held.is_some() {
                        locked_conflicts = locked_conflicts.saturating_add(1);
                    }
                }
                Err(e) => return Err(e.into()),
            }
            if id.is_some() {
                known = id;
            }
            if start.elapsed() >= run.max_time {
                return Err(busy().into());
            }
            // Lockless attempts spread out; a locked one goes again at once (what it met has
            // been stored), and the wait for the lock is the pause before the first locked one.
            if held.is_none() && (attempts < run.lockless_attempts || known.is_none()) {
                std::thread::sleep(backoff(attempts, run.max_backoff));
            }
        }
    }
}

impl<S: Engine> SessionManager<S> {
    /// The lock of stored session `id`, to hold around a write of `finish`: `None` when
    /// `locks` is `None` (a plain `finish`) or the caller holds its stripe already. A lock that
    /// is not free within the wait, or that cannot be used (the lock file cannot be created),
    /// gives `None` too: the write goes ahead unlocked, as every write did before, and a
    /// locked attempt it meets runs again. Failing here would fail a request that would
    /// otherwise succeed, for the sake of another request's attempt.
    ///
    /// # Errors
    /// [`Error::Forked`] in a forked child (the write would fail the same way).
    pub(super) fn write_lock(
        &self,
        locks: Option<&WriteLocks<'_>>,
        id: &SessionId,
    ) -> Result<Option<S::Lock<'_>>> {
        let Some(locks) = locks else { return Ok(None) };
        if locks.held.is_some_and(|held| self.store().shares_lock(held, id)) {
            return Ok(None);
        }
        match self.store().lock(id, locks.wait) {
            Ok(guard) => Ok(Some(guard)),
            Err(Error::LockTimeout { .. } | Error::Io(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A random pause in `[0, min(max, 2 ms × 2^(attempt-1))]`.
fn backoff(attempt: u32, max: Duration) -> Duration {
    let ceiling = Duration::from_millis(2).saturating_mul(1 << attempt.saturating_sub(1).min(16));
    let ceiling = ceiling.min(max);
    ceiling.mul_f64(rand::random::<f64>())
}
