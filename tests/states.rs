//! States history: LRU eviction, `states_history = false`, unknown and evicted state ids.

mod common;

use common::{T0, builder, store, temp_db};
use sessiondb::{Error, ManualClock, Save};

#[test]
fn oldest_states_are_evicted_beyond_max_states() -> Result<(), Error> {
    let db = temp_db();
    let clock = ManualClock::new(T0);
    let store = builder(&db.path, &clock).max_states(3).open()?;
    let c = store.create(b"", b"0")?;
    let mut version = c.version;
    for i in 1..=5u8 {
        let s = store.store_state(&c.id, &c.token, Save::new(version, b"", &[b'0' + i]))?;
        assert_eq!(s.state_id, u64::from(i));
        version = s.version;
    }
    let kept: Vec<u64> = store.inspect(&c.id)?.unwrap().1.iter().map(|s| s.id).collect();
    assert_eq!(kept, vec![3, 4, 5]);
    for id in 3..=5u8 {
        assert_eq!(
            store.fetch_state(&c.id, &c.token, Some(u64::from(id)))?.state_data,
            [b'0' + id]
        );
    }
    let got = store.load(&c.id, &c.token)?;
    assert_eq!((got.oldest_state_id, got.latest_state_id), (3, 5));
    for evicted in 0..3 {
        let res = store.fetch_state(&c.id, &c.token, Some(evicted));
        assert!(
            matches!(res, Err(Error::StateEvicted { requested, oldest: 3 }) if requested == evicted),
            "{res:?}"
        );
    }
    assert_eq!(store.info()?.states, 3);
    Ok(())
}

#[test]
fn a_state_never_stored_is_not_found_not_evicted() -> Result<(), Error> {
    let db = temp_db();
    let (store, _clock) = store(&db);
    let c = store.create(b"", b"0")?;
    store.store_state(&c.id, &c.token, Save::new(c.version, b"", b"1"))?;
    let res = store.fetch_state(&c.id, &c.token, Some(2));
    assert!(matches!(res, Err(Error::StateNotFound { requested: 2, latest: 1 })), "{res:?}");
    let res = store.fetch_state(&c.id, &c.token, Some(u64::MAX));
    assert!(matches!(res, Err(Error::StateNotFound { .. })), "{res:?}");
    Ok(())
}

#[test]
fn without_history_exactly_one_state_is_kept() -> Result<(), Error> {
    let db = temp_db();
    let clock = ManualClock::new(T0);
    let store = builder(&db.path, &clock).states_history(false).open()?;
    let c = store.create(b"", b"first")?;
    let mut version = c.version;
    for i in 0..5u8 {
        let s = store.store_state(&c.id, &c.token, Save::new(version, b"", &[i]))?;
        assert_eq!(s.state_id, 0);
        version = s.version;
    }
    let states = store.inspect(&c.id)?.unwrap().1;
    assert_eq!(states.len(), 1);
    assert_eq!(store.load(&c.id, &c.token)?.state_data, [4]);
    Ok(())
}

#[test]
fn lowering_max_states_trims_on_the_next_save() -> Result<(), Error> {
    let db = temp_db();
    let clock = ManualClock::new(T0);
    let (c, version) = {
        let store = builder(&db.path, &clock).max_states(10).open()?;
        let c = store.create(b"", b"")?;
        let mut version = c.version;
        for _ in 0..9 {
            version = store.store_state(&c.id, &c.token, Save::new(version, b"", b""))?.version;
        }
        assert_eq!(store.inspect(&c.id)?.unwrap().1.len(), 10);
        (c, version)
    };
    let store = builder(&db.path, &clock).max_states(2).open()?;
    store.store_state(&c.id, &c.token, Save::new(version, b"", b""))?;
    let kept: Vec<u64> = store.inspect(&c.id)?.unwrap().1.iter().map(|s| s.id).collect();
    assert_eq!(kept, vec![9, 10]);
    Ok(())
}

#[test]
fn a_session_only_save_leaves_the_states_alone() -> Result<(), Error> {
    let db = temp_db();
    let (store, _clock) = store(&db);
    let c = store.create(b"v1", b"page 0")?;
    let s = store.store_state(&c.id, &c.token, Save::new(1, b"v2", b"page 1"))?;
    let s = store.store_state(&c.id, &c.token, Save::session_only(s.version, b"v3"))?;
    assert_eq!((s.state_id, s.version), (1, 3));
    let got = store.load(&c.id, &c.token)?;
    assert_eq!(
        (got.session_data.as_slice(), got.state_data.as_slice()),
        (&b"v3"[..], &b"page 1"[..])
    );
    assert_eq!((got.oldest_state_id, got.latest_state_id), (0, 1));
    let stale = store.store_state(&c.id, &c.token, Save::session_only(2, b"v4"));
    assert!(matches!(stale, Err(Error::Conflict { expected: 2, found: 3 })), "{stale:?}");
    Ok(())
}
