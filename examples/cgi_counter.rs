//! A CGI/1.1 program: a per-session page counter with a back button, log-in and log-out.
//!
//! ```text
//! cargo build --release --example cgi_counter
//! # (with --features redis for sessions on Redis: SESSIONDB_URL below)
//! # then install target/release/examples/cgi_counter as a CGI script, e.g. counter.cgi, with
//! # SESSIONDB_PATH set to a file in a directory only the web server's user can write:
//! bash scripts/lighttpd-cgi.sh          # does all of it under lighttpd on 127.0.0.1
//! ```
//!
//! Every request is a fresh process, as CGI wants: it opens the session file, runs one request
//! through [`SessionManager::handle`], prints the response and exits. Many of them run at once
//! and share the file.
//!
//! What a request does:
//! - `GET` (or `HEAD`, the same response without its body) with no `state` parameter:
//!   **counts**. The session's counter goes up by one, and the page is saved as a new state of
//!   the session holding the counter at that page. State `k` holds counter `k + 1` (state ids
//!   start at 0, and every counting request adds exactly one). A browser without a session
//!   gets a new one at counter 1. Other parameters (`?login=1`, `?logout=1`) are ignored: a
//!   `GET`, which any cross-site link or image can make, never logs in or out.
//! - `GET ?state=N`: **shows** state `N`, the back button: its state id and the counter stored
//!   in it. It does not count and stores nothing. A state no longer kept (the store keeps the
//!   latest [`MAX_STATES`]) shows the latest state instead, and says so; so does a `state` that
//!   is not a state number (`-1`, `abc`, one past `u64`).
//! - `POST` with the form field `action=login` (the page's "Log in" button): counts, then logs
//!   in as user `demo`: the session moves to a new id (against session fixation) and the new
//!   cookie is sent. The old cookie is refused from then on (the library's default, no
//!   forwarding: a window in which the old cookie still led to the session would let whoever
//!   planted it follow the log-in).
//! - `POST` with `action=logout` (the "Log out" button): ends the session (revoked in the file)
//!   and removes the cookie (`Max-Age=0`). The next request starts a new session at counter 1.
//!
//! A `POST` whose `Origin` is another site, or that the browser marks `Sec-Fetch-Site:
//! cross-site`, is refused (`403`); the cookie's `SameSite=Lax` already keeps it out of
//! cross-site posts. Other methods get `405`, a `POST` without a known action `400`.
//!
//! Requests of one browser that overlap (parallel XHRs, several tabs) never fail on each
//! other: [`SessionManager::handle`] runs the request again when another one saved first, and
//! takes the session's lock after the first conflict. If even the lock's wait runs out (another
//! process held the session for seconds), the answer is `503 Service Unavailable` with
//! `Retry-After`, and nothing was stored.
//!
//! Environment (besides the CGI variables the server sets):
//! - `SESSIONDB_PATH` (required unless `SESSIONDB_URL` is set): the session file. The web
//!   server's user must be able to create it and the lock directory beside it; put it in a
//!   directory of its own that no other user can write, outside the document root. There is
//!   no default: a shared name in `/tmp` could be created first by another local user.
//! - `SESSIONDB_URL`: the sessions are on this Redis server (`redis://127.0.0.1:6379`) or
//!   Cluster (`redis+cluster://host1:port1,host2:port2`) instead of a file, and
//!   `SESSIONDB_PATH` is not used; several machines' web servers then share them
//!   (`docs/redis.md`). The serving code is the same, generic over [`Engine`]. Needs the program
//!   built with `--features redis`; without it, every request that would use the sessions is
//!   answered `500` saying so, never served from a file. Unset or empty: the file.
//! - `SESSIONDB_COOKIE_SECURE`: `true`/`yes`/`1` mark the cookie `Secure`; `false`/`no`/`0`
//!   (or unset) do not; anything else is an error. Off by default, because this demo runs over
//!   plain HTTP on 127.0.0.1, where a client would drop (or never send back) a `Secure` cookie.
//!   Turn it on behind HTTPS; the cookie is then named `__Host-sessiondb`, a name that a
//!   sibling domain can neither plant nor overwrite.
//! - `SESSIONDB_LOCKLESS_ATTEMPTS`: `RunConfig::lockless_attempts` (default 1; 0 takes the
//!   session's lock for every request, PHP-style).
//! - Expiry, in seconds (`90`) or with a unit (`500ms`, `90s`, `15m`, `2h`; no sign, no
//!   fraction, no space); anything else is an error naming the variable:
//!   - `SESSIONDB_IDLE_TIMEOUT`: a session expires after this long unused
//!     (`Builder::idle_timeout`; default 30 minutes; `off`: never; `0` is refused);
//!   - `SESSIONDB_GRACE`: how long an expired session is kept before the clean-up may remove
//!     it (`Builder::grace_period`; default 10 minutes; `0`: none);
//!   - `SESSIONDB_CLEANUP_INTERVAL`: how often the processes sharing the file sweep it between
//!     them, after their responses (`Builder::cleanup_interval`; default 60 seconds; `off`:
//!     never, the file keeps every expired session until something else sweeps it).
//!     On Redis it is checked but unused: the server removes expired sessions by their keys'
//!     TTLs, and nothing is swept after the response.
//!
//! Errors are reported the CGI way: a `500 Internal Server Error` response naming the error
//! (and a line on stderr, which the server logs), and exit status 0.
//!
//! The page marks its values for machines: `<span id="session">`, `outcome`, `user`, `state`,
//! `counter` (the counter in the state shown), `total` (the session's counter now) and
//! `attempts`. `tests/cgi.rs` runs this program as a CGI server would and reads them.

