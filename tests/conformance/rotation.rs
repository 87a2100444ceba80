//! Rotation (`regenerate`): the old id forwards for its window, then is revoked until the old
//! session would have gone; tombstones; `moved_recently`.

use std::time::Duration;

use sessiondb::{Engine, Error, NewSession, Save};

use crate::{SEC, Settings, Subject, T0, open, unknown_id, wrong_token};

pub fn regenerate_forwards_the_old_id_then_revokes_it<S: Subject>(
    subject: &S,
) -> Result<(), Error> {
    let t = open(subject, &Settings::default());
    let (e, clock) = (&t.engine, &t.clock);
    let old = e.create_with(NewSession::new(b"cart", b"page 0"))?;
    e.store_state(&old.id, &old.token, Save::new(1, b"cart+1", b"page 1"))?;

    let new = e.regenerate(&old.id, &old.token, Duration::from_secs(2))?;
    assert_ne!(new.id, old.id);
    assert_ne!(new.token, old.token);
    assert_eq!((new.state_id, new.version), (1, 2), "states and version carried over");
    let got = e.load(&new.id, &new.token)?;
    assert_eq!(
        (got.session_data.as_slice(), got.state_data.as_slice()),
        (&b"cart+1"[..], &b"page 1"[..])
    );
    assert_eq!(e.fetch_state(&new.id, &new.token, Some(0))?.state_data, b"page 0");
    refused!(e.load(&new.id, &old.token), Error::Security);

    // Inside the forwarding window the old id and token lead to the new ones.
    clock.advance(2 * SEC - 1);
    match e.load(&old.id, &old.token) {
        Err(refusal @ Error::Rotated { .. }) => {
            assert!(refusal.is_refusal());
            let Error::Rotated { successor, token } = refusal else { unreachable!() };
            assert_eq!((successor, token), (new.id.clone(), new.token.clone()));
        }
        other => panic!("expected Rotated, got {other:?}"),
    }
    // A save on the old id is refused the same way, and writes nothing.
    let res = e.store_state(&old.id, &old.token, Save::new(2, b"lost", b""));
    refused!(res, Error::Rotated { .. });
    refused!(e.touch(&old.id, &old.token), Error::Rotated { .. });
    assert_eq!(e.load(&new.id, &new.token)?.session_data, b"cart+1");
    // The old id with a wrong token learns nothing, nor with the new token.
    refused!(e.load(&old.id, &wrong_token()), Error::Security);
    refused!(e.load(&old.id, &new.token), Error::Security);

    // After the window: revoked, distinct from unknown.
    clock.advance(1);
    refused!(e.load(&old.id, &old.token), Error::Revoked);
    refused!(e.touch(&old.id, &old.token), Error::Revoked);
    refused!(e.fetch_state(&old.id, &old.token, Some(0)), Error::Revoked);
    refused!(e.regenerate(&old.id, &old.token, Duration::ZERO), Error::Revoked);
    refused!(e.load(&old.id, &wrong_token()), Error::Security);
    assert_eq!(e.load(&new.id, &new.token)?.version, 2);
    Ok(())
}

pub fn without_forwarding_the_old_id_is_revoked_at_once<S: Subject>(
    subject: &S,
) -> Result<(), Error> {
    let t = open(subject, &Settings::default());
    let (e, clock) = (&t.engine, &t.clock);
    let old = e.create_with(NewSession::new(b"cart", b"page 0"))?;
    let new = e.regenerate(&old.id, &old.token, Duration::ZERO)?;
    refused!(e.load(&old.id, &old.token), Error::Revoked);
    // Another process, its clock read just before the rotation's: still no forwarding.
    clock.set(T0 - 1);
    refused!(e.load(&old.id, &old.token), Error::Revoked);
    let save = Save::new(1, b"cart+1", b"page 1");
    refused!(e.store_state(&old.id, &old.token, save), Error::Revoked);
    assert_eq!(e.load(&new.id, &new.token)?.session_data, b"cart");
    Ok(())
}

