//! The web layer's settings: [`ManagerConfig`] (cookies, cross-checks, rotation) and its
//! [`RunConfig`] (how [`SessionManager::handle`](super::SessionManager::handle) runs a request
//! again on contention).

use std::time::Duration;

use super::client::CrossCheck;
use super::cookie::CookieAttrs;

/// What to do when a request fails its session's cross-checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HijackPolicy {
    /// Do not hand the session to this request: it gets a fresh one. The default.
    #[default]
    Refuse,
    /// Hand the session over anyway, and say so in the [`Outcome`](super::Outcome), for logging.
    Report,
}

/// How a [`SessionManager`](super::SessionManager) reads and writes sessions. Start from `ManagerConfig::default()`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ManagerConfig {
    /// The cookie's name. Default = `"sessiondb"`.
    pub cookie_name: String,
    /// The cookie's attributes. Default = [`CookieAttrs::default`] (`Path=/`, `Secure`,
    /// `HttpOnly`, `SameSite=Lax`, a browser-session cookie).
    pub cookie: CookieAttrs,
    /// The query parameter that names the state to show (the back button). Default =
    /// `"state"`.
    pub state_param: String,
    /// What a session is bound to. Default = none: user agents change on browser updates and
    /// addresses on mobile networks, so every check also logs some honest users out.
    pub cross_checks: Vec<CrossCheck>,
    /// What a failed cross-check does. Default = [`HijackPolicy::Refuse`].
    pub hijack_policy: HijackPolicy,
    /// How long, after [`Request::regenerate`](super::Request::regenerate), the old cookie still leads to the session, so
    /// that a lost response does not log the user out. Default = zero: no forwarding. A
    /// window is a trade-off: whoever holds the old cookie during it (an attacker who planted
    /// it, polling) follows the rotation too. Forwarded requests must pass the cross-checks
    /// even under [`HijackPolicy::Report`]; see `docs/web.md`.
    pub rotation_forward: Duration,
    /// Also accept a session named in the query string (`sid` and `stok`, see
    /// [`session_query`](super::session_query)) when there is no cookie. Default = `false`:
    /// tokens in URLs leak.
    pub session_in_url: bool,
    /// How [`SessionManager::handle`](super::SessionManager::handle) runs a request again on contention. Default =
    /// [`RunConfig::default`].
    pub run: RunConfig,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            cookie_name: "sessiondb".into(),
            cookie: CookieAttrs::default(),
            state_param: "state".into(),
            cross_checks: Vec::new(),
            hijack_policy: HijackPolicy::Refuse,
            rotation_forward: Duration::ZERO,
            session_in_url: false,
            run: RunConfig::default(),
        }
    }
}

/// How [`SessionManager::handle`](super::SessionManager::handle) runs a request again on contention. Part of
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
    /// The longest a request may spend in [`SessionManager::handle`](super::SessionManager::handle) before it gives up with
    /// [`Error::Busy`](crate::Error::Busy) (the lock's wait is cut to what is left of it). Default = 5 s.
    pub max_time: Duration,
    /// What [`Error::Busy`](crate::Error::Busy) tells the client to wait before it tries again (`Retry-After`).
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
