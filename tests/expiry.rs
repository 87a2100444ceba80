//! Every expiry path, with an injected clock: idle, absolute, grace window, after removal,
//! touches, clean-up, idle deletion and clock adjustment.

mod common;

use std::time::Duration;

use common::{T0, builder, store, temp_db};
use redb::{ReadableDatabase, ReadableTable};
use sessiondb::{Error, ManualClock, Save, SessionStatus};

const SEC: u64 = 1000;

#[test]
fn idle_expiry_then_grace_then_gone_without_any_sweep() -> Result<(), Error> {
    let db = temp_db();
    let (store, clock) = store(&db); // idle 10 s, grace 5 s
    let c = store.create(b"data", b"")?;
    clock.advance(10 * SEC - 1);
    assert_eq!(store.load(&c.id, &c.token)?.session_data, b"data");
    assert!(store.exists(&c.id)?);
    // The load above touched the session: it now expires at T0 + 20 s - 1 ms.
    clock.set(T0 + 20 * SEC - 2);
    assert!(store.load(&c.id, &c.token).is_ok());
    // Touched again: expires at T0 + 30 s - 2 ms, and is gone 5 s later.
    clock.set(T0 + 30 * SEC - 2);
    let res = store.load(&c.id, &c.token);
    assert!(matches!(&res, Err(Error::Expired { data }) if data == b"data"), "{res:?}");
    assert!(!store.exists(&c.id)?);
    // Saves and touches are refused too, with the data.
    let res = store.store_state(&c.id, &c.token, Save::new(c.version, b"new", b""));
    assert!(matches!(res, Err(Error::Expired { .. })), "{res:?}");
    assert!(matches!(store.touch(&c.id, &c.token), Err(Error::Expired { .. })));
    // After the grace window: unknown, though nothing was swept.
    clock.set(T0 + 35 * SEC - 1);
    assert!(matches!(store.load(&c.id, &c.token), Err(Error::NotFound)));
    assert_eq!(store.count()?, 1, "no sweep has run yet");
    let report = store.cleanup()?;
    assert_eq!((report.sessions, report.states), (1, 1));
    assert_eq!(store.count()?, 0);
    assert!(matches!(store.load(&c.id, &c.token), Err(Error::NotFound)));
    Ok(())
}

#[test]
fn expired_data_is_not_given_to_a_wrong_token() -> Result<(), Error> {
    let db = temp_db();
    let (store, clock) = store(&db);
    let c = store.create(b"secret", b"")?;
    let other = store.create(b"", b"")?;
    clock.advance(11 * SEC);
    let res = store.load(&c.id, &other.token);
    assert!(matches!(res, Err(Error::Security)), "{res:?}");
    Ok(())
}

#[test]
fn absolute_lifetime_ends_an_active_session() -> Result<(), Error> {
    let db = temp_db();
    let clock = ManualClock::new(T0);
    let store =
        builder(&db.path, &clock).absolute_lifetime(Some(Duration::from_secs(25))).open()?;
    let c = store.create(b"x", b"")?;
    let mut version = c.version;
    for _ in 0..4 {
        clock.advance(6 * SEC);
        // Keeps it idle-fresh.
        version = store.store_state(&c.id, &c.token, Save::new(version, b"x", b""))?.version;
    }
    clock.set(T0 + 25 * SEC);
    assert!(matches!(store.load(&c.id, &c.token), Err(Error::Expired { .. })));
    clock.set(T0 + 30 * SEC);
    assert!(matches!(store.load(&c.id, &c.token), Err(Error::NotFound)));
    Ok(())
}

#[test]
fn no_timeouts_means_no_expiry() -> Result<(), Error> {
    let db = temp_db();
    let clock = ManualClock::new(T0);
    let store = builder(&db.path, &clock).idle_timeout(None).open()?;
    let c = store.create(b"x", b"")?;
    clock.advance(10 * 365 * 24 * 3600 * SEC);
    assert!(store.load(&c.id, &c.token).is_ok());
    assert_eq!(store.cleanup()?.sessions, 0);
    assert_eq!(store.inspect(&c.id)?.map(|(i, _)| i.expires_at), Some(u64::MAX));
    Ok(())
}

