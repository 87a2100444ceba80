//! [`SessionManager`]: what a web program calls once per request (Quixote's session3 manager,
//! with pyweblib's cross-checks and Aquarium's anti-fixation).
//!
//! ```text
//! let mut request = manager.begin(&ClientInfo::from_cgi_env())?;   // read the cookie, load
//! ... read and change request.data(), push a state ...
//! if let Some(cookie) = manager.finish(request)? { print!("Set-Cookie: {cookie}\r\n") }
//! ```
//!
//! [`SessionManager::handle`] (src/web/run.rs) does the three steps itself, and runs them again
//! when another request of the session got in between: what applications should call.

use std::time::Duration;

use super::client::{ClientInfo, fingerprint};
use super::config::{HijackPolicy, ManagerConfig};
use super::cookie::{MAX_COOKIES, cookie_values, revoke_cookie, set_cookie};
use super::url::{session_from_query, state_from_query};
use crate::engine::Engine;
use crate::engine::{Fetched, NewSession, Save};
use crate::error::{Error, Result};
use crate::id::{SecureToken, SessionId};
use crate::store::Store;

/// How [`SessionManager::finish_with`] locks the stored sessions it writes: `held` is the
/// session whose lock the caller already holds (whose stripe needs no second lock), `wait`
/// the longest wait for any other.
pub(super) struct WriteLocks<'a> {
    pub(super) held: Option<&'a SessionId>,
    pub(super) wait: Duration,
}

/// What the client named.
enum Named {
    /// No session cookie (or query).
    Nothing,
    /// Session cookies, none of them `<id>.<token>`.
    Junk,
    /// The well-formed session cookies, in the order sent.
    Sessions(Vec<(SessionId, SecureToken)>),
}

/// A session `begin` loaded, and whether it was reached through a rotation.
struct Loaded {
    id: SessionId,
    token: SecureToken,
    fetched: Fetched,
    forwarded: bool,
}

/// How many named sessions that load but fail the cross-checks `begin` looks past, for a
/// cookie of ours behind them.
const MAX_MISMATCHES: usize = 4;

/// How many rotations `begin` follows from one cookie.
const MAX_FORWARDS: usize = 3;

/// How [`SessionManager::begin`] found the request's session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// No session was named: a fresh session, stored only if it gets data.
    New,
    /// The named session, at the state asked for (or its latest state).
    Resumed,
    /// The named session had moved to a new id (its response was lost): it continues under
    /// the new id, whose cookie is sent again.
    Forwarded,
    /// The named session expired: a fresh session; the old session's data is attached.
    Expired {
        /// The expired session's data.
        data: Vec<u8>,
    },
    /// The named session is unknown (never issued, or removed): a fresh session. Strict mode:
    /// the id is never adopted.
    Unknown,
    /// The named session was revoked (logged out, or rotated long ago): a fresh session.
    Revoked,
    /// The request does not match the session's cross-checks, or carries a wrong token.
    Hijacked {
        /// Whether the request was given the session anyway ([`HijackPolicy::Report`]);
        /// otherwise it got a fresh one.
        continued: bool,
    },
}

/// One request's session, between [`SessionManager::begin`] and [`SessionManager::finish`].
#[derive(Debug)]
#[must_use = "pass the request to SessionManager::finish to save it and get its cookie"]
pub struct Request {
    outcome: Outcome,
    /// The stored session, or `None` for a fresh one not stored yet.
    stored: Option<(SessionId, SecureToken, u64)>,
    data: Vec<u8>,
    loaded_data: Vec<u8>,
    state_id: Option<u64>,
    state: Vec<u8>,
    /// (oldest, latest) state ids kept.
    states: Option<(u64, u64)>,
    loaded_user: Option<Vec<u8>>,
    new_state: Option<(Vec<u8>, bool)>,
    fingerprint: Option<Vec<u8>>,
    /// `Some(user)`: file the session under `user` (`None`: no user) at `finish`.
    user: Option<UserKey>,
    /// The well-formed sessions the client named (cookies or query), which a log-out revokes
    /// with their chains even when `begin` refused them (another request rotated them).
    named: Vec<(SessionId, SecureToken)>,
    /// The named session was moved to a new id by another request (a log-in) a moment ago.
    moved: bool,
    ending: Ending,
    cookie: CookieNeed,
}

/// A user key to set, or `None` to file the session under no user.
type UserKey = Option<Vec<u8>>;

/// What `finish` does to the session besides saving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Keep,
    Regenerate,
    Logout,
}