#![warn(clippy::pedantic)]

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::process::ExitCode;

use serde::{Deserialize, Serialize};
use sessiondb::web::{ClientInfo, ManagerConfig, Outcome, SessionManager, state_from_query};
use sessiondb::web::{Request, query_param, state_in_url};
use sessiondb::{Engine, Error, SessionId, Store};

/// How many states a session keeps (the store's default, set here so the page can link them).
const MAX_STATES: u64 = 16;
/// The query parameter naming the state to show (the manager's `state_param`).
const STATE_PARAM: &str = "state";
/// The cookie's name when it is `Secure` (`SESSIONDB_COOKIE_SECURE`); `sessiondb` otherwise.
const SECURE_COOKIE: &str = "__Host-sessiondb";
/// The user a log-in files the session under.
const DEMO_USER: &str = "demo";
/// The largest `POST` body read (the forms send `action=logout`).
const MAX_BODY: usize = 1024;

/// The session data: the counter, and who is logged in (`Request` can set the session's user
/// for `Store::revoke_user`, but does not tell it back, so the page keeps its own copy).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Data {
    counter: u64,
    user: Option<String>,
}

/// What the request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Count,
    Login,
    /// Show a state: `Some(n)` as asked, `None` for a `state` that is not a state number.
    Show(Option<u64>),
    Logout,
}

impl Action {
    /// The action of a request, or the error response (400, 403, 405) to send instead.
    fn of_request(method: &str, query: &str) -> Result<Self, String> {
        match method {
            "GET" | "HEAD" if query_param(query, STATE_PARAM).is_some() => {
                Ok(Action::Show(state_from_query(query, STATE_PARAM)))
            }
            "GET" | "HEAD" => Ok(Action::Count),
            "POST" if cross_site() => {
                Err(error_response("403 Forbidden", "cross-site form posts are refused", "", false))
            }
            "POST" => match query_param(&read_body(), "action") {
                Some("login") => Ok(Action::Login),
                Some("logout") => Ok(Action::Logout),
                _ => Err(error_response(
                    "400 Bad Request",
                    "a POST needs the form field action=login or action=logout",
                    "",
                    false,
                )),
            },
            _ => Err(error_response(
                "405 Method Not Allowed",
                "this page answers GET, HEAD and POST",
                "Allow: GET, HEAD, POST\r\n",
                method == "HEAD",
            )),
        }
    }
}

/// Whether the browser says a `POST` comes from another site (`Sec-Fetch-Site`, or an `Origin`
/// whose host is not the one this request was sent to).
fn cross_site() -> bool {
    let var = |name| std::env::var(name).ok();
    if var("HTTP_SEC_FETCH_SITE").as_deref() == Some("cross-site") {
        return true;
    }
    match (var("HTTP_ORIGIN"), var("HTTP_HOST")) {
        // Scheme, host and port: an `https://` page of the same host is another origin than
        // this `http://` one (and the other way round).
        (Some(origin), Some(host)) => {
            !origin.eq_ignore_ascii_case(&format!("{}://{host}", scheme()))
        }
        (Some(_), None) => true,
        _ => false,
    }
}

