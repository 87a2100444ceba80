//! Wrong tokens and unknown ids are refused and change nothing; `create_under` and `put`, the
//! tower adapter's calls, take the caller's id and never bring a retired one back.

use std::time::Duration;

use sessiondb::{Engine, Error, NewSession, Save, SecureToken, SessionId};

use crate::{Settings, Subject, open, unknown_id, wrong_token};

pub fn a_wrong_token_is_refused_everywhere_and_changes_nothing<S: Subject>(
    subject: &S,
) -> Result<(), Error> {
    let t = open(subject, &Settings::default());
    let e = &t.engine;
    let c = e.create_with(NewSession::new(b"secret", b"s").user(b"ann"))?;
    let other = e.create_with(NewSession::new(b"", b""))?;
    for wrong in [wrong_token(), other.token.clone()] {
        refused!(e.load(&c.id, &wrong), Error::Security);
        refused!(e.fetch_state(&c.id, &wrong, Some(0)), Error::Security);
        refused!(e.touch(&c.id, &wrong), Error::Security);
        let save = Save::new(c.version, b"stolen", b"stolen").user(Some(b"mallory"));
        refused!(e.store_state(&c.id, &wrong, save), Error::Security);
        refused!(e.put(&c.id, &wrong, b"stolen", None), Error::Security);
        refused!(e.regenerate(&c.id, &wrong, Duration::from_secs(30)), Error::Security);
        refused!(e.revoke_with_token(&c.id, &wrong), Error::Security);
    }
    let got = e.load(&c.id, &c.token)?;
    assert_eq!(
        (got.session_data.as_slice(), got.state_data.as_slice()),
        (&b"secret"[..], &b"s"[..])
    );
    assert_eq!((got.version, got.latest_state_id, got.user.as_deref()), (1, 0, Some(&b"ann"[..])));
    assert_eq!(e.user_sessions(b"ann")?, vec![c.id.clone()]);
    assert!(e.user_sessions(b"mallory")?.is_empty());
    // The genuine token still does everything.
    let s = e.store_state(&c.id, &c.token, Save::new(got.version, b"mine", b""))?;
    assert_eq!(s.version, 2);
    Ok(())
}

pub fn unknown_ids_are_not_found<S: Subject>(subject: &S) -> Result<(), Error> {
    let t = open(subject, &Settings::default());
    let e = &t.engine;
    let c = e.create_with(NewSession::new(b"", b""))?;
    let unknown = unknown_id();
    refused!(e.load(&unknown, &c.token), Error::NotFound);
    refused!(e.fetch_state(&unknown, &c.token, Some(0)), Error::NotFound);
    refused!(e.touch(&unknown, &c.token), Error::NotFound);
    refused!(e.store_state(&unknown, &c.token, Save::new(c.version, b"", b"")), Error::NotFound);
    refused!(e.regenerate(&unknown, &c.token, Duration::ZERO), Error::NotFound);
    assert!(!e.revoke(&unknown)?);
    assert!(!e.revoke_with_token(&unknown, &c.token)?);
    assert!(!e.moved_recently(&unknown, &c.token)?);
    // Still unknown afterwards: none of these created it.
    refused!(e.load(&unknown, &c.token), Error::NotFound);
    Ok(())
}

pub fn create_under_and_put_take_the_callers_id_and_never_revive_one<S: Subject>(
    subject: &S,
) -> Result<(), Error> {
    let t = open(subject, &Settings::default());
    let e = &t.engine;
    let id = SessionId::parse("chosen-id-0123456789abcdefghij")?;
    let token = SecureToken::parse("chosen-token-0123456789")?;
    let c = e.create_under(&id, &token, b"one", None)?;
    assert_eq!((&c.id, &c.token, c.state_id, c.version), (&id, &token, 0, 1));
    refused!(e.create_under(&id, &token, b"two", None), Error::IdTaken, false);
    assert_eq!(e.load(&id, &token)?.session_data, b"one");

    // A blind write, whatever the version; the states are left as they are.
    e.store_state(&id, &token, Save::new(1, b"one", b"page 1"))?;
    assert_eq!(e.put(&id, &token, b"three", None)?.version, 3);
    let got = e.load(&id, &token)?;
    assert_eq!(
        (got.session_data.as_slice(), got.state_data.as_slice()),
        (&b"three"[..], &b"page 1"[..])
    );
    assert_eq!((got.version, got.latest_state_id), (3, 1));
    refused!(e.put(&id, &SecureToken::parse("another-token")?, b"x", None), Error::Security);
    assert_eq!(e.load(&id, &token)?.session_data, b"three");

    // A put under an unknown id creates the session.
    let fresh = SessionId::parse("fresh-chosen-id-0123456789abcdef")?;
    assert_eq!(e.put(&fresh, &token, b"new", None)?.version, 1);
    assert_eq!(e.load(&fresh, &token)?.session_data, b"new");

    // A retired id is neither reused nor revived.
    assert!(e.revoke(&id)?);
    refused!(e.put(&id, &token, b"four", None), Error::Revoked);
    refused!(e.put(&id, &wrong_token(), b"four", None), Error::Security);
    refused!(e.create_under(&id, &token, b"five", None), Error::IdTaken, false);
    refused!(e.load(&id, &token), Error::Revoked);
    let moved = e.regenerate(&fresh, &token, Duration::from_secs(30))?;
    refused!(e.put(&fresh, &token, b"six", None), Error::Rotated { .. });
    refused!(e.create_under(&fresh, &token, b"six", None), Error::IdTaken, false);
    assert_eq!(e.load(&moved.id, &moved.token)?.session_data, b"new");
    Ok(())
}
