//! The clean-up schedule shared through the file, with real short-lived processes: each child
//! is this test binary re-run as `--ignored --exact child`, which opens the file as a CGI
//! program would (no clean-up thread), optionally creates one session, calls
//! `Store::cleanup_if_due` once and prints what it did.
//!
//! Expired sessions are made by the parent with a manual clock at `T0` (2026-01-01): their
//! removal time is long past for the children, which read the system clock.

use std::collections::BTreeSet;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use sessiondb::{ManualClock, Store};

mod common;
use common::T0;

/// A child: opens the file at `SS_PATH` with `SS_INTERVAL_MS` as its clean-up interval, an idle
/// timeout of 1 s and no grace window; creates a session if `SS_CREATE` is set; sweeps with
/// fixed batches of `SS_BATCH` sessions if set (else batches sized by time); calls
/// `cleanup_if_due` and prints one line `result ...` (see [`Outcome::parse`]).
#[test]
#[ignore = "child process of the tests of this file; run by them"]
fn child() {
    let var = |name: &str| std::env::var(name).ok();
    let path = var("SS_PATH").expect("run by a test of this file");
    let interval: u64 = var("SS_INTERVAL_MS").unwrap().parse().unwrap();
    let mut builder = Store::builder(&path)
        .cleanup_thread(false)
        .cleanup_interval(Some(Duration::from_millis(interval)))
        .idle_timeout(Some(Duration::from_secs(1)))
        .grace_period(Duration::ZERO);
    if let Some(batch) = var("SS_BATCH") {
        builder = builder.cleanup_batch(batch.parse().unwrap()).cleanup_batch_time(None);
    }
    let store = builder.open().expect("open");
    if var("SS_CREATE").is_some() {
        store.create(b"a counter", b"a state").expect("create");
    }
    let before = store.stats().batches.commits;
    let report = store.cleanup_if_due().expect("cleanup_if_due");
    let commits = store.stats().batches.commits - before;
    match report {
        None => println!("\nresult none {commits}"),
        Some(r) => println!(
            "\nresult some {commits} {} {} {}",
            r.sessions,
            u8::from(r.skipped),
            u8::from(r.complete)
        ),
    }
    store.close_for_exit();
}

/// What a child's `cleanup_if_due` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Outcome {
    /// `Some` if a sweep was due.
    swept: Option<Swept>,
    /// Write transactions the call committed.
    commits: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Swept {
    sessions: u64,
    skipped: bool,
    complete: bool,
}

impl Outcome {
    fn parse(stdout: &str) -> Self {
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("result ").map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("no result line in {stdout:?}"));
        let words: Vec<&str> = line.split(' ').collect();
        let commits = words[1].parse().unwrap();
        let swept = (words[0] == "some").then(|| Swept {
            sessions: words[2].parse().unwrap(),
            skipped: words[3] == "1",
            complete: words[4] == "1",
        });
        Self { swept, commits }
    }
}

/// Runs one child to its end.
fn run_child(path: &Path, interval_ms: u64, create: bool, batch: Option<usize>) -> Outcome {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--ignored", "--exact", "child", "--nocapture", "--test-threads=1"])
        .env("SS_PATH", path)
        .env("SS_INTERVAL_MS", interval_ms.to_string());
    if create {
        cmd.env("SS_CREATE", "1");
    }
    if let Some(batch) = batch {
        cmd.env("SS_BATCH", batch.to_string());
    }
    let out = cmd.output().expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Outcome::parse(&stdout)
}

/// `n` sessions created at `T0` by a manual clock: expired and past their grace window for any
/// process reading the system clock. Their ids.
fn expired_sessions(path: &Path, n: usize) -> BTreeSet<String> {
    let clock = ManualClock::new(T0);
    let store = common::builder(path, &clock).cleanup_interval(None).open().unwrap();
    (0..n).map(|_| store.create(b"old", b"").unwrap().id.to_string()).collect()
}

fn ids(store: &Store) -> BTreeSet<String> {
    store.sessions().map(|s| s.unwrap().id.to_string()).collect()
}

/// A store on `path` that reads without sweeping.
fn observer(path: &Path) -> Store {
    Store::builder(path).cleanup_interval(None).open().unwrap()
}

