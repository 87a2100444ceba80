//! Group commit: concurrent saves share a write transaction, each gets its own result, and a
//! refused or failing save does not fail the others in its batch. Also the merge function.
//!
//! Batches are made deterministic with a clock that can hold its first reader: every save reads
//! the clock inside the write transaction, so while the first save's batch is held, the others
//! queue up and form the next batch together. The clock can also panic on a chosen read.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use sessiondb::{Clock, Created, Error, ManualClock, Save, Store};

mod common;
use common::{T0, raw};

#[derive(Debug)]
struct GateClock {
    inner: ManualClock,
    /// While set, the next read waits until it is cleared.
    hold: AtomicBool,
    /// Reads so far.
    reads: AtomicUsize,
    /// The read (counted from 1) that panics; 0: none.
    panic_at: AtomicUsize,
}

impl Clock for GateClock {
    fn now_ms(&self) -> u64 {
        let n = self.reads.fetch_add(1, Ordering::SeqCst) + 1;
        while self.hold.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(1));
        }
        assert_ne!(n, self.panic_at.load(Ordering::SeqCst), "clock read {n} panics, as asked");
        self.inner.now_ms()
    }
}

fn gated_store(db: &common::TempDb) -> (Store, Arc<GateClock>) {
    gated_store_waiting(db, None)
}

fn gated_store_waiting(db: &common::TempDb, wait: Option<Duration>) -> (Store, Arc<GateClock>) {
    let clock = Arc::new(GateClock {
        inner: ManualClock::new(T0),
        hold: AtomicBool::new(false),
        reads: AtomicUsize::new(0),
        panic_at: AtomicUsize::new(0),
    });
    let store = Store::builder(&db.path)
        .clock(clock.clone())
        .cleanup_interval(None)
        .company_wait(wait)
        .open();
    (store.expect("open"), clock)
}

