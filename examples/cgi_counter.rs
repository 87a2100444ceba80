//! A CGI/1.1 program: a per-session page counter with a back button, log-in and log-out.
//!
//! ```text
//! cargo build --release --example cgi_counter
//! # then install target/release/examples/cgi_counter as a CGI script, e.g. counter.cgi:
//! bash scripts/lighttpd-cgi.sh          # does all of it under lighttpd on 127.0.0.1
//! ```
//!
//! Every request is a fresh process, as CGI wants: it opens the session file, runs one request
//! through [`SessionManager`], prints the response and exits. Many of them run at once and
//! share the file.
//!
//! What a request does, by its query string:
//! - nothing (`/counter.cgi`): **counts**. The session's counter goes up by one, and the page
//!   is saved as a new state of the session holding the counter at that page. State `k` holds
//!   counter `k + 1` (state ids start at 0, and every counting request adds exactly one). A
//!   browser without a session gets a new one at counter 1.
//! - `?state=N`: **shows** state `N`, the back button: its state id and the counter stored in
//!   it. It does not count and stores nothing. A state no longer kept (the store keeps the
//!   latest [`MAX_STATES`]) shows the latest state instead, and says so.
//! - `?login=1`: counts, then logs in as user `demo`: the session moves to a new id (against
//!   session fixation) and the new cookie is sent. For 30 s the old cookie still leads to the
//!   session, and its requests get the new cookie again (a lost response must not log anyone
//!   out).
//! - `?logout=1`: ends the session (revoked in the file) and removes the cookie
//!   (`Max-Age=0`). The next request starts a new session at counter 1.
//!
//! Only `GET` and `HEAD` (the same response without its body) are answered. A real application
//! would change sessions on `POST` only; this demo counts on `GET` so that plain links work.
//!
//! When two requests of one browser save at once, the later one gets `Error::Conflict` from
//! `finish` and nothing of its data was written: it is run again from `begin`, up to
//! [`MAX_ATTEMPTS`] times in all. So is a request that meets a log-out of another tab
//! (`Error::Revoked`); see `worth_retrying`.
//!
//! Environment (besides the CGI variables the server sets):
//! - `SESSIONDB_PATH`: the session file. Default `/tmp/sessiondb-cgi.redb`. The web server's
//!   user must be able to create it and the lock files beside it.
//! - `SESSIONDB_COOKIE_SECURE=1`: mark the cookie `Secure`. Off by default, because this demo
//!   runs over plain HTTP on 127.0.0.1, where a browser would drop (or never send back) a
//!   `Secure` cookie. Turn it on behind HTTPS.
//!
//! Errors are reported the CGI way: a `500 Internal Server Error` response naming the error
//! (and a line on stderr, which the server logs), and exit status 0.
//!
//! The page marks its values for machines: `<span id="session">`, `outcome`, `user`, `state`,
//! `counter` (the counter in the state shown), `total` (the session's counter now) and
//! `attempts`. `tests/cgi.rs` runs this program as a CGI server would and reads them.

#![warn(clippy::pedantic)]

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::{Deserialize, Serialize};
use sessiondb::web::{ClientInfo, ManagerConfig, Outcome, SessionManager, state_from_query};
use sessiondb::web::{Request, query_param, state_in_url};
use sessiondb::{Error, SessionId, Store};

/// The session file when `SESSIONDB_PATH` is not set.
const DEFAULT_PATH: &str = "/tmp/sessiondb-cgi.redb";
/// How many states a session keeps (the store's default, set here so the page can link them).
const MAX_STATES: u64 = 16;
/// How many times a request runs when its saves meet `Error::Conflict`: once, plus two retries.
const MAX_ATTEMPTS: u32 = 3;
/// The query parameter naming the state to show (the manager's `state_param`).
const STATE_PARAM: &str = "state";
/// The user a log-in files the session under.
const DEMO_USER: &str = "demo";

/// The session data: the counter, and who is logged in (`Request` can set the session's user
/// for `Store::revoke_user`, but does not tell it back, so the page keeps its own copy).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Data {
    counter: u64,
    user: Option<String>,
}

/// What the query string asks for. The first of `logout`, `login`, `state` present wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Count,
    Login,
    Show(u64),
    Logout,
}

impl Action {
    fn from_query(query: &str) -> Self {
        if query_param(query, "logout") == Some("1") {
            Action::Logout
        } else if query_param(query, "login") == Some("1") {
            Action::Login
        } else if let Some(state) = state_from_query(query, STATE_PARAM) {
            Action::Show(state)
        } else {
            Action::Count
        }
    }
}

/// What the page shows, computed before `finish` (which consumes the request).
#[derive(Debug)]
struct Page {
    action: Action,
    outcome: &'static str,
    /// The session's id before `finish`; a new or rotated id is read from the cookie after it.
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
    let head = method == "HEAD";
    // The store, kept open by `respond` for the clean-up after the response.
    let mut store = None;
    let response = if head || method == "GET" {
        match respond(&mut store) {
            Ok((page, cookie)) => ok_response(&page, cookie.as_deref(), head),
            Err(err) => {
                eprintln!("cgi_counter: {err}");
                error_response("500 Internal Server Error", &err.to_string(), head)
            }
        }
    } else {
        let mut response =
            error_response("405 Method Not Allowed", "this page only answers GET and HEAD", false);
        response.insert_str(response.find("\r\n").map_or(0, |i| i + 2), "Allow: GET, HEAD\r\n");
        response
    };
    // A CGI program's output goes to the server in one piece.
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(response.as_bytes()).and_then(|()| out.flush()) {
        eprintln!("cgi_counter: cannot write the response: {e}");
        return ExitCode::FAILURE;
    }
    drop(out);
    if let Some(store) = store {
        clean_up_after_response(store);
    }
    ExitCode::SUCCESS
}