/// CGI-like processes, each creating one session with an idle timeout of 1 s: the sessions of
/// the first wave are gone once the second has run, so the count stays bounded. Before
/// `cleanup_if_due` (a CGI process never swept) every session stayed: 60 here.
#[test]
fn short_lived_processes_keep_the_session_count_bounded() {
    const WAVE: usize = 30;
    let db = common::temp_db();
    let run_wave = || {
        for _ in 0..WAVE {
            run_child(&db.path, 1000, true, None);
        }
    };
    run_wave();
    let first = ids(&observer(&db.path));
    assert!(first.len() <= WAVE);
    // Longer than the idle timeout plus the interval: every session of the first wave is due
    // for removal, and so is a sweep.
    thread::sleep(Duration::from_millis(2500));
    run_wave();
    let store = observer(&db.path);
    let now = ids(&store);
    assert!(
        now.is_disjoint(&first),
        "a session of the first wave is left: {} of {}",
        now.intersection(&first).count(),
        first.len()
    );
    assert!(now.len() <= WAVE, "{} sessions after {} processes", now.len(), 2 * WAVE);
    assert!(store.info().unwrap().last_swept.is_some(), "a sweep completed and was recorded");
}

/// While another process holds the clean-up lock, a process that finds a sweep due skips it
/// (removes nothing, writes nothing); once the lock is free, the next one sweeps.
#[test]
fn only_one_process_sweeps_at_a_time() {
    let db = common::temp_db();
    let old = expired_sessions(&db.path, 10);
    let lock_file = db.path.with_file_name("sessions.redb.locks").join("cleanup.lock");
    let held = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_file)
        .unwrap();
    held.lock().unwrap();
    for _ in 0..3 {
        let out = run_child(&db.path, 60_000, false, None);
        let swept = out.swept.expect("a sweep is due: the file was never swept");
        assert!(swept.skipped && !swept.complete && swept.sessions == 0, "{out:?}");
        assert_eq!(out.commits, 0, "{out:?}");
    }
    assert_eq!(ids(&observer(&db.path)), old, "nothing removed while another sweeps");
    held.unlock().unwrap();
    let out = run_child(&db.path, 60_000, false, None);
    assert_eq!(out.swept, Some(Swept { sessions: 10, skipped: false, complete: true }));
    assert!(ids(&observer(&db.path)).is_empty());
}

/// A process that finds a sweep done less than an interval ago neither sweeps nor writes, even
/// with expired sessions in the file; one with a shorter interval finds it due.
#[test]
fn a_recent_sweep_is_not_repeated_by_another_process() {
    let db = common::temp_db();
    expired_sessions(&db.path, 5);
    let out = run_child(&db.path, 60_000, false, None);
    assert_eq!(out.swept, Some(Swept { sessions: 5, skipped: false, complete: true }));
    assert_eq!(out.commits, 1, "one batch, which recorded the sweep");
    let swept = observer(&db.path).info().unwrap().last_swept.expect("recorded");

    let old = expired_sessions(&db.path, 5);
    for _ in 0..3 {
        let out = run_child(&db.path, 60_000, false, None);
        assert_eq!(out, Outcome { swept: None, commits: 0 });
    }
    let store = observer(&db.path);
    assert_eq!(ids(&store), old, "not swept again within the interval");
    assert_eq!(store.info().unwrap().last_swept, Some(swept), "the record is unchanged");
    drop(store);

    thread::sleep(Duration::from_millis(20));
    let out = run_child(&db.path, 10, false, None);
    assert_eq!(out.swept, Some(Swept { sessions: 5, skipped: false, complete: true }));
}

/// A backlog larger than one batch is worked off by successive processes, one batch each; the
/// sweep is recorded as done only by the batch that found nothing more due, and after it
/// nobody sweeps again within the interval.
#[test]
fn a_backlog_is_worked_off_over_several_processes() {
    let db = common::temp_db();
    expired_sessions(&db.path, 1100);
    let mut removed = Vec::new();
    loop {
        let out = run_child(&db.path, 60_000, false, Some(300));
        let swept = out.swept.expect("due until the backlog is gone");
        assert!(!swept.skipped);
        assert_eq!(out.commits, 1, "one batch per process: {out:?}");
        removed.push(swept.sessions);
        let recorded = observer(&db.path).info().unwrap().last_swept;
        assert_eq!(recorded.is_some(), swept.complete, "recorded only when complete");
        if swept.complete {
            break;
        }
        assert!(removed.len() < 10, "the backlog does not shrink: {removed:?}");
    }
    assert_eq!(removed, [300, 300, 300, 200]);
    assert_eq!(observer(&db.path).count().unwrap(), 0);
    assert_eq!(run_child(&db.path, 60_000, false, None), Outcome { swept: None, commits: 0 });
}

