//! The Redis engine across processes that share nothing but the server, as web servers on
//! several machines would: each in a working directory of its own, incrementing one session's
//! counter with the version it read, lose no update; and a server killed and restarted mid-run
//! with `appendfsync always` loses no acknowledged save.
#![cfg(feature = "redis")]

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::redis::{RedisServer, redis_available};
use sessiondb::{Engine, Error, NewSession, RedisEngine, Save, SecureToken, SessionId};

/// The counter a session holds.
fn count(data: &[u8]) -> u64 {
    u64::from_le_bytes(data.try_into().expect("8 bytes"))
}

/// One increment with the version read, retried on `Conflict` and, with `through_failures`,
/// on a server that is away. Whether a failed attempt may have been applied (its answer was
/// lost) is counted in `ambiguous`.
fn increment(
    e: &RedisEngine,
    id: &SessionId,
    token: &SecureToken,
    through_failures: bool,
    ambiguous: &AtomicU64,
) {
    loop {
        let got = match e.load(id, token) {
            Ok(got) => got,
            Err(Error::Server { .. }) if through_failures => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(other) => panic!("load: {other:?}"),
        };
        let next = (count(&got.session_data) + 1).to_le_bytes();
        match e.store_state(id, token, Save::session_only(got.version, &next)) {
            Ok(_) => return,
            Err(Error::Conflict { .. }) => {}
            Err(Error::Server { .. }) if through_failures => {
                ambiguous.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(other) => panic!("save: {other:?}"),
        }
    }
}

/// A worker process (run by `processes_in_their_own_directories_lose_no_update`).
#[test]
#[ignore = "a child process of another test"]
fn worker() -> Result<(), Error> {
    let var = |name: &str| std::env::var(name).expect(name);
    let e = RedisEngine::from_url(&var("SESSIONDB_URL"))?;
    let id = SessionId::parse(&var("SESSION_ID"))?;
    let token = SecureToken::parse(&var("SESSION_TOKEN"))?;
    let n: u64 = var("INCREMENTS").parse().expect("a number");
    let ambiguous = AtomicU64::new(0);
    for _ in 0..n {
        increment(&e, &id, &token, false, &ambiguous);
    }
    Ok(())
}

#[test]
fn processes_in_their_own_directories_lose_no_update() -> Result<(), Error> {
    if !redis_available() {
        return Ok(());
    }
    let server = RedisServer::start(&[("appendonly", "yes"), ("appendfsync", "always")]);
    let e = RedisEngine::from_url(&server.url())?;
    let c = e.create_with(NewSession::new(&0u64.to_le_bytes(), b""))?;
    let (processes, each) = (4, 25);
    let dirs: Vec<_> = (0..processes).map(|_| tempfile::tempdir().expect("a directory")).collect();
    let children: Vec<_> = dirs
        .iter()
        .map(|dir| {
            Command::new(std::env::current_exe().expect("the test binary"))
                .args(["--ignored", "--exact", "worker", "--test-threads=1"])
                .current_dir(dir.path())
                .env("SESSIONDB_URL", server.url())
                .env("SESSION_ID", c.id.as_str())
                .env("SESSION_TOKEN", c.token.as_str())
                .env("INCREMENTS", each.to_string())
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn a worker")
        })
        .collect();
    for mut child in children {
        assert!(child.wait()?.success(), "a worker failed");
    }
    let got = e.load(&c.id, &c.token)?;
    assert_eq!(count(&got.session_data), processes * each, "an update was lost");
    assert_eq!(got.version, 1 + processes * each);
    Ok(())
}

#[test]
fn a_restart_mid_run_with_appendfsync_always_loses_no_acknowledged_save() -> Result<(), Error> {
    if !redis_available() {
        return Ok(());
    }
    let mut server = RedisServer::start(&[("appendonly", "yes"), ("appendfsync", "always")]);
    let e = RedisEngine::from_url(&server.url())?;
    let c = e.create_with(NewSession::new(&0u64.to_le_bytes(), b""))?;
    let (acked, ambiguous, done) = (AtomicU64::new(0), AtomicU64::new(0), AtomicBool::new(false));
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    increment(&e, &c.id, &c.token, true, &ambiguous);
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(Duration::from_millis(300));
        server.restart(); // SIGKILL, then the same port and directory
        std::thread::sleep(Duration::from_millis(300));
        done.store(true, Ordering::Relaxed);
    });
    let got = e.load(&c.id, &c.token).or_else(|_| e.load(&c.id, &c.token))?;
    let (acked, ambiguous, stored) =
        (acked.into_inner(), ambiguous.into_inner(), count(&got.session_data));
    println!("acknowledged {acked}, unanswered {ambiguous}, stored {stored}");
    assert!(acked > 0);
    assert!(stored >= acked, "an acknowledged save was lost: {stored} < {acked}");
    assert!(stored <= acked + ambiguous, "{stored} > {acked} + {ambiguous}");
    Ok(())
}
