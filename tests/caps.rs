//! Caps: `max_sessions` with both policies, and the per-record size limit.

mod common;

use common::{T0, builder, temp_db};
use sessiondb::{CapPolicy, Error, ManualClock, Save};

#[test]
fn reject_policy_refuses_at_the_cap() -> Result<(), Error> {
    let db = temp_db();
    let clock = ManualClock::new(T0);
    let store = builder(&db.path, &clock).max_sessions(Some(3)).open()?;
    let made: Vec<_> = (0..3).map(|_| store.create(b"", b"").unwrap()).collect();
    let res = store.create(b"", b"");
    assert!(matches!(res, Err(Error::MaxSessionsExceeded { max: 3 })), "{res:?}");
    assert_eq!(store.count()?, 3);
    // Deleting one makes room.
    store.delete(&made[0].id)?;
    store.create(b"", b"")?;
    Ok(())
}

#[test]
fn sessions_past_grace_do_not_count_against_the_cap() -> Result<(), Error> {
    let db = temp_db();
    let clock = ManualClock::new(T0);
    let store = builder(&db.path, &clock).max_sessions(Some(2)).open()?;
    store.create(b"", b"")?;
    store.create(b"", b"")?;
    clock.advance(16_000); // idle 10 s + grace 5 s have passed
    store.create(b"", b"")?;
    assert_eq!(store.count()?, 1);
    Ok(())
}

#[test]
fn evict_policy_removes_the_session_closest_to_expiry() -> Result<(), Error> {
    let db = temp_db();
    let clock = ManualClock::new(T0);
    let store = builder(&db.path, &clock)
        .max_sessions(Some(3))
        .cap_policy(CapPolicy::EvictOldest)
        .open()?;
    let a = store.create(b"a", b"")?;
    clock.advance(1000);
    let b = store.create(b"b", b"")?;
    clock.advance(1000);
    let c = store.create(b"c", b"")?;
    clock.advance(1000);
    // Using `a` moves its deadline past b's and c's: `b` is now closest to expiry.
    store.store_state(&a.id, &a.token, Save::new(a.version, b"a", b"1"))?;
    let d = store.create(b"d", b"")?;
    assert_eq!(store.count()?, 3);
    assert!(matches!(store.load(&b.id, &b.token), Err(Error::NotFound)));
    for s in [&a, &c, &d] {
        assert!(store.load(&s.id, &s.token).is_ok());
    }
    let info = store.info()?;
    assert_eq!((info.expiry_entries, info.states), (3, 4));
    Ok(())
}

#[test]
fn oversize_data_is_refused_and_writes_nothing() -> Result<(), Error> {
    let db = temp_db();
    let clock = ManualClock::new(T0);
    let store = builder(&db.path, &clock).max_data_size(1024).open()?;
    let big = vec![7u8; 1025];
    let fits = vec![7u8; 1024];
    assert!(matches!(store.create(&big, b""), Err(Error::InvalidInput(_))));
    assert!(matches!(store.create(b"", &big), Err(Error::InvalidInput(_))));
    assert_eq!(store.count()?, 0);
    let c = store.create(&fits, &fits)?;
    let res = store.store_state(&c.id, &c.token, Save::new(c.version, &big, b"new"));
    assert!(matches!(res, Err(Error::InvalidInput(_))), "{res:?}");
    let res = store.store_state(&c.id, &c.token, Save::new(c.version, b"new", &big));
    assert!(matches!(res, Err(Error::InvalidInput(_))), "{res:?}");
    let got = store.load(&c.id, &c.token)?;
    assert_eq!((got.session_data, got.state_id, got.version), (fits, 0, 1));
    Ok(())
}
