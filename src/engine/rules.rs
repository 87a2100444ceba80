//! The rules of a session's life that need no storage, shared by every engine: its deadlines
//! from its times and the engine's settings, where it stands at a time (live, expired in its
//! grace window, gone), and which refusal a request for it gets. The redb engine and the Redis
//! engine both judge liveness by these, against their own clock.

use super::records::SessionRecord;
use crate::error::{Error, Result};
use crate::id::SecureToken;

/// Where a session stands, as an admin sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionStatus {
    /// Usable.
    Live,
    /// Expired, inside the grace window.
    Expired,
    /// Past the grace window, awaiting the sweep.
    Gone,
}

impl SessionStatus {
    /// `"live"`, `"expired"` or `"gone"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Live => "live",
            SessionStatus::Expired => "expired",
            SessionStatus::Gone => "gone",
        }
    }
}

impl std::fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The expiry settings of an engine, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rules {
    /// How long an unused session lives (`None`: for ever).
    pub(crate) idle_timeout: Option<u64>,
    /// How long a session lives after its creation, however used (`None`: for ever).
    pub(crate) absolute_lifetime: Option<u64>,
    /// How long an expired session's data is still returned.
    pub(crate) grace: u64,
}

impl Rules {
    /// When `rec` stops being live, and when it may be removed, by these settings: from its
    /// creation and last use, or at the deadline its creator chose (which the idle timeout and
    /// absolute lifetime do not shorten or extend); the grace window applies to both.
    pub(crate) fn deadlines(&self, rec: &SessionRecord) -> (u64, u64) {
        let expires_at = rec.deadline.unwrap_or_else(|| {
            let idle = self.idle_timeout.map_or(u64::MAX, |i| rec.last_access.saturating_add(i));
            let absolute =
                self.absolute_lifetime.map_or(u64::MAX, |a| rec.created.saturating_add(a));
            idle.min(absolute)
        });
        (expires_at, expires_at.saturating_add(self.grace))
    }

    /// When `rec` stops being live for these settings: the stricter of the stored deadline and
    /// the settings'.
    pub(crate) fn effective_expiry(&self, rec: &SessionRecord) -> u64 {
        rec.expires_at.min(self.deadlines(rec).0)
    }

    /// `rec` with its deadlines computed from its times and these settings.
    pub(crate) fn with_deadlines(&self, mut rec: SessionRecord) -> SessionRecord {
        (rec.expires_at, rec.remove_at) = self.deadlines(&rec);
        rec
    }

    /// Where `rec` stands at `now`. The stored deadlines and these settings both apply, the
    /// stricter winning, so an engine with shorter timeouts never returns a session it
    /// considers expired. Removal, by contrast, follows the stored `remove_at` alone, so what
    /// an engine may destroy does not depend on its own settings.
    pub(crate) fn status(&self, rec: &SessionRecord, now: u64) -> SessionStatus {
        let (expires_at, remove_at) = self.deadlines(rec);
        if now < expires_at.min(rec.expires_at) {
            SessionStatus::Live
        } else if now < remove_at.min(rec.remove_at) {
            SessionStatus::Expired
        } else {
            SessionStatus::Gone
        }
    }

    /// Refuses a session that is gone, a wrong token, and an expired session, in that order.
    pub(crate) fn admit(&self, rec: &SessionRecord, token: &SecureToken, now: u64) -> Result<()> {
        let status = self.status(rec, now);
        if status == SessionStatus::Gone {
            return Err(Error::NotFound);
        }
        if !token.matches(&rec.token_hash) {
            return Err(Error::Security);
        }
        if status == SessionStatus::Expired {
            return Err(Error::Expired { data: rec.data.clone() });
        }
        Ok(())
    }

    /// Applies a save at `now` to `rec` (its version read already checked): the new state's id
    /// (`state`: `Some(overwrite)` when the save has state data, the latest state overwritten
    /// with `true`), the states evicted beyond `max_states`, the version, the session data, and
    /// the access time (with an idle timeout moved only by at least `resolution`, as a load's
    /// touch is), then the deadlines. Returns the state id stored under and the range of state
    /// ids to remove, if any. The caller writes the state and the record.
    ///
    /// With an idle timeout, most saves then keep the session's deadlines. The bound is the
    /// touch bound: a session can expire up to one resolution early, never late. The access
    /// time never moves backwards (a clock stepped back).
    pub(crate) fn save_into(
        &self,
        rec: &mut SessionRecord,
        session_data: &[u8],
        state: Option<bool>,
        (max_states, resolution): (u64, u64),
        now: u64,
    ) -> (u64, Option<std::ops::RangeInclusive<u64>>) {
        let mut evicted = None;
        let state_id = match state {
            None => rec.latest_state,
            Some(overwrite) => {
                let state_id = if overwrite { rec.latest_state } else { rec.latest_state + 1 };
                rec.latest_state = state_id;
                if rec.state_count() > max_states {
                    let keep_from = rec.latest_state + 1 - max_states;
                    evicted = Some(rec.oldest_state..=keep_from - 1);
                    rec.oldest_state = keep_from;
                }
                state_id
            }
        };
        rec.version += 1;
        session_data.clone_into(&mut rec.data);
        let moved = now.saturating_sub(rec.last_access);
        let coalesce = self.idle_timeout.is_some() && moved < resolution;
        if now > rec.last_access && !coalesce {
            rec.last_access = now;
        }
        (rec.expires_at, rec.remove_at) = self.deadlines(rec);
        (state_id, evicted)
    }

    /// Whether an access at `now` should be written: the last one written is at least
    /// `resolution` ms old (touch coalescing).
    pub(crate) fn touch_due(rec: &SessionRecord, now: u64, resolution: u64) -> bool {
        now.saturating_sub(rec.last_access) >= resolution
    }
}

/// The longest user key accepted ([`NewSession::user`](crate::NewSession::user)).
pub(crate) const MAX_USER_KEY: usize = 1024;

/// Refuses a user key longer than [`MAX_USER_KEY`].
pub(crate) fn check_user_key(user: Option<&[u8]>) -> Result<()> {
    if user.is_some_and(|u| u.len() > MAX_USER_KEY) {
        return Err(Error::InvalidInput(format!(
            "user key over {MAX_USER_KEY} bytes: use a shorter key, such as a user id"
        )));
    }
    Ok(())
}

/// Refuses data larger than `max` bytes.
pub(crate) fn check_size(what: &str, data: &[u8], max: usize) -> Result<()> {
    if data.len() > max {
        return Err(Error::InvalidInput(format!(
            "{what} is {} bytes, over the limit of {max}: store less or raise max_data_size",
            data.len(),
        )));
    }
    Ok(())
}

/// The touch resolution in milliseconds: as `set` but at most 1% of the idle timeout; unset,
/// 1% of the idle timeout, or 1 minute without one.
pub(crate) fn touch_resolution(idle_timeout: Option<u64>, set: Option<u64>) -> u64 {
    let auto = idle_timeout.map_or(60_000, |i| i / 100);
    set.map_or(auto, |r| r.min(auto))
}
