//! [`SessionManager::handle`]: runs a request's code itself, again when another request of the
//! same session got in between, so that no application writes a retry loop and no request
//! fails on contention.
//!
//! ```text
//! attempt 1..=lockless_attempts   begin → app → finish, no lock; on a conflict: jittered pause
//! later attempts                  the session's cross-process lock (bounded wait) held around
//!                                 begin → app → finish; on a conflict: again at once, under it
//! out of time (or lock wait)      Error::Busy { retry_after }: answer 503 with Retry-After
//! ```
//!
//! Why this ends: a request that holds the session's lock can only meet requests that do not
//! take it, which are first attempts of newer requests (every request that met a conflict
//! queues for the lock). Each of those saves at most once before it queues too, so the locked
//! attempt wins after a bounded number of tries; the overall bound caps the rest.

use std::time::{Duration, Instant};

use super::client::ClientInfo;
use super::manager::{Request, SessionManager};
use crate::error::{Error, Result};
use crate::id::SessionId;
use crate::store::SessionLock;

/// How [`SessionManager::handle`] runs a request again on contention. Part of
/// [`ManagerConfig`](super::ManagerConfig) (`run`); start from `RunConfig::default()`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RunConfig {
    /// How many attempts run without the session's lock before the lock is taken. Default = 1:
    /// a request takes no lock unless its first attempt met another request's save (most do
    /// not, and a request that only reads never waits for one that writes). 0 = take the lock
    /// from the first attempt (PHP-style: the requests of a session run one at a time).
    pub lockless_attempts: u32,
    /// The longest pause between lockless attempts. The pause is random in
    /// `[0, min(max_backoff, 2 ms × 2^(attempt-1))]`, so that colliding requests spread out.
    /// Default = 20 ms.
    pub max_backoff: Duration,
    /// The longest wait for the session's lock ([`Store::lock`](crate::Store::lock)), each
    /// time it is taken. Default = 2 s.
    pub lock_wait: Duration,
    /// The longest a request may spend in [`SessionManager::handle`] before it gives up with
    /// [`Error::Busy`] (the lock's wait is cut to what is left of it). Default = 5 s.
    pub max_time: Duration,
    /// What [`Error::Busy`] tells the client to wait before it tries again (`Retry-After`).
    /// Default = 1 s.
    pub retry_after: Duration,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            lockless_attempts: 1,
            max_backoff: Duration::from_millis(20),
            lock_wait: Duration::from_secs(2),
            max_time: Duration::from_secs(5),
            retry_after: Duration::from_secs(1),
        }
    }
}

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
    /// Whether the stored attempt held the session's lock.
    pub locked: bool,
}

/// Whether `finish` failed because another request changed the session first, having written
/// nothing of this attempt, so that running it again from `begin` is right.
fn worth_retrying(e: &Error) -> bool {
    // Conflict: another request saved first (the save checks the version). Rotated / Revoked:
    // another request logged in or out since `begin`; the next `begin` sees where it went.
    matches!(e, Error::Conflict { .. } | Error::Rotated { .. } | Error::Revoked)
}

impl SessionManager {
    /// Runs one request: [`begin`](Self::begin), `app`, [`finish`](Self::finish), and again
    /// from `begin` when `finish` reports that another request of the session got in between
    /// ([`Error::Conflict`], [`Error::Rotated`], [`Error::Revoked`]). Nothing of a failed
    /// attempt was stored. After [`RunConfig::lockless_attempts`] the session's cross-process
    /// lock is held around each attempt, so that only first attempts of newer requests can
    /// still get in between; see `docs/web.md`.
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
    /// [`RunConfig::max_time`], or the session's lock was not free within
    /// [`RunConfig::lock_wait`]: nothing was stored; answer `503 Service Unavailable` with
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
        let mut held: Option<(SessionId, SessionLock<'_>)> = None;
        let mut attempts = 0u32;
        loop {
            let lock_now = attempts >= run.lockless_attempts;
            if lock_now
                && let Some(id) = &known
                && held.as_ref().is_none_or(|(locked, _)| locked != id)
            {
                drop(held.take()); // one session lock at a time (they are striped)
                let left = run.max_time.checked_sub(start.elapsed()).ok_or_else(busy)?;
                match self.store().lock(id, run.lock_wait.min(left)) {
                    Ok(guard) => held = Some((id.clone(), guard)),
                    Err(Error::LockTimeout { .. }) => return Err(busy().into()),
                    Err(e) => return Err(e.into()),
                }
            }
            let mut request = self.begin(client)?;
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
            match self.finish(request) {
                Ok(set_cookie) => {
                    let locked = held.is_some();
                    return Ok(Handled { value, set_cookie, attempts, locked });
                }
                Err(e) if worth_retrying(&e) => {}
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

/// A random pause in `[0, min(max, 2 ms × 2^(attempt-1))]`.
fn backoff(attempt: u32, max: Duration) -> Duration {
    let ceiling = Duration::from_millis(2).saturating_mul(1 << attempt.saturating_sub(1).min(16));
    let ceiling = ceiling.min(max);
    ceiling.mul_f64(rand::random::<f64>())
}
