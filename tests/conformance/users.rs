//! The users index (sessions by user, log out everywhere) and the session cap with both
//! policies.

use std::time::Duration;

use sessiondb::{CapPolicy, Engine, Error, NewSession, Save, SecureToken, SessionId};

use crate::{SEC, Settings, Subject, open};

pub fn sessions_by_user_and_log_out_everywhere<S: Subject>(subject: &S) -> Result<(), Error> {
    let t = open(subject, &Settings::default());
    let e = &t.engine;
    let a1 = e.create_with(NewSession::new(b"a1", b"").user(b"alice"))?;
    let a2 = e.create_with(NewSession::new(b"a2", b"").user(b"alice"))?;
    let b1 = e.create_with(NewSession::new(b"b1", b"").user(b"bob"))?;
    let anon = e.create_with(NewSession::new(b"anon", b""))?;
    assert_eq!(e.load(&a1.id, &a1.token)?.user.as_deref(), Some(&b"alice"[..]));
    assert_eq!(e.load(&anon.id, &anon.token)?.user, None);

    // Log-in of the anonymous session as alice, with a save; rotation keeps the user.
    e.store_state(&anon.id, &anon.token, Save::new(1, b"anon", b"").user(Some(b"alice")))?;
    let a3 = e.regenerate(&anon.id, &anon.token, Duration::ZERO)?;
    assert_eq!(e.load(&a3.id, &a3.token)?.user.as_deref(), Some(&b"alice"[..]));
    let mut alice = e.user_sessions(b"alice")?;
    alice.sort();
    let mut expected = vec![a1.id.clone(), a2.id.clone(), a3.id.clone()];
    expected.sort();
    assert_eq!(alice, expected, "the rotated id is not listed, its successor is");
    assert_eq!(e.user_sessions(b"bob")?, vec![b1.id.clone()]);
    assert!(e.user_sessions(b"al")?.is_empty(), "a prefix is not a user");
    assert!(e.user_sessions(b"carol")?.is_empty());

    // Moving a session to another user, then clearing it.
    e.store_state(&a2.id, &a2.token, Save::new(1, b"a2", b"").user(Some(b"bob")))?;
    assert_eq!(e.user_sessions(b"bob")?.len(), 2);
    assert_eq!(e.user_sessions(b"alice")?.len(), 2);
    e.store_state(&a2.id, &a2.token, Save::new(2, b"a2", b"").user(None))?;
    assert_eq!(e.user_sessions(b"bob")?, vec![b1.id.clone()]);
    assert_eq!(e.load(&a2.id, &a2.token)?.user, None);

    // Log out everywhere.
    assert_eq!(e.revoke_user(b"alice")?, 2);
    assert!(e.user_sessions(b"alice")?.is_empty());
    refused!(e.load(&a1.id, &a1.token), Error::Revoked);
    refused!(e.load(&a3.id, &a3.token), Error::Revoked);
    assert!(e.load(&a2.id, &a2.token).is_ok(), "no longer alice's");
    assert!(e.load(&b1.id, &b1.token).is_ok());
    assert_eq!(e.revoke_user(b"alice")?, 0, "nobody left");
    // A revoked user's session revokes no one else.
    assert_eq!(e.revoke_user(b"bob")?, 1);
    refused!(e.load(&b1.id, &b1.token), Error::Revoked);
    assert!(e.load(&a2.id, &a2.token).is_ok());
    Ok(())
}

pub fn the_reject_policy_refuses_at_the_cap<S: Subject>(subject: &S) -> Result<(), Error> {
    let t = open(subject, &Settings { max_sessions: Some(3), ..Settings::default() });
    let (e, clock) = (&t.engine, &t.clock);
    let made: Vec<_> = (0..3).map(|_| e.create_with(NewSession::new(b"", b"")).unwrap()).collect();
    let res = e.create_with(NewSession::new(b"", b""));
    assert!(matches!(res, Err(Error::MaxSessionsExceeded { max: 3 })), "{res:?}");
    refused!(res, Error::MaxSessionsExceeded { .. }, false);
    // The adapter's creations meet the same cap.
    let (id, token) =
        (SessionId::parse("chosen-id-at-the-cap-0123456789")?, SecureToken::parse("chosen-token")?);
    refused!(e.create_under(&id, &token, b"", None), Error::MaxSessionsExceeded { .. }, false);
    refused!(e.put(&id, &token, b"", None), Error::MaxSessionsExceeded { .. }, false);
    refused!(e.load(&id, &token), Error::NotFound);
    for s in &made {
        assert!(e.load(&s.id, &s.token).is_ok(), "nobody was evicted");
    }
    // Revoking one makes room.
    assert!(e.revoke(&made[0].id)?);
    e.create_under(&id, &token, b"in", None)?;
    refused!(e.create_with(NewSession::new(b"", b"")), Error::MaxSessionsExceeded { .. }, false);
    // Sessions past their grace window do not count.
    clock.advance(16 * SEC); // idle 10 s + grace 5 s have passed
    let fresh = e.create_with(NewSession::new(b"fresh", b""))?;
    e.create_with(NewSession::new(b"", b""))?;
    e.create_with(NewSession::new(b"", b""))?;
    refused!(e.create_with(NewSession::new(b"", b"")), Error::MaxSessionsExceeded { .. }, false);
    assert_eq!(e.load(&fresh.id, &fresh.token)?.session_data, b"fresh");
    Ok(())
}

pub fn the_evict_policy_removes_the_session_closest_to_expiry<S: Subject>(
    subject: &S,
) -> Result<(), Error> {
    let settings = Settings {
        max_sessions: Some(3),
        cap_policy: CapPolicy::EvictOldest,
        ..Settings::default()
    };
    let t = open(subject, &settings);
    let (e, clock) = (&t.engine, &t.clock);
    let a = e.create_with(NewSession::new(b"a", b""))?;
    clock.advance(SEC);
    let b = e.create_with(NewSession::new(b"b", b""))?;
    clock.advance(SEC);
    let c = e.create_with(NewSession::new(b"c", b""))?;
    clock.advance(SEC);
    // Using `a` moves its deadline past b's and c's: `b` is now closest to expiry.
    e.store_state(&a.id, &a.token, Save::new(a.version, b"a", b"1"))?;
    let d = e.create_with(NewSession::new(b"d", b""))?;
    refused!(e.load(&b.id, &b.token), Error::NotFound);
    for s in [&a, &c, &d] {
        assert!(e.load(&s.id, &s.token).is_ok(), "{}", s.id);
    }
    // Next in line: `c`, once `a` and `d` are used later than it.
    clock.advance(SEC);
    e.touch(&a.id, &a.token)?;
    e.touch(&d.id, &d.token)?;
    e.create_with(NewSession::new(b"e", b""))?;
    refused!(e.load(&c.id, &c.token), Error::NotFound);
    assert!(e.load(&a.id, &a.token).is_ok());
    assert!(e.load(&d.id, &d.token).is_ok());
    Ok(())
}
