//! Rotation (regenerate), revocation, tombstones and their sweep; sessions by user; client
//! fingerprints. With the test clock: idle 10 s, grace 5 s.

use std::time::Duration;

use sessiondb::{Error, NewSession, Save, SecureToken};

mod common;
use common::{T0, store, temp_db};

const SEC: u64 = 1000;

#[test]
fn regenerate_moves_the_session_and_forwards_the_old_id_for_a_while() -> Result<(), Error> {
    let db = temp_db();
    let (store, clock) = store(&db);
    let old = store.create(b"cart", b"page 0")?;
    store.store_state(&old.id, &old.token, Save::new(1, b"cart+1", b"page 1"))?;

    let new = store.regenerate(&old.id, &old.token, Duration::from_secs(2))?;
    assert_ne!(new.id, old.id);
    assert_ne!(new.token, old.token);
    assert_eq!((new.state_id, new.version), (1, 2), "states and version carried over");
    let got = store.load(&new.id, &new.token)?;
    assert_eq!(got.session_data, b"cart+1");
    assert_eq!(store.fetch_state(&new.id, &new.token, Some(0))?.state_data, b"page 0");
    assert!(matches!(store.load(&new.id, &old.token), Err(Error::Security)), "old token retired");
    assert_eq!(store.count()?, 1);

    // Inside the forwarding window the old id and token lead to the new ones.
    clock.advance(1999);
    match store.load(&old.id, &old.token) {
        Err(Error::Rotated { successor, token }) => {
            assert_eq!(successor, new.id);
            assert_eq!(token, new.token);
        }
        other => panic!("expected Rotated, got {other:?}"),
    }
    // A save on the old id is refused the same way, and writes nothing.
    let res = store.store_state(&old.id, &old.token, Save::new(2, b"lost", b""));
    assert!(matches!(res, Err(Error::Rotated { .. })), "{res:?}");
    // The old id with a wrong token learns nothing.
    let wrong = SecureToken::parse(&"x".repeat(43))?;
    assert!(matches!(store.load(&old.id, &wrong), Err(Error::Security)));

    // After the window: revoked, distinct from unknown.
    clock.advance(1);
    assert!(matches!(store.load(&old.id, &old.token), Err(Error::Revoked)));
    assert!(matches!(store.touch(&old.id, &old.token), Err(Error::Revoked)));
    Ok(())
}

#[test]
fn tombstones_last_as_long_as_the_old_session_would_have_and_are_swept() -> Result<(), Error> {
    let db = temp_db();
    let (store, clock) = store(&db);
    let old = store.create(b"", b"")?;
    let new = store.regenerate(&old.id, &old.token, Duration::ZERO)?;
    assert!(matches!(store.load(&old.id, &old.token), Err(Error::Revoked)), "no forwarding");
    let gone = store.create(b"", b"")?;
    assert!(store.revoke(&gone.id)?);
    assert!(!store.revoke(&gone.id)?, "already gone");
    assert!(matches!(store.load(&gone.id, &gone.token), Err(Error::Revoked)));

    let info = store.info()?;
    assert_eq!((info.sessions, info.tombstones), (1, 2), "{info:?}");
    // Nothing is due yet.
    let report = store.cleanup()?;
    assert_eq!(report.tombstones, 0);
    // Past idle + grace of the old sessions (15 s): the ids read as unknown, and the sweep
    // removes the tombstones (and the rotated session, idle just as long).
    clock.advance(15 * SEC);
    assert!(matches!(store.load(&old.id, &old.token), Err(Error::NotFound)));
    let report = store.cleanup()?;
    assert_eq!(report.tombstones, 2, "{report:?}");
    assert_eq!(report.sessions, 1, "{report:?}");
    assert!(matches!(store.load(&new.id, &new.token), Err(Error::NotFound)));
    assert_eq!(store.stats().cleanup.removed.tombstones, 2);
    Ok(())
}

#[test]
fn rotation_refuses_what_loads_refuse() -> Result<(), Error> {
    let db = temp_db();
    let (store, clock) = store(&db);
    let c = store.create(b"", b"")?;
    let wrong = SecureToken::parse(&"y".repeat(43))?;
    let res = store.regenerate(&c.id, &wrong, Duration::from_secs(1));
    assert!(matches!(res, Err(Error::Security)), "{res:?}");
    clock.advance(10 * SEC);
    let res = store.regenerate(&c.id, &c.token, Duration::from_secs(1));
    assert!(matches!(res, Err(Error::Expired { .. })), "{res:?}");
    let unknown = sessiondb::SessionId::parse("never-issued-id")?;
    assert!(matches!(store.revoke(&unknown), Ok(false)));
    Ok(())
}

