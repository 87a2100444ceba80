//! Per-session locks across processes, for callers that want PHP-style serialisation.

use std::fmt;
use std::time::Duration;

use super::handle::Store;
use crate::error::Result;
use crate::id::SessionId;
use crate::store::lock::StripeGuard;

/// A held session lock (see [`Store::lock`]); released when dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct SessionLock<'a> {
    _guard: StripeGuard<'a>,
}

impl fmt::Debug for SessionLock<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLock").finish_non_exhaustive()
    }
}

impl Store {
    /// Locks session `id` against every other thread and process that locks it (Nagare's
    /// `get_lock`), waiting at most `max_wait`. Released when the guard is dropped, or by the
    /// OS if the process dies while holding it.
    ///
    /// The lock is advisory: it serialises only callers that take it, and loads and saves do
    /// not need it (saves are protected by their version). Take it to run a whole request
    /// alone, as PHP does, but with a bounded wait.
    ///
    /// Locks are striped: ids that hash to the same of the `lock_stripes` lock files share a
    /// lock, so hold one session lock at a time (a second, on another id, may wait for the
    /// first). A thread that locks the same session twice waits `max_wait` and gets
    /// [`Error::LockTimeout`](crate::error::Error::LockTimeout), never a deadlock.
    ///
    /// The wait polls the OS lock every `lock_poll_interval`; Nagare's lock `ttl` is not
    /// needed, because a crashed holder's lock is released by the OS, not by a timer.
    ///
    /// # Errors
    /// [`Error::LockTimeout`](crate::error::Error::LockTimeout) after `max_wait`,
    /// [`Error::Io`](crate::error::Error::Io) if the lock file cannot be created,
    /// [`Error::Forked`](crate::error::Error::Forked) in a forked child.
    pub fn lock(&self, id: &SessionId, max_wait: Duration) -> Result<SessionLock<'_>> {
        self.core.db()?;
        Ok(SessionLock { _guard: self.core.locks.lock(id.as_bytes(), max_wait)? })
    }

    /// Whether sessions `a` and `b` share one lock (one stripe): whoever holds the lock of
    /// `a` holds that of `b`, and must not take it again.
    pub(crate) fn shares_lock(&self, a: &SessionId, b: &SessionId) -> bool {
        self.core.locks.stripe_of(a.as_bytes()) == self.core.locks.stripe_of(b.as_bytes())
    }
}
