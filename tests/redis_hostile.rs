//! Hostile input through the Redis engine (issue 18's security review): ids and tokens that a
//! client chooses (a forged cookie, `create_under` and `put` of the tower adapter) cannot name
//! another session's keys, another slot, a user's index or the cap index; a wrong token writes
//! nothing (the session's generation `g` does not move, a tombstone stays as it was); a lock is
//! released only by its holder; and a load remembered by one engine never writes into a later
//! session that reuses the id.
#![cfg(feature = "redis")]

mod common;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::sync::Arc;
use std::time::Duration;

use common::redis::{redis_available, shared_server};
use sessiondb::web::{ClientInfo, ManagerConfig, Outcome, SessionManager};
use sessiondb::{
    Engine, Error, ManualClock, NewSession, RedisEngine, Save, SecureToken, SessionId,
};

/// An engine on the shared standalone server, under a prefix of its own.
fn engine(prefix: &str) -> RedisEngine {
    RedisEngine::builder(&shared_server().url()).prefix(prefix).open().expect("open")
}

/// Every key under `prefix` with its type and content (hashes and sorted sets in full), for
/// "nothing was written".
fn dump(prefix: &str) -> Vec<String> {
    let server = shared_server();
    let keys = server.cli(&["--scan", "--pattern", &format!("{prefix}:*")]);
    let mut keys: Vec<&str> = keys.lines().collect();
    keys.sort_unstable();
    keys.iter()
        .map(|k| {
            let content = match server.cli(&["type", k]).as_str() {
                "hash" => {
                    // The server's order of fields may change without a write (rehashing).
                    let all = server.cli(&["hgetall", k]);
                    let mut lines: Vec<&str> = all.lines().collect();
                    lines.sort_unstable();
                    format!("g={} {}", server.cli(&["hget", k, "g"]), lines.join("\n"))
                }
                "zset" => server.cli(&["zrange", k, "0", "-1", "withscores"]),
                _ => server.cli(&["get", k]),
            };
            format!("{k} {content}")
        })
        .collect()
}

fn wrong() -> SecureToken {
    SecureToken::parse("a-forged-token-of-the-right-shape-0123456789").unwrap()
}

#[test]
fn text_that_matters_to_redis_keys_is_refused_before_any_key_is_named() {
    let long = "a".repeat(sessiondb::MAX_ID_LEN + 1);
    for text in ["a{b", "a}b", "{victim}", "a:b", "a b", "a\nb", "a\r\nDEL x", "*", "", &long] {
        assert!(SessionId::parse(text).is_err(), "{text:?}");
        assert!(SecureToken::parse(text).is_err(), "{text:?}");
    }
}

#[test]
fn ids_a_client_chooses_stay_in_their_own_keys() -> Result<(), Error> {
    if !redis_available() {
        return Ok(());
    }
    let e = RedisEngine::builder(&shared_server().url())
        .prefix("chosen")
        .max_sessions(Some(50))
        .open()?;
    let ann = e.create_with(NewSession::new(b"ann's", b"").user(b"ann"))?;
    // Ids shaped like the other keys' names: the user index's hex, the cap key, suffixes.
    let hex_ann = "616e6e";
    let max = "~".repeat(sessiondb::MAX_ID_LEN);
    for text in [hex_ann, "u", "x", "t", "lock", "u:616e6e", ann.id.as_str(), &max] {
        let Ok(id) = SessionId::parse(text) else { continue };
        let res = e.create_under(&id, &wrong(), b"mine", None);
        if text == ann.id.as_str() {
            assert!(matches!(res, Err(Error::IdTaken)), "{res:?}");
        } else {
            res?;
        }
    }
    assert_eq!(e.user_sessions(b"ann")?, vec![ann.id.clone()]);
    assert_eq!(e.load(&ann.id, &ann.token)?.session_data, b"ann's");
    let keys = dump("chosen");
    let cap = keys.iter().find(|k| k.starts_with("chosen:x ")).expect("the cap index");
    assert_eq!(cap.split_whitespace().count(), 1 + 2 * 7, "{cap}");
    // Each chosen id has its own hash, in its own hash tag.
    assert!(keys.iter().any(|k| k.starts_with("chosen:{616e6e} ")), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("chosen:u:{616e6e} ")), "{keys:?}");
    Ok(())
}