/// Batches sized by time: a process's batch size is learnt from the last one and kept in the
/// file, so a backlog of 3000 goes in a handful of processes, none of them sweeping it all.
#[test]
fn time_sized_single_batches_carry_their_size_to_the_next_process() {
    let db = common::temp_db();
    expired_sessions(&db.path, 3000);
    let mut removed = Vec::new();
    while removed.len() < 200 {
        let out = run_child(&db.path, 60_000, false, None);
        let swept = out.swept.expect("due until the backlog is gone");
        removed.push(swept.sessions);
        if swept.complete {
            break;
        }
    }
    assert_eq!(removed.iter().sum::<u64>(), 3000, "{removed:?}");
    assert!(removed.len() > 1, "one process swept it all: {removed:?}");
    assert_eq!(removed[0], 64, "the first batch of a sweep sized by time");
    assert!(removed.iter().all(|&n| n <= 1000), "never above cleanup_batch: {removed:?}");
}

/// A long-lived process's clean-up thread and CGI-like processes on one file follow one
/// schedule: the recorded sweeps are at least an interval apart, whoever ran them, and the
/// thread sweeps when the others stop.
#[test]
fn the_cleanup_thread_and_short_lived_processes_share_one_schedule() {
    const INTERVAL: u64 = 300;
    let db = common::temp_db();
    let long_lived = Store::builder(&db.path)
        .cleanup_interval(Some(Duration::from_millis(INTERVAL)))
        .idle_timeout(Some(Duration::from_secs(1)))
        .grace_period(Duration::ZERO)
        .open()
        .unwrap();
    let mut recorded = BTreeSet::new();
    let mut note = |store: &Store| {
        if let Some(t) = store.info().unwrap().last_swept {
            recorded.insert(t);
        }
    };
    let start = Instant::now();
    let mut children_swept = 0;
    while start.elapsed() < Duration::from_secs(4) {
        let out = run_child(&db.path, INTERVAL, true, None);
        children_swept += u64::from(out.swept.is_some_and(|s| s.complete));
        note(&long_lived);
    }
    // The children stopped; their sessions expire and the thread sweeps them.
    let thread_runs = long_lived.stats().cleanup.runs;
    let wait = Instant::now();
    while long_lived.stats().cleanup.runs == thread_runs || long_lived.count().unwrap() > 0 {
        assert!(wait.elapsed() < Duration::from_secs(30), "the thread did not sweep");
        note(&long_lived);
        thread::sleep(Duration::from_millis(10));
    }
    note(&long_lived);
    assert!(children_swept >= 1, "a child found a sweep due");
    let times: Vec<u64> = recorded.into_iter().collect();
    assert!(times.len() >= 2, "{times:?}");
    for pair in times.windows(2) {
        assert!(pair[1] - pair[0] >= INTERVAL, "two sweeps within one interval: {times:?}");
    }
}

/// `examples/cgi_counter`, run as a CGI server runs it, answers its request and then sweeps the
/// expired sessions of the file (one batch, the sweep being due): before it swept nothing.
#[test]
fn the_cgi_demo_sweeps_after_its_response() {
    let db = common::temp_db();
    let old = expired_sessions(&db.path, 20);
    let out = Command::new(common::example("cgi_counter"))
        .env_clear()
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("REQUEST_METHOD", "GET")
        .env("SCRIPT_NAME", "/counter.cgi")
        .env("QUERY_STRING", "")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("SESSIONDB_PATH", &db.path)
        .output()
        .expect("run cgi_counter");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.starts_with("Status: 200 OK\r\n"), "{stdout}");
    assert!(stdout.ends_with("</html>\n"), "the whole page: {stdout}");
    let store = observer(&db.path);
    let now = ids(&store);
    assert!(now.is_disjoint(&old), "{} expired sessions left", now.intersection(&old).count());
    assert_eq!(now.len(), 1, "the request's own session");
    assert!(store.info().unwrap().last_swept.is_some());
}