/// The scheme this request came in by, as CGI servers say it: `HTTPS=on` (or `1`), or
/// `REQUEST_SCHEME`.
fn scheme() -> &'static str {
    let var = |name| std::env::var(name).ok().map(|v| v.to_ascii_lowercase());
    let https = matches!(var("HTTPS").as_deref(), Some("on" | "1"))
        || var("REQUEST_SCHEME").as_deref() == Some("https");
    if https { "https" } else { "http" }
}

/// The `POST` body (`CONTENT_LENGTH` bytes of standard input, at most [`MAX_BODY`]).
fn read_body() -> String {
    let length = std::env::var("CONTENT_LENGTH").ok().and_then(|n| n.parse::<usize>().ok());
    let mut body = Vec::new();
    let limit = length.unwrap_or(0).min(MAX_BODY) as u64;
    let _ = std::io::stdin().lock().take(limit).read_to_end(&mut body);
    String::from_utf8_lossy(&body).into_owned()
}

/// What the page shows, computed by the request's code.
#[derive(Debug)]
struct Page {
    action: Action,
    outcome: &'static str,
    /// The session's id at `begin`; a new or rotated id is read from the cookie after it.
    session: Option<SessionId>,
    user: Option<String>,
    /// The state shown, and the counter it holds (`None`: no session, no state).
    state: Option<(u64, u64)>,
    /// The session's counter after this request.
    total: u64,
    attempts: u32,
}

fn main() -> ExitCode {
    let method = std::env::var("REQUEST_METHOD").unwrap_or_else(|_| "GET".into());
    // What to do once the response is out: the file's share of its clean-up; nothing on
    // Redis, whose keys expire by their TTLs.
    let (response, after): (String, Option<Box<dyn FnOnce()>>) = match redis_url() {
        None => {
            let (response, manager) = respond(&method, open);
            let after = manager.map(|manager| {
                Box::new(move || clean_up_after_response(manager.into_store())) as Box<dyn FnOnce()>
            });
            (response, after)
        }
        Some(url) => (respond(&method, || open_redis(&url)).0, None),
    };
    // A CGI program's output goes to the server in one piece.
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(response.as_bytes()).and_then(|()| out.flush()) {
        eprintln!("cgi_counter: cannot write the response: {e}");
        return ExitCode::FAILURE;
    }
    drop(out);
    if let Some(after) = after {
        after();
    }
    ExitCode::SUCCESS
}

/// Ends the response, then does this process's share of the clean-up of expired sessions if
/// one is due (`Store::cleanup_if_due`: at most one batch of about 15 ms, one process at a time,
/// about once a `cleanup_interval` across all the processes sharing the file), and leaves the
/// file to the OS (`close_for_exit`: every commit is durable already, so the clean close's four
/// syncs are skipped while other processes have the file open). A CGI process never lives long
/// enough for a clean-up thread.
///
/// The web server finishes the response when standard output closes, not when the process
/// exits: so fd 1 is replaced by `/dev/null` first (rather than closed, so that no file opened
/// later takes its number), and nobody waits for the sweep.
///
/// A server may then end the process: lighttpd (1.4.69) sends `SIGTERM` to a CGI process still
/// running once its output has ended. Killed there, every batch that takes longer than that
/// signal's delay would be rolled back (harmless, but the sweep would never finish, and the
/// file would grow as if there were no clean-up), so the program ignores `SIGTERM` for the
/// rest of its life, a bounded batch of about 15 ms; `SIGKILL` still ends it.
#[allow(unsafe_code, reason = "libc: ignore SIGTERM and close stdout to end the response")]
fn clean_up_after_response(store: Store) {
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null");
    // SAFETY: plain signal and fd calls on descriptors this process owns; stdout was flushed
    // and its lock released, and Rust's stdout ignores a closed descriptor.
    let ended = unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
        match &null {
            Ok(null) => libc::dup2(std::os::fd::AsRawFd::as_raw_fd(null), 1) == 1,
            Err(_) => libc::close(1) == 0,
        }
    };
    if ended && let Err(e) = store.cleanup_if_due() {
        eprintln!("cgi_counter: clean-up after the response: {e}");
    }
    store.close_for_exit();
}

