//! A log-out racing a log-in (issue 15): revoking an id revokes the chain it was rotated into,
//! in one write transaction, so that no interleaving of the two leaves the logged-in session
//! alive; and a log-out whose cookie was refused as revoked or rotated still ends it. Through
//! the store, the web layer, and two real processes (this test binary re-run as a child).

use std::process::Command;
use std::time::Duration;

use sessiondb::web::{ClientInfo, ManagerConfig, Outcome, SessionManager};
use sessiondb::{Error, SecureToken, SessionId, Store};

mod common;
use common::{T0, temp_db};

/// The forwarding windows every interleaving is tried with: none (the default) and 30 s.
const FORWARDS: [u64; 2] = [0, 30];

fn manager(db: &common::TempDb, forward: u64) -> SessionManager {
    let clock = sessiondb::ManualClock::new(T0);
    let store = common::builder(&db.path, &clock).cleanup_interval(None).open().unwrap();
    let mut config = ManagerConfig::default();
    config.rotation_forward = Duration::from_secs(forward);
    SessionManager::new(store, config).unwrap()
}

/// The `name=value` part of a `Set-Cookie` value, as a browser sends it back.
fn cookie_of(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

/// A session with some data; its cookie.
fn logged_out_visit(m: &SessionManager) -> String {
    let mut req = m.begin(&ClientInfo::default()).unwrap();
    req.set_data(b"cart".to_vec());
    cookie_of(&m.finish(req).unwrap().expect("a new session sends its cookie"))
}

/// A complete log-in with `cookie`: rotates the session and files it under a user; the new
/// cookie.
fn login(m: &SessionManager, cookie: &str) -> String {
    let mut req = m.begin(&ClientInfo::with_cookie(cookie)).unwrap();
    assert!(matches!(req.outcome(), Outcome::Resumed | Outcome::Forwarded), "{:?}", req.outcome());
    req.regenerate();
    req.set_user(Some(b"ann".to_vec()));
    cookie_of(&m.finish(req).unwrap().expect("a log-in sends the new cookie"))
}

/// Whether the session `cookie` names can still be used by its holder.
fn alive(m: &SessionManager, cookie: &str) -> bool {
    let req = m.begin(&ClientInfo::with_cookie(cookie)).unwrap();
    let alive = matches!(req.outcome(), Outcome::Resumed | Outcome::Forwarded);
    m.finish(req).unwrap();
    alive
}

/// The log-out finished: the cookie is removed, and nothing of the session lives on.
fn assert_all_logged_out(m: &SessionManager, cookies: &[&str], set_cookie: Option<String>) {
    let set_cookie = set_cookie.expect("a log-out removes the cookie");
    assert!(set_cookie.contains("Max-Age=0"), "{set_cookie}");
    for cookie in cookies {
        assert!(!alive(m, cookie), "{cookie} is still logged in");
    }
    assert_eq!(m.store().count().unwrap(), 0, "a session survived the log-out");
    assert!(m.store().user_sessions(b"ann").unwrap().is_empty());
}

fn parse(cookie: &str) -> (SessionId, SecureToken) {
    let (id, token) = cookie.split_once('=').unwrap().1.rsplit_once('.').unwrap();
    (SessionId::parse(id).unwrap(), SecureToken::parse(token).unwrap())
}

#[test]
fn logout_after_a_committed_login_ends_the_logged_in_session() {
    for forward in FORWARDS {
        let db = temp_db();
        let m = manager(&db, forward);
        let old = logged_out_visit(&m);
        let new = login(&m, &old);
        // The other tab still sends the old cookie with its log-out.
        let mut logout = m.begin(&ClientInfo::with_cookie(&old)).unwrap();
        logout.logout();
        let set = m.finish(logout).unwrap();
        assert_all_logged_out(&m, &[&old, &new], set);
    }
}

#[test]
fn logout_whose_begin_precedes_a_login_ends_the_logged_in_session() {
    for forward in FORWARDS {
        let db = temp_db();
        let m = manager(&db, forward);
        let old = logged_out_visit(&m);
        let mut logout = m.begin(&ClientInfo::with_cookie(&old)).unwrap();
        assert_eq!(logout.outcome(), &Outcome::Resumed);
        let new = login(&m, &old); // commits between the log-out's begin and finish
        logout.logout();
        let set = m.finish(logout).unwrap();
        assert_all_logged_out(&m, &[&old, &new], set);
    }
}

#[test]
fn a_login_that_commits_after_the_logout_resurrects_nothing() {
    for forward in FORWARDS {
        for with_save in [false, true] {
            let db = temp_db();
            let m = manager(&db, forward);
            let old = logged_out_visit(&m);
            let mut login = m.begin(&ClientInfo::with_cookie(&old)).unwrap();
            let mut logout = m.begin(&ClientInfo::with_cookie(&old)).unwrap();
            logout.logout();
            let set = m.finish(logout).unwrap();
            login.regenerate();
            if with_save {
                login.set_user(Some(b"ann".to_vec()));
            }
            match m.finish(login) {
                // Rotating a revoked session is refused; the log-in clears the cookie.
                Ok(set) => assert!(set.unwrap().contains("Max-Age=0")),
                // Its save is refused (the web layer runs the request again, as a new visit).
                Err(e) => assert!(matches!(e, Error::Revoked), "{e:?}"),
            }
            assert_all_logged_out(&m, &[&old], set);
        }
    }
}

#[test]
fn logout_with_a_cookie_rotated_twice_ends_the_end_of_the_chain() {
    for forward in FORWARDS {
        for logout_begins_first in [false, true] {
            let db = temp_db();
            let m = manager(&db, forward);
            let first = logged_out_visit(&m);
            let early = m.begin(&ClientInfo::with_cookie(&first)).unwrap();
            let second = login(&m, &first);
            let third = login(&m, &second);
            let mut logout = if logout_begins_first {
                early
            } else {
                m.finish(early).unwrap();
                m.begin(&ClientInfo::with_cookie(&first)).unwrap()
            };
            logout.logout();
            let set = m.finish(logout).unwrap();
            assert_all_logged_out(&m, &[&first, &second, &third], set);
        }
    }
}

#[test]
fn a_wrong_token_cannot_log_out_through_a_rotated_id() {
    for forward in FORWARDS {
        let db = temp_db();
        let m = manager(&db, forward);
        let old = logged_out_visit(&m);
        let new = login(&m, &old);
        let (id, _) = parse(&old);
        let forged = format!("sessiondb={}.{}", id.as_str(), "A".repeat(43));
        let mut logout = m.begin(&ClientInfo::with_cookie(&forged)).unwrap();
        assert_eq!(logout.outcome(), &Outcome::Hijacked { continued: false });
        logout.logout();
        m.finish(logout).unwrap();
        assert!(alive(&m, &new), "a forged token logged the user out");
        assert_eq!(m.store().count().unwrap(), 1);
    }
}

#[test]
fn a_forged_cookie_sent_first_does_not_stop_a_logout_racing_a_login() {
    // The client sends a cookie with a wrong token first (tossed by a sibling domain, or
    // stale): `begin` reports a suspected hijack, but the genuine cookie after it, refused as
    // revoked because another tab logged in, still ends the logged-in session.
    for forward in FORWARDS {
        let db = temp_db();
        let m = manager(&db, forward);
        let old = logged_out_visit(&m);
        let new = login(&m, &old);
        let (id, _) = parse(&old);
        let forged = format!("sessiondb={}.{}", id.as_str(), "A".repeat(43));
        let mut logout = m.begin(&ClientInfo::with_cookie(format!("{forged}; {old}"))).unwrap();
        logout.logout();
        let set = m.finish(logout).unwrap();
        assert_all_logged_out(&m, &[&old, &new], set);
    }
}

#[test]
fn with_cross_checks_a_tossed_cookie_first_does_not_stop_a_logout_racing_a_login() {
    for forward in FORWARDS {
        let db = temp_db();
        let clock = sessiondb::ManualClock::new(T0);
        let store = common::builder(&db.path, &clock).cleanup_interval(None).open().unwrap();
        let mut config = ManagerConfig::default();
        config.rotation_forward = Duration::from_secs(forward);
        config.cross_checks = vec![sessiondb::web::CrossCheck::UserAgent];
        let m = SessionManager::new(store, config).unwrap();
        let client = |cookie: &str, agent: &str| ClientInfo::with_cookie(cookie).user_agent(agent);
        let mut req = m.begin(&client("", "curl/8")).unwrap();
        req.set_data(b"attacker".to_vec());
        let tossed = cookie_of(&m.finish(req).unwrap().unwrap());
        let mut req = m.begin(&client("", "Firefox")).unwrap();
        req.set_data(b"cart".to_vec());
        let old = cookie_of(&m.finish(req).unwrap().unwrap());
        let mut req = m.begin(&client(&old, "Firefox")).unwrap();
        req.regenerate();
        let new = cookie_of(&m.finish(req).unwrap().unwrap());

        let header = format!("{tossed}; {old}");
        let mut logout = m.begin(&client(&header, "Firefox")).unwrap();
        logout.logout();
        m.finish(logout).unwrap();
        let req = m.begin(&client(&new, "Firefox")).unwrap();
        assert_eq!(req.outcome(), &Outcome::Revoked, "forward {forward}: still logged in");
        m.finish(req).unwrap();
        let req = m.begin(&client(&tossed, "curl/8")).unwrap();
        assert_eq!(
            req.outcome(),
            &Outcome::Resumed,
            "the other client's session is not ours to end"
        );
        m.finish(req).unwrap();
    }
}

// ---- the store's guarantee ----

#[test]
fn revoking_a_rotated_id_revokes_the_session_it_was_rotated_into() -> Result<(), Error> {
    // Windows short enough to end before the test clock's idle timeout (10 s).
    for forward in [0, 2] {
        let db = temp_db();
        let (store, clock) = common::store(&db);
        let a = store.create(b"cart", b"")?;
        let b = store.regenerate(&a.id, &a.token, Duration::from_secs(forward))?;
        let c = store.regenerate(&b.id, &b.token, Duration::from_secs(forward))?;
        // After any forwarding window too: the tombstone keeps its successor until it goes.
        clock.advance(forward * 1000 + 1);
        let revoked = store.revoke(&a.id)?;
        for (id, token) in [(&a.id, &a.token), (&b.id, &b.token), (&c.id, &c.token)] {
            let got = store.load(id, token);
            assert!(matches!(got, Err(Error::Revoked)), "forward {forward}, {id}: {got:?}");
        }
        assert!(revoked, "a live session at the end of the chain was revoked");
        assert_eq!(store.count()?, 0);
        assert!(!store.revoke(&a.id)?, "nothing left to revoke");
        // The chain cannot be rotated back to life.
        let again = store.regenerate(&c.id, &c.token, Duration::ZERO);
        assert!(matches!(again, Err(Error::Revoked)), "{again:?}");
    }
    Ok(())
}

#[test]
fn revoking_inside_the_forwarding_window_stops_the_forwarding() -> Result<(), Error> {
    let db = temp_db();
    let (store, _clock) = common::store(&db);
    let a = store.create(b"cart", b"")?;
    let b = store.regenerate(&a.id, &a.token, Duration::from_secs(30))?;
    assert!(matches!(store.load(&a.id, &a.token), Err(Error::Rotated { .. })));
    let revoked = store.revoke(&a.id)?;
    assert!(matches!(store.load(&a.id, &a.token), Err(Error::Revoked)));
    let got = store.load(&b.id, &b.token);
    assert!(matches!(got, Err(Error::Revoked)), "{got:?}");
    assert!(revoked);
    Ok(())
}

#[test]
fn a_revoke_first_leaves_nothing_to_rotate() -> Result<(), Error> {
    let db = temp_db();
    let (store, _clock) = common::store(&db);
    let a = store.create(b"cart", b"")?;
    assert!(store.revoke(&a.id)?);
    let moved = store.regenerate(&a.id, &a.token, Duration::from_secs(30));
    assert!(matches!(moved, Err(Error::Revoked)), "{moved:?}");
    assert_eq!(store.count()?, 0);
    Ok(())
}

#[test]
fn revoke_with_token_checks_the_token_of_the_id_it_was_given() -> Result<(), Error> {
    for forward in [0, 2] {
        let db = temp_db();
        let (store, _clock) = common::store(&db);
        let wrong = SecureToken::parse(&"A".repeat(43))?;
        let a = store.create(b"cart", b"")?;
        let b = store.regenerate(&a.id, &a.token, Duration::from_secs(forward))?;
        // A wrong token revokes nothing, neither through the retired id nor the live one.
        for id in [&a.id, &b.id] {
            let got = store.revoke_with_token(id, &wrong);
            assert!(matches!(got, Err(Error::Security)), "{got:?}");
        }
        // The successor's token does not open the retired id either.
        assert!(matches!(store.revoke_with_token(&a.id, &b.token), Err(Error::Security)));
        assert_eq!(store.load(&b.id, &b.token)?.session_data, b"cart");
        // The retired id's own token ends the chain.
        assert!(store.revoke_with_token(&a.id, &a.token)?);
        assert!(matches!(store.load(&b.id, &b.token), Err(Error::Revoked)));
        assert!(!store.revoke_with_token(&a.id, &a.token)?, "nothing left");
        let unknown = SessionId::parse("never-issued-id-0123456789abcdef")?;
        assert!(!store.revoke_with_token(&unknown, &wrong)?, "unknown: nothing to revoke");
    }
    Ok(())
}

#[test]
fn with_cross_checks_a_planted_cookie_cannot_log_the_victim_out() {
    // Session fixation: the attacker planted cookie `old` (it knows its token), the victim
    // logged in with it. The attacker's log-out with `old` must not end the victim's session
    // when the sessions are bound to the client; the victim's own log-out with `old` (another
    // tab) does.
    for forward in FORWARDS {
        let db = temp_db();
        let clock = sessiondb::ManualClock::new(T0);
        let store = common::builder(&db.path, &clock).cleanup_interval(None).open().unwrap();
        let mut config = ManagerConfig::default();
        config.rotation_forward = Duration::from_secs(forward);
        config.cross_checks = vec![sessiondb::web::CrossCheck::UserAgent];
        let m = SessionManager::new(store, config).unwrap();
        let victim = |cookie: &str| ClientInfo::with_cookie(cookie).user_agent("Firefox");
        let mut req = m.begin(&victim("")).unwrap();
        req.set_data(b"cart".to_vec());
        let old = cookie_of(&m.finish(req).unwrap().unwrap());
        let mut req = m.begin(&victim(&old)).unwrap();
        req.regenerate();
        let new = cookie_of(&m.finish(req).unwrap().unwrap());

        let mut logout = m.begin(&ClientInfo::with_cookie(&old).user_agent("curl/8")).unwrap();
        logout.logout();
        m.finish(logout).unwrap();
        let req = m.begin(&victim(&new)).unwrap();
        assert_eq!(
            req.outcome(),
            &Outcome::Resumed,
            "forward {forward}: the victim was logged out"
        );
        m.finish(req).unwrap();

        let mut logout = m.begin(&victim(&old)).unwrap();
        logout.logout();
        m.finish(logout).unwrap();
        let req = m.begin(&victim(&new)).unwrap();
        assert_eq!(req.outcome(), &Outcome::Revoked, "forward {forward}");
        m.finish(req).unwrap();
    }
}

// ---- two real processes ----

/// The child: one complete log-in with the cookie in `SESSIONDB_LR_COOKIE`; prints the new
/// cookie.
#[test]
#[ignore = "child process of logout_and_login_in_two_processes; run by it"]
fn child_login() {
    let path = std::env::var("SESSIONDB_LR_PATH").expect("run by the parent test");
    let cookie = std::env::var("SESSIONDB_LR_COOKIE").unwrap();
    let store = Store::builder(&path).cleanup_interval(None).open().unwrap();
    let m = SessionManager::new(store, ManagerConfig::default()).unwrap();
    let mut req = m.begin(&ClientInfo::with_cookie(&cookie)).unwrap();
    if !matches!(req.outcome(), Outcome::Resumed | Outcome::Forwarded) {
        // Logged out already: this log-in form would be shown again.
        m.finish(req).unwrap();
        println!("\nLOGIN: none");
        return;
    }
    req.regenerate();
    req.set_user(Some(b"ann".to_vec()));
    match m.finish(req) {
        Ok(set) => println!("\nLOGIN: {}", cookie_of(&set.unwrap_or_default())),
        Err(e) => println!("\nLOGIN: refused {e}"),
    }
}

/// Runs the child's log-in with `cookie` in its own process; the new cookie, if it got one.
fn spawn_login(path: &std::path::Path, cookie: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_login", "--nocapture", "--test-threads=1"])
        .env("SESSIONDB_LR_PATH", path)
        .env("SESSIONDB_LR_COOKIE", cookie)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn child")
}

fn login_output(child: std::process::Child) -> Option<String> {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stdout));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix("LOGIN: ")).expect("the child's answer");
    line.strip_prefix("sessiondb=").filter(|v| !v.is_empty()).map(|v| format!("sessiondb={v}"))
}

