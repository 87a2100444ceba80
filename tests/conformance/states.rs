//! The states history (older states readable, eviction beyond `max_states`, unknown states)
//! and versions (a stale save is a `Conflict` that changes nothing).

use sessiondb::{Engine, Error, NewSession, Save};

use crate::{Settings, Subject, open};

pub fn older_states_stay_readable_and_new_ones_follow_the_latest<S: Subject>(
    subject: &S,
) -> Result<(), Error> {
    let t = open(subject, &Settings::default());
    let e = &t.engine;
    let c = e.create_with(NewSession::new(b"session-0", b"state-0"))?;
    assert_eq!((c.state_id, c.version), (0, 1));
    let got = e.load(&c.id, &c.token)?;
    assert_eq!(
        (got.session_data.as_slice(), got.state_data.as_slice()),
        (&b"session-0"[..], &b"state-0"[..])
    );
    assert_eq!((got.state_id, got.latest_state_id, got.oldest_state_id, got.version), (0, 0, 0, 1));

    let s = e.store_state(&c.id, &c.token, Save::new(got.version, b"session-1", b"state-1"))?;
    assert_eq!((s.state_id, s.version), (1, 2));
    let got = e.load(&c.id, &c.token)?;
    assert_eq!(
        (got.session_data.as_slice(), got.state_data.as_slice()),
        (&b"session-1"[..], &b"state-1"[..])
    );
    assert_eq!((got.state_id, got.latest_state_id, got.version), (1, 1, 2));

    // Back to state 0: its state data, the current session data.
    let back = e.fetch_state(&c.id, &c.token, Some(0))?;
    assert_eq!(
        (back.session_data.as_slice(), back.state_data.as_slice()),
        (&b"session-1"[..], &b"state-0"[..])
    );
    assert_eq!((back.state_id, back.latest_state_id, back.version), (0, 1, 2));

    // A new state after going back continues from the latest.
    let s = e.store_state(&c.id, &c.token, Save::new(back.version, b"session-2", b"state-2"))?;
    assert_eq!((s.state_id, s.version), (2, 3));
    assert_eq!(e.fetch_state(&c.id, &c.token, Some(1))?.state_data, b"state-1");
    assert_eq!(e.fetch_state(&c.id, &c.token, None)?.state_data, b"state-2");
    Ok(())
}

pub fn states_beyond_max_states_are_evicted<S: Subject>(subject: &S) -> Result<(), Error> {
    let t = open(subject, &Settings { max_states: 3, ..Settings::default() });
    let e = &t.engine;
    let c = e.create_with(NewSession::new(b"", b"0"))?;
    let mut version = c.version;
    for i in 1..=5u8 {
        let s = e.store_state(&c.id, &c.token, Save::new(version, b"", &[b'0' + i]))?;
        assert_eq!(s.state_id, u64::from(i));
        version = s.version;
    }
    for id in 3..=5u8 {
        let got = e.fetch_state(&c.id, &c.token, Some(u64::from(id)))?;
        assert_eq!(got.state_data, [b'0' + id]);
    }
    let got = e.load(&c.id, &c.token)?;
    assert_eq!((got.oldest_state_id, got.latest_state_id, got.state_id), (3, 5, 5));
    for evicted in 0..3 {
        let res = e.fetch_state(&c.id, &c.token, Some(evicted));
        assert!(
            matches!(res, Err(Error::StateEvicted { requested, oldest: 3 }) if requested == evicted),
            "{res:?}"
        );
        refused!(res, Error::StateEvicted { .. }, false);
    }
    Ok(())
}

pub fn a_state_never_stored_is_not_found_not_evicted<S: Subject>(subject: &S) -> Result<(), Error> {
    let t = open(subject, &Settings::default());
    let e = &t.engine;
    let c = e.create_with(NewSession::new(b"", b"0"))?;
    e.store_state(&c.id, &c.token, Save::new(c.version, b"", b"1"))?;
    let res = e.fetch_state(&c.id, &c.token, Some(2));
    assert!(matches!(res, Err(Error::StateNotFound { requested: 2, latest: 1 })), "{res:?}");
    refused!(res, Error::StateNotFound { .. }, false);
    let res = e.fetch_state(&c.id, &c.token, Some(u64::MAX));
    assert!(matches!(res, Err(Error::StateNotFound { .. })), "{res:?}");
    Ok(())
}

pub fn session_only_and_same_state_saves_leave_the_history_alone<S: Subject>(
    subject: &S,
) -> Result<(), Error> {
    let t = open(subject, &Settings::default());
    let e = &t.engine;
    let c = e.create_with(NewSession::new(b"v1", b"page 0"))?;
    let s = e.store_state(&c.id, &c.token, Save::new(1, b"v2", b"page 1"))?;
    let s = e.store_state(&c.id, &c.token, Save::session_only(s.version, b"v3"))?;
    assert_eq!((s.state_id, s.version), (1, 3));
    let got = e.load(&c.id, &c.token)?;
    assert_eq!(
        (got.session_data.as_slice(), got.state_data.as_slice()),
        (&b"v3"[..], &b"page 1"[..])
    );
    assert_eq!((got.oldest_state_id, got.latest_state_id), (0, 1));
    let stale = e.store_state(&c.id, &c.token, Save::session_only(2, b"v4"));
    assert!(matches!(stale, Err(Error::Conflict { expected: 2, found: 3 })), "{stale:?}");

    // The same state again overwrites the latest, and keeps the older ones.
    let s = e.store_state(&c.id, &c.token, Save::new(3, b"v5", b"page 1b").same_state(true))?;
    assert_eq!((s.state_id, s.version), (1, 4));
    assert_eq!(e.fetch_state(&c.id, &c.token, Some(1))?.state_data, b"page 1b");
    assert_eq!(e.fetch_state(&c.id, &c.token, Some(0))?.state_data, b"page 0");
    let res = e.fetch_state(&c.id, &c.token, Some(2));
    assert!(matches!(res, Err(Error::StateNotFound { requested: 2, latest: 1 })), "{res:?}");
    Ok(())
}

pub fn a_stale_save_is_a_conflict_and_changes_nothing<S: Subject>(
    subject: &S,
) -> Result<(), Error> {
    let t = open(subject, &Settings::default());
    let e = &t.engine;
    let c = e.create_with(NewSession::new(b"v1", b"s0"))?;
    let read = e.load(&c.id, &c.token)?;
    e.store_state(&c.id, &c.token, Save::new(read.version, b"v2", b"s1"))?;
    let res = e.store_state(&c.id, &c.token, Save::new(read.version, b"v3", b"s2"));
    assert!(matches!(res, Err(Error::Conflict { expected: 1, found: 2 })), "{res:?}");
    refused!(res, Error::Conflict { .. }, false);
    let res = e.store_state(&c.id, &c.token, Save::new(7, b"v3", b"s2").user(Some(b"ann")));
    assert!(matches!(res, Err(Error::Conflict { expected: 7, found: 2 })), "{res:?}");
    let got = e.load(&c.id, &c.token)?;
    assert_eq!((got.session_data.as_slice(), got.state_data.as_slice()), (&b"v2"[..], &b"s1"[..]));
    assert_eq!((got.version, got.latest_state_id, got.user), (2, 1, None));
    assert!(e.user_sessions(b"ann")?.is_empty(), "the refused save filed nobody");
    // A touch is not a save: the version read before it still saves.
    e.touch(&c.id, &c.token)?;
    let s = e.store_state(&c.id, &c.token, Save::new(got.version, b"v3", b"s2"))?;
    assert_eq!((s.state_id, s.version), (2, 3));
    Ok(())
}
