//! The web layer's `SessionManager`: strict ids, lazy writes, no storage of empty sessions,
//! rotation inside and after its forwarding window, log-out, cross-check policies, the back
//! button through the query string. (`tests/cgi.rs` runs it as real CGI processes.)

use std::time::Duration;

use sessiondb::web::{
    ClientInfo, CrossCheck, HijackPolicy, ManagerConfig, Outcome, SessionManager,
};
use sessiondb::{Error, Store};

mod common;
use common::{T0, temp_db};

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0";

fn manager(db: &common::TempDb, config: ManagerConfig) -> (SessionManager, sessiondb::ManualClock) {
    let clock = sessiondb::ManualClock::new(T0);
    let store = common::builder(&db.path, &clock).cleanup_interval(None).open().unwrap();
    (SessionManager::new(store, config).unwrap(), clock)
}

/// The `name=value` part of a `Set-Cookie` value, as a browser would send it back.
fn cookie_of(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

fn browser(cookie: &str) -> ClientInfo {
    ClientInfo::with_cookie(cookie).user_agent(UA).remote_addr("192.0.2.10")
}

/// One request of a browser that counts in its session; returns the new cookie, if any.
fn count(
    m: &SessionManager,
    cookie: &str,
    query: &str,
) -> Result<(Outcome, u64, Option<String>), Error> {
    let mut req = m.begin(&browser(cookie).query_string(query))?;
    let n =
        if req.data().is_empty() { 0 } else { u64::from_le_bytes(req.data().try_into().unwrap()) };
    req.set_data((n + 1).to_le_bytes().to_vec());
    req.push_state(format!("page {}", n + 1).into_bytes());
    let outcome = req.outcome().clone();
    Ok((outcome, n + 1, m.finish(req)?))
}

#[test]
fn a_session_is_created_only_when_it_gets_data_and_its_cookie_carries_it() -> Result<(), Error> {
    let db = temp_db();
    let (m, _clock) = manager(&db, ManagerConfig::default());
    // A visit that stores nothing: no session, no cookie.
    let req = m.begin(&ClientInfo::default())?;
    assert_eq!(req.outcome(), &Outcome::New);
    assert!(req.session_id().is_none());
    assert_eq!(m.finish(req)?, None);
    assert_eq!(m.store().count()?, 0);

    let (outcome, n, set) = count(&m, "", "")?;
    assert_eq!((outcome, n), (Outcome::New, 1));
    let set = set.expect("a new session sends its cookie");
    assert!(set.starts_with("sessiondb="), "{set}");
    assert!(set.contains("HttpOnly") && set.contains("Secure") && set.contains("SameSite=Lax"));
    let cookie = cookie_of(&set);
    for expected in 2..=4 {
        let (outcome, n, set) = count(&m, &cookie, "")?;
        assert_eq!((outcome, n), (Outcome::Resumed, expected));
        assert_eq!(set, None, "an existing session's cookie is not sent again");
    }
    assert_eq!(m.store().count()?, 1);
    Ok(())
}

#[test]
fn a_request_that_changes_nothing_writes_nothing() -> Result<(), Error> {
    let db = temp_db();
    let (m, _clock) = manager(&db, ManagerConfig::default());
    let cookie = cookie_of(&count(&m, "", "")?.2.unwrap());
    let commits = m.store().stats().batches.commits;
    for _ in 0..3 {
        let req = m.begin(&browser(&cookie))?;
        assert_eq!(req.outcome(), &Outcome::Resumed);
        assert_eq!(m.finish(req)?, None);
    }
    // Setting the same data is no change either.
    let mut req = m.begin(&browser(&cookie))?;
    let same = req.data().to_vec();
    req.set_data(same);
    m.finish(req)?;
    assert_eq!(
        m.store().stats().batches.commits,
        commits,
        "no write at all (same clock: no touch)"
    );
    Ok(())
}

#[test]
fn strict_mode_never_adopts_an_unknown_or_junk_id() -> Result<(), Error> {
    let db = temp_db();
    let (m, _clock) = manager(&db, ManagerConfig::default());
    let planted = format!("sessiondb=attacker-chosen-id.{}", "t".repeat(43));
    let req = m.begin(&browser(&planted))?;
    assert_eq!(req.outcome(), &Outcome::Unknown);
    assert!(req.session_id().is_none());
    // Nothing stored: the planted cookie is removed.
    let set = m.finish(req)?.expect("the stale cookie is cleared");
    assert!(set.contains("Max-Age=0"), "{set}");

    // With data, the session gets a fresh id, not the planted one.
    let (outcome, _, set) = count(&m, &planted, "")?;
    assert_eq!(outcome, Outcome::Unknown);
    let set = set.unwrap();
    assert!(!set.contains("attacker-chosen-id"), "{set}");

    // A session cookie that is not `<id>.<token>` is an unknown id, and is cleared.
    let unknown =
        ["sessiondb=", "sessiondb=no-dot", "sessiondb=a.b.c", "sessiondb=a.b;c", "sessiondb=x"];
    for junk in unknown {
        let req = m.begin(&browser(junk))?;
        assert_eq!(req.outcome(), &Outcome::Unknown, "{junk:?}");
        let set = m.finish(req)?.unwrap_or_default();
        assert!(set.contains("Max-Age=0"), "{junk:?} not cleared: {set:?}");
    }
    // Pairs that are not well-formed cookies are skipped; other cookies are left alone.
    for other in ["sessiondb=\u{1}", "sessiondb=\"a", "x=y"] {
        let req = m.begin(&browser(other))?;
        assert_eq!(req.outcome(), &Outcome::New, "{other:?}");
        assert_eq!(m.finish(req)?, None, "{other:?}");
    }
    Ok(())
}

#[test]
fn expired_sessions_come_back_as_fresh_ones_with_the_old_data() -> Result<(), Error> {
    let db = temp_db();
    let (m, clock) = manager(&db, ManagerConfig::default());
    let cookie = cookie_of(&count(&m, "", "")?.2.unwrap());
    clock.advance(10_000); // idle 10 s
    let req = m.begin(&browser(&cookie))?;
    assert_eq!(req.outcome(), &Outcome::Expired { data: 1u64.to_le_bytes().to_vec() });
    assert!(req.data().is_empty(), "the expired session is not handed over");
    m.finish(req)?;
    Ok(())
}

#[test]
fn the_query_string_chooses_the_state_and_unknown_states_fall_back_to_the_latest()
-> Result<(), Error> {
    let db = temp_db();
    let (m, _clock) = manager(&db, ManagerConfig::default());
    let cookie = cookie_of(&count(&m, "", "")?.2.unwrap());
    count(&m, &cookie, "")?;
    count(&m, &cookie, "")?; // states: 0 (page 1), 1 (page 2), 2 (page 3)
    let req = m.begin(&browser(&cookie).query_string("state=0"))?;
    assert_eq!((req.state_id(), req.state()), (Some(0), &b"page 1"[..]));
    m.finish(req)?;
    let req = m.begin(&browser(&cookie).query_string("state=99"))?;
    assert_eq!((req.state_id(), req.state()), (Some(2), &b"page 3"[..]));
    m.finish(req)?;
    Ok(())
}

#[test]
fn login_rotates_the_id_and_the_old_cookie_is_forwarded_then_revoked() -> Result<(), Error> {
    let db = temp_db();
    let mut config = ManagerConfig::default();
    config.rotation_forward = Duration::from_secs(2);
    let (m, clock) = manager(&db, config);
    let old = cookie_of(&count(&m, "", "")?.2.unwrap());

    let mut req = m.begin(&browser(&old))?;
    req.regenerate();
    req.set_user(Some(b"ann".to_vec()));
    let new = cookie_of(&m.finish(req)?.expect("a rotated session sends its new cookie"));
    assert_ne!(new, old);
    assert_eq!(m.store().user_sessions(b"ann")?.len(), 1);
    let (outcome, n, set) = count(&m, &new, "")?;
    assert_eq!((outcome, n, set), (Outcome::Resumed, 2, None));

    // The response with the new cookie was lost: the old cookie still works, and the new
    // cookie is sent again.
    clock.advance(1_999);
    let (outcome, n, set) = count(&m, &old, "")?;
    assert_eq!((outcome, n), (Outcome::Forwarded, 3));
    assert_eq!(cookie_of(&set.expect("sent again")), new);

    // After the window the old cookie is revoked, which is not the same as unknown. For 10 s
    // more a request with it may have raced the log-in (`Request::moved`): it sends nothing,
    // not even the removal, which would remove the new cookie from the browser too.
    clock.advance(1);
    let req = m.begin(&browser(&old))?;
    assert_eq!((req.outcome(), req.moved()), (&Outcome::Revoked, true));
    assert_eq!(m.finish(req)?, None);
    assert_eq!(count(&m, &new, "")?.1, 4);
    // (The test clock's idle timeout is also 10 s: the new session expires meanwhile, which
    // changes nothing here, as the old id's tombstone lives on.)
    clock.advance(10_000);
    let req = m.begin(&browser(&old))?;
    assert_eq!((req.outcome(), req.moved()), (&Outcome::Revoked, false));
    assert!(m.finish(req)?.unwrap().contains("Max-Age=0"));
    Ok(())
}

#[test]
fn logout_revokes_the_session_and_removes_the_cookie() -> Result<(), Error> {
    let db = temp_db();
    let (m, _clock) = manager(&db, ManagerConfig::default());
    let cookie = cookie_of(&count(&m, "", "")?.2.unwrap());
    let mut req = m.begin(&browser(&cookie))?;
    req.logout();
    let set = m.finish(req)?.expect("a cookie removal");
    assert!(set.starts_with("sessiondb=;") && set.contains("Max-Age=0"), "{set}");
    assert_eq!(m.store().count()?, 0);
    let req = m.begin(&browser(&cookie))?;
    assert_eq!(req.outcome(), &Outcome::Revoked);
    m.finish(req)?;
    Ok(())
}

#[test]
fn cross_checks_refuse_or_report_a_different_client() -> Result<(), Error> {
    for policy in [HijackPolicy::Refuse, HijackPolicy::Report] {
        let db = temp_db();
        let mut config = ManagerConfig::default();
        config.cross_checks = vec![CrossCheck::UserAgent, CrossCheck::AddressPrefix];
        config.hijack_policy = policy;
        let (m, _clock) = manager(&db, config);
        let cookie = cookie_of(&count(&m, "", "")?.2.unwrap());

        // Same agent, same /24: the same client.
        let same = ClientInfo::with_cookie(&cookie).user_agent(UA).remote_addr("192.0.2.99");
        let req = m.begin(&same)?;
        assert_eq!(req.outcome(), &Outcome::Resumed, "{policy:?}");
        m.finish(req)?;

        // The cookie replayed from another network.
        let thief = ClientInfo::with_cookie(&cookie).user_agent(UA).remote_addr("198.51.100.7");
        let req = m.begin(&thief)?;
        match policy {
            HijackPolicy::Refuse => {
                assert_eq!(req.outcome(), &Outcome::Hijacked { continued: false });
                assert!(req.data().is_empty(), "the session is not handed over");
            }
            HijackPolicy::Report => {
                assert_eq!(req.outcome(), &Outcome::Hijacked { continued: true });
                assert_eq!(req.data(), 1u64.to_le_bytes());
            }
        }
        m.finish(req)?;
        // The owner is unaffected either way.
        assert_eq!(count(&m, &cookie, "")?.0, Outcome::Resumed);
    }
    Ok(())
}

#[test]
fn a_wrong_token_is_a_suspected_hijack_and_never_reaches_the_data() -> Result<(), Error> {
    let db = temp_db();
    let (m, _clock) = manager(&db, ManagerConfig::default());
    let cookie = cookie_of(&count(&m, "", "")?.2.unwrap());
    let (id, _) = cookie.split_once('.').unwrap();
    let forged = format!("{id}.{}", "f".repeat(43));
    let req = m.begin(&browser(&forged))?;
    assert_eq!(req.outcome(), &Outcome::Hijacked { continued: false });
    assert!(req.data().is_empty());
    m.finish(req)?;
    Ok(())
}

#[test]
fn a_bad_cookie_configuration_is_refused_up_front() {
    let db = temp_db();
    let store = Store::builder(&db.path).cleanup_interval(None).open().unwrap();
    let mut config = ManagerConfig::default();
    config.cookie_name = "bad name;".into();
    assert!(matches!(SessionManager::new(store, config), Err(Error::InvalidInput(_))));
}

#[test]
fn a_save_racing_a_login_of_the_same_session_follows_the_rotation() -> Result<(), Error> {
    let db = temp_db();
    let (m, _clock) = forwarding(&db, 30);
    let cookie = cookie_of(&count(&m, "", "")?.2.unwrap());
    // Tab A loads; tab B logs in (rotation) and finishes first; then tab A saves.
    let mut a = m.begin(&browser(&cookie))?;
    let mut b = m.begin(&browser(&cookie))?;
    b.regenerate();
    let rotated = cookie_of(&m.finish(b)?.expect("new cookie"));
    a.set_data(2u64.to_le_bytes().to_vec());
    let set = m.finish(a)?.expect("tab A learns the new cookie");
    assert_eq!(cookie_of(&set), rotated);
    assert_eq!(count(&m, &rotated, "")?.1, 3, "tab A's save landed on the rotated session");
    Ok(())
}

#[test]
fn ids_from_an_alphabet_with_a_dot_still_round_trip_through_the_cookie() -> Result<(), Error> {
    let db = temp_db();
    let clock = sessiondb::ManualClock::new(T0);
    let spec = sessiondb::IdSpec::new(40, "abcdefghijklmnopqrstuvwxyz0123456789.")?;
    let store = common::builder(&db.path, &clock).id_spec(spec).open()?;
    let m = SessionManager::new(store, ManagerConfig::default())?;
    let mut cookie = String::new();
    for expected in 1..=20 {
        let (outcome, n, set) = count(&m, &cookie, "")?;
        assert_eq!(n, 1 + (expected - 1) % 5, "{outcome:?}");
        if let Some(set) = set {
            cookie = cookie_of(&set);
        }
        if expected % 5 == 0 {
            cookie.clear(); // a new browser, so that several ids are drawn
        }
    }
    Ok(())
}

fn forwarding(db: &common::TempDb, seconds: u64) -> (SessionManager, sessiondb::ManualClock) {
    let mut config = ManagerConfig::default();
    config.rotation_forward = Duration::from_secs(seconds);
    manager(db, config)
}

#[test]
fn by_default_a_rotated_cookie_is_not_forwarded() -> Result<(), Error> {
    let db = temp_db();
    let (m, _clock) = manager(&db, ManagerConfig::default());
    let old = cookie_of(&count(&m, "", "")?.2.unwrap());
    let mut req = m.begin(&browser(&old))?;
    req.regenerate();
    let new = cookie_of(&m.finish(req)?.unwrap());
    let req = m.begin(&browser(&old))?;
    assert_eq!(req.outcome(), &Outcome::Revoked, "a planted cookie does not follow the log-in");
    m.finish(req)?;
    assert_eq!(count(&m, &new, "")?.0, Outcome::Resumed);
    Ok(())
}

#[test]
fn a_forwarded_request_must_pass_the_cross_checks_even_when_hijacks_are_only_reported()
-> Result<(), Error> {
    let db = temp_db();
    let mut config = ManagerConfig::default();
    config.rotation_forward = Duration::from_secs(30);
    config.cross_checks = vec![CrossCheck::UserAgent];
    config.hijack_policy = HijackPolicy::Report;
    let (m, _clock) = manager(&db, config);
    let old = cookie_of(&count(&m, "", "")?.2.unwrap());
    let mut req = m.begin(&browser(&old))?;
    req.regenerate();
    m.finish(req)?;
    // The planter of the old cookie, with its own user agent, polls.
    let attacker = ClientInfo::with_cookie(&old).user_agent("curl/8.5");
    let req = m.begin(&attacker)?;
    assert_eq!(req.outcome(), &Outcome::Hijacked { continued: false });
    assert!(req.data().is_empty());
    assert_eq!(m.finish(req)?.map(|c| c.contains("Max-Age=0")), Some(true));
    Ok(())
}

#[test]
fn logout_racing_a_login_revokes_the_logged_in_session_too() -> Result<(), Error> {
    let db = temp_db();
    let (m, _clock) = forwarding(&db, 30);
    let old = cookie_of(&count(&m, "", "")?.2.unwrap());
    let mut logout = m.begin(&browser(&old))?;
    let mut login = m.begin(&browser(&old))?;
    login.regenerate();
    let new = cookie_of(&m.finish(login)?.unwrap());
    logout.logout();
    assert!(m.finish(logout)?.unwrap().contains("Max-Age=0"));
    for cookie in [&old, &new] {
        let req = m.begin(&browser(cookie))?;
        assert_eq!(req.outcome(), &Outcome::Revoked, "{cookie}");
        m.finish(req)?;
    }
    assert_eq!(m.store().count()?, 0);
    Ok(())
}

#[test]
fn a_stale_cookie_sent_first_does_not_shadow_the_real_one() -> Result<(), Error> {
    let db = temp_db();
    let (m, _clock) = manager(&db, ManagerConfig::default());
    let real = cookie_of(&count(&m, "", "")?.2.unwrap());
    let stale = format!("sessiondb=stale-id.{}", "s".repeat(43));
    for header in [format!("sessiondb=junk; {real}"), format!("{stale}; {real}")] {
        let (outcome, n, set) = count(&m, &header, "")?;
        assert_eq!(outcome, Outcome::Resumed, "{header}");
        assert!(n >= 2, "{header}");
        assert_eq!(set, None);
    }
    Ok(())
}

#[test]
fn rotations_in_a_row_are_followed() -> Result<(), Error> {
    let db = temp_db();
    let (m, _clock) = forwarding(&db, 30);
    let first = cookie_of(&count(&m, "", "")?.2.unwrap());
    let mut cookie = first.clone();
    for _ in 0..2 {
        let mut req = m.begin(&browser(&cookie))?;
        req.regenerate();
        cookie = cookie_of(&m.finish(req)?.unwrap());
    }
    let (outcome, n, set) = count(&m, &first, "")?;
    assert_eq!((outcome, n), (Outcome::Forwarded, 2));
    assert_eq!(cookie_of(&set.unwrap()), cookie);
    Ok(())
}

#[test]
fn a_login_whose_save_conflicts_changes_nothing_and_can_run_again() -> Result<(), Error> {
    let db = temp_db();
    let (m, _clock) = manager(&db, ManagerConfig::default()); // no forwarding
    let cookie = cookie_of(&count(&m, "", "")?.2.unwrap());
    let mut login = m.begin(&browser(&cookie))?;
    count(&m, &cookie, "")?; // another tab saves first
    login.set_data(b"logged in".to_vec());
    login.regenerate();
    assert!(matches!(m.finish(login), Err(Error::Conflict { .. })));
    // Nothing happened: the cookie still works, and the log-in can run again.
    let mut login = m.begin(&browser(&cookie))?;
    assert_eq!(login.outcome(), &Outcome::Resumed);
    login.regenerate();
    assert!(m.finish(login)?.is_some());
    Ok(())
}

#[test]
fn setting_the_same_user_is_no_change() -> Result<(), Error> {
    let db = temp_db();
    let (m, _clock) = manager(&db, ManagerConfig::default());
    let cookie = cookie_of(&count(&m, "", "")?.2.unwrap());
    let commits = m.store().stats().batches.commits;
    let mut req = m.begin(&browser(&cookie))?;
    req.set_user(None);
    m.finish(req)?;
    assert_eq!(m.store().stats().batches.commits, commits);
    let mut req = m.begin(&browser(&cookie))?;
    req.set_user(Some(b"ann".to_vec()));
    m.finish(req)?;
    assert_eq!(m.store().stats().batches.commits, commits + 1);
    assert_eq!(m.begin(&browser(&cookie))?.user(), Some(&b"ann"[..]));
    Ok(())
}
