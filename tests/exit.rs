//! `Store::close_for_exit`: CGI-style processes that save and leave the file to the OS instead
//! of closing it lose nothing, and the file stays consistent for every later open.
//!
//! The children are this test binary, re-run with `--ignored --exact cgi_child`: each opens
//! the file, increments one session's counter, prints `ack`, and calls `close_for_exit`.

use std::process::{Command, Stdio};
use std::thread;

use sessiondb::{Created, Error, Save, SecureToken, SessionId, Sharing, Store};

mod common;

const SESSIONS: usize = 3;
const ROUNDS: usize = 8;

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
    println!("\nack {n}");
    store.close_for_exit();
}

fn run_child(path: &std::path::Path, c: &Created) -> u64 {
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
    ack.trim().parse().unwrap()
}

#[test]
fn cgi_processes_leaving_the_file_open_lose_nothing() -> Result<(), Error> {
    let db = common::temp_db();
    let zero = 0u64.to_le_bytes();
    let sessions: Vec<Created> = {
        let store = Store::open(&db.path)?;
        (0..SESSIONS).map(|_| store.create(&zero, &zero)).collect::<Result<_, _>>()?
    };
    // Rounds of one child per session, at the same time: every open after the first may find
    // the file left open by a child that exited, or a child still running.
    for round in 1..=ROUNDS {
        let acks: Vec<u64> = thread::scope(|s| {
            let children: Vec<_> =
                sessions.iter().map(|c| s.spawn(|| run_child(&db.path, c))).collect();
            children.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(acks.iter().all(|&n| n == round as u64), "round {round}: {acks:?}");
    }
    // Every acknowledged save is there, and the file is consistent by sessiondb's walk...
    let store = Store::open(&db.path)?;
    for c in &sessions {
        let got = store.load(&c.id, &c.token)?;
        assert_eq!(common::counter_of(&got.session_data), ROUNDS as u64);
        assert_eq!(got.version, 1 + ROUNDS as u64);
    }
    let verified = store.verify()?;
    assert_eq!(verified.problem_count, 0, "{verified:?}");
    drop(store);
    // The last child closed the file cleanly: it opens read-only without a repair.
    assert_eq!(Store::builder(&db.path).read_only(true).open()?.count()?, SESSIONS as u64);
    // ...and by redb's integrity check.
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
    first.close_for_exit();
    drop(second);
    let single = Store::builder(&shared.path).sharing(Sharing::SingleProcess).open();
    assert!(single.is_err(), "the left handle holds the file: {single:?}");
    assert_eq!(Store::open(&shared.path)?.load(&c.id, &c.token)?.session_data, b"kept");

    // The last store open closes: afterwards the file opens read-only (no repair needed),
    // and to itself.
    let alone = common::temp_db();
    let last = Store::open(&alone.path)?;
    let c = last.create(b"closed", b"")?;
    last.close_for_exit();
    let read_only = Store::builder(&alone.path).read_only(true).open()?;
    assert_eq!(read_only.load(&c.id, &c.token)?.session_data, b"closed");
    drop(read_only);
    let single = Store::builder(&alone.path).sharing(Sharing::SingleProcess).open()?;
    // SingleProcess: always a plain close.
    single.close_for_exit();
    let again = Store::builder(&alone.path).sharing(Sharing::SingleProcess).open()?;
    assert_eq!(again.load(&c.id, &c.token)?.session_data, b"closed");
    Ok(())
}
