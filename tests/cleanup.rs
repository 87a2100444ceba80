//! The clean-up sweep and the clean-up thread, with an injected clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use sessiondb::{CLEANUP_THREAD_NAME, Clock, Error, ManualClock, Save, Sharing, Store};

mod common;
use common::T0;

/// How many threads of this process carry the clean-up thread's name.
fn sweep_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == CLEANUP_THREAD_NAME)
        .count()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// A manual clock that panics when read from the clean-up thread once `armed`.
#[derive(Debug)]
struct TrapClock {
    inner: ManualClock,
    armed: AtomicBool,
}

impl Clock for TrapClock {
    fn now_ms(&self) -> u64 {
        let sweeping = thread::current().name() == Some(CLEANUP_THREAD_NAME);
        assert!(!(sweeping && self.armed.load(Ordering::SeqCst)), "trap clock sprung");
        self.inner.now_ms()
    }
}

/// The only test in this binary that starts clean-up threads (the others disable them), so
/// that it can count them.
#[test]
fn the_cleanup_thread_is_named_sweeps_stops_on_drop_and_reports_its_panic() {
    let db = common::temp_db();
    let clock = Arc::new(TrapClock { inner: ManualClock::new(T0), armed: AtomicBool::new(false) });
    let open = || {
        Store::builder(&db.path)
            .clock(clock.clone())
            .idle_timeout(Some(Duration::from_secs(10)))
            .grace_period(Duration::from_secs(5))
            .cleanup_interval(Some(Duration::from_millis(20)))
            .open()
            .expect("open")
    };
    assert_eq!(sweep_threads(), 0);
    let store = open();
    assert!(store.has_cleanup_thread());
    // The new thread names itself as it starts.
    wait_until("the named thread", || sweep_threads() == 1);
    for _ in 0..5 {
        store.create(b"old", b"").unwrap();
    }
    clock.inner.advance(16_000);
    let live = store.create(b"new", b"").unwrap();
    // The statistics are recorded after the sweep's commit: wait for them, not for the count.
    wait_until("the thread's sweep", || store.stats().cleanup.removed.sessions == 5);
    assert_eq!(store.count().unwrap(), 1);
    assert!(store.load(&live.id, &live.token).is_ok());
    assert!(store.stats().cleanup.runs >= 1);

    // Dropping the store stops and joins the thread, and nothing keeps the file open: a
    // single-process (exclusive) open succeeds at once.
    drop(store);
    // Joined; the kernel may list the task for a moment after the join returned.
    wait_until("the joined thread to leave /proc", || sweep_threads() == 0);
    drop(Store::builder(&db.path).sharing(Sharing::SingleProcess).open().expect("file closed"));

    // A panic in a sweep is reported by the next call, once, and ends the thread.
    let store = open();
    wait_until("the new thread", || sweep_threads() == 1);
    clock.armed.store(true, Ordering::SeqCst);
    wait_until("the panicking thread to end", || sweep_threads() == 0);
    clock.armed.store(false, Ordering::SeqCst);
    match store.count() {
        Err(Error::Panicked { place, message }) => {
            assert_eq!(place, "the clean-up thread");
            assert!(message.contains("trap clock sprung"), "{message}");
        }
        other => panic!("expected the thread's panic, got {other:?}"),
    }
    assert_eq!(store.count().unwrap(), 1, "reported once; the store still works");
    assert!(!store.has_cleanup_thread(), "the thread ended on the panic");
    drop(store);

    // Disabled: no thread.
    let store = Store::builder(&db.path).cleanup_interval(None).open().unwrap();
    assert!(!store.has_cleanup_thread());
    assert_eq!(sweep_threads(), 0);
}

#[test]
fn only_one_process_sweeps_at_a_time() {
    let db = common::temp_db();
    let clock = ManualClock::new(T0);
    let store = common::builder(&db.path, &clock).cleanup_interval(None).open().unwrap();
    store.create(b"", b"").unwrap();
    clock.advance(16_000);
    // Another process sweeping holds `cleanup.lock`; an OS lock from another open file
    // description is the same thing to flock.
    let lock_file = db.path.with_file_name("sessions.redb.locks").join("cleanup.lock");
    std::fs::create_dir_all(lock_file.parent().unwrap()).unwrap();
    let other = std::fs::File::create(&lock_file).unwrap();
    other.lock().unwrap();
    let report = store.cleanup().unwrap();
    assert!(report.skipped, "{report:?}");
    assert_eq!(report.sessions, 0);
    assert_eq!(store.count().unwrap(), 1, "nothing removed while another sweeps");
    other.unlock().unwrap();
    let report = store.cleanup().unwrap();
    assert!(!report.skipped);
    assert_eq!(report.sessions, 1);
    let stats = store.stats().cleanup;
    assert_eq!((stats.runs, stats.skipped, stats.removed.sessions), (2, 1, 1), "{stats:?}");
}

/// 100 000 expired sessions are removed in batches of at most 1000 (`cleanup_batch`; sized by
/// time within it) while another thread keeps saving;
/// the saver's longest wait is printed (`cargo test --test cleanup -- --nocapture`).
#[test]
fn a_hundred_thousand_expired_sessions_go_in_batches_while_a_writer_keeps_writing() {
    const SESSIONS: usize = 100_000;
    const CREATORS: usize = 200;
    let db = common::temp_db();
    let clock = ManualClock::new(T0);
    let store =
        common::builder(&db.path, &clock).cleanup_interval(None).max_batch(500).open().unwrap();
    let start = Instant::now();
    thread::scope(|s| {
        for _ in 0..CREATORS {
            s.spawn(|| {
                for _ in 0..SESSIONS / CREATORS {
                    store.create(b"expired soon", b"state").unwrap();
                }
            });
        }
    });
    let created = start.elapsed();
    assert_eq!(store.count().unwrap(), SESSIONS as u64);
    clock.advance(16_000); // past idle 10 s + grace 5 s
    let live = store.create(b"0", b"").unwrap();

    let sweeping = AtomicBool::new(true);
    let (report, (saves, longest)) = thread::scope(|s| {
        let writer = s.spawn(|| {
            let (mut saves, mut longest, mut version) = (0u32, Duration::ZERO, live.version);
            while sweeping.load(Ordering::SeqCst) {
                let t = Instant::now();
                let save = Save::new(version, b"1", b"").same_state(true);
                version = store.store_state(&live.id, &live.token, save).unwrap().version;
                longest = longest.max(t.elapsed());
                saves += 1;
            }
            (saves, longest)
        });
        let report = store.cleanup().unwrap();
        sweeping.store(false, Ordering::SeqCst);
        (report, writer.join().unwrap())
    });
    assert_eq!(report.sessions, SESSIONS as u64, "{report:?}");
    assert_eq!(report.states, SESSIONS as u64);
    assert!(report.batches >= (SESSIONS / 1000) as u64, "no batch above 1000: {report:?}");
    assert_eq!(store.count().unwrap(), 1);
    assert!(store.load(&live.id, &live.token).is_ok());
    assert!(saves > 0);
    eprintln!(
        "created {SESSIONS} in {created:?}; cleanup: {} sessions in {} batches; \
         writer: {saves} saves meanwhile, longest wait {longest:?}",
        report.sessions, report.batches
    );
}