/// The response to send, and the manager if `open` opened it (to close after the response).
fn respond<E: Engine>(
    method: &str,
    open: impl FnOnce() -> Result<SessionManager<E>, Box<dyn std::error::Error>>,
) -> (String, Option<SessionManager<E>>) {
    let head = method == "HEAD";
    let client = ClientInfo::from_cgi_env();
    // `ClientInfo` reads a query string that is not UTF-8 as none, which would count: refuse it.
    if client.query_string.is_none() && std::env::var_os("QUERY_STRING").is_some() {
        let message = "the query string is not UTF-8 (percent-encode its bytes)";
        return (error_response("400 Bad Request", message, "", head), None);
    }
    let action = match Action::of_request(method, client.query_string.as_deref().unwrap_or("")) {
        Ok(action) => action,
        Err(response) => return (response, None),
    };
    let manager = match open() {
        Ok(manager) => manager,
        Err(e) => return (failure(&*e, head), None),
    };
    let response = serve(&manager, &client, action, head);
    (response, Some(manager))
}

/// Runs the request on any session engine ([`Engine`]): the embedded [`Store`], or a Redis
/// server or Cluster (`SESSIONDB_URL`); the same code serves both.
fn serve<E: Engine>(
    manager: &SessionManager<E>,
    client: &ClientInfo,
    action: Action,
    head: bool,
) -> String {
    match manager.handle(client, |request| handle(request, action)) {
        Ok(handled) => {
            let page = Page { attempts: handled.attempts, ..handled.value };
            ok_response(&page, handled.set_cookie.as_deref(), head)
        }
        Err(e) => failure(&*e, head),
    }
}

/// The expiry settings of the environment (`SESSIONDB_IDLE_TIMEOUT`, `SESSIONDB_GRACE`,
/// `SESSIONDB_CLEANUP_INTERVAL`), each `None` when unset.
#[derive(Debug, Default)]
#[allow(clippy::option_option, reason = "each is unset (the default), off, or a duration")]
struct Expiry {
    idle: Option<Option<std::time::Duration>>,
    grace: Option<std::time::Duration>,
    cleanup: Option<Option<std::time::Duration>>,
}

impl Expiry {
    fn from_env() -> Result<Self, Box<dyn std::error::Error>> {
        let setting = |name: &str, off| {
            std::env::var_os(name).map(|value| duration_setting(name, &value, off)).transpose()
        };
        let idle = setting("SESSIONDB_IDLE_TIMEOUT", true)?;
        if idle == Some(Some(std::time::Duration::ZERO)) {
            return Err("SESSIONDB_IDLE_TIMEOUT must be more than 0 (off: never)".into());
        }
        let grace = setting("SESSIONDB_GRACE", false)?.map(Option::unwrap_or_default);
        let cleanup = setting("SESSIONDB_CLEANUP_INTERVAL", true)?;
        Ok(Self { idle, grace, cleanup })
    }
}

/// The manager on the session file, as the environment configures it.
fn open() -> Result<SessionManager, Box<dyn std::error::Error>> {
    let path = std::env::var_os("SESSIONDB_PATH").filter(|p| !p.is_empty()).ok_or(
        "SESSIONDB_PATH is not set: set it to the session file, in a directory only the web \
         server's user can write, outside the document root (or SESSIONDB_URL to a Redis server)",
    )?;
    // A CGI process lives for one request: no clean-up thread; `main` sweeps after the
    // response when the schedule shared through the file says so (`clean_up_after_response`).
    let mut builder = Store::builder(path).cleanup_thread(false).max_states(MAX_STATES);
    let expiry = Expiry::from_env()?;
    if let Some(idle) = expiry.idle {
        builder = builder.idle_timeout(idle);
    }
    if let Some(grace) = expiry.grace {
        builder = builder.grace_period(grace);
    }
    if let Some(every) = expiry.cleanup {
        builder = builder.cleanup_interval(every);
    }
    Ok(SessionManager::new(builder.open()?, manager_config()?)?)
}