#[test]
fn a_process_with_a_shorter_timeout_never_returns_what_it_considers_expired() -> Result<(), Error> {
    let db = temp_db();
    let clock = ManualClock::new(T0);
    let long = builder(&db.path, &clock).idle_timeout(Some(Duration::from_secs(3600))).open()?;
    let c = long.create(b"x", b"")?;
    drop(long);
    let short = builder(&db.path, &clock).open()?; // idle 10 s
    clock.advance(11 * SEC);
    assert!(matches!(short.load(&c.id, &c.token), Err(Error::Expired { .. })));
    Ok(())
}

#[test]
fn loads_persist_access_only_past_the_touch_resolution() -> Result<(), Error> {
    let db = temp_db();
    let clock = ManualClock::new(T0);
    // Idle 10 s: the default resolution is 1% = 100 ms.
    let store = builder(&db.path, &clock).open()?;
    let c = store.create(b"x", b"")?;
    clock.advance(99);
    store.load(&c.id, &c.token)?;
    assert_eq!(store.inspect(&c.id)?.unwrap().0.last_access, T0);
    clock.advance(1);
    store.load(&c.id, &c.token)?;
    let info = store.inspect(&c.id)?.unwrap().0;
    assert_eq!(info.last_access, T0 + 100);
    assert_eq!(info.expires_at, T0 + 100 + 10 * SEC);
    assert_eq!(info.version, 1, "a touch is not a save");
    Ok(())
}

#[test]
fn saves_move_the_access_time_only_past_the_touch_resolution() -> Result<(), Error> {
    let db = temp_db();
    let clock = ManualClock::new(T0);
    // Idle 10 s: the default resolution is 1% = 100 ms.
    let store = builder(&db.path, &clock).open()?;
    let c = store.create(b"x", b"")?;
    let index = || -> Vec<u64> {
        let db = redb::Database::open(&db.path).expect("raw open");
        let txn = db.begin_read().expect("read");
        let table = txn.open_table(common::raw::EXPIRY).expect("expiry table");
        let entries = table.iter().expect("iter").map(|e| e.expect("entry").0.value().0);
        entries.collect()
    };
    drop(store);
    let created = index();
    assert_eq!(created.len(), 1);
    let store = builder(&db.path, &clock).open()?;
    // Within the resolution the save writes data and state, but keeps the access time, the
    // deadlines and therefore the expiry index entry.
    clock.advance(99);
    let saved = store.store_state(&c.id, &c.token, Save::new(c.version, b"y", b"s1"))?;
    let info = store.inspect(&c.id)?.unwrap().0;
    assert_eq!((info.last_access, info.expires_at), (T0, T0 + 10 * SEC));
    assert_eq!(info.version, 2);
    assert_eq!(store.load(&c.id, &c.token)?.session_data, b"y");
    drop(store);
    assert_eq!(index(), created, "the expiry entry did not move");
    // Past it, the save moves them; the entry stays where it was filed (the index is lazy:
    // early, never late), so the save dirties no page of the index.
    let store = builder(&db.path, &clock).open()?;
    clock.advance(1);
    store.store_state(&c.id, &c.token, Save::new(saved.version, b"z", b"s2"))?;
    let info = store.inspect(&c.id)?.unwrap().0;
    assert_eq!((info.last_access, info.expires_at), (T0 + 100, T0 + 100 + 10 * SEC));
    assert_eq!((info.remove_at, info.indexed_remove_at), (T0 + 100 + 15 * SEC, T0 + 15 * SEC));
    drop(store);
    assert_eq!(index(), created, "the expiry entry did not move: {:?}", index());
    // The bound: a save 99 ms later keeps the deadline, so the session expires 99 ms (less
    // than one resolution) before idle timeout counted from that save, never after it.
    let store = builder(&db.path, &clock).open()?;
    clock.advance(99);
    store.store_state(&c.id, &c.token, Save::new(saved.version + 1, b"w", b""))?;
    assert_eq!(store.inspect(&c.id)?.unwrap().0.expires_at, T0 + 100 + 10 * SEC);
    clock.set(T0 + 100 + 10 * SEC);
    assert!(matches!(store.load(&c.id, &c.token), Err(Error::Expired { .. })));
    Ok(())
}