/// What `finish` must do with the cookie even if nothing else asks for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CookieNeed {
    Nothing,
    /// The client named a session this request does not keep using: remove its cookie.
    Clear,
    /// The session's cookie must be sent again (forwarded after a rotation).
    Send,
}

impl Request {
    /// How the session was found.
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    /// Whether the cookie names a session that another request (a log-in in another tab, or a
    /// parallel request of the same page) moved to a new id a few seconds ago (10 s, after any
    /// forwarding window), which still lives: this request was sent before the browser had the
    /// new cookie. This request then has a fresh session, which `finish` does not store
    /// and whose cookie it does not send: that cookie would replace the logged-in one in the
    /// browser. `finish` answers [`Error::Busy`] if the request changed anything, and
    /// [`SessionManager::handle`] answers it before running the request's code: the client
    /// tries again, with the cookie of the log-in.
    pub fn moved(&self) -> bool {
        self.moved
    }

    /// The session's id, if it is stored (a fresh session has none until `finish` stores it).
    pub fn session_id(&self) -> Option<&SessionId> {
        self.stored.as_ref().map(|(id, _, _)| id)
    }

    /// The session data (empty for a fresh session).
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Replaces the session data; saved by `finish` if it differs from what was loaded.
    pub fn set_data(&mut self, data: Vec<u8>) {
        self.data = data;
    }

    /// The id of the state loaded (`None` for a fresh session).
    pub fn state_id(&self) -> Option<u64> {
        self.state_id
    }

    /// The state loaded (empty for a fresh session).
    pub fn state(&self) -> &[u8] {
        &self.state
    }

    /// The oldest and newest state ids kept, for back-button links (`None` for a fresh
    /// session).
    pub fn state_range(&self) -> Option<(u64, u64)> {
        self.states
    }

    /// The user key the session was loaded with (before any [`Request::set_user`]).
    pub fn user(&self) -> Option<&[u8]> {
        self.loaded_user.as_deref()
    }

    /// Saves `state` as a new state at `finish` (the page this request produced).
    pub fn push_state(&mut self, state: Vec<u8>) {
        self.new_state = Some((state, false));
    }

    /// Overwrites the latest state with `state` at `finish` (Nagare's `use_same_state`).
    pub fn replace_state(&mut self, state: Vec<u8>) {
        self.new_state = Some((state, true));
    }

    /// Files the session under `user` at `finish` (`None`: under no user), for "log out
    /// everywhere" ([`Store::revoke_user`]).
    pub fn set_user(&mut self, user: Option<Vec<u8>>) {
        self.user = Some(user);
    }

    /// Moves the session to a new id at `finish`. Call it at log-in, against session fixation.
    pub fn regenerate(&mut self) {
        if self.ending == Ending::Keep {
            self.ending = Ending::Regenerate;
        }
    }

    /// Ends the session at `finish`: it is revoked, and the cookie removed.
    pub fn logout(&mut self) {
        self.ending = Ending::Logout;
    }

    fn changed(&self) -> bool {
        let user_changed = self.user.as_ref().is_some_and(|user| *user != self.loaded_user);
        self.data != self.loaded_data || self.new_state.is_some() || user_changed
    }
}

/// Reads and writes the sessions of web requests in an [`Engine`]: a [`Store`] (the redb
/// engine, the default) or any other. Share one per process.
#[derive(Debug)]
pub struct SessionManager<E: Engine = Store> {
    store: E,
    pub(super) config: ManagerConfig,
}

impl<E: Engine> SessionManager<E> {
    /// A manager on `store`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] if the cookie name or attributes cannot make a valid cookie.
    pub fn new(store: E, config: ManagerConfig) -> Result<Self> {
        revoke_cookie(&config.cookie_name, &config.cookie)?; // validates name and attributes
        Ok(Self { store, config })
    }

    /// The engine, for maintenance and admin calls.
    pub fn store(&self) -> &E {
        &self.store
    }

    /// Gives the store back, for instance to end a CGI process with
    /// [`Store::close_for_exit`].
    #[must_use]
    pub fn into_store(self) -> E {
        self.store
    }

