//! `Store::close_for_exit`: CGI-style processes that save and leave the file to the OS instead
//! of closing it lose nothing, and the file stays consistent for every later open.
//!
//! The children are this test binary, re-run with `--ignored --exact cgi_child`: each opens
//! the file, increments one session's counter, calls `close_for_exit` and prints `ack`, the
//! counter and whether it left the file open.

use std::process::{Command, Stdio};
use std::thread;

use sessiondb::{Created, Error, Save, SecureToken, SessionId, Sharing, Store};

mod common;

const SESSIONS: usize = 3;
const ROUNDS: u64 = 8;

#[test]
#[ignore = "child process of cgi_processes_leaving_the_file_open_lose_nothing; run by it"]
fn cgi_child() {
    let var = |name: &str| std::env::var(name).expect("run by the parent test");
    let store = Store::builder(var("SESSIONDB_EXIT_PATH")).cleanup_interval(None).open().unwrap();
    let id = SessionId::parse(&var("SESSIONDB_EXIT_ID")).unwrap();
    let token = SecureToken::parse(&var("SESSIONDB_EXIT_TOKEN")).unwrap();
    // Each child owns its session for this round, so a conflict would be a bug.
    let got = store.load(&id, &token).unwrap();
    let n = common::counter_of(&got.session_data) + 1;
    let bytes = n.to_le_bytes();
    store.store_state(&id, &token, Save::new(got.version, &bytes, &bytes)).unwrap();
    let left = store.close_for_exit();
    println!("\nack {n} {left}");
}

/// Runs one child; its counter after the save, and whether it left the file open.
fn run_child(path: &std::path::Path, c: &Created) -> (u64, bool) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "cgi_child", "--nocapture", "--test-threads=1"])
        .env("SESSIONDB_EXIT_PATH", path)
        .env("SESSIONDB_EXIT_ID", c.id.as_str())
        .env("SESSIONDB_EXIT_TOKEN", c.token.as_str())
        .stderr(Stdio::inherit())
        .output()
        .expect("spawn child");
    assert!(out.status.success(), "child failed: {out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ack = stdout.lines().find_map(|l| l.strip_prefix("ack ")).expect("the child's ack");
    let (n, left) = ack.trim().split_once(' ').expect("counter and flag");
    (n.parse().unwrap(), left.parse().unwrap())
}

/// One round: a child per session, all at once. Returns whether each left the file open.
fn round(path: &std::path::Path, sessions: &[Created], expect: u64) -> Vec<bool> {
    let acks: Vec<(u64, bool)> = thread::scope(|s| {
        let children: Vec<_> = sessions.iter().map(|c| s.spawn(|| run_child(path, c))).collect();
        children.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(acks.iter().all(|&(n, _)| n == expect), "round {expect}: {acks:?}");
    acks.into_iter().map(|(_, left)| left).collect()
}

/// Opens the file read-only (it must need no repair) and checks every counter.
fn read_only_check(path: &std::path::Path, sessions: &[Created], expect: u64) {
    let store = Store::builder(path).read_only(true).open().expect("read-only open, no repair");
    for c in sessions {
        let got = store.load(&c.id, &c.token).unwrap();
        assert_eq!(common::counter_of(&got.session_data), expect);
        assert_eq!(got.version, 1 + expect);
    }
}

#[test]
fn cgi_processes_leaving_the_file_open_lose_nothing() -> Result<(), Error> {
    let db = common::temp_db();
    let zero = 0u64.to_le_bytes();
    let keeper = Store::open(&db.path)?;
    let sessions: Vec<Created> =
        (0..SESSIONS).map(|_| keeper.create(&zero, &zero)).collect::<Result<_, _>>()?;
    // While this process keeps the file open, every child leaves its handle to the OS.
    for n in 1..=ROUNDS {
        let left = round(&db.path, &sessions, n);
        assert!(left.iter().all(|&l| l), "round {n}: another store is open: {left:?}");
    }
    // Read beside the left handles' aftermath, then close: the last store open.
    read_only_check(&db.path, &sessions, ROUNDS);
    assert!(!keeper.close_for_exit(), "the last store open closes");
    read_only_check(&db.path, &sessions, ROUNDS);
    // Alone, the children decide among themselves: whoever is last closes, so after every
    // round the file opens read-only without a repair.
    for n in ROUNDS + 1..=2 * ROUNDS {
        round(&db.path, &sessions, n);
        read_only_check(&db.path, &sessions, n);
    }
    // sessiondb's walk and redb's integrity check agree the file is consistent.
    let store = Store::open(&db.path)?;
    let verified = store.verify()?;
    assert_eq!(verified.problem_count, 0, "{verified:?}");
    drop(store);
    let mut builder = redb::Database::builder();
    builder.set_concurrency_mode(redb::ConcurrencyMode::MultiWriter);
    let mut raw = builder.open(&db.path).expect("raw open");
    assert!(raw.check_integrity().expect("integrity check"));
    Ok(())
}

#[test]
fn the_last_store_open_closes_and_the_others_are_left_until_exit() -> Result<(), Error> {
    let shared = common::temp_db();
    let first = Store::open(&shared.path)?;
    let c = first.create(b"kept", b"")?;
    let second = Store::open(&shared.path)?;
    // Another store is open: `first` is left, and its handle keeps the file open in this
    // process even after `second` closed, so a SingleProcess open (which needs the file to
    // itself) is refused, while a MultiProcess one reads on beside it.
    assert!(first.close_for_exit(), "left: another store is open");
    drop(second);
    let single = Store::builder(&shared.path).sharing(Sharing::SingleProcess).open();
    assert!(single.is_err(), "the left handle holds the file: {single:?}");
    assert_eq!(Store::open(&shared.path)?.load(&c.id, &c.token)?.session_data, b"kept");

    // The last store open closes: afterwards the file opens read-only (no repair needed),
    // and to itself.
    let alone = common::temp_db();
    let last = Store::open(&alone.path)?;
    let c = last.create(b"closed", b"")?;
    assert!(!last.close_for_exit(), "closed: the last store open");
    let read_only = Store::builder(&alone.path).read_only(true).open()?;
    assert_eq!(read_only.load(&c.id, &c.token)?.session_data, b"closed");
    drop(read_only);
    let single = Store::builder(&alone.path).sharing(Sharing::SingleProcess).open()?;
    // SingleProcess: always a plain close.
    assert!(!single.close_for_exit());
    let again = Store::builder(&alone.path).sharing(Sharing::SingleProcess).open()?;
    assert_eq!(again.load(&c.id, &c.token)?.session_data, b"closed");
    Ok(())
}