#[test]
fn a_wrong_token_on_a_live_session_is_refused_and_writes_nothing() -> Result<(), Error> {
    if !redis_available() {
        return Ok(());
    }
    let e = engine("forged");
    let c = e.create_with(NewSession::new(b"data", b"state").user(b"ann"))?;
    let before = dump("forged");
    let bad = wrong();
    assert!(matches!(e.load(&c.id, &bad), Err(Error::Security)));
    assert!(matches!(e.touch(&c.id, &bad), Err(Error::Security)));
    let res = e.store_state(&c.id, &bad, Save::new(1, b"evil", b"evil"));
    assert!(matches!(res, Err(Error::Security)), "{res:?}");
    let res = e.put(&c.id, &bad, b"evil", None);
    assert!(matches!(res, Err(Error::Security)), "{res:?}");
    let res = e.regenerate(&c.id, &bad, Duration::from_secs(10));
    assert!(matches!(res, Err(Error::Security)), "{res:?}");
    let res = e.revoke_named(vec![(c.id.clone(), bad.clone(), None)]);
    assert!(matches!(res, Err(Error::Security)), "{res:?}");
    assert!(!e.moved_recently(&c.id, &bad)?);
    assert_eq!(dump("forged"), before, "a refused call wrote");
    // The same after a load by the right holder (the engine remembers what it read).
    e.load(&c.id, &c.token)?;
    let before = dump("forged");
    let res = e.store_state(&c.id, &bad, Save::new(1, b"evil", b"evil"));
    assert!(matches!(res, Err(Error::Security)), "{res:?}");
    assert_eq!(dump("forged"), before, "a refused save wrote");
    Ok(())
}

#[test]
fn a_wrong_token_on_a_rotated_id_is_not_forwarded_and_writes_nothing() -> Result<(), Error> {
    if !redis_available() {
        return Ok(());
    }
    let e = engine("forward");
    let c = e.create_with(NewSession::new(b"data", b"state"))?;
    let next = e.regenerate(&c.id, &c.token, Duration::from_secs(60))?;
    let before = dump("forward");
    let bad = wrong();
    for res in [e.load(&c.id, &bad).map(drop), e.touch(&c.id, &bad)] {
        assert!(matches!(res, Err(Error::Security)), "{res:?}");
    }
    let res = e.put(&c.id, &bad, b"evil", None);
    assert!(matches!(res, Err(Error::Security)), "{res:?}");
    let res = e.revoke_named(vec![(c.id.clone(), bad.clone(), None)]);
    assert!(matches!(res, Err(Error::Security)), "{res:?}");
    assert!(!e.moved_recently(&c.id, &bad)?);
    assert_eq!(dump("forward"), before, "a refused call wrote");
    // The holder of the old token is forwarded, with the successor's token.
    match e.load(&c.id, &c.token) {
        Err(Error::Rotated { successor, token }) => {
            assert_eq!((successor, token), (next.id.clone(), next.token.clone()));
        }
        other => panic!("{other:?}"),
    }
    Ok(())
}

/// A CGI request whose cookie header is `header`.
fn cgi(header: &str) -> ClientInfo {
    let header = header.to_owned();
    ClientInfo::from_vars(move |name| {
        (name == "HTTP_COOKIE").then(|| OsString::from_vec(header.clone().into_bytes()))
    })
}

