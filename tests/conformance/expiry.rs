//! Expiry: the idle deadline, the grace window (`Expired` with the data, then `NotFound`),
//! touches and saves that extend it, clean-up, and deadlines the caller chose.

use sessiondb::{Engine, Error, NewSession, Save, SecureToken, SessionId};

use crate::{SEC, Settings, Subject, T0, open};

pub fn a_session_lives_until_its_idle_deadline_and_not_a_moment_longer<S: Subject>(
    subject: &S,
) -> Result<(), Error> {
    let t = open(subject, &Settings::default()); // idle 10 s, grace 5 s
    let (e, clock) = (&t.engine, &t.clock);
    let a = e.create_with(NewSession::new(b"a", b""))?;
    let b = e.create_with(NewSession::new(b"b", b""))?;
    assert_eq!((a.state_id, a.version), (0, 1));
    clock.set(T0 + 10 * SEC - 1);
    assert_eq!(e.load(&a.id, &a.token)?.session_data, b"a");
    clock.set(T0 + 10 * SEC);
    let res = e.load(&b.id, &b.token);
    assert!(matches!(&res, Err(Error::Expired { data }) if data == b"b"), "{res:?}");
    refused!(res, Error::Expired { .. });
    Ok(())
}

pub fn idle_expiry_then_grace_then_gone<S: Subject>(subject: &S) -> Result<(), Error> {
    let t = open(subject, &Settings::default());
    let (e, clock) = (&t.engine, &t.clock);
    let c = e.create_with(NewSession::new(b"data", b"page"))?;
    clock.advance(10 * SEC - 1);
    assert_eq!(e.load(&c.id, &c.token)?.session_data, b"data");
    // The load above used the session: it now expires at T0 + 20 s - 1 ms.
    clock.set(T0 + 20 * SEC - 2);
    assert!(e.load(&c.id, &c.token).is_ok());
    // Used again: expires at T0 + 30 s - 2 ms, and is gone 5 s later.
    clock.set(T0 + 30 * SEC - 2);
    let res = e.load(&c.id, &c.token);
    assert!(matches!(&res, Err(Error::Expired { data }) if data == b"data"), "{res:?}");
    // Every use is refused in the grace window, with the data, and none revives it.
    refused!(e.fetch_state(&c.id, &c.token, Some(0)), Error::Expired { .. });
    refused!(
        e.store_state(&c.id, &c.token, Save::new(c.version, b"new", b"")),
        Error::Expired { .. }
    );
    refused!(e.touch(&c.id, &c.token), Error::Expired { .. });
    let res = e.load(&c.id, &c.token);
    assert!(matches!(&res, Err(Error::Expired { data }) if data == b"data"), "{res:?}");
    // After the grace window: unknown, whether or not anything was swept.
    clock.set(T0 + 35 * SEC - 2);
    refused!(e.load(&c.id, &c.token), Error::NotFound);
    refused!(e.touch(&c.id, &c.token), Error::NotFound);
    refused!(e.store_state(&c.id, &c.token, Save::new(c.version, b"new", b"")), Error::NotFound);
    e.cleanup()?;
    refused!(e.load(&c.id, &c.token), Error::NotFound);
    Ok(())
}

pub fn touches_and_saves_extend_the_idle_timeout<S: Subject>(subject: &S) -> Result<(), Error> {
    let t = open(subject, &Settings::default());
    let (e, clock) = (&t.engine, &t.clock);
    let c = e.create_with(NewSession::new(b"kept", b""))?;
    let idle = e.create_with(NewSession::new(b"idle", b""))?;
    clock.set(T0 + 6 * SEC);
    e.touch(&c.id, &c.token)?; // expires at 16 s
    clock.set(T0 + 12 * SEC);
    refused!(e.load(&idle.id, &idle.token), Error::Expired { .. });
    let saved = e.store_state(&c.id, &c.token, Save::new(c.version, b"saved", b""))?; // 22 s
    assert_eq!(saved.version, 2);
    clock.set(T0 + 22 * SEC - 1);
    e.touch(&c.id, &c.token)?; // expires at 32 s - 1 ms
    let got = e.load(&c.id, &c.token)?;
    assert_eq!(
        (got.session_data.as_slice(), got.version),
        (&b"saved"[..], 2),
        "a touch is no save"
    );
    clock.set(T0 + 32 * SEC - 1);
    let res = e.load(&c.id, &c.token);
    assert!(matches!(&res, Err(Error::Expired { data }) if data == b"saved"), "{res:?}");
    Ok(())
}