#[test]
fn sessions_by_user_and_log_out_everywhere() -> Result<(), Error> {
    let db = temp_db();
    let (store, _clock) = store(&db);
    let a1 = store.create_with(NewSession::new(b"a1", b"").user(b"alice"))?;
    let a2 = store.create_with(NewSession::new(b"a2", b"").user(b"alice"))?;
    let b1 = store.create_with(NewSession::new(b"b1", b"").user(b"bob"))?;
    let anon = store.create(b"anon", b"")?;
    assert_eq!(store.load(&a1.id, &a1.token)?.user.as_deref(), Some(&b"alice"[..]));
    assert_eq!(store.load(&anon.id, &anon.token)?.user, None);

    // Log-in of the anonymous session as alice, with a save; rotation keeps the user.
    store.store_state(&anon.id, &anon.token, Save::new(1, b"anon", b"").user(Some(b"alice")))?;
    let a3 = store.regenerate(&anon.id, &anon.token, Duration::ZERO)?;
    let mut alice = store.user_sessions(b"alice")?;
    alice.sort();
    let mut expected = vec![a1.id.clone(), a2.id.clone(), a3.id.clone()];
    expected.sort();
    assert_eq!(alice, expected);
    assert_eq!(store.user_sessions(b"bob")?, vec![b1.id.clone()]);
    assert!(store.user_sessions(b"al")?.is_empty(), "a prefix is not a user");
    assert_eq!(store.info()?.user_entries, 4);

    // Moving a session to another user, then clearing it.
    store.store_state(&a2.id, &a2.token, Save::new(1, b"a2", b"").user(Some(b"bob")))?;
    assert_eq!(store.user_sessions(b"bob")?.len(), 2);
    store.store_state(&a2.id, &a2.token, Save::new(2, b"a2", b"").user(None))?;
    assert_eq!(store.user_sessions(b"bob")?, vec![b1.id.clone()]);

    // Log out everywhere.
    assert_eq!(store.revoke_user(b"alice")?, 2);
    assert!(store.user_sessions(b"alice")?.is_empty());
    assert!(matches!(store.load(&a1.id, &a1.token), Err(Error::Revoked)));
    assert!(matches!(store.load(&a3.id, &a3.token), Err(Error::Revoked)));
    assert!(store.load(&a2.id, &a2.token).is_ok(), "no longer alice's");
    assert!(store.load(&b1.id, &b1.token).is_ok());

    let long = vec![b'u'; 1025];
    let res = store.create_with(NewSession::new(b"", b"").user(&long));
    assert!(matches!(res, Err(Error::InvalidInput(_))), "{res:?}");
    Ok(())
}

#[test]
fn fingerprints_are_stored_hashed_and_compared() -> Result<(), Error> {
    let db = temp_db();
    let (store, _clock) = store(&db);
    let fp = b"Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0";
    let c = store.create_with(NewSession::new(b"", b"").fingerprint(fp))?;
    let got = store.load(&c.id, &c.token)?;
    assert_eq!(got.fingerprint_matches(fp), Some(true));
    assert_eq!(got.fingerprint_matches(b"curl/8.0"), Some(false));
    let plain = store.create(b"", b"")?;
    assert_eq!(store.load(&plain.id, &plain.token)?.fingerprint_matches(fp), None);
    drop(store);
    let bytes = std::fs::read(&db.path)?;
    assert!(!bytes.windows(fp.len()).any(|w| w == fp), "the fingerprint is not in the file");
    Ok(())
}

#[test]
fn rotated_ids_are_retired_for_good_even_after_reopen() -> Result<(), Error> {
    let db = temp_db();
    let clock = sessiondb::ManualClock::new(T0);
    let c = {
        let store = common::builder(&db.path, &clock).open()?;
        let c = store.create(b"", b"")?;
        store.regenerate(&c.id, &c.token, Duration::from_secs(1))?;
        c
    };
    let store = common::builder(&db.path, &clock).open()?;
    assert!(matches!(store.load(&c.id, &c.token), Err(Error::Rotated { .. })));
    Ok(())
}

#[test]
fn adjust_time_shifts_tombstones_and_their_lifetime_is_capped() -> Result<(), Error> {
    let db = temp_db();
    let clock = sessiondb::ManualClock::new(T0);
    // No idle timeout: the session would live for ever, its tombstone does not.
    let store = common::builder(&db.path, &clock).idle_timeout(None).open()?;
    let c = store.create(b"", b"")?;
    store.regenerate(&c.id, &c.token, Duration::from_secs(30))?;
    // The clock was stepped back an hour, and the store told so: the window stays 30 s long.
    clock.set(T0 - 3_600_000);
    store.adjust_time(-3_600_000)?;
    clock.advance(29_999);
    assert!(matches!(store.load(&c.id, &c.token), Err(Error::Rotated { .. })));
    clock.advance(1);
    assert!(matches!(store.load(&c.id, &c.token), Err(Error::Revoked)));
    // A week on, the tombstone is swept although the session never expires.
    clock.advance(7 * 24 * 3_600_000);
    assert_eq!(store.cleanup()?.tombstones, 1);
    assert!(matches!(store.load(&c.id, &c.token), Err(Error::NotFound)));
    Ok(())
}

/// A rotation without forwarding forwards nobody, even a process whose clock reads a little
/// behind the rotating process's (found in `tests/cgi.rs`: a count racing a log-in came back
/// `Forwarded` with no forwarding configured, a ~1 ms window for a planted cookie to follow a
/// log-in). Failed before: the tombstone forwarded while `now < forward_until`, and without
/// forwarding `forward_until` is the rotation's own time.
#[test]
fn no_forwarding_forwards_nobody_even_with_a_clock_behind() -> Result<(), Error> {
    let db = temp_db();
    let (store, clock) = store(&db);
    let old = store.create(b"cart", b"page 0")?;
    let new = store.regenerate(&old.id, &old.token, Duration::ZERO)?;
    clock.set(T0 - 1); // another process, its clock read just before the rotation's
    assert!(matches!(store.load(&old.id, &old.token), Err(Error::Revoked)));
    let save = Save::new(1, b"cart+1", b"page 1");
    assert!(matches!(store.store_state(&old.id, &old.token, save), Err(Error::Revoked)));
    assert_eq!(store.load(&new.id, &new.token)?.session_data, b"cart");
    Ok(())
}
