//! The web layer on the engine: [`SessionManager`]'s strict mode (an unknown id is never
//! adopted), lazy sessions (no data, no cookie), rotation at log-in with forwarding and
//! `moved`, log-out racing a log-in, expired sessions, wrong tokens, the back button.

use std::time::Duration;

use sessiondb::web::{ClientInfo, ManagerConfig, Outcome, SessionManager};
use sessiondb::{Engine, Error};

use crate::{Settings, Subject, open};

/// The `name=value` part of a `Set-Cookie` value, as a browser sends it back.
fn cookie_of(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

fn browser(cookie: &str) -> ClientInfo {
    ClientInfo::with_cookie(cookie).user_agent("Firefox/140.0").remote_addr("192.0.2.10")
}

/// One request of a browser that counts in its session and pushes a state per page: its
/// outcome, the count, and the cookie sent, if any.
fn count<E: Engine>(
    m: &SessionManager<E>,
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

/// A manager with `config` on an engine of `subject` with the default settings.
fn managed<S: Subject>(subject: &S, config: ManagerConfig) -> crate::Managed<S::E> {
    open(subject, &Settings::default()).manager(config)
}

fn forwarding(seconds: u64) -> ManagerConfig {
    let mut config = ManagerConfig::default();
    config.rotation_forward = Duration::from_secs(seconds);
    config
}

pub fn strict_mode_never_adopts_an_unknown_id<S: Subject>(subject: &S) -> Result<(), Error> {
    let t = managed(subject, ManagerConfig::default());
    let m = &t.m;
    let planted = format!("sessiondb=attacker-chosen-id.{}", "t".repeat(43));
    let req = m.begin(&browser(&planted))?;
    assert_eq!(req.outcome(), &Outcome::Unknown);
    assert!(req.session_id().is_none());
    // Nothing stored: the planted cookie is removed.
    let set = m.finish(req)?.expect("the stale cookie is cleared");
    assert!(set.contains("Max-Age=0"), "{set}");

    // With data, the session gets a fresh id, not the planted one, and keeps it.
    let (outcome, _, set) = count(m, &planted, "")?;
    assert_eq!(outcome, Outcome::Unknown);
    let set = set.expect("the new session's cookie");
    assert!(!set.contains("attacker-chosen-id") && !set.contains("Max-Age=0"), "{set}");
    let (outcome, n, set) = count(m, &cookie_of(&set), "")?;
    assert_eq!((outcome, n, set), (Outcome::Resumed, 2, None));
    let (outcome, n, _) = count(m, &planted, "")?;
    assert_eq!((outcome, n), (Outcome::Unknown, 1), "the planted id is still unknown");

    // A cookie that is not `<id>.<token>` names an unknown id too.
    for junk in ["sessiondb=", "sessiondb=no-dot", "sessiondb=a.b.c", "sessiondb=x"] {
        let req = m.begin(&browser(junk))?;
        assert_eq!(req.outcome(), &Outcome::Unknown, "{junk:?}");
        assert!(m.finish(req)?.unwrap_or_default().contains("Max-Age=0"), "{junk:?}");
    }
    Ok(())
}

pub fn a_visit_without_data_gets_no_session_and_no_cookie<S: Subject>(
    subject: &S,
) -> Result<(), Error> {
    let t = managed(subject, ManagerConfig::default());
    let m = &t.m;
    let req = m.begin(&ClientInfo::default())?;
    assert_eq!(req.outcome(), &Outcome::New);
    assert!(req.session_id().is_none());
    assert_eq!(m.finish(req)?, None);

    let (outcome, n, set) = count(m, "", "")?;
    assert_eq!((outcome, n), (Outcome::New, 1));
    let set = set.expect("a new session with data sends its cookie");
    assert!(set.starts_with("sessiondb=") && set.contains("HttpOnly"), "{set}");
    let cookie = cookie_of(&set);
    for expected in 2..=3 {
        let (outcome, n, set) = count(m, &cookie, "")?;
        assert_eq!((outcome, n, set), (Outcome::Resumed, expected, None));
    }
    // A request that changes nothing sends nothing.
    let req = m.begin(&browser(&cookie))?;
    assert_eq!((req.outcome(), req.data()), (&Outcome::Resumed, &3u64.to_le_bytes()[..]));
    assert_eq!(m.finish(req)?, None);
    Ok(())
}

pub fn a_login_forwards_the_old_cookie_then_the_request_moved<S: Subject>(
    subject: &S,
) -> Result<(), Error> {
    let t = managed(subject, forwarding(2));
    let (m, clock) = (&t.m, &t.clock);
    let old = cookie_of(&count(m, "", "")?.2.unwrap());

    let mut req = m.begin(&browser(&old))?;
    req.regenerate();
    req.set_user(Some(b"ann".to_vec()));
    let new = cookie_of(&m.finish(req)?.expect("a rotated session sends its new cookie"));
    assert_ne!(new, old);
    assert_eq!(m.store().user_sessions(b"ann")?.len(), 1);
    let (outcome, n, set) = count(m, &new, "")?;
    assert_eq!((outcome, n, set), (Outcome::Resumed, 2, None));

    // The response with the new cookie was lost: the old cookie still works, and the new
    // cookie is sent again.
    clock.advance(1_999);
    let (outcome, n, set) = count(m, &old, "")?;
    assert_eq!((outcome, n), (Outcome::Forwarded, 3));
    assert_eq!(cookie_of(&set.expect("sent again")), new);

    // After the window the old cookie is revoked. For 10 s more a request with it may have
    // raced the log-in: it sends nothing, not even the removal of the new cookie.
    clock.advance(1);
    let req = m.begin(&browser(&old))?;
    assert_eq!((req.outcome(), req.moved()), (&Outcome::Revoked, true));
    assert_eq!(m.finish(req)?, None);
    assert_eq!(count(m, &new, "")?.1, 4);
    clock.advance(10_000);
    let req = m.begin(&browser(&old))?;
    assert_eq!((req.outcome(), req.moved()), (&Outcome::Revoked, false));
    assert!(m.finish(req)?.unwrap().contains("Max-Age=0"));
    Ok(())
}

pub fn a_logout_racing_a_login_ends_the_logged_in_session<S: Subject>(
    subject: &S,
) -> Result<(), Error> {
    for forward in [0, 30] {
        let t = managed(subject, forwarding(forward));
        let m = &t.m;
        let old = cookie_of(&count(m, "", "")?.2.unwrap());
        let mut logout = m.begin(&browser(&old))?;
        let mut login = m.begin(&browser(&old))?;
        login.regenerate();
        login.set_user(Some(b"ann".to_vec()));
        let new = cookie_of(&m.finish(login)?.unwrap());
        logout.logout();
        assert!(m.finish(logout)?.unwrap().contains("Max-Age=0"));
        for cookie in [&old, &new] {
            let req = m.begin(&browser(cookie))?;
            assert_eq!(req.outcome(), &Outcome::Revoked, "forward {forward}: {cookie}");
            m.finish(req)?;
        }
        assert!(m.store().user_sessions(b"ann")?.is_empty(), "forward {forward}");
    }
    Ok(())
}

pub fn an_expired_session_comes_back_fresh_with_the_old_data<S: Subject>(
    subject: &S,
) -> Result<(), Error> {
    let t = managed(subject, ManagerConfig::default());
    let (m, clock) = (&t.m, &t.clock);
    let cookie = cookie_of(&count(m, "", "")?.2.unwrap());
    clock.advance(10_000); // idle 10 s
    let req = m.begin(&browser(&cookie))?;
    assert_eq!(req.outcome(), &Outcome::Expired { data: 1u64.to_le_bytes().to_vec() });
    assert!(req.data().is_empty(), "the expired session is not handed over");
    m.finish(req)?;
    Ok(())
}

pub fn a_wrong_token_is_a_suspected_hijack<S: Subject>(subject: &S) -> Result<(), Error> {
    let t = managed(subject, ManagerConfig::default());
    let m = &t.m;
    let cookie = cookie_of(&count(m, "", "")?.2.unwrap());
    let (id, _) = cookie.split_once('.').unwrap();
    let forged = format!("{id}.{}", "f".repeat(43));
    let req = m.begin(&browser(&forged))?;
    assert_eq!(req.outcome(), &Outcome::Hijacked { continued: false });
    assert!(req.data().is_empty());
    m.finish(req)?;
    // The owner is unaffected.
    assert_eq!(count(m, &cookie, "")?.0, Outcome::Resumed);
    Ok(())
}

pub fn the_query_string_chooses_the_state_with_a_fallback<S: Subject>(
    subject: &S,
) -> Result<(), Error> {
    let t = open(subject, &Settings { max_states: 2, ..Settings::default() });
    let t = t.manager(ManagerConfig::default());
    let m = &t.m;
    let cookie = cookie_of(&count(m, "", "")?.2.unwrap());
    count(m, &cookie, "")?;
    count(m, &cookie, "")?; // states: 1 (page 2), 2 (page 3); 0 (page 1) evicted
    let req = m.begin(&browser(&cookie).query_string("state=1"))?;
    assert_eq!((req.state_id(), req.state()), (Some(1), &b"page 2"[..]));
    m.finish(req)?;
    for fallback in ["state=0", "state=99"] {
        let req = m.begin(&browser(&cookie).query_string(fallback))?;
        assert_eq!((req.state_id(), req.state()), (Some(2), &b"page 3"[..]), "{fallback}");
        m.finish(req)?;
    }
    Ok(())
}