pub fn expired_data_is_not_given_to_a_wrong_token<S: Subject>(subject: &S) -> Result<(), Error> {
    let t = open(subject, &Settings::default());
    let (e, clock) = (&t.engine, &t.clock);
    let c = e.create_with(NewSession::new(b"secret", b""))?;
    let other = e.create_with(NewSession::new(b"", b""))?;
    clock.advance(11 * SEC);
    refused!(e.load(&c.id, &other.token), Error::Security);
    refused!(e.load(&c.id, &crate::wrong_token()), Error::Security);
    Ok(())
}

pub fn no_idle_timeout_means_no_expiry<S: Subject>(subject: &S) -> Result<(), Error> {
    let t = open(subject, &Settings { idle_timeout: None, ..Settings::default() });
    let (e, clock) = (&t.engine, &t.clock);
    let c = e.create_with(NewSession::new(b"x", b""))?;
    clock.advance(10 * 365 * 24 * 3600 * SEC);
    e.cleanup()?;
    let got = e.load(&c.id, &c.token)?;
    assert_eq!((got.session_data.as_slice(), got.expires_at), (&b"x"[..], u64::MAX));
    Ok(())
}

pub fn cleanup_keeps_what_is_in_its_grace_window<S: Subject>(subject: &S) -> Result<(), Error> {
    let t = open(subject, &Settings::default());
    let (e, clock) = (&t.engine, &t.clock);
    let old = e.create_with(NewSession::new(b"old", b""))?;
    clock.set(T0 + 8 * SEC);
    let young = e.create_with(NewSession::new(b"young", b""))?;
    clock.set(T0 + 12 * SEC); // old: expired 2 s ago, in grace; young: live
    e.cleanup()?;
    let res = e.load(&old.id, &old.token);
    assert!(matches!(&res, Err(Error::Expired { data }) if data == b"old"), "{res:?}");
    clock.set(T0 + 16 * SEC); // old: past its grace window
    e.cleanup()?;
    refused!(e.load(&old.id, &old.token), Error::NotFound);
    assert_eq!(e.load(&young.id, &young.token)?.session_data, b"young");
    // A clean-up step when due, on a quiet engine, leaves the live session alone.
    e.cleanup_if_due()?;
    assert_eq!(e.load(&young.id, &young.token)?.session_data, b"young");
    Ok(())
}

pub fn a_deadline_chosen_at_create_under_holds_whatever_the_use<S: Subject>(
    subject: &S,
) -> Result<(), Error> {
    let t = open(subject, &Settings::default()); // idle 10 s: longer than the deadline
    let (e, clock) = (&t.engine, &t.clock);
    let id = SessionId::parse("chosen-id-with-a-deadline-0123456789")?;
    let token = SecureToken::parse("chosen-token-0123456789")?;
    let c = e.create_under(&id, &token, b"one", Some(T0 + 3 * SEC))?;
    assert_eq!((&c.id, &c.token, c.state_id, c.version), (&id, &token, 0, 1));
    clock.set(T0 + 2 * SEC);
    let got = e.load(&id, &token)?;
    assert_eq!((got.session_data.as_slice(), got.state_data.as_slice()), (&b"one"[..], &b""[..]));
    e.touch(&id, &token)?; // moves nothing: the deadline is the caller's
    clock.set(T0 + 3 * SEC);
    let res = e.load(&id, &token);
    assert!(matches!(&res, Err(Error::Expired { data }) if data == b"one"), "{res:?}");
    clock.set(T0 + 8 * SEC); // the grace window follows the deadline
    refused!(e.load(&id, &token), Error::NotFound);

    // A put moves the deadline to the one it names.
    let id = SessionId::parse("another-chosen-id-0123456789abcdef")?;
    e.create_under(&id, &token, b"two", Some(T0 + 9 * SEC))?;
    let stored = e.put(&id, &token, b"three", Some(T0 + 60 * SEC))?;
    assert_eq!(stored.version, 2);
    clock.set(T0 + 59 * SEC);
    assert_eq!(e.load(&id, &token)?.session_data, b"three");
    clock.set(T0 + 60 * SEC);
    refused!(e.load(&id, &token), Error::Expired { .. });
    Ok(())
}