    /// Starts a request: reads the session cookie (or query, if enabled), loads the session at
    /// the state asked for in the query string (or the latest; an unknown or evicted state
    /// falls back to the latest), and applies the cross-checks. A session that cannot be
    /// used is never adopted: the request gets a fresh one and the [`Outcome`] says why.
    ///
    /// # Errors
    /// Storage errors of [`Store::fetch_state`] ([`Error::Corrupted`], [`Error::Storage`]...),
    /// never the session's own refusals, which become outcomes.
    pub fn begin(&self, client: &ClientInfo) -> Result<Request> {
        let fingerprint = fingerprint(&self.config.cross_checks, client);
        let mut req = Request {
            outcome: Outcome::New,
            stored: None,
            data: Vec::new(),
            loaded_data: Vec::new(),
            state_id: None,
            state: Vec::new(),
            states: None,
            loaded_user: None,
            new_state: None,
            fingerprint,
            user: None,
            named: Vec::new(),
            moved: false,
            ending: Ending::Keep,
            cookie: CookieNeed::Nothing,
        };
        let candidates = match self.named_sessions(client) {
            Named::Sessions(candidates) => candidates,
            Named::Nothing => return Ok(req),
            Named::Junk => {
                // Strict mode: a cookie that names no valid session is an unknown id.
                req.outcome = Outcome::Unknown;
                req.cookie = CookieNeed::Clear;
                return Ok(req);
            }
        };
        let query = client.query_string.as_deref().unwrap_or("");
        let wanted = state_from_query(query, &self.config.state_param);
        req.named.clone_from(&candidates);
        let loaded = self.load_named(candidates, wanted, req.fingerprint.as_deref())?;
        let Loaded { id, token, fetched, forwarded } = match loaded {
            Ok(loaded) => loaded,
            Err(refusal) => {
                if matches!(refusal, Error::Revoked) {
                    req.moved = self.moved_recently(&req.named)?;
                }
                return Self::refused(req, refusal);
            }
        };
        let matches = req.fingerprint.as_deref().and_then(|fp| fetched.fingerprint_matches(fp));
        // A forwarded request that fails the cross-checks is refused whatever the policy:
        // forwarding is where a fixation attempt would get in.
        let continued = self.config.hijack_policy == HijackPolicy::Report && !forwarded;
        req.outcome = match (matches, forwarded) {
            (Some(false), _) if !continued => {
                req.outcome = Outcome::Hijacked { continued: false };
                req.cookie = CookieNeed::Clear;
                return Ok(req);
            }
            (Some(false), _) => Outcome::Hijacked { continued: true },
            (_, true) => Outcome::Forwarded,
            _ => Outcome::Resumed,
        };
        if forwarded {
            req.cookie = CookieNeed::Send;
        }
        req.stored = Some((id, token, fetched.version));
        req.state_id = Some(fetched.state_id);
        req.state = fetched.state_data;
        req.states = Some((fetched.oldest_state_id, fetched.latest_state_id));
        req.loaded_user = fetched.user;
        req.loaded_data.clone_from(&fetched.session_data);
        req.data = fetched.session_data;
        Ok(req)
    }

    /// The sessions the client names: every cookie of our name (a stale cookie on another
    /// path or from a sibling domain must not shadow the real one), else (if enabled) its query
    /// string. Cookies are picked by name before any count limit, so other cookies cannot push
    /// ours out; only the header's size is bounded ([`MAX_COOKIE_SCAN_LEN`]).
    ///
    /// [`MAX_COOKIE_SCAN_LEN`]: super::MAX_COOKIE_SCAN_LEN
    fn named_sessions(&self, client: &ClientInfo) -> Named {
        let header = client.cookie_header.as_deref().unwrap_or_default();
        let values: Vec<&str> = cookie_values(header, &self.config.cookie_name).collect();
        if !values.is_empty() {
            // Split at the last dot: tokens are base64url and never hold one, while a custom
            // id alphabet may. Duplicates are tried once; at most `MAX_COOKIES` are tried.
            let mut parsed: Vec<(SessionId, SecureToken)> = Vec::new();
            for value in values {
                let Some((id, token)) = value.rsplit_once('.') else { continue };
                let (Ok(id), Ok(token)) = (SessionId::parse(id), SecureToken::parse(token)) else {
                    continue;
                };
                if parsed.len() < MAX_COOKIES && !parsed.iter().any(|p| p.0 == id && p.1 == token) {
                    parsed.push((id, token));
                }
            }
            return if parsed.is_empty() { Named::Junk } else { Named::Sessions(parsed) };
        }
        if self.config.session_in_url
            && let Some(pair) = client.query_string.as_deref().and_then(session_from_query)
        {
            return Named::Sessions(vec![pair]);
        }
        Named::Nothing
    }