/// Saves `first` alone, and while its batch is held inside the transaction, saves each of
/// `rest` from its own thread; then lets go. Returns the results of `rest`, in order.
fn batch_after_first(
    store: &Store,
    clock: &GateClock,
    first: &Created,
    rest: &[(&Created, u64)],
) -> Vec<Result<sessiondb::Stored, Error>> {
    clock.hold.store(true, Ordering::SeqCst);
    let reads_before = clock.reads.load(Ordering::SeqCst);
    thread::scope(|s| {
        s.spawn(|| {
            let save = Save::new(first.version, b"first", b"");
            store.store_state(&first.id, &first.token, save).expect("first save");
        });
        // Wait until the first save is inside its transaction, held by the clock.
        while clock.reads.load(Ordering::SeqCst) == reads_before {
            thread::yield_now();
        }
        let handles: Vec<_> = rest
            .iter()
            .map(|(c, version)| {
                s.spawn(move || {
                    let save = Save::new(*version, b"second", b"");
                    store.store_state(&c.id, &c.token, save)
                })
            })
            .collect();
        // Generous time for every thread to queue its save behind the held batch.
        thread::sleep(Duration::from_millis(500));
        clock.hold.store(false, Ordering::SeqCst);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn concurrent_saves_share_one_transaction_and_a_conflict_fails_only_itself() {
    let db = common::temp_db();
    let (store, clock) = gated_store(&db);
    let sessions: Vec<Created> = (0..8).map(|_| store.create(b"v1", b"").unwrap()).collect();
    let before = store.stats().batches;
    // Sessions 1..8: the even ones save with their real version, the odd ones with a stale one.
    let rest: Vec<(&Created, u64)> =
        sessions[1..].iter().enumerate().map(|(i, c)| (c, u64::from(i % 2 == 0))).collect();
    let results = batch_after_first(&store, &clock, &sessions[0], &rest);

    for (i, (res, (c, version))) in results.iter().zip(&rest).enumerate() {
        let got = store.load(&c.id, &c.token).unwrap();
        if *version == 1 {
            assert_eq!(res.as_ref().unwrap().version, 2, "save {i}");
            assert_eq!(got.session_data, b"second", "save {i} committed");
        } else {
            assert!(matches!(res, Err(Error::Conflict { expected: 0, found: 1 })), "{i}: {res:?}");
            assert_eq!(got.session_data, b"v1", "refused save {i} wrote nothing");
        }
    }
    let after = store.stats().batches;
    assert_eq!(after.commits - before.commits, 2, "the first save, then the other seven together");
    assert_eq!(after.largest, 7, "{after:?}");
    assert_eq!(after.sizes[2], 1, "one batch of 4-7 operations: {after:?}");
    assert_eq!(after.retries, 0, "a refusal does not restart the transaction");
}

#[test]
fn a_save_failing_part_way_is_taken_out_and_the_rest_of_its_batch_commits() {
    let db = common::temp_db();
    let sessions: Vec<Created> = {
        let (store, _) = gated_store(&db);
        (0..4).map(|_| store.create(b"v1", b"").unwrap()).collect()
    };
    // Session 2's record fails its checksum: its save fails with `Corrupted` while reading,
    // which (unlike a refusal) abandons the shared transaction.
    let key = raw::record(&sessions[2].id);
    common::damage_value(&db.path, raw::SESSIONS, key, |bytes| {
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
    });
    let (store, clock) = gated_store(&db);
    let before = store.stats().batches;
    let rest: Vec<(&Created, u64)> = sessions[1..].iter().map(|c| (c, 1)).collect();
    let results = batch_after_first(&store, &clock, &sessions[0], &rest);

    assert!(matches!(results[1], Err(Error::Corrupted { .. })), "{:?}", results[1]);
    for i in [0, 2] {
        assert_eq!(results[i].as_ref().unwrap().version, 2);
        let c = rest[i].0;
        assert_eq!(store.load(&c.id, &c.token).unwrap().session_data, b"second");
    }
    // The first save alone, then the three together: the damaged one failed the shared
    // transaction, which was retried once without it, and the other two committed together.
    let after = store.stats().batches;
    assert_eq!(after.commits - before.commits, 2, "{after:?}");
    assert_eq!(after.retries - before.retries, 1, "{after:?}");
    assert_eq!(after.largest, 2, "{after:?}");
}

#[test]
fn a_save_that_panics_fails_alone() {
    let db = common::temp_db();
    let (store, clock) = gated_store(&db);
    let sessions: Vec<Created> = (0..5).map(|_| store.create(b"v1", b"").unwrap()).collect();
    // The first save reads the clock once; the next read is the first job of the next batch.
    clock.panic_at.store(clock.reads.load(Ordering::SeqCst) + 2, Ordering::SeqCst);
    let rest: Vec<(&Created, u64)> = sessions[1..].iter().map(|c| (c, 1)).collect();
    let results = batch_after_first(&store, &clock, &sessions[0], &rest);
    let panicked: Vec<_> =
        results.iter().filter(|r| matches!(r, Err(Error::Panicked { .. }))).collect();
    assert_eq!(panicked.len(), 1, "{results:?}");
    for (res, (c, _)) in results.iter().zip(&rest) {
        let data = store.load(&c.id, &c.token).unwrap().session_data;
        match res {
            Ok(stored) => {
                assert_eq!(stored.version, 2);
                assert_eq!(data, b"second");
            }
            Err(Error::Panicked { message, .. }) => {
                assert!(message.contains("panics, as asked"), "{message}");
                assert_eq!(data, b"v1", "the panicking save wrote nothing");
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(store.stats().batches.largest, 3, "the other three committed together");
}

#[test]
fn with_group_commit_off_every_save_is_its_own_transaction() {
    let db = common::temp_db();
    let store = Store::builder(&db.path).group_commit(false).cleanup_interval(None).open().unwrap();
    let sessions: Vec<Created> = (0..4).map(|_| store.create(b"", b"").unwrap()).collect();
    thread::scope(|s| {
        for c in &sessions {
            let store = &store;
            s.spawn(move || {
                let mut version = c.version;
                for _ in 0..10 {
                    let save = Save::new(version, b"x", b"");
                    version = store.store_state(&c.id, &c.token, save).unwrap().version;
                }
            });
        }
    });
    let stats = store.stats();
    assert!(!stats.group_commit);
    assert_eq!(stats.batches.commits, 4 + 40);
    assert_eq!(stats.batches.largest, 1);
}

#[test]
fn a_conflict_goes_through_the_merge_function() {
    let db = common::temp_db();
    let (store, _clock) = common::store(&db);
    let c = store.create(b"a", b"").unwrap();
    // Two requests read version 1; the first saves "a,b"...
    store.store_state(&c.id, &c.token, Save::new(1, b"a,b", b"")).unwrap();
    // ...the second wanted "a,c": merged with what is stored now.
    let mut calls = Vec::new();
    let merge = |ours: &[u8], theirs: &[u8]| {
        calls.push((ours.to_vec(), theirs.to_vec()));
        [theirs, b",c"].concat()
    };
    let stored = store.store_state_merging(&c.id, &c.token, Save::new(1, b"a,c", b""), merge);
    assert_eq!(stored.unwrap().version, 3);
    assert_eq!(calls, vec![(b"a,c".to_vec(), b"a,b".to_vec())]);
    assert_eq!(store.load(&c.id, &c.token).unwrap().session_data, b"a,b,c");

    // No conflict: the merge function is not called.
    let stored = store.store_state_merging(&c.id, &c.token, Save::new(3, b"d", b""), |_, _| {
        panic!("no conflict, no merge")
    });
    assert_eq!(stored.unwrap().version, 4);
}

#[test]
fn merging_gives_up_after_the_configured_attempts() {
    let db = common::temp_db();
    let clock = ManualClock::new(T0);
    let store = common::builder(&db.path, &clock).max_merge_attempts(3).open().unwrap();
    let c = store.create(b"0", b"").unwrap();
    store.store_state(&c.id, &c.token, Save::new(1, b"1", b"")).unwrap();
    // Another writer always saves between the merge and its retry.
    let mut merges = 0;
    let res =
        store.store_state_merging(&c.id, &c.token, Save::new(1, b"mine", b""), |_, theirs| {
            merges += 1;
            let v = store.load(&c.id, &c.token).unwrap().version;
            store.store_state(&c.id, &c.token, Save::new(v, b"racer", b"")).unwrap();
            theirs.to_vec()
        });
    assert!(matches!(res, Err(Error::Conflict { .. })), "{res:?}");
    assert_eq!(merges, 3);
    assert_eq!(store.load(&c.id, &c.token).unwrap().session_data, b"racer");

    // A wrong token is refused before any merge.
    let wrong = sessiondb::SecureToken::parse(&"A".repeat(43)).unwrap();
    let res = store.store_state_merging(&c.id, &wrong, Save::new(1, b"x", b""), |_, _| {
        panic!("never merged for a wrong token")
    });
    assert!(matches!(res, Err(Error::Security)), "{res:?}");
}

#[test]
fn store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
    assert_send_sync::<sessiondb::SessionLock<'static>>();
}

#[test]
fn a_leader_waits_for_the_writers_of_the_last_batch() {
    let db = common::temp_db();
    // A fixed, long bound: whether the leader waited shows in the batches, not in timings.
    let (store, clock) = gated_store_waiting(&db, Some(Duration::from_secs(5)));
    let s: Vec<Created> = (0..3).map(|_| store.create(b"v1", b"").unwrap()).collect();
    // The creates were batches of one. Now a batch of two: s[1] and s[2] after s[0].
    let results = batch_after_first(&store, &clock, &s[0], &[(&s[1], 1), (&s[2], 1)]);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let before = store.stats().batches;
    // The two writers come back one after the other: the first leads, and waits for the
    // second instead of committing alone.
    let started = Instant::now();
    thread::scope(|scope| {
        let first =
            scope.spawn(|| store.store_state(&s[1].id, &s[1].token, Save::new(2, b"a", b"")));
        thread::sleep(Duration::from_millis(200));
        let second = store.store_state(&s[2].id, &s[2].token, Save::new(2, b"b", b""));
        assert_eq!(second.unwrap().version, 3);
        assert_eq!(first.join().unwrap().unwrap().version, 3);
    });
    // Woken by the second save's arrival, not by the 5 s bound running out.
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    let after = store.stats().batches;
    assert_eq!(after.commits - before.commits, 1, "one commit for both: {after:?}");
    assert_eq!(after.operations - before.operations, 2, "{after:?}");
    assert_eq!(store.load(&s[1].id, &s[1].token).unwrap().session_data, b"a");
    assert_eq!(store.load(&s[2].id, &s[2].token).unwrap().session_data, b"b");
}

#[test]
fn a_leader_gives_up_after_the_bound_and_a_lone_writer_does_not_wait() {
    let db = common::temp_db();
    let bound = Duration::from_secs(2);
    let (store, clock) = gated_store_waiting(&db, Some(bound));
    let s: Vec<Created> = (0..3).map(|_| store.create(b"v1", b"").unwrap()).collect();
    batch_after_first(&store, &clock, &s[0], &[(&s[1], 1), (&s[2], 1)]);
    // The last batch held two; nobody joins this save, which waits out the bound alone.
    let started = Instant::now();
    store.store_state(&s[1].id, &s[1].token, Save::new(2, b"alone", b"")).unwrap();
    assert!(started.elapsed() >= bound, "it waited for company: {:?}", started.elapsed());
    // That batch held one: the next lone save does not wait at all (a wait would last 2 s).
    let started = Instant::now();
    store.store_state(&s[1].id, &s[1].token, Save::new(3, b"again", b"")).unwrap();
    assert!(started.elapsed() < bound / 2, "a lone writer waited: {:?}", started.elapsed());
    // And a zero bound never waits, whatever the last batch held.
    drop(store);
    let (store, clock) = gated_store_waiting(&db, Some(Duration::ZERO));
    let s: Vec<Created> = (0..3).map(|_| store.create(b"v1", b"").unwrap()).collect();
    batch_after_first(&store, &clock, &s[0], &[(&s[1], 1), (&s[2], 1)]);
    let started = Instant::now();
    store.store_state(&s[2].id, &s[2].token, Save::new(2, b"z", b"")).unwrap();
    assert!(started.elapsed() < bound / 2, "waited: {:?}", started.elapsed());
}
