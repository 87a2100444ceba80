//! The lazy `expiry` index of format 2 (docs/format.md): a save or touch that moves a session's
//! removal time later leaves its index entry where it was (early, never late); the sweep and
//! eviction under the cap re-index an early entry instead of removing a live session; whatever
//! moves the removal time earlier moves the entry with it.

use sessiondb::{CapPolicy, Error, ManualClock, Save, SessionId, Store};

mod common;
use common::{T0, builder, raw, temp_db};

const SEC: u64 = 1000;

/// The `expiry` index as stored: (indexed removal time, id) of every entry. Read through a raw
/// redb handle: the store must be closed (redb locks the file).
fn index(path: &std::path::Path) -> Vec<(u64, String)> {
    let db = redb::Database::open(path).expect("raw open");
    let txn = redb::ReadableDatabase::begin_read(&db).expect("read");
    let table = txn.open_table(raw::EXPIRY).expect("expiry table");
    let entries = redb::ReadableTable::iter(&table).expect("iter").map(|e| {
        let key = e.expect("entry").0;
        let (indexed, sid) = key.value();
        (indexed, String::from_utf8(sid.to_vec()).expect("ascii id"))
    });
    entries.collect()
}

/// (remove at, indexed at) of a session, through the public API.
fn filed(store: &Store, id: &SessionId) -> (u64, u64) {
    let info = store.inspect(id).expect("inspect").expect("the session").0;
    (info.remove_at, info.indexed_remove_at)
}

#[test]
fn saves_and_touches_that_extend_a_session_leave_its_expiry_entry_alone() -> Result<(), Error> {
    let db = temp_db();
    let clock = ManualClock::new(T0);
    let open = || builder(&db.path, &clock).open();
    let store = open()?;
    let c = store.create(b"x", b"s0")?;
    drop(store);
    let created = index(&db.path);
    assert_eq!(created, [(T0 + 15 * SEC, c.id.as_str().to_owned())]);
    let store = open()?;
    clock.advance(3 * SEC);
    store.store_state(&c.id, &c.token, Save::new(c.version, b"y", b"s1"))?;
    assert_eq!(
        filed(&store, &c.id),
        (T0 + 18 * SEC, T0 + 15 * SEC),
        "remove_at moved, not the entry"
    );
    clock.advance(3 * SEC);
    store.touch(&c.id, &c.token)?;
    assert_eq!(filed(&store, &c.id), (T0 + 21 * SEC, T0 + 15 * SEC));
    clock.advance(3 * SEC);
    store.load(&c.id, &c.token)?; // a load's touch
    assert_eq!(filed(&store, &c.id), (T0 + 24 * SEC, T0 + 15 * SEC));
    drop(store);
    assert_eq!(index(&db.path), created, "no save, touch or load moved the entry");
    let store = open()?;
    assert!(store.verify()?.is_clean(), "{:?}", store.verify()?.problems);
    // A deadline earlier than the entry moves it (`put`): never late.
    store.put(&c.id, &c.token, b"z", Some(T0 + 12 * SEC))?;
    assert_eq!(filed(&store, &c.id), (T0 + 17 * SEC, T0 + 15 * SEC), "still early: stays");
    store.put(&c.id, &c.token, b"z", Some(T0 + 9 * SEC + 500))?;
    assert_eq!(filed(&store, &c.id), (T0 + 14 * SEC + 500, T0 + 14 * SEC + 500), "moved earlier");
    assert!(store.verify()?.is_clean(), "{:?}", store.verify()?.problems);
    drop(store);
    assert_eq!(index(&db.path), [(T0 + 14 * SEC + 500, c.id.as_str().to_owned())]);
    Ok(())
}

#[test]
fn adjust_time_files_every_session_at_its_shifted_removal_time() -> Result<(), Error> {
    let db = temp_db();
    let clock = ManualClock::new(T0);
    let store = builder(&db.path, &clock).open()?;
    let c = store.create(b"x", b"")?;
    clock.advance(4 * SEC);
    store.touch(&c.id, &c.token)?;
    assert_eq!(filed(&store, &c.id), (T0 + 19 * SEC, T0 + 15 * SEC));
    // The clock was stepped forward by 10 s... and back by 12: every time moves back 2 s.
    assert_eq!(store.adjust_time(-12 * 1000 + 10 * 1000)?, 1);
    assert_eq!(filed(&store, &c.id), (T0 + 17 * SEC, T0 + 17 * SEC));
    store.adjust_time(-20 * 1000)?;
    assert_eq!(filed(&store, &c.id), (T0 - 3 * SEC, T0 - 3 * SEC), "never late");
    assert!(store.verify()?.is_clean(), "{:?}", store.verify()?.problems);
    drop(store);
    assert_eq!(index(&db.path), [(T0 - 3 * SEC, c.id.as_str().to_owned())]);
    Ok(())
}