    /// Loads the first of `candidates` that the store gives and whose session matches
    /// `fingerprint` (the cross-checks), following rotations (at most [`MAX_FORWARDS`] hops);
    /// else the first that the store gave (which `begin` refuses or reports); otherwise the
    /// first candidate's refusal. A cookie tossed ahead of ours that names another client's
    /// session thus does not hide ours. The outer error is a storage error, not a refusal.
    fn load_named(
        &self,
        candidates: Vec<(SessionId, SecureToken)>,
        wanted: Option<u64>,
        fingerprint: Option<&[u8]>,
    ) -> Result<Result<Loaded, Error>> {
        let (mut first_refusal, mut first_mismatch) = (None, None);
        let mut mismatches = 0;
        for (mut id, mut token) in candidates {
            // Each session loaded may persist a touch (a commit): a client that sends many
            // sessions of other clients costs at most this many.
            if mismatches >= MAX_MISMATCHES {
                break;
            }
            let mut hops = 0;
            let refusal = loop {
                match self.fetch(&id, &token, wanted) {
                    Ok(fetched) => {
                        let loaded = Loaded { id, token, fetched, forwarded: hops > 0 };
                        let matches =
                            fingerprint.and_then(|fp| loaded.fetched.fingerprint_matches(fp));
                        if matches != Some(false) {
                            return Ok(Ok(loaded));
                        }
                        first_mismatch.get_or_insert(loaded);
                        mismatches += 1;
                        break None;
                    }
                    Err(Error::Rotated { successor, token: moved }) if hops < MAX_FORWARDS => {
                        (id, token) = (successor, moved);
                        hops += 1;
                    }
                    // Rotated again and again within the window: give up on this cookie.
                    Err(Error::Rotated { .. }) => break Some(Error::Revoked),
                    Err(e) if e.is_refusal() => break Some(e),
                    Err(e) => return Err(e),
                }
            };
            if let Some(refusal) = refusal {
                first_refusal.get_or_insert(refusal);
            }
        }
        if let Some(loaded) = first_mismatch {
            return Ok(Ok(loaded));
        }
        Ok(Err(first_refusal.unwrap_or(Error::NotFound)))
    }