/// `SESSIONDB_URL`, when set and not empty: the sessions are on that Redis server or Cluster.
fn redis_url() -> Option<std::ffi::OsString> {
    std::env::var_os("SESSIONDB_URL").filter(|url| !url.is_empty())
}

/// The manager on the Redis server or Cluster at `url` (`redis://host:port`,
/// `redis+cluster://host1:port1,host2:port2,...`), as the environment configures it.
#[cfg(feature = "redis")]
fn open_redis(
    url: &std::ffi::OsStr,
) -> Result<SessionManager<sessiondb::RedisEngine>, Box<dyn std::error::Error>> {
    let url = url.to_str().ok_or("SESSIONDB_URL is not UTF-8")?;
    let mut builder = sessiondb::RedisEngine::builder_from_url(url)?.max_states(MAX_STATES);
    // `SESSIONDB_CLEANUP_INTERVAL` is checked but has no use here: the server removes expired
    // sessions by their keys' TTLs (`docs/redis.md`, "Expiry and clean-up").
    let expiry = Expiry::from_env()?;
    if let Some(idle) = expiry.idle {
        builder = builder.idle_timeout(idle);
    }
    if let Some(grace) = expiry.grace {
        builder = builder.grace_period(grace);
    }
    Ok(SessionManager::new(builder.open()?, manager_config()?)?)
}

/// Without the `redis` feature, `SESSIONDB_URL` is an error (the request is answered `500`):
/// the program never falls back to a file the operator did not ask for.
#[cfg(not(feature = "redis"))]
fn open_redis(_url: &std::ffi::OsStr) -> Result<SessionManager, Box<dyn std::error::Error>> {
    Err("SESSIONDB_URL is set, but this program was built without Redis support: build it \
         with `cargo build --release --example cgi_counter --features redis` (or unset \
         SESSIONDB_URL to use the file at SESSIONDB_PATH)"
        .into())
}

/// The web layer's settings, as the environment configures them.
fn manager_config() -> Result<ManagerConfig, Box<dyn std::error::Error>> {
    let mut config = ManagerConfig::default();
    config.state_param = STATE_PARAM.into();
    // `Secure` cookies are only sent over HTTPS (browsers make an exception for localhost,
    // curl and others do not), and this demo runs over plain HTTP on 127.0.0.1: off unless
    // asked for. Behind HTTPS, set SESSIONDB_COOKIE_SECURE=true.
    config.cookie.secure = env_flag("SESSIONDB_COOKIE_SECURE")?;
    if config.cookie.secure {
        // Over HTTPS the `__Host-` prefix is possible (it requires `Secure`, `Path=/` and no
        // `Domain`): a sibling domain can then neither plant nor overwrite the cookie.
        config.cookie_name = SECURE_COOKIE.into();
    }
    if let Some(n) = std::env::var_os("SESSIONDB_LOCKLESS_ATTEMPTS") {
        config.run.lockless_attempts = n.to_str().and_then(|n| n.parse().ok()).ok_or(
            "SESSIONDB_LOCKLESS_ATTEMPTS must be a number of attempts (0 locks every request)",
        )?;
    }
    // `rotation_forward` stays at its default, zero: see the log-in above.
    Ok(config)
}

/// A yes/no setting: `true`/`yes`/`1` or `false`/`no`/`0` (any case), unset = no.
fn env_flag(name: &str) -> Result<bool, String> {
    let Some(value) = std::env::var_os(name) else { return Ok(false) };
    match value.to_str().map(str::to_ascii_lowercase).as_deref() {
        Some("true" | "yes" | "1") => Ok(true),
        Some("false" | "no" | "0") => Ok(false),
        _ => Err(format!(
            "{name} must be true, yes, 1, false, no or 0, not \"{}\"",
            value.to_string_lossy()
        )),
    }
}