#[test]
fn a_save_never_moves_the_access_time_back_even_with_a_zero_resolution() -> Result<(), Error> {
    let db = temp_db();
    let clock = ManualClock::new(T0);
    let store = builder(&db.path, &clock).touch_resolution(Duration::ZERO).open()?;
    let c = store.create(b"x", b"")?;
    clock.advance(5);
    let saved = store.store_state(&c.id, &c.token, Save::new(c.version, b"y", b""))?;
    assert_eq!(store.inspect(&c.id)?.unwrap().0.last_access, T0 + 5, "exact, resolution 0");
    clock.set(T0 - 60 * SEC);
    store.store_state(&c.id, &c.token, Save::new(saved.version, b"z", b""))?;
    assert_eq!(store.inspect(&c.id)?.unwrap().0.last_access, T0 + 5, "never moves back");
    Ok(())
}

#[test]
fn explicit_touch_and_clock_going_backwards() -> Result<(), Error> {
    let db = temp_db();
    let (store, clock) = store(&db);
    let c = store.create(b"x", b"")?;
    clock.advance(5);
    store.touch(&c.id, &c.token)?;
    assert_eq!(store.inspect(&c.id)?.unwrap().0.last_access, T0 + 5);
    clock.set(T0 - 60 * SEC);
    store.touch(&c.id, &c.token)?;
    store.store_state(&c.id, &c.token, Save::new(c.version, b"y", b""))?;
    assert_eq!(store.inspect(&c.id)?.unwrap().0.last_access, T0 + 5, "never moves back");
    Ok(())
}

/// Sweeps 300 expired sessions with `cleanup_batch(1000)` and `budget` as the batch time;
/// returns the batches the sweep used.
fn sweep_300_with_batch_time(budget: Option<Duration>) -> Result<u64, Error> {
    let db = temp_db();
    let clock = ManualClock::new(T0);
    let store = builder(&db.path, &clock).cleanup_batch(1000).cleanup_batch_time(budget).open()?;
    for _ in 0..300 {
        store.create(b"old", b"")?;
    }
    clock.advance(20 * SEC);
    let report = store.cleanup()?;
    assert_eq!(report.sessions, 300, "{report:?}");
    assert_eq!(store.count()?, 0);
    Ok(report.batches)
}

#[test]
fn a_sweep_sized_by_time_starts_small_and_follows_its_budget() -> Result<(), Error> {
    // Every commit is far below an hour: the batches double from 64, up to what is left.
    assert_eq!(sweep_300_with_batch_time(Some(Duration::from_secs(3600)))?, 3, "64+128+108");
    // Without a budget, every batch is cleanup_batch.
    assert_eq!(sweep_300_with_batch_time(None)?, 1);
    // A budget below any commit's own cost: the batches follow four times the quickest
    // commit instead (how many depends on the machine), and the sweep still ends.
    let tiny = sweep_300_with_batch_time(Some(Duration::from_nanos(1)))?;
    assert!((2..=300 / 16 + 1).contains(&tiny), "{tiny} batches");
    Ok(())
}

#[test]
fn cleanup_removes_only_sessions_past_grace_in_batches() -> Result<(), Error> {
    let db = temp_db();
    let clock = ManualClock::new(T0);
    let store = builder(&db.path, &clock).cleanup_batch(7).open()?;
    let mut old = Vec::new();
    for _ in 0..30 {
        let c = store.create(b"old", b"")?;
        store.store_state(&c.id, &c.token, Save::new(c.version, b"old", b""))?;
        old.push(c);
    }
    clock.advance(8 * SEC);
    let young: Vec<_> = (0..5).map(|_| store.create(b"young", b"").unwrap()).collect();
    clock.advance(6 * SEC); // old: expired 4 s ago (in grace); young: live
    assert_eq!(store.cleanup()?.sessions, 0);
    clock.advance(2 * SEC); // old: 6 s past expiry, beyond the 5 s grace
    let report = store.cleanup()?;
    assert_eq!(report.sessions, 30);
    assert_eq!(report.states, 60);
    assert_eq!(report.batches, 5, "30 sessions in batches of 7: 7+7+7+7+2");
    assert_eq!(store.count()?, 5);
    for c in &young {
        assert!(store.load(&c.id, &c.token).is_ok());
    }
    for c in &old {
        assert!(matches!(store.load(&c.id, &c.token), Err(Error::NotFound)));
    }
    let info = store.info()?;
    assert_eq!((info.sessions, info.expiry_entries, info.states), (5, 5, 5));
    Ok(())
}