#[test]
fn a_forged_cookie_through_the_manager_starts_afresh_and_writes_nothing() -> Result<(), Error> {
    if !redis_available() {
        return Ok(());
    }
    let m = SessionManager::new(engine("manager"), ManagerConfig::default())?;
    let mut req = m.begin(&ClientInfo::default())?;
    req.set_data(b"cart".to_vec());
    let set = m.finish(req)?.expect("a cookie");
    let pair = set.split(';').next().unwrap().to_owned();
    let (name, value) = pair.split_once('=').unwrap();
    let (id, _token) = value.split_once('.').unwrap();
    let before = dump("manager");
    let bad = wrong();
    for header in [
        format!("{name}={id}.{}", bad.as_str()),
        format!("{name}={id}.{}; {name}={id}.{}", bad.as_str(), bad.as_str()),
        format!("{name}={{{id}}}.{}", bad.as_str()),
        format!("{name}={id}:x.{}", bad.as_str()),
    ] {
        let req = m.begin(&cgi(&header))?;
        assert_ne!(req.outcome(), &Outcome::Resumed, "{header}");
        assert_ne!(req.session_id().map(SessionId::as_str), Some(id), "{header}");
        drop(req);
        assert_eq!(dump("manager"), before, "{header} wrote");
    }
    let req = m.begin(&cgi(&pair))?;
    assert_eq!(req.outcome(), &Outcome::Resumed);
    assert_eq!(req.data(), b"cart");
    Ok(())
}

#[test]
fn a_lock_is_released_only_by_its_holder() -> Result<(), Error> {
    if !redis_available() {
        return Ok(());
    }
    let url = shared_server().url();
    let short = RedisEngine::builder(&url).prefix("locks").lock_ttl(Duration::from_millis(150));
    let (a, b) = (short.clone().open()?, short.open()?);
    let id = SessionId::parse("some-session-id-0123456789")?;
    let held_too_long = a.lock(&id, Duration::from_secs(1))?;
    std::thread::sleep(Duration::from_millis(300)); // its TTL passed: the lock is free
    let held = b.lock(&id, Duration::from_secs(1))?;
    drop(held_too_long); // must not release b's lock
    let res = a.lock(&id, Duration::from_millis(50));
    assert!(matches!(res, Err(Error::LockTimeout { .. })), "{res:?}");
    drop(held);
    drop(a.lock(&id, Duration::from_millis(50))?);
    Ok(())
}

#[test]
fn a_load_remembered_before_an_id_was_reused_writes_nothing_into_the_new_session()
-> Result<(), Error> {
    if !redis_available() {
        return Ok(());
    }
    // Two web servers (engines) with one clock; sessions without an idle timeout.
    let clock = ManualClock::new(1_700_000_000_000);
    let builder = RedisEngine::builder(&shared_server().url())
        .prefix("reuse")
        .idle_timeout(None)
        .clock(Arc::new(clock.clone()));
    let (a, b) = (builder.clone().open()?, builder.open()?);
    let id = SessionId::parse("an-id-the-client-chose-0123456789")?;
    let old = SecureToken::parse("the-old-holders-token-0123456789")?;
    a.create_under(&id, &old, b"old", None)?;
    let got = a.load(&id, &old)?; // a remembers the session and its generation
    // The session is logged out on b; once its tombstone is past, b puts a new one there.
    assert!(b.revoke(&id)?);
    clock.advance(8 * 24 * 3600 * 1000);
    let new = SecureToken::parse("the-new-holders-token-0123456789")?;
    b.put(&id, &new, b"new", None)?;
    // The old holder's save, computed from what a remembered: refused, nothing written.
    let before = dump("reuse");
    let res = a.store_state(&id, &old, Save::session_only(got.version, b"resurrected"));
    assert!(res.is_err(), "the old token wrote into the new session: {res:?}");
    assert_eq!(dump("reuse"), before);
    assert_eq!(b.load(&id, &new)?.session_data, b"new");
    assert!(a.load(&id, &old).is_err());
    Ok(())
}