/// The duration setting `name`, set to `value`: seconds (`90`) or a number with a unit (`ms`,
/// `s`, `m`, `h`), or `off` (`None`) where `off` is allowed.
fn duration_setting(
    name: &str,
    value: &std::ffi::OsStr,
    off: bool,
) -> Result<Option<std::time::Duration>, String> {
    let text = value.to_str().unwrap_or("");
    if off && text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let ms_per: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => 0,
    };
    let ms = number.parse::<u64>().ok().filter(|_| ms_per > 0).and_then(|n| n.checked_mul(ms_per));
    match ms {
        Some(ms) => Ok(Some(std::time::Duration::from_millis(ms))),
        None => Err(format!(
            "{name} must be a number of seconds, or a number with a unit ms, s, m or h (500ms, \
             90s, 15m){}, not \"{}\"",
            if off { ", or off" } else { "" },
            value.to_string_lossy()
        )),
    }
}

/// The response for an error: `503` with `Retry-After` when the session was busy (nothing was
/// stored; the client may simply try again), `500` for everything else.
fn failure(e: &(dyn std::error::Error + 'static), head: bool) -> String {
    eprintln!("cgi_counter: {e}");
    match e.downcast_ref::<Error>() {
        Some(Error::Busy { retry_after }) => {
            let retry = format!("Retry-After: {}\r\n", retry_after.as_secs().max(1));
            error_response("503 Service Unavailable", &e.to_string(), &retry, head)
        }
        _ => error_response("500 Internal Server Error", &e.to_string(), "", head),
    }
}

/// Applies `action` to the request's session; what the page will show. This is the request's
/// code that `SessionManager::handle` runs, possibly more than once (when another request of
/// the session saved first): it acts only through `request`.
fn handle(request: &mut Request, action: Action) -> Result<Page, Box<dyn std::error::Error>> {
    let outcome = outcome_name(request.outcome());
    let session = request.session_id().cloned();
    // A fresh session has no data yet.
    let mut data: Data = if request.data().is_empty() {
        Data::default()
    } else {
        sessiondb::decode(request.data())?
    };
    let mut page =
        Page { action, outcome, session, user: None, state: None, total: 0, attempts: 0 };
    match action {
        Action::Count | Action::Login => {
            data.counter += 1;
            if action == Action::Login {
                data.user = Some(DEMO_USER.into());
                request.set_user(Some(DEMO_USER.as_bytes().to_vec()));
                request.regenerate();
            }
            // The new state's id: one more than the latest, which is counter - 1 before this
            // request (each counting request adds exactly one state, from 0).
            page.state = Some((data.counter - 1, data.counter));
            request.set_data(sessiondb::encode(&data)?);
            request.push_state(data.counter.to_le_bytes().to_vec());
        }
        Action::Show(_) => {
            // `begin` loaded the state asked for (or the latest, if it is no longer kept).
            if let Some(state_id) = request.state_id() {
                let bytes: [u8; 8] = request
                    .state()
                    .try_into()
                    .map_err(|_| format!("state {state_id} does not hold a counter"))?;
                page.state = Some((state_id, u64::from_le_bytes(bytes)));
            }
        }
        Action::Logout => {
            request.logout();
            page.session = None;
            data = Data::default();
        }
    }
    page.user = data.user;
    page.total = data.counter;
    Ok(page)
}

fn outcome_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::New => "New",
        Outcome::Resumed => "Resumed",
        Outcome::Forwarded => "Forwarded",
        Outcome::Expired { .. } => "Expired",
        Outcome::Unknown => "Unknown",
        Outcome::Revoked => "Revoked",
        Outcome::Hijacked { continued: true } => "Hijacked (continued)",
        Outcome::Hijacked { continued: false } => "Hijacked",
        _ => "Other",
    }
}

/// The session id in a `Set-Cookie` value `sessiondb=<id>.<token>; ...` (`finish` does not
/// return the id of a session it created or moved). `None` for a removal (`sessiondb=;`).
fn id_in_cookie(set_cookie: &str) -> Option<SessionId> {
    let (_name, rest) = set_cookie.split_once('=')?;
    let value = rest.split(';').next()?;
    let (id, _token) = value.rsplit_once('.')?;
    SessionId::parse(id).ok()
}

fn ok_response(page: &Page, cookie: Option<&str>, head: bool) -> String {
    let mut out = String::from("Status: 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n");
    if let Some(cookie) = cookie {
        let _ = write!(out, "Set-Cookie: {cookie}\r\n");
    }
    out.push_str("Cache-Control: no-store\r\n\r\n");
    if !head {
        let session = match cookie {
            Some(cookie) => id_in_cookie(cookie),
            None => page.session.clone(),
        };
        out.push_str(&body(page, session.as_ref()));
    }
    out
}