#[test]
fn logout_and_login_in_two_processes() {
    let db = temp_db();
    let open = || {
        let store = Store::builder(&db.path).cleanup_interval(None).open().unwrap();
        SessionManager::new(store, ManagerConfig::default()).unwrap()
    };
    let m = open();
    // Set interleavings: the other process logs in before the log-out's begin, and between
    // its begin and finish.
    for login_before_begin in [true, false] {
        let old = logged_out_visit(&m);
        let mut new = None;
        if login_before_begin {
            new = login_output(spawn_login(&db.path, &old));
        }
        let mut logout = m.begin(&ClientInfo::with_cookie(&old)).unwrap();
        if !login_before_begin {
            new = login_output(spawn_login(&db.path, &old));
        }
        logout.logout();
        let set = m.finish(logout).unwrap();
        let new = new.expect("the child logged in");
        assert_all_logged_out(&m, &[&old, &new], set);
    }
    // Free races: whoever wins, nothing stays logged in.
    for _ in 0..8 {
        let old = logged_out_visit(&m);
        let child = spawn_login(&db.path, &old);
        let mut logout = m.begin(&ClientInfo::with_cookie(&old)).unwrap();
        logout.logout();
        let set = m.finish(logout).unwrap();
        let new = login_output(child);
        let mut cookies = vec![old.as_str()];
        cookies.extend(new.as_deref());
        assert_all_logged_out(&m, &cookies, set);
    }
}

