//! A load's touch handed over in a shared commit (src/store/share.rs) runs in a leader later
//! than the load: up to the follower's `share_wait` (or, if the follower takes the lead, in
//! its own commit after that wait). The touch must not bring back a session that expired in
//! the meantime: it is checked against the time it runs, not only the time of the load.

#![cfg(unix)]
#![allow(unsafe_code, reason = "libc: mkfifo, flock, kill")]

use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sessiondb::{Error, SecureToken, SessionId, Store};

mod common;
use common::spool::{spool_files, var};

const IDLE: Duration = Duration::from_secs(2);

fn open(path: &Path) -> Store {
    Store::builder(path)
        .cleanup_interval(None)
        .idle_timeout(Some(IDLE))
        .shared_commit(Some(Duration::from_secs(30)))
        .open()
        .expect("open")
}

/// Loads the session in the environment (its touch is due); prints the result.
#[test]
#[ignore = "child process of a_late_touch_does_not_revive_an_expired_session"]
fn late_touch_child() {
    let store = open(Path::new(&var("SC_PATH")));
    let id = SessionId::parse(&var("SC_ID")).unwrap();
    let token = SecureToken::parse(&var("SC_TOKEN")).unwrap();
    match store.load(&id, &token) {
        Ok(_) => println!("result ok"),
        Err(e) => println!("result err {e}"),
    }
}

#[test]
fn a_late_touch_does_not_revive_an_expired_session() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("touch.redb");
    let store = open(&db);
    let s = store.create(b"", b"").expect("create");
    let created = Instant::now();
    // Its touch is due (the resolution is 1% of the idle timeout).
    std::thread::sleep(Duration::from_millis(500));

    // `commit.lock` held outside any store: the child's touch goes to the spool.
    let lock = std::fs::File::open(format!("{}.locks/commit.lock", db.display())).unwrap();
    // SAFETY: flock(2) on an open descriptor.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "late_touch_child", "--nocapture", "--test-threads=1"])
        .env("SC_PATH", db.display().to_string())
        .env("SC_ID", s.id.as_str())
        .env("SC_TOKEN", s.token.as_str())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while spool_files(&db) == 0 {
        assert!(Instant::now() < deadline, "the child's touch never reached the spool");
        std::thread::sleep(Duration::from_millis(2));
    }
    // The session expires while the touch waits in the spool.
    std::thread::sleep((IDLE + Duration::from_millis(300)).saturating_sub(created.elapsed()));
    assert!(matches!(store.load(&s.id, &s.token), Err(Error::Expired { .. })), "expired");
    drop(lock);
    let out = child.wait_with_output().unwrap();
    eprintln!("child: {}", String::from_utf8_lossy(&out.stdout));
    let after = store.load(&s.id, &s.token);
    assert!(
        matches!(after, Err(Error::Expired { .. } | Error::NotFound)),
        "an expired session stays expired, got {:?}",
        after.as_ref().err()
    );
}