fn body(page: &Page, session: Option<&SessionId>) -> String {
    let script = std::env::var("SCRIPT_NAME").unwrap_or_default();
    let link = |query: &str, text: &str| {
        format!(r#"<a href="{}{}">{}</a>"#, escape(&script), escape(query), escape(text))
    };
    let no_value = || "none".to_owned();
    let mut b = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">\
         <title>sessiondb CGI counter</title></head>\n<body>\n<h1>sessiondb CGI counter</h1>\n",
    );
    let _ = writeln!(
        b,
        r#"<p>Session: <span id="session">{}</span> (how this request found it: <span id="outcome">{}</span>)</p>"#,
        escape(&session.map_or_else(no_value, ToString::to_string)),
        escape(page.outcome),
    );
    let _ = writeln!(
        b,
        r#"<p>User: <span id="user">{}</span></p>"#,
        escape(page.user.as_deref().unwrap_or("none"))
    );
    let (state, counter) = page.state.map_or((no_value(), 0), |(s, c)| (s.to_string(), c));
    let _ = writeln!(
        b,
        r#"<p>This page is state <span id="state">{state}</span>; its counter: <span id="counter">{counter}</span>. The session's counter now: <span id="total">{}</span>.</p>"#,
        page.total
    );
    let note = match (page.action, page.state) {
        (Action::Count, _) => "This request counted: it added the state shown.".to_owned(),
        (Action::Login, _) => format!(
            "This request counted and logged in as {DEMO_USER}: the session moved to a new id."
        ),
        (Action::Logout, _) => "Logged out: the session is ended and its cookie removed.".into(),
        (Action::Show(Some(wanted)), Some((shown, _))) if wanted != shown => format!(
            "State {wanted} is not kept (never stored, or older than the last {MAX_STATES}): \
             showing the latest state. Viewing a state does not count."
        ),
        (Action::Show(None), Some(_)) => "That is not a state number: showing the latest state. \
             Viewing a state does not count."
            .into(),
        (Action::Show(_), Some(_)) => "Viewing an earlier state does not count.".into(),
        (Action::Show(_), None) => "No session: there is no state to show.".into(),
    };
    let _ = writeln!(b, r#"<p id="note">{}</p>"#, escape(&note));
    // State k holds counter k + 1; the store keeps the latest MAX_STATES.
    if page.total > 0 {
        let latest = page.total - 1;
        let oldest = (latest + 1).saturating_sub(MAX_STATES);
        let links: Vec<String> = (oldest..=latest)
            .map(|k| link(&state_in_url("", STATE_PARAM, k), &k.to_string()))
            .collect();
        let _ = writeln!(b, "<p>States (the back button): {}</p>", links.join(" "));
    }
    // Log-in and log-out change the session: forms that POST, never links.
    let form = |action: &str, text: &str| {
        format!(
            r#"<form method="post" action="{}"><input type="hidden" name="action" value="{action}"><button type="submit">{text}</button></form>"#,
            escape(if script.is_empty() { "?" } else { &script })
        )
    };
    let _ = writeln!(
        b,
        "<p>{}</p>\n{}\n{}",
        link(if script.is_empty() { "?" } else { "" }, "Count"),
        form("login", "Log in as demo"),
        form("logout", "Log out")
    );
    let _ = writeln!(
        b,
        r#"<p><small>A plain request counts and adds a state; <code>?state=N</code> only shows state N. Attempts: <span id="attempts">{}</span>.</small></p>"#,
        page.attempts
    );
    b.push_str("</body>\n</html>\n");
    b
}

/// An error page; `headers` are extra header lines, each ending in `\r\n`.
fn error_response(status: &str, message: &str, headers: &str, head: bool) -> String {
    let mut out = format!(
        "Status: {status}\r\n{headers}Content-Type: text/html; charset=utf-8\r\nCache-Control: no-store\r\n\r\n"
    );
    if !head {
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{0}</title></head>\n\
             <body>\n<h1>{0}</h1>\n<p id=\"error\">{1}</p>\n</body>\n</html>\n",
            escape(status),
            escape(message)
        );
    }
    out
}

/// `text` safe in HTML text and in quoted attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
