//! The `Cookie` header as an attacker (or a careless sibling site) shapes it: other cookies
//! must not be able to hide ours (a forced log-out), and ours must be read exactly once, by its
//! exact name (issue 15).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStringExt;

use sessiondb::web::{
    ClientInfo, CrossCheck, HijackPolicy, MAX_COOKIE_HEADER_LEN, MAX_COOKIE_SCAN_LEN, MAX_COOKIES,
    ManagerConfig, Outcome, SessionManager, get_cookie,
};

mod common;
use common::{T0, temp_db};

fn manager(db: &common::TempDb) -> SessionManager {
    let clock = sessiondb::ManualClock::new(T0);
    let store = common::builder(&db.path, &clock).cleanup_interval(None).open().unwrap();
    SessionManager::new(store, ManagerConfig::default()).unwrap()
}

/// A stored session; its `sessiondb=<id>.<token>` pair.
fn session(m: &SessionManager) -> String {
    let mut req = m.begin(&ClientInfo::default()).unwrap();
    req.set_data(b"cart".to_vec());
    let set = m.finish(req).unwrap().expect("a new session sends its cookie");
    set.split(';').next().unwrap().to_owned()
}

fn outcome(m: &SessionManager, client: &ClientInfo) -> Outcome {
    let req = m.begin(client).unwrap();
    let outcome = req.outcome().clone();
    m.finish(req).unwrap();
    outcome
}

/// A CGI request whose `HTTP_COOKIE` holds `bytes` (on Unix, any bytes but NUL).
fn cgi(bytes: &[u8]) -> ClientInfo {
    ClientInfo::from_vars(|name| {
        (name == "HTTP_COOKIE").then(|| OsString::from_vec(bytes.to_vec()))
    })
}

#[test]
fn a_byte_that_is_not_utf8_in_another_cookie_spoils_only_that_cookie() {
    let db = temp_db();
    let m = manager(&db);
    let ours = session(&m);
    for header in [
        format!("theme=\u{0}; {ours}").into_bytes(),
        [b"tracker=\xff\xfe; ".as_slice(), ours.as_bytes()].concat(),
        [ours.as_bytes(), b"; lang=fr\xe9".as_slice()].concat(),
        [b"a\x80b=1; ".as_slice(), ours.as_bytes(), b"; c=\xc3".as_slice()].concat(),
    ] {
        assert_eq!(outcome(&m, &cgi(&header)), Outcome::Resumed, "{header:?}");
    }
}

#[test]
fn many_other_cookies_cannot_push_ours_out() {
    let db = temp_db();
    let m = manager(&db);
    let ours = session(&m);
    for before in [MAX_COOKIES, 3 * MAX_COOKIES] {
        let mut header = String::new();
        for i in 0..before {
            write!(header, "c{i}=1; ").unwrap();
        }
        header.push_str(&ours);
        assert!(header.len() <= MAX_COOKIE_HEADER_LEN);
        let client = ClientInfo::with_cookie(&header);
        assert_eq!(outcome(&m, &client), Outcome::Resumed, "after {before} other cookies");
        assert_eq!(outcome(&m, &cgi(header.as_bytes())), Outcome::Resumed);
        let value = ours.split_once('=').unwrap().1;
        assert_eq!(get_cookie(&header, "sessiondb"), Some(value), "get_cookie too");
    }
}

#[test]
fn a_logout_ends_every_session_the_client_sends_a_valid_cookie_for() {
    // Two session cookies of our name (an old one on a narrower `Path`, or from a sibling
    // domain): the log-out's `Set-Cookie` removes only one from the browser, so the other
    // would log the user back in on the next request.
    let db = temp_db();
    let m = manager(&db);
    let (a, b) = (session(&m), session(&m));
    let mut req = m.begin(&ClientInfo::with_cookie(format!("{a}; {b}"))).unwrap();
    assert_eq!(req.outcome(), &Outcome::Resumed);
    req.logout();
    assert!(m.finish(req).unwrap().unwrap().contains("Max-Age=0"));
    for cookie in [&a, &b] {
        assert_eq!(outcome(&m, &ClientInfo::with_cookie(cookie)), Outcome::Revoked, "{cookie}");
    }
    assert_eq!(m.store().count().unwrap(), 0);
}

#[test]
fn a_logout_with_a_forged_second_cookie_ends_only_the_real_session() {
    let db = temp_db();
    let m = manager(&db);
    let (a, victim) = (session(&m), session(&m));
    let id = victim.split_once('=').unwrap().1.rsplit_once('.').unwrap().0;
    let forged = format!("sessiondb={id}.{}", "A".repeat(43));
    let mut req = m.begin(&ClientInfo::with_cookie(format!("{a}; {forged}"))).unwrap();
    req.logout();
    m.finish(req).unwrap();
    assert_eq!(outcome(&m, &ClientInfo::with_cookie(&a)), Outcome::Revoked);
    assert_eq!(outcome(&m, &ClientInfo::with_cookie(&victim)), Outcome::Resumed);
}

