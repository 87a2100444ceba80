//! A follower of the shared commit stopped (SIGSTOP) for longer than outcomes stay in
//! `applied` (src/store/share.rs, `RETAIN_MS`): a leader ran its write and recorded it, the
//! record was pruned, and the follower, let go on, finds its spool file gone and no record.
//! It must not run the write a second time: here a blind `put` that a log-out (`delete`)
//! undid in between would bring the deleted session back.
//!
//! Slow (over 70 s of waiting for the prune): real processes, real clock.

#![cfg(unix)]
#![allow(unsafe_code, reason = "libc: mkfifo, flock, kill")]

use std::io::{BufRead, BufReader};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use sessiondb::{Error, SecureToken, SessionId, Store};

mod common;
use common::spool::{child, spool_files, var, wait_for};

fn open(path: &Path) -> Store {
    Store::builder(path)
        .cleanup_interval(None)
        .shared_commit(Some(Duration::from_secs(120)))
        .open()
        .expect("open")
}

/// A blind write of the session in the environment; prints its result.
#[test]
#[ignore = "child process of a_follower_stopped_past_the_retention_does_not_run_its_write_again"]
fn stop_put_child() {
    let store = open(Path::new(&var("SC_PATH")));
    let id = SessionId::parse(&var("SC_ID")).unwrap();
    let token = SecureToken::parse(&var("SC_TOKEN")).unwrap();
    match store.put(&id, &token, b"logged-in", None) {
        Ok(s) => println!("result ok {}", s.version),
        Err(e) => println!("result err {e}"),
    }
}

/// Creates a session; prints its result.
#[test]
#[ignore = "child process of a_follower_stopped_past_the_retention_does_not_run_its_write_again"]
fn stop_create_child() {
    let store = open(Path::new(&var("SC_PATH")));
    match store.create(b"", b"") {
        Ok(_) => println!("result ok"),
        Err(e) => println!("result err {e}"),
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on a child of this process.
    assert_eq!(unsafe { libc::kill(i32::try_from(child.id()).unwrap(), sig) }, 0);
}

/// `commit.lock` held by this process outside its store: every write of a store, there or
/// in a child, hands over to the spool meanwhile.
struct Lead {
    _held: std::fs::File,
}

impl Lead {
    fn take(db: &Path) -> Self {
        let path = PathBuf::from(format!("{}.locks/commit.lock", db.display()));
        let file = std::fs::File::open(path).expect("commit.lock");
        // SAFETY: flock(2) on an open descriptor.
        assert_eq!(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) }, 0);
        Self { _held: file }
    }
}

/// Spawns `name`, waits for its spool file and stops it there.
fn spool_and_stop(db: &Path, name: &str, envs: &[(&str, String)]) -> Child {
    let lead = Lead::take(db);
    let before = spool_files(db);
    let c = child(name, envs);
    wait_for("the child's spool file", || spool_files(db) > before);
    signal(&c, libc::SIGSTOP);
    // kill(2) returns before the child has stopped: let go of the lock only once it has, or
    // the child may take the lead and stop holding it (and the write lock) for good.
    wait_for("the child to stop", || stopped(&c));
    drop(lead);
    c
}

/// Whether the child is stopped (state `T` in /proc/PID/stat).
fn stopped(c: &Child) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", c.id()))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('T')))
        .unwrap_or(false)
}

fn result_of(c: Child) -> String {
    let out = c.wait_with_output().expect("child");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    BufReader::new(text.as_bytes())
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.find("result ").map(|i| l[i..].to_owned()))
        .unwrap_or_else(|| panic!("no result: {text}"))
}

#[test]
fn a_follower_stopped_past_the_retention_does_not_run_its_write_again() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("stop.redb");
    let store = open(&db);
    let s = store.create(b"", b"").expect("create");
    // This process leads below: it runs another's `put` only once it ran one itself (each
    // kind of operation registers with its group committer when first submitted).
    store.put(&s.id, &s.token, b"", None).expect("a first put here");
    let path = db.display().to_string();
    let envs = [
        ("SC_PATH", path.clone()),
        ("SC_ID", s.id.as_str().into()),
        ("SC_TOKEN", s.token.as_str().into()),
    ];

    // A logs in (a blind put) and is stopped once its write is in the spool.
    let a = spool_and_stop(&db, "stop_put_child", &envs);
    let start = Instant::now();
    // A leader (this process) commits A's write and records its outcome.
    store.create(b"", b"").expect("a write that leads");
    wait_for("A's spool file to go", || spool_files(&db) == 0);
    assert!(store.load(&s.id, &s.token).is_ok(), "A's put was applied");
    // Then the user logs out.
    assert!(store.delete(&s.id).expect("delete"), "logged out");

    // Past the retention (60 s + 10 s of slack), a leader that takes any spooled write prunes.
    std::thread::sleep(Duration::from_secs(72).saturating_sub(start.elapsed()));
    let b = spool_and_stop(&db, "stop_create_child", &[("SC_PATH", path)]);
    store.create(b"", b"").expect("a write that leads and prunes");
    wait_for("B's spool file to go", || spool_files(&db) == 0);
    signal(&b, libc::SIGCONT);
    signal(&a, libc::SIGCONT);
    let (ra, rb) = (result_of(a), result_of(b));
    assert_eq!(rb, "result ok");
    eprintln!("A: {ra}");
    let revived = store.load(&s.id, &s.token);
    assert!(
        matches!(revived, Err(Error::NotFound)),
        "the logged-out session must stay deleted, got {:?} (A: {ra})",
        revived.as_ref().err()
    );
}