#[test]
fn delete_idle_removes_sessions_unused_for_longer() -> Result<(), Error> {
    let db = temp_db();
    let clock = ManualClock::new(T0);
    let store = builder(&db.path, &clock).idle_timeout(None).open()?;
    let stale: Vec<_> = (0..4).map(|_| store.create(b"", b"").unwrap()).collect();
    clock.advance(120 * SEC);
    let fresh = store.create(b"", b"")?;
    clock.advance(SEC);
    assert_eq!(store.delete_idle(Duration::from_secs(60))?, 4);
    assert!(store.exists(&fresh.id)?);
    for c in &stale {
        assert!(!store.exists(&c.id)?);
    }
    assert_eq!(store.info()?.states, 1);
    Ok(())
}

#[test]
fn adjust_time_shifts_every_deadline() -> Result<(), Error> {
    let db = temp_db();
    let (store, clock) = store(&db);
    let c = store.create(b"x", b"")?;
    // The clock is stepped forward an hour; without adjustment the session would be gone.
    clock.advance(3600 * SEC);
    assert_eq!(store.adjust_time(3600 * 1000)?, 1);
    let info = store.inspect(&c.id)?.unwrap().0;
    assert_eq!(info.created, T0 + 3600 * SEC);
    assert_eq!(info.expires_at, T0 + 3610 * SEC);
    assert!(store.load(&c.id, &c.token).is_ok());
    assert_eq!(store.info()?.expiry_entries, 1);
    // Stepping back works the same way.
    assert_eq!(store.adjust_time(-7200 * 1000)?, 1);
    assert_eq!(store.inspect(&c.id)?.unwrap().0.status, SessionStatus::Gone);
    assert_eq!(store.cleanup()?.sessions, 1);
    Ok(())
}

#[test]
fn removal_follows_the_stored_grace_not_the_sweepers_settings() -> Result<(), Error> {
    let db = temp_db();
    let clock = ManualClock::new(T0);
    let patient = builder(&db.path, &clock).grace_period(Duration::from_secs(3600)).open()?;
    let c = patient.create(b"cart", b"")?;
    let hasty = builder(&db.path, &clock).grace_period(Duration::from_secs(1)).open()?;
    clock.advance(12 * SEC); // idle 10 s: expired; 2 s past the hasty handle's grace
    // The hasty handle never returns the session...
    assert!(matches!(hasty.load(&c.id, &c.token), Err(Error::NotFound)));
    // ...but may not destroy it while the writer's grace window is open.
    assert_eq!(hasty.cleanup()?.sessions, 0);
    let res = patient.load(&c.id, &c.token);
    assert!(matches!(&res, Err(Error::Expired { data }) if data == b"cart"), "{res:?}");
    let info = patient.inspect(&c.id)?.unwrap().0;
    assert_eq!(info.remove_at, T0 + 10 * SEC + 3600 * SEC);
    clock.set(info.remove_at);
    assert_eq!(hasty.cleanup()?.sessions, 1);
    Ok(())
}

#[test]
fn touch_coalescing_makes_expiry_at_most_one_resolution_early_never_late() -> Result<(), Error> {
    let db = temp_db();
    let clock = ManualClock::new(T0);
    // Idle 10 s; asking for a 5 s resolution is clamped to 1% of idle: 100 ms.
    let store = builder(&db.path, &clock).touch_resolution(Duration::from_secs(5)).open()?;
    let c = store.create(b"x", b"")?;
    clock.advance(99); // used at T0 + 99 ms: under the resolution, not persisted
    store.load(&c.id, &c.token)?;
    assert_eq!(store.inspect(&c.id)?.unwrap().0.last_access, T0);
    // Its true idle deadline is T0 + 10.099 s; it expires at T0 + 10 s: 99 ms early, within
    // one resolution.
    clock.set(T0 + 10 * SEC - 1);
    assert!(store.exists(&c.id)?, "live (checked without a load, which would record access)");
    clock.set(T0 + 10 * SEC);
    assert!(matches!(store.load(&c.id, &c.token), Err(Error::Expired { .. })));

    // A load 100 ms after the last persisted access moves the deadline: never late.
    let d = store.create(b"y", b"")?;
    clock.advance(100);
    store.load(&d.id, &d.token)?;
    assert_eq!(store.inspect(&d.id)?.unwrap().0.expires_at, T0 + 20 * SEC + 100);
    Ok(())
}