/// Whoever kept the pre-log-in cookie (an attacker who planted it, without cross-checks) can end
/// the logged-in session only within a minute of the rotation — the window of a race — and not
/// for the week the tombstone lives. Failed before the window: the log-out a day later ended
/// the victim's session.
#[test]
fn a_kept_pre_login_cookie_cannot_log_out_after_the_race_window() {
    for forward in FORWARDS {
        let db = temp_db();
        let clock = sessiondb::ManualClock::new(T0);
        let store = common::builder(&db.path, &clock)
            .idle_timeout(Some(Duration::from_secs(7 * 24 * 3600)))
            .cleanup_interval(None)
            .open()
            .unwrap();
        let mut config = ManagerConfig::default();
        config.rotation_forward = Duration::from_secs(forward);
        let m = SessionManager::new(store, config).unwrap();
        let planted = logged_out_visit(&m);
        let victim = login(&m, &planted);
        // A day later, after the forwarding window: the log-out with the planted cookie clears
        // the attacker's own cookie and ends nothing else.
        clock.advance(24 * 3600 * 1000);
        let mut logout = m.begin(&ClientInfo::with_cookie(&planted)).unwrap();
        assert_eq!(logout.outcome(), &Outcome::Revoked, "forward {forward}");
        logout.logout();
        let cleared = m.finish(logout).unwrap().expect("the planted cookie is removed");
        assert!(cleared.contains("Max-Age=0"), "{cleared}");
        assert!(alive(&m, &victim), "forward {forward}: the kept cookie logged the victim out");
        let (old_id, old_token) = parse(&planted);
        assert!(!m.store().revoke_with_token(&old_id, &old_token).unwrap(), "forward {forward}");
        assert!(alive(&m, &victim), "forward {forward}");
        // Within the window (a second rotation, then its log-out race) it does end it.
        let newer = login(&m, &victim);
        clock.advance(forward * 1000 + sessiondb_race_window_ms() - 1);
        let (id, token) = parse(&victim);
        assert!(m.store().revoke_with_token(&id, &token).unwrap(), "forward {forward}");
        assert!(!alive(&m, &newer), "forward {forward}: the race's log-out left the session");
    }
}

/// One minute: `Store::revoke_with_token`'s documented window.
fn sessiondb_race_window_ms() -> u64 {
    60 * 1000
}