pub fn rotation_refuses_what_loads_refuse<S: Subject>(subject: &S) -> Result<(), Error> {
    let t = open(subject, &Settings::default());
    let (e, clock) = (&t.engine, &t.clock);
    let c = e.create_with(NewSession::new(b"", b""))?;
    refused!(e.regenerate(&c.id, &wrong_token(), Duration::from_secs(1)), Error::Security);
    refused!(e.regenerate(&unknown_id(), &c.token, Duration::from_secs(1)), Error::NotFound);
    assert!(e.load(&c.id, &c.token).is_ok(), "the refused rotations left it where it was");
    clock.advance(10 * SEC);
    refused!(e.regenerate(&c.id, &c.token, Duration::from_secs(1)), Error::Expired { .. });
    assert!(!e.revoke(&unknown_id())?);
    Ok(())
}

pub fn tombstones_last_as_long_as_the_session_would_have<S: Subject>(
    subject: &S,
) -> Result<(), Error> {
    let t = open(subject, &Settings::default()); // idle 10 s, grace 5 s
    let (e, clock) = (&t.engine, &t.clock);
    let old = e.create_with(NewSession::new(b"", b""))?;
    let new = e.regenerate(&old.id, &old.token, Duration::ZERO)?;
    let gone = e.create_with(NewSession::new(b"", b""))?;
    assert!(e.revoke(&gone.id)?);
    assert!(!e.revoke(&gone.id)?, "already gone");
    refused!(e.load(&gone.id, &gone.token), Error::Revoked);
    e.cleanup()?;
    refused!(e.load(&old.id, &old.token), Error::Revoked);
    refused!(e.load(&gone.id, &gone.token), Error::Revoked);
    // Past idle + grace of the old sessions (15 s): the ids read as unknown, swept or not.
    clock.advance(15 * SEC);
    refused!(e.load(&old.id, &old.token), Error::NotFound);
    refused!(e.load(&gone.id, &gone.token), Error::NotFound);
    e.cleanup()?;
    refused!(e.load(&old.id, &old.token), Error::NotFound);
    refused!(e.load(&new.id, &new.token), Error::NotFound);
    Ok(())
}

pub fn moved_recently_names_a_rotation_a_moment_ago<S: Subject>(subject: &S) -> Result<(), Error> {
    let t = open(subject, &Settings::default());
    let (e, clock) = (&t.engine, &t.clock);
    let plain = e.create_with(NewSession::new(b"", b""))?;
    let old = e.create_with(NewSession::new(b"cart", b""))?;
    let new = e.regenerate(&old.id, &old.token, Duration::ZERO)?;
    assert!(e.moved_recently(&old.id, &old.token)?);
    assert!(!e.moved_recently(&old.id, &wrong_token())?, "only for the old id's token");
    assert!(!e.moved_recently(&new.id, &new.token)?, "the live end did not move");
    assert!(!e.moved_recently(&plain.id, &plain.token)?, "never rotated");
    assert!(!e.moved_recently(&unknown_id(), &old.token)?);
    // For ten seconds after the rotation (its forwarding window, none here).
    clock.set(T0 + 5 * SEC);
    e.touch(&new.id, &new.token)?; // lives until 15 s
    clock.set(T0 + 10 * SEC - 1);
    assert!(e.moved_recently(&old.id, &old.token)?);
    clock.set(T0 + 10 * SEC);
    assert!(!e.moved_recently(&old.id, &old.token)?, "a moment ago, not longer");

    // A log-out since leaves no logged-in session to protect.
    let old = e.create_with(NewSession::new(b"cart", b""))?;
    let new = e.regenerate(&old.id, &old.token, Duration::ZERO)?;
    assert!(e.moved_recently(&old.id, &old.token)?);
    assert!(e.revoke_with_token(&new.id, &new.token)?);
    assert!(!e.moved_recently(&old.id, &old.token)?);
    Ok(())
}