#[test]
fn a_sweep_reindexes_a_live_session_and_removes_it_once_really_due() -> Result<(), Error> {
    let db = temp_db();
    let clock = ManualClock::new(T0);
    let store = builder(&db.path, &clock).open()?;
    let used = store.create(b"used", b"")?;
    let idle = store.create(b"idle", b"")?;
    clock.advance(9 * SEC);
    store.store_state(&used.id, &used.token, Save::new(used.version, b"used", b""))?;
    // Both entries are due at T0 + 15 s; only the idle session is.
    clock.set(T0 + 16 * SEC);
    let report = store.cleanup()?;
    assert_eq!((report.sessions, report.reindexed, report.stale_entries), (1, 1, 0), "{report:?}");
    assert!(report.complete);
    assert!(store.exists(&used.id)?, "the used session is live until T0 + 19 s");
    assert!(!store.exists(&idle.id)?);
    assert_eq!(filed(&store, &used.id), (T0 + 24 * SEC, T0 + 24 * SEC), "re-indexed exactly");
    drop(store);
    assert_eq!(index(&db.path), [(T0 + 24 * SEC, used.id.as_str().to_owned())]);
    let store = builder(&db.path, &clock).open()?;
    // Nothing is due before then: a sweep finds nothing, re-indexes nothing.
    clock.set(T0 + 24 * SEC - 1);
    let report = store.cleanup()?;
    assert_eq!((report.sessions, report.reindexed), (0, 0), "{report:?}");
    assert_eq!(store.count()?, 1);
    // Once really due, removed.
    clock.set(T0 + 24 * SEC);
    let report = store.cleanup()?;
    assert_eq!((report.sessions, report.reindexed, report.states), (1, 0, 2), "{report:?}");
    assert_eq!(store.count()?, 0);
    assert!(store.verify()?.is_clean(), "{:?}", store.verify()?.problems);
    drop(store);
    assert!(index(&db.path).is_empty());
    Ok(())
}

#[test]
fn eviction_under_the_cap_spares_a_session_just_used_while_an_older_one_exists() -> Result<(), Error>
{
    let db = temp_db();
    let clock = ManualClock::new(T0);
    let store = builder(&db.path, &clock)
        .max_sessions(Some(2))
        .cap_policy(CapPolicy::EvictOldest)
        .open()?;
    let first = store.create(b"first", b"")?;
    clock.advance(SEC);
    let second = store.create(b"second", b"")?;
    clock.advance(4 * SEC);
    // `first` is used: its removal time (T0 + 20 s) passes `second`'s (T0 + 16 s), but its
    // entry stays filed at T0 + 15 s, before `second`'s.
    store.touch(&first.id, &first.token)?;
    assert_eq!(filed(&store, &first.id), (T0 + 20 * SEC, T0 + 15 * SEC));
    assert_eq!(store.count()?, 2);
    let third = store.create(b"third", b"")?;
    assert_eq!(store.count()?, 2);
    assert!(store.exists(&first.id)?, "the session just used is kept");
    assert!(!store.exists(&second.id)?, "the older one is evicted");
    assert!(store.exists(&third.id)?);
    assert_eq!(filed(&store, &first.id), (T0 + 20 * SEC, T0 + 20 * SEC), "re-indexed");
    assert!(store.verify()?.is_clean(), "{:?}", store.verify()?.problems);
    Ok(())
}

#[test]
fn the_cap_counts_sessions_not_their_states() -> Result<(), Error> {
    let db = temp_db();
    let clock = ManualClock::new(T0);
    let store = builder(&db.path, &clock).max_sessions(Some(3)).open()?;
    let mut made = Vec::new();
    for n in 0..3u8 {
        let c = store.create(&[n], b"s0")?;
        let mut v = c.version;
        for _ in 0..4 {
            v = store.store_state(&c.id, &c.token, Save::new(v, &[n], b"s"))?.version;
        }
        made.push(c);
    }
    assert_eq!(store.count()?, 3);
    let info = store.info()?;
    assert_eq!((info.sessions, info.states, info.expiry_entries), (3, 15, 3));
    assert!(matches!(store.create(b"", b""), Err(Error::MaxSessionsExceeded { max: 3 })));
    assert_eq!(store.sessions().count(), 3, "the listing shows records, not states");
    Ok(())
}

/// The documented bound: one eviction re-indexes at most 64 early entries; past them it evicts
/// the first by indexed time, here a session used since it was filed (docs/format.md,
/// "Eviction order").
#[test]
fn eviction_reindexes_at_most_64_entries_then_goes_by_indexed_time() -> Result<(), Error> {
    let db = temp_db();
    let clock = ManualClock::new(T0);
    let store = builder(&db.path, &clock)
        .max_sessions(Some(70))
        .cap_policy(CapPolicy::EvictOldest)
        .open()?;
    let made: Vec<_> = (0..70u64)
        .map(|n| {
            clock.set(T0 + n);
            store.create(b"", b"")
        })
        .collect::<Result<_, _>>()?;
    // The first 66 are used at T0 + 1 s: their entries (T0 + 15 s + n) are now early.
    clock.set(T0 + SEC);
    for c in &made[..66] {
        store.touch(&c.id, &c.token)?;
    }
    store.create(b"", b"")?;
    let gone: Vec<usize> = (0..70).filter(|&n| !store.exists(&made[n].id).unwrap()).collect();
    assert_eq!(gone, [64], "64 re-indexed, then the 65th evicted by its indexed time");
    let kept = filed(&store, &made[65].id);
    assert_eq!(kept, (T0 + 16 * SEC, T0 + 15 * SEC + 65), "not reached: still early");
    assert_eq!(filed(&store, &made[0].id), (T0 + 16 * SEC, T0 + 16 * SEC), "re-indexed");
    assert!(store.verify()?.is_clean(), "{:?}", store.verify()?.problems);
    Ok(())
}