    /// Whether one of `named` was moved to a new id a moment ago ([`Request::moved`]).
    fn moved_recently(&self, named: &[(SessionId, SecureToken)]) -> Result<bool> {
        for (id, token) in named {
            if self.store.moved_recently(id, token)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Fetches state `wanted`, falling back to the latest state if it is unknown or evicted.
    fn fetch(&self, id: &SessionId, token: &SecureToken, wanted: Option<u64>) -> Result<Fetched> {
        match self.store.fetch_state(id, token, wanted) {
            Err(Error::StateNotFound { .. } | Error::StateEvicted { .. }) => {
                self.store.fetch_state(id, token, None)
            }
            other => other,
        }
    }

    /// The fresh-session request for a named session the store refused, or the error if it is
    /// not a refusal.
    fn refused(mut req: Request, e: Error) -> Result<Request> {
        req.outcome = match e {
            Error::NotFound => Outcome::Unknown,
            // A cookie rotated more times in a row than `begin` follows reads as revoked.
            Error::Revoked | Error::Rotated { .. } => Outcome::Revoked,
            Error::Expired { data } => Outcome::Expired { data },
            Error::Security => Outcome::Hijacked { continued: false },
            other => return Err(other),
        };
        req.cookie = CookieNeed::Clear;
        Ok(req)
    }

    /// Ends a request: stores what changed (nothing, if nothing did: a lazy write), creates
    /// the session if a fresh one received data or a state (a session that never did is not
    /// stored, session3's rule), rotates or revokes as asked, and returns the `Set-Cookie`
    /// header value to send, if any.
    ///
    /// # Errors
    /// [`Error::Conflict`] if another request saved the session since this one loaded it
    /// (nothing of this request was written: run it again); [`Error::Busy`] if the request
    /// changed something but its cookie's session was just moved to a new id by another request
    /// ([`Request::moved`]: nothing was stored); storage errors.
    ///
    /// Takes no session lock: [`SessionManager::handle`] does (see `docs/web.md`).
    pub fn finish(&self, req: Request) -> Result<Option<String>> {
        self.finish_with(req, None)
    }

    /// [`SessionManager::finish`], holding the lock of each stored session it writes (saves,
    /// rotates, revokes) around that write when `locks` says so (src/web/run.rs).
    pub(super) fn finish_with(
        &self,
        req: Request,
        locks: Option<&WriteLocks<'_>>,
    ) -> Result<Option<String>> {
        let (name, attrs) = (&self.config.cookie_name, &self.config.cookie);
        let clear = || revoke_cookie(name, attrs).map(Some);
        let (changed, cookie) = (req.changed(), req.cookie);
        if req.ending == Ending::Logout {
            // The session `begin` loaded, which a locked attempt of another request may hold;
            // named sessions that `begin` refused are revoked unlocked (docs/web.md).
            let lock = match &req.stored {
                Some((id, _, _)) => self.write_lock(locks, id)?,
                None => None,
            };
            self.revoke_named(&req)?;
            drop(lock);
            return if req.stored.is_some() || cookie == CookieNeed::Clear {
                clear()
            } else {
                Ok(None)
            };
        }
        if req.moved {
            // A fresh session stored here would send a cookie that replaces the log-in's in the
            // browser, and a removal would remove it: store nothing, send nothing.
            let retry_after = self.config.run.retry_after;
            return if changed { Err(Error::Busy { retry_after }) } else { Ok(None) };
        }
        let Request { stored, data, new_state, fingerprint, user, ending, .. } = req;
        let Some((mut id, mut token, version)) = stored else {
            if !changed {
                return if cookie == CookieNeed::Clear { clear() } else { Ok(None) };
            }
            let state = new_state.map(|(state, _)| state).unwrap_or_default();
            let mut new = NewSession::new(&data, &state);
            if let Some(fp) = &fingerprint {
                new = new.fingerprint(fp);
            }
            if let Some(Some(user)) = &user {
                new = new.user(user);
            }
            let created = self.store.create_with(new)?;
            return self.cookie(&created.id, &created.token).map(Some);
        };
        let mut send = cookie == CookieNeed::Send;
        let mut lock = if changed || ending == Ending::Regenerate {
            self.write_lock(locks, &id)?
        } else {
            None
        };
        // Save first, then rotate: a save refused (a conflict) wrote nothing and rotated
        // nothing, so the request can simply run again with the same cookie. A rotation keeps
        // the version, so the order does not matter to the save.
        if changed {
            let mut save = match &new_state {
                Some((state, same)) => Save::new(version, &data, state).same_state(*same),
                None => Save::session_only(version, &data),
            };
            if let Some(user) = &user {
                save = save.user(user.as_deref());
            }
            match self.store.store_state(&id, &token, save) {
                Ok(_) => {}
                // Another request rotated the session since `begin` (nothing was written):
                // save to the new id, and send its cookie.
                Err(Error::Rotated { successor, token: moved }) => {
                    (id, token) = (successor, moved);
                    drop(lock.take()); // one session lock at a time (they are striped)
                    lock = self.write_lock(locks, &id)?;
                    self.store.store_state(&id, &token, save)?;
                    send = true;
                }
                Err(e) => return Err(e),
            }
        }
        if ending == Ending::Regenerate {
            match self.store.regenerate(&id, &token, self.config.rotation_forward) {
                Ok(moved) => (id, token) = (moved.id, moved.token),
                // Another request of this session rotated it first: that rotation will do.
                Err(Error::Rotated { successor, token: moved }) => (id, token) = (successor, moved),
                // Another request logged out meanwhile: so is this one.
                Err(Error::Revoked | Error::NotFound) => return clear(),
                Err(e) => return Err(e),
            }
            send = true;
        }
        drop(lock);
        if send { self.cookie(&id, &token).map(Some) } else { Ok(None) }
    }

    /// A log-out: revokes the request's session and every session the client named with its
    /// valid token, each with the chain it was rotated into, all in one write transaction (as
    /// [`Store::revoke_with_token`]). A cookie `begin` refused as revoked or rotated (another
    /// request logged in meanwhile) still ends the logged-in session; a wrong token, even in a
    /// cookie sent first, ends nothing and stops nothing. A named session is revoked only if
    /// the session at its chain's end passes the request's cross-checks (so a thief's or a
    /// fixation attacker's log-out ends nothing).
    fn revoke_named(&self, req: &Request) -> Result<()> {
        // The request's own session, as `begin` admitted it (whatever the policy said).
        let mut named: Vec<_> =
            req.stored.iter().map(|(id, token, _)| (id.clone(), token.clone(), None)).collect();
        let fingerprint = &req.fingerprint;
        named.extend(req.named.iter().map(|(id, t)| (id.clone(), t.clone(), fingerprint.clone())));
        if named.is_empty() {
            return Ok(());
        }
        match self.store.revoke_named(named) {
            Ok(_) | Err(Error::Security) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn cookie(&self, id: &SessionId, token: &SecureToken) -> Result<String> {
        let value = format!("{}.{}", id.as_str(), token.as_str());
        set_cookie(&self.config.cookie_name, &value, &self.config.cookie)
    }
}