#[test]
fn only_the_exact_name_is_ours_and_quoting_or_spacing_changes_nothing() {
    let db = temp_db();
    let m = manager(&db);
    let ours = session(&m);
    let value = ours.split_once('=').unwrap().1;
    // Another name: not ours, whatever its case.
    for name in ["Sessiondb", "SESSIONDB", "sessiondb_", "xsessiondb", "__Host-sessiondb"] {
        let client = ClientInfo::with_cookie(format!("{name}={value}"));
        assert_eq!(outcome(&m, &client), Outcome::New, "{name}");
    }
    // RFC 6265 spacing and quotes: the same cookie (browsers strip the spaces of a
    // `Set-Cookie` name themselves, so no one can set " sessiondb" apart from ours).
    for header in [
        format!(" sessiondb={value}"),
        format!("\tsessiondb = {value} "),
        format!("sessiondb=\"{value}\""),
        format!("x=1;sessiondb={value};y=2"),
    ] {
        assert_eq!(outcome(&m, &ClientInfo::with_cookie(&header)), Outcome::Resumed, "{header}");
    }
    // Broken quoting or a value with a space is not a cookie at all.
    for header in [format!("sessiondb=\"{value}"), format!("sessiondb={value} x")] {
        assert_eq!(outcome(&m, &ClientInfo::with_cookie(&header)), Outcome::New, "{header}");
    }
}

#[test]
fn duplicates_of_our_cookie_are_harmless() {
    let db = temp_db();
    let m = manager(&db);
    let ours = session(&m);
    let junk = format!("sessiondb=nope.{}", "x".repeat(43));
    for header in [
        format!("{ours}; {ours}"),
        format!("{junk}; {ours}; {junk}"),
        format!("sessiondb=; sessiondb=garbage; {ours}"),
    ] {
        assert_eq!(outcome(&m, &ClientInfo::with_cookie(&header)), Outcome::Resumed, "{header}");
    }
}

/// A sibling subdomain sets about 9 KB of cookies (more than [`MAX_COOKIE_HEADER_LEN`]); a
/// server that accepts big headers (hyper, axum) passes them on: ours is still found.
#[test]
fn cookies_of_other_sites_past_8_kib_do_not_log_the_user_out() {
    let db = temp_db();
    let m = manager(&db);
    let ours = session(&m);
    let mut others = String::new();
    for i in 0..9 {
        write!(others, "sibling{i}={}; ", "v".repeat(1000)).unwrap();
    }
    for header in [format!("{others}{ours}"), format!("{ours}; {others}")] {
        assert!(header.len() > MAX_COOKIE_HEADER_LEN);
        assert_eq!(outcome(&m, &ClientInfo::with_cookie(&header)), Outcome::Resumed);
        assert_eq!(outcome(&m, &cgi(header.as_bytes())), Outcome::Resumed);
    }
    assert_eq!(m.store().count().unwrap(), 1, "no fresh session");
}

#[test]
fn a_header_over_the_size_limit_is_read_as_no_cookie_never_cut() {
    let db = temp_db();
    let m = manager(&db);
    let ours = session(&m);
    let filler = "f=".to_owned() + &"x".repeat(MAX_COOKIE_SCAN_LEN);
    for header in [format!("{ours}; {filler}"), format!("{filler}; {ours}")] {
        let req = m.begin(&ClientInfo::with_cookie(&header)).unwrap();
        assert_eq!(req.outcome(), &Outcome::New);
        assert_eq!(m.finish(req).unwrap(), None, "no cookie is removed either");
    }
    assert_eq!(m.store().count().unwrap(), 1);
}

/// A manager whose sessions are bound to the user agent, under `policy`.
fn bound(db: &common::TempDb, policy: HijackPolicy) -> SessionManager {
    let clock = sessiondb::ManualClock::new(T0);
    let store = common::builder(&db.path, &clock).cleanup_interval(None).open().unwrap();
    let mut config = ManagerConfig::default();
    config.cross_checks = vec![CrossCheck::UserAgent];
    config.hijack_policy = policy;
    SessionManager::new(store, config).unwrap()
}

/// A stored session of a client with user agent `agent`; its cookie pair.
fn session_of(m: &SessionManager, agent: &str, data: &[u8]) -> String {
    let mut req = m.begin(&ClientInfo::default().user_agent(agent)).unwrap();
    req.set_data(data.to_vec());
    m.finish(req).unwrap().unwrap().split(';').next().unwrap().to_owned()
}

#[test]
fn with_cross_checks_a_cookie_tossed_ahead_of_ours_does_not_hide_it() {
    // A sibling domain plants its own valid session cookie, sent before ours. It fails the
    // cross-checks: it must not cost the victim its session (a fresh one, and a `Max-Age=0`
    // that deletes the real cookie), nor, when hijacks are only reported, be handed over.
    for policy in [HijackPolicy::Refuse, HijackPolicy::Report] {
        let db = temp_db();
        let m = bound(&db, policy);
        let tossed = session_of(&m, "curl/8", b"attacker");
        let ours = session_of(&m, "Firefox", b"victim");
        let client = ClientInfo::with_cookie(format!("{tossed}; {ours}")).user_agent("Firefox");
        let req = m.begin(&client).unwrap();
        assert_eq!(req.outcome(), &Outcome::Resumed, "{policy:?}");
        assert_eq!(req.data(), b"victim");
        assert_eq!(m.finish(req).unwrap(), None, "{policy:?}: no cookie is cleared");
    }
}

#[test]
fn with_cross_checks_a_thief_cannot_log_the_victim_out() {
    let db = temp_db();
    let m = bound(&db, HijackPolicy::Refuse);
    let ours = session_of(&m, "Firefox", b"victim");
    let mut req = m.begin(&ClientInfo::with_cookie(&ours).user_agent("curl/8")).unwrap();
    assert_eq!(req.outcome(), &Outcome::Hijacked { continued: false });
    req.logout();
    m.finish(req).unwrap();
    let req = m.begin(&ClientInfo::with_cookie(&ours).user_agent("Firefox")).unwrap();
    assert_eq!(req.outcome(), &Outcome::Resumed);
    m.finish(req).unwrap();
}