/// Ends the response, then does this process's share of the clean-up of expired sessions if
/// one is due (`Store::cleanup_if_due`: at most one batch of about 15 ms, one process at a time,
/// about once a `cleanup_interval` across all the processes sharing the file), and leaves the
/// file to the OS. A CGI process never lives long enough for a clean-up thread.
///
/// The web server finishes the response when standard output closes, not when the process
/// exits: so fd 1 is replaced by `/dev/null` first (rather than closed, so that no file opened
/// later takes its number), and nobody waits for the sweep.
fn clean_up_after_response(store: Store) {
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null");
    // SAFETY: plain fd calls on descriptors this process owns; stdout was flushed and its lock
    // released, and Rust's stdout ignores a closed descriptor.
    let ended = unsafe {
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

/// Runs the request, again on a conflict; the page and the `Set-Cookie` value to send.
fn respond(kept: &mut Option<Store>) -> Result<(Page, Option<String>), Box<dyn std::error::Error>> {
    let path =
        std::env::var_os("SESSIONDB_PATH").map_or_else(|| DEFAULT_PATH.into(), PathBuf::from);
    // A CGI process lives for one request: no clean-up thread; `main` sweeps after the
    // response when the schedule shared through the file says so (`clean_up_after_response`).
    let store = Store::builder(&path).cleanup_thread(false).max_states(MAX_STATES).open()?;
    let mut config = ManagerConfig::default();
    config.state_param = STATE_PARAM.into();
    // `Secure` cookies are only sent over HTTPS (browsers make an exception for localhost,
    // curl and others do not), and this demo runs over plain HTTP on 127.0.0.1: off unless
    // asked for. Behind HTTPS, set SESSIONDB_COOKIE_SECURE=1.
    config.cookie.secure = std::env::var_os("SESSIONDB_COOKIE_SECURE").is_some_and(|v| v == "1");
    // Forward the old cookie for 30 s after a log-in, so that a lost response does not log the
    // user out. The default is no forwarding: during the window whoever holds the old cookie
    // follows the rotation too (docs/web.md weighs it); this demo shows the feature.
    config.rotation_forward = std::time::Duration::from_secs(30);
    let manager = SessionManager::new(store, config)?;

    let client = ClientInfo::from_cgi_env();
    let action = Action::from_query(client.query_string.as_deref().unwrap_or(""));
    let mut attempts = 1;
    let result = loop {
        let mut request = manager.begin(&client)?;
        let page = handle(&mut request, action, attempts)?;
        match manager.finish(request) {
            Ok(cookie) => break Ok((page, cookie)),
            Err(e) if attempts < MAX_ATTEMPTS && worth_retrying(&e) => attempts += 1,
            Err(e) => break Err(e.into()),
        }
    };
    *kept = Some(manager.into_store());
    result
}

/// Whether `finish` failed because another request of the browser changed the session first,
/// having written nothing of this request's data, so that running the request again from
/// `begin` is right.
fn worth_retrying(e: &Error) -> bool {
    // `Conflict`: another request saved first; the save checks the version and wrote nothing.
    // `Rotated` / `Revoked`: another request logged in or out since `begin` (`finish` follows a
    // rotation itself; this covers the rest). In a log-in, `finish` rotates first and saves
    // second, so if the save fails the rotation stands and the retry, still holding the old
    // cookie, is forwarded to it: nothing is counted twice.
    matches!(e, Error::Conflict { .. } | Error::Rotated { .. } | Error::Revoked)
}

/// Applies `action` to the request's session; what the page will show.
fn handle(
    request: &mut Request,
    action: Action,
    attempts: u32,
) -> Result<Page, Box<dyn std::error::Error>> {
    let outcome = outcome_name(request.outcome());
    let session = request.session_id().cloned();
    // A fresh session has no data yet.
    let mut data: Data = if request.data().is_empty() {
        Data::default()
    } else {
        sessiondb::decode(request.data())?
    };
    let mut page = Page { action, outcome, session, user: None, state: None, total: 0, attempts };
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
        (Action::Show(wanted), Some((shown, _))) if wanted != shown => format!(
            "State {wanted} is not kept (never stored, or older than the last {MAX_STATES}): \
             showing the latest state. Viewing a state does not count."
        ),
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
    let _ = writeln!(
        b,
        "<p>{} | {} | {}</p>",
        link(if script.is_empty() { "?" } else { "" }, "Count"),
        link("?login=1", "Log in as demo"),
        link("?logout=1", "Log out")
    );
    let _ = writeln!(
        b,
        r#"<p><small>A plain request counts and adds a state; <code>?state=N</code> only shows state N. Attempts: <span id="attempts">{}</span>.</small></p>"#,
        page.attempts
    );
    b.push_str("</body>\n</html>\n");
    b
}

fn error_response(status: &str, message: &str, head: bool) -> String {
    let mut out = format!(
        "Status: {status}\r\nContent-Type: text/html; charset=utf-8\r\nCache-Control: no-store\r\n\r\n"
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
